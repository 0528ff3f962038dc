"""``POST /v1/verify`` as release tools call it: on the client-certificate listener (``verifyApi.listen`` +
``clientCaFile``), and with hostile bodies that must end in a 400 naming what is wrong, never a 500."""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests.infra import free_port
from tests.infra.registry import RegistryServer
from tests.infra.tls import make_ca, make_client_cert
from tests.serve.conftest import GateProcess, Signing, Tls, pod, push_signed, review


@pytest.fixture
def gate(start_gate, tmp_path: Path, rule_data_file: Path) -> GateProcess:
    return start_gate(tmp_path, data=[str(rule_data_file)])


# -- the client-certificate listener ---------------------------------------------------------------------


class Clients:
    """A CA for release tools with one client certificate, and a certificate from another CA."""

    def __init__(self, directory: Path) -> None:
        self.ca_file, key, cert = make_ca(directory / "clients-ca", "release tools CA")
        self.good = make_client_cert(directory / "good", key, cert)
        _, other_key, other_cert = make_ca(directory / "other-ca", "someone else's CA")
        self.foreign = make_client_cert(directory / "foreign", other_key, other_cert)


def _context(tls: Tls, cert: tuple[Path, Path] | None) -> ssl.SSLContext:
    context = tls.context()
    if cert is not None:
        context.load_cert_chain(str(cert[0]), str(cert[1]))
    return context


def _raw_post(url: str, context: ssl.SSLContext, path: str, body: bytes) -> str:
    """The status line of a POST over one TLS connection; ``TLS: <reason>`` when the server refuses the
    connection with an alert, or "" when it closes it (TLS 1.3 reports a refused client certificate on
    the first read, after the client has sent its request)."""
    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or 443
    request = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body
    try:
        with (
            socket.create_connection((host, port), timeout=30) as raw,
            context.wrap_socket(raw, server_hostname=host) as conn,
        ):
            conn.sendall(request)
            head = conn.recv(4096)
    except ssl.SSLError as err:
        return f"TLS: {err.reason}"
    except ConnectionResetError:
        return ""
    return head.split(b"\r\n", 1)[0].decode()


@pytest.fixture
def mtls_gate(start_gate, tmp_path: Path, rule_data_file: Path) -> Iterator[tuple[GateProcess, str, Clients]]:
    clients = Clients(tmp_path / "pki")
    gate = start_gate(
        tmp_path,
        data=[str(rule_data_file)],
        verifyApi={"listen": "127.0.0.1:0", "clientCaFile": str(clients.ca_file)},
    )
    [_, mtls_url] = gate.urls
    yield gate, mtls_url, clients


def test_a_client_certificate_from_the_ca_is_answered_and_others_are_refused_at_tls(
    mtls_gate: tuple[GateProcess, str, Clients], registry_plain: RegistryServer, signing: Signing
) -> None:
    gate, url, clients = mtls_gate
    good, _ = push_signed(registry_plain, signing.trusted)
    bad, _ = push_signed(registry_plain, signing.untrusted)
    with httpx.Client(base_url=url, verify=_context(gate.tls, clients.good), timeout=60) as client:
        answer = client.post("/v1/verify", json={"images": [good, bad]})
        assert answer.status_code == 200, answer.text
        assert [d["allowed"] for d in answer.json()["decisions"]] == [True, False]
    body = json.dumps({"image": good}).encode()
    assert _raw_post(url, _context(gate.tls, clients.good), "/v1/verify", body) == "HTTP/1.1 200 OK"
    answered = gate.metric("provgate_request_duration_seconds_count", endpoint="verify")
    assert answered == 2
    # No certificate, or one from another CA: the server ends the connection in the handshake (with an
    # alert, or by closing it); no HTTP answer, and no request reaches the gate.
    for cert in (None, clients.foreign):
        refused = _raw_post(url, _context(gate.tls, cert), "/v1/verify", body)
        assert refused == "" or refused.startswith("TLS: "), refused
    assert gate.metric("provgate_request_duration_seconds_count", endpoint="verify") == answered
    # On the admission listener, /v1/verify points at the client-certificate listener.
    answer = gate.post("/v1/verify", {"image": good})
    assert answer.status_code == 403 and "client-certificate listener" in answer.json()["error"]
    assert gate.proc.poll() is None and "Traceback" not in gate.log()


def test_the_client_certificate_listener_serves_no_admission_endpoints(
    mtls_gate: tuple[GateProcess, str, Clients], registry_plain: RegistryServer, signing: Signing
) -> None:
    gate, url, clients = mtls_gate
    image, _ = push_signed(registry_plain, signing.trusted)
    with httpx.Client(base_url=url, verify=_context(gate.tls, clients.good), timeout=60) as client:
        for path in ("/validate", "/mutate"):
            answer = client.post(path, json=review(pod(image)))
            assert answer.status_code == 404, answer.text
            assert "serves POST /v1/verify and GET /healthz" in answer.json()["error"]
        for path in ("/metrics", "/readyz"):
            assert client.get(path).status_code == 404
        assert client.get("/healthz").status_code == 200
    # The admission listener still answers the API server.
    answer = gate.post("/validate", review(pod(image))).json()["response"]
    assert answer["allowed"] is True
    assert gate.metric("provgate_admission_requests_total", endpoint="validate") == 1


def test_the_listeners_are_told_apart_even_on_one_port_number(
    start_gate, tmp_path: Path, rule_data_file: Path
) -> None:
    # Two addresses, one port: a request on `listen` must not count as one that showed a certificate.
    clients = Clients(tmp_path / "pki")
    port = free_port()
    gate = start_gate(
        tmp_path,
        listen=f"127.0.0.1:{port}",
        data=[str(rule_data_file)],
        verifyApi={"listen": f"127.0.0.2:{port}", "clientCaFile": str(clients.ca_file)},
    )
    assert gate.urls == [f"https://127.0.0.1:{port}", f"https://127.0.0.2:{port}"]
    answer = gate.post("/v1/verify", {"image": "127.0.0.1:5000/app:v1"})
    assert answer.status_code == 403 and "client-certificate listener" in answer.json()["error"]


def test_with_a_token_too_each_listener_takes_its_own_credential(
    start_gate, tmp_path: Path, registry_plain: RegistryServer, signing: Signing, rule_data_file: Path
) -> None:
    clients = Clients(tmp_path / "pki")
    token = tmp_path / "token"
    token.write_text("t0ken\n")
    gate = start_gate(
        tmp_path,
        listen="0.0.0.0:0",
        data=[str(rule_data_file)],
        verifyApi={
            "listen": "127.0.0.1:0",
            "clientCaFile": str(clients.ca_file),
            "bearerTokenFile": str(token),
        },
    )
    gate.url = gate.url.replace("0.0.0.0", "127.0.0.1")
    image, _ = push_signed(registry_plain, signing.trusted)
    assert gate.post("/v1/verify", {"image": image}).status_code == 401
    with_token = gate.post("/v1/verify", {"image": image}, headers={"Authorization": "Bearer t0ken"})
    assert with_token.status_code == 200 and with_token.json()["allowed"] is True
    with httpx.Client(base_url=gate.urls[1], verify=_context(gate.tls, clients.good), timeout=60) as client:
        answer = client.post("/v1/verify", json={"image": image})
        assert answer.status_code == 200 and answer.json()["allowed"] is True


# -- hostile bodies --------------------------------------------------------------------------------------


def test_hostile_bodies_are_400_with_a_clear_message_never_500(gate: GateProcess) -> None:
    image = "127.0.0.1:5000/app:v1"
    cases: dict[bytes, str] = {
        b'{"image": "\\ud800"}': "surrogate",
        b'{"images": ["127.0.0.1:5000/a:v1", "\\udfff"]}': "surrogate",
        b'{"image": "\xff\xfe"}': "not valid UTF-8",
        b'{"image": NaN}': "not valid JSON",
        b'{"image": "a", "image": "b"}': "not valid JSON",
        b"[" * 5000 + b"]" * 5000: "nests deeper",
        b"": "not valid JSON",
        b"null": "expected",
        b"3": "expected",
        b'"127.0.0.1:5000/app:v1"': "expected",
        json.dumps([image]).encode(): "expected",
        json.dumps({"image": 3}).encode(): "image must be a non-empty string",
        json.dumps({"image": None}).encode(): "image must be a non-empty string",
        json.dumps({"image": [image]}).encode(): "image must be a non-empty string",
        json.dumps({"image": ""}).encode(): "image must be a non-empty string",
        json.dumps({"images": image}).encode(): "images must be a non-empty list of strings",
        json.dumps({"images": [image, 7]}).encode(): "images must be a non-empty list of strings",
        json.dumps({"images": [{"image": image}]}).encode(): "images must be a non-empty list of strings",
        json.dumps({"images": []}).encode(): "images must be a non-empty list of strings",
        json.dumps({"image": image, "images": [image]}).encode(): "expected",
        json.dumps({"image": image, "policy": "allow-all"}).encode(): "expected",
        json.dumps({"images": [image] * 257}).encode(): "257 images asked for, the limit is 256",
        b'{"pad": "' + b"x" * (2 * 1024 * 1024) + b'"}': "larger than the limit",
    }
    for body, expected in cases.items():
        answer = gate.post("/v1/verify", body)
        assert answer.status_code == 400, (body[:60], answer.status_code, answer.text[:300])
        error = answer.json()["error"]
        assert expected in error, (body[:60], error)
        assert "Traceback" not in answer.text and "\n" not in error

    # Without Content-Length (chunked), the limit holds while reading.
    def chunks() -> Iterator[bytes]:
        yield b'{"image": "'
        for _ in range(64):
            yield b"y" * 65536
        yield b'"}'

    answer = gate.client.post("/v1/verify", content=chunks(), headers={"Content-Type": "application/json"})
    assert answer.status_code == 400 and "larger than the limit" in answer.json()["error"]
    assert gate.proc.poll() is None
    assert "Traceback" not in gate.log()


def test_hostile_image_references_are_undecided_decisions_shown_printably(gate: GateProcess) -> None:
    hostile = [
        "127.0.0.1:5000/app\x1b[31m:v1",
        "127.0.0.1:5000/app\u202e:v1",
        "127.0.0.1:5000/" + "a" * 100_000 + ":v1",
        "127.0.0.1:5000/app:v1@sha256:" + "0" * 63,
    ]
    answer = gate.post("/v1/verify", {"images": hostile})
    assert answer.status_code == 200, answer.text
    decisions = answer.json()["decisions"]
    assert len(decisions) == len(hostile)
    for decision in decisions:
        assert decision["allowed"] is False and decision["decided"] is False, decision
        assert decision["errors"], decision
    # The JSON is exact (each reference decodes to what was sent) and its bytes drive no terminal.
    assert [d["image"] for d in decisions] == hostile
    assert b"\x1b" not in answer.content and "\u202e".encode() not in answer.content
    assert gate.proc.poll() is None and "Traceback" not in gate.log()
