"""Registry failures end in one clear RegistryError, within the caller's deadline, and never in a
partial or tampered result."""

from __future__ import annotations

import base64
import hashlib
import json
import logging

import pytest

from attestation import dsse
from attestation.errors import RegistryError
from attestation.oci import layout
from attestation.oci.reader import ResolvedImage, fetch_attestations, resolve
from attestation.oci.registry import RegistryClient
from attestation.reference import parse
from tests.oci.faults import Answer, Seen, fault_server
from tests.oci.helpers import deadline, run

# Every test here runs on both registry transports (tests/oci/conftest.py).
pytestmark = pytest.mark.usefixtures("transport")


MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": layout.OCI_MANIFEST,
        "config": {"mediaType": layout.OCI_CONFIG, "digest": "sha256:" + "0" * 64, "size": 2},
        "layers": [],
    }
).encode()
OCI = {"Content-Type": layout.OCI_MANIFEST}


def _client(host: str, **kw: object) -> RegistryClient:
    return RegistryClient(insecure_registries=[host], backoff=0.01, **kw)  # type: ignore[arg-type]


def _resolve(host: str, seconds: float = 10.0, **kw: object) -> ResolvedImage:
    async def go() -> ResolvedImage:
        async with _client(host, **kw) as client:
            return await resolve(client, f"{host}/app:v1", deadline=deadline(seconds))

    return run(go())


def test_500_storm_gives_up_after_bounded_retries() -> None:
    with fault_server(lambda seen: Answer(500)) as server:
        with pytest.raises(
            RegistryError, match=r"manifest v1 \(127\.0\.0\.1:\d+/app\): giving up after 4 attempts"
        ):
            _resolve(server.host, max_retries=3)
        assert server.count("/manifests/v1") == 4


def test_transient_503_then_success_is_retried() -> None:
    answers = iter([Answer(503), Answer(502), Answer(200, MANIFEST, OCI)])
    with fault_server(lambda seen: next(answers)) as server:
        image = _resolve(server.host)
    assert image.reference.digest == "sha256:" + hashlib.sha256(MANIFEST).hexdigest()


def test_retries_are_logged_at_debug_level(caplog: pytest.LogCaptureFixture) -> None:
    # What a long-lived gate's operator sees with debug logging on: which request retried, and why.
    answers = iter([Answer(503), Answer(200, MANIFEST, OCI)])
    with (
        caplog.at_level(logging.DEBUG, logger="attestation"),
        fault_server(lambda seen: next(answers)) as server,
    ):
        _resolve(server.host)
    retries = [r for r in caplog.records if "retrying" in r.getMessage()]
    assert [r.levelno for r in retries] == [logging.DEBUG]
    assert retries[0].name == "attestation.oci.registry"
    message = retries[0].getMessage()
    assert message.startswith(f"manifest v1 ({server.host}/app): HTTP 503; retrying in ")
    assert message.endswith(" s (attempt 2)")


def test_429_retry_after_is_honoured_when_it_fits() -> None:
    answers = iter([Answer(429, headers={"Retry-After": "0"}), Answer(200, MANIFEST, OCI)])
    with fault_server(lambda seen: next(answers)) as server:
        _resolve(server.host)
        assert server.count("/manifests/") == 2


def test_429_retry_after_beyond_the_deadline_fails_at_once() -> None:
    with (
        fault_server(lambda seen: Answer(429, headers={"Retry-After": "3600"})) as server,
        pytest.raises(RegistryError, match="HTTP 429; retrying would pass the deadline"),
    ):
        _resolve(server.host, seconds=5)
        assert server.count("/manifests/") == 1


def test_slow_registry_hits_the_deadline() -> None:
    with (
        fault_server(lambda seen: Answer(200, MANIFEST, OCI, delay=3)) as server,
        pytest.raises(RegistryError, match=r"deadline exceeded"),
    ):
        _resolve(server.host, seconds=0.5)


def test_unexpected_status_names_registry_repository_and_registry_message() -> None:
    body = json.dumps({"errors": [{"code": "DENIED", "message": "no way"}]}).encode()
    with (
        fault_server(lambda seen: Answer(418, body)) as server,
        pytest.raises(RegistryError, match=r"\(127\.0\.0\.1:\d+/app\): unexpected HTTP 418 DENIED: no way"),
    ):
        _resolve(server.host)


def test_oversized_manifest_is_refused() -> None:
    big = b" " * (layout.MAX_MANIFEST_BYTES + 1)
    with (
        fault_server(lambda seen: Answer(200, big, OCI)) as server,
        pytest.raises(RegistryError, match="exceeds the limit"),
    ):
        _resolve(server.host)


def test_docker_content_digest_mismatch_is_refused() -> None:
    headers = {**OCI, "Docker-Content-Digest": "sha256:" + "1" * 64}
    with (
        fault_server(lambda seen: Answer(200, MANIFEST, headers)) as server,
        pytest.raises(RegistryError, match="does not match content"),
    ):
        _resolve(server.host)


def _att_registry(layer_bytes: bytes, served: bytes, size: int | None = None):
    """A registry whose .att manifest lists ``layer_bytes`` but whose blob endpoint serves ``served``."""
    digest = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    att = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": layout.OCI_MANIFEST,
            "config": {"mediaType": layout.OCI_CONFIG, "digest": "sha256:" + "0" * 64, "size": 2},
            "layers": [
                {
                    "mediaType": dsse.MEDIA_TYPE,
                    "digest": digest,
                    "size": len(layer_bytes) if size is None else size,
                }
            ],
        }
    ).encode()

    def script(seen: Seen) -> Answer:
        if seen.path.endswith(".att"):
            return Answer(200, att, OCI)
        if "/blobs/" in seen.path:
            return Answer(200, served)
        return Answer(404)

    return script


def _fetch(host: str) -> list:
    image = ResolvedImage(parse(f"{host}/app").with_digest("sha256:" + "2" * 64), layout.OCI_MANIFEST, 10)

    async def go() -> list:
        async with _client(host) as client:
            return await fetch_attestations(client, image, deadline=deadline())

    return run(go())


def test_tampered_attestation_blob_is_refused() -> None:
    envelope = json.dumps({"payload": base64.b64encode(b"{}").decode()}).encode()
    with (
        fault_server(_att_registry(envelope, envelope.replace(b"e30", b"e31"))) as server,
        pytest.raises(RegistryError, match="content does not match its digest"),
    ):
        _fetch(server.host)


def test_attestation_blob_larger_than_limit_is_not_downloaded() -> None:
    # The declared size is the pusher's choice: the layer is reported as one attestation that cannot be
    # read, so it cannot fail the whole lookup, and its blob is never asked for.
    with fault_server(_att_registry(b"x", b"x", size=layout.MAX_ATTESTATION_BYTES + 1)) as server:
        (att,) = _fetch(server.host)
        assert server.count("/blobs/") == 0
    assert att.data == b"" and "exceeds the limit" in att.problem


def test_untampered_blob_via_fault_server_is_returned() -> None:
    # The control case for the two tests above: same server, honest content.
    with fault_server(_att_registry(b"envelope", b"envelope")) as server:
        (att,) = _fetch(server.host)
    assert att.data == b"envelope"


def test_bearer_token_flow() -> None:
    def script(seen: Seen) -> Answer:
        if seen.path.startswith("/token"):
            if seen.headers.get("authorization") != "Basic " + base64.b64encode(b"alice:pw").decode():
                return Answer(401)
            assert "scope=repository%3Aapp%3Apull" in seen.path and "service=test" in seen.path
            return Answer(200, b'{"token":"tok-123"}', {"Content-Type": "application/json"})
        if seen.headers.get("authorization") != "Bearer tok-123":
            realm = f'Bearer realm="http://{host}/token",service="test",scope="repository:app:pull"'
            return Answer(401, headers={"WWW-Authenticate": realm})
        return Answer(200, MANIFEST, OCI)

    with fault_server(script) as server:
        host = server.host
        from attestation.oci.auth import Credentials

        image = _resolve(host, credentials={host: Credentials(username="alice", password="pw")})
        assert image.reference.digest is not None
        assert server.count("/token") == 1
