"""Credentials and TLS against a real distribution registry with TLS (our own CA) and htpasswd auth."""

from __future__ import annotations

import asyncio
import json
import os
import stat
from pathlib import Path

import pytest

from attestation.errors import InputError, RegistryError
from attestation.oci.reader import fetch_attestations, resolve
from attestation.oci.writer import push_attestation_legacy, push_attestation_referrer, push_image
from tests.infra.registry import RegistryServer, make_ca, write_docker_config
from tests.oci.helpers import deadline, envelope, run

# Every test here runs on both registry transports (tests/oci/conftest.py).
pytestmark = pytest.mark.usefixtures("transport")


def _round_trip(server: RegistryServer, **client_options: object) -> list[bytes]:
    repo = server.repo()

    async def go() -> list[bytes]:
        async with server.client(**client_options) as client:
            image = await push_image(client, repo, tag="v1", deadline=deadline())
            await push_attestation_legacy(client, image, envelope(1), deadline=deadline())
            await push_attestation_referrer(
                client, image, b'{"b":1}', predicate_type="p", deadline=deadline()
            )
            resolved = await resolve(client, f"{repo}:v1", deadline=deadline())
            return [a.data for a in await fetch_attestations(client, resolved, deadline=deadline())]

    return run(go())


def test_round_trip_with_ca_and_docker_config_credentials(registry_tls_auth: RegistryServer) -> None:
    assert _round_trip(registry_tls_auth) == [envelope(1), b'{"b":1}']


def test_docker_config_env_variable_is_honoured(
    registry_tls_auth: RegistryServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", registry_tls_auth.docker_config or "")
    assert _round_trip(registry_tls_auth, docker_config=None) == [envelope(1), b'{"b":1}']


def test_credential_helper(
    registry_tls_auth: RegistryServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    helper = tmp_path / "bin" / "docker-credential-provgatetest"
    helper.parent.mkdir()
    answer = json.dumps(
        {
            "ServerURL": registry_tls_auth.host,
            "Username": registry_tls_auth.username,
            "Secret": registry_tls_auth.password,
        }
    )
    # The helper protocol: the server URL on stdin, JSON on stdout; log what we were asked for.
    helper.write_text(f"#!/bin/sh\ncat > {tmp_path}/asked\necho '{answer}'\n")
    helper.chmod(helper.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{helper.parent}{os.pathsep}{os.environ['PATH']}")
    config = tmp_path / "docker"
    config.mkdir()
    (config / "config.json").write_text(json.dumps({"credHelpers": {registry_tls_auth.host: "provgatetest"}}))
    assert _round_trip(registry_tls_auth, docker_config=str(config)) == [envelope(1), b'{"b":1}']
    assert (tmp_path / "asked").read_text() == registry_tls_auth.host


def test_missing_credential_helper_is_a_clear_error(
    registry_tls_auth: RegistryServer, tmp_path: Path
) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"credsStore": "does-not-exist"}))
    with pytest.raises(
        InputError, match=r"credential helper docker-credential-does-not-exist .* not on PATH"
    ):
        _round_trip(registry_tls_auth, docker_config=str(tmp_path))


def test_wrong_password_is_refused(registry_tls_auth: RegistryServer, tmp_path: Path) -> None:
    write_docker_config(tmp_path, registry_tls_auth.host, "provgate", "wrong")
    with pytest.raises(RegistryError, match=rf"{registry_tls_auth.host}/app-[^)]*\): 401"):
        _round_trip(registry_tls_auth, docker_config=str(tmp_path))


def test_no_credentials_is_refused(registry_tls_auth: RegistryServer, tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(RegistryError, match=f"registry {registry_tls_auth.host}: authentication required"):
        _round_trip(registry_tls_auth, docker_config=str(tmp_path))


def test_wrong_ca_is_refused_without_downgrade(registry_tls_auth: RegistryServer, tmp_path: Path) -> None:
    other_ca, _, _ = make_ca(tmp_path, "some other CA")
    with pytest.raises(RegistryError, match="TLS certificate verification failed"):
        _round_trip(registry_tls_auth, ca_file=str(other_ca))


def test_unreadable_ca_file_is_an_input_error(registry_tls_auth: RegistryServer, tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("not a certificate")
    with pytest.raises(InputError, match=r"CA file .*ca\.pem: cannot load"):
        registry_tls_auth.client(ca_file=str(tmp_path / "ca.pem"))


def test_plain_http_needs_loopback_or_an_insecure_mark(registry_plain: RegistryServer) -> None:
    # With the loopback default off, a plain-HTTP registry is only reachable once marked insecure.
    with pytest.raises(RegistryError, match=f"{registry_plain.host}"):
        _round_trip(registry_plain, plain_http_loopback=False, max_retries=0)
    assert _round_trip(registry_plain, plain_http_loopback=False, insecure_registries=[registry_plain.host])


def _concurrent_first_lookups(server: RegistryServer, digest: str, **client_options: object) -> tuple:
    """Four lookups of one image started together on a fresh client; returns (outcomes, probes made)."""
    from attestation.reference import parse

    async def go() -> tuple:
        async with server.client(**client_options) as client:
            probes: list[str] = []
            probe = client._probe_scheme

            async def counting(registry: str, deadline: float) -> str:
                probes.append(registry)
                return await probe(registry, deadline)

            client._probe_scheme = counting  # type: ignore[method-assign]
            ref = parse(f"{server.repo()}@{digest}")
            outcomes = await asyncio.gather(
                *(client.get_manifest(ref, digest, deadline=deadline(), missing_ok=True) for _ in range(4)),
                return_exceptions=True,
            )
            return outcomes, probes

    return run(go())


def test_concurrent_first_requests_share_one_scheme_probe(registry_plain: RegistryServer) -> None:
    outcomes, probes = _concurrent_first_lookups(registry_plain, "sha256:" + "0" * 64)
    assert outcomes == [None] * 4  # plain HTTP on loopback, the image is not there: all four answered
    assert probes == [registry_plain.host]


def test_a_shared_probe_refuses_a_wrong_certificate_for_every_waiter(
    registry_tls_auth: RegistryServer, tmp_path: Path
) -> None:
    other_ca, _, _ = make_ca(tmp_path, "some other CA")
    outcomes, probes = _concurrent_first_lookups(
        registry_tls_auth, "sha256:" + "0" * 64, ca_file=str(other_ca)
    )
    assert len(probes) == 1
    assert all(
        isinstance(o, RegistryError) and "TLS certificate verification failed" in str(o) for o in outcomes
    ), outcomes
