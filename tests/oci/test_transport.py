"""Both registry transports (httpx for the commands, aiohttp for gate serve) behave the same where it
matters: redirects of a blob are followed without carrying credentials to another origin, endless
redirects and oversized answers are clear errors, and an error body is read for its message only."""

from __future__ import annotations

import base64
import hashlib
from contextlib import AbstractContextManager

import pytest

from attestation.errors import RegistryError
from attestation.oci.auth import Credentials
from attestation.oci.registry import RegistryClient
from attestation.oci.transport import MAX_ERROR_BODY, MAX_REDIRECTS
from attestation.reference import parse
from tests.oci.faults import Answer, FaultServer, Seen, fault_server
from tests.oci.helpers import deadline, run

pytestmark = pytest.mark.usefixtures("transport")

BLOB = b"the blob's bytes\n"
DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()
BASIC = "Basic " + base64.b64encode(b"alice:pw").decode()


def _get_blob(host: str, *, max_bytes: int = 1024) -> bytes:
    async def go() -> bytes:
        creds = {host: Credentials(username="alice", password="pw")}
        async with RegistryClient(insecure_registries=[host], credentials=creds, max_retries=0) as client:
            ref = parse(f"{host}/app@{DIGEST}")
            return await client.get_blob(ref, DIGEST, size=None, deadline=deadline(10), max_bytes=max_bytes)

    return run(go())


def _registry(redirect_to: str) -> AbstractContextManager[FaultServer]:
    """A registry that wants basic auth and redirects the blob to ``redirect_to``."""

    def script(seen: Seen) -> Answer:
        if seen.headers.get("authorization") != BASIC:
            return Answer(401, headers={"WWW-Authenticate": 'Basic realm="registry"'})
        if seen.path.endswith(f"/blobs/{DIGEST}"):
            return Answer(307, headers={"Location": redirect_to})
        return Answer(404)

    return fault_server(script)


def test_a_blob_redirected_to_another_origin_is_fetched_without_the_credentials() -> None:
    with (
        fault_server(lambda seen: Answer(200, BLOB)) as storage,
        _registry(f"http://{storage.host}/bucket/blob?signed=1") as registry,
    ):
        assert _get_blob(registry.host) == BLOB
    [hop] = storage.requests
    assert hop.path == "/bucket/blob?signed=1"
    assert "authorization" not in hop.headers  # the registry's password never reaches the storage
    assert any(r.headers.get("authorization") == BASIC for r in registry.requests)


def test_a_redirect_within_the_registry_keeps_the_credentials() -> None:
    def script(seen: Seen) -> Answer:
        if seen.headers.get("authorization") != BASIC:
            return Answer(401, headers={"WWW-Authenticate": 'Basic realm="registry"'})
        if seen.path.endswith(f"/blobs/{DIGEST}"):
            return Answer(302, headers={"Location": "/storage/blob"})  # relative: the same origin
        if seen.path == "/storage/blob":
            return Answer(200, BLOB)
        return Answer(404)

    with fault_server(script) as registry:
        assert _get_blob(registry.host) == BLOB
    assert registry.requests[-1].path == "/storage/blob"


def test_endless_redirects_are_a_clear_error() -> None:
    def script(seen: Seen) -> Answer:
        return Answer(307, headers={"Location": f"/v2/app/blobs/{DIGEST}?hop={len(registry.requests)}"})

    with (
        fault_server(script) as registry,
        pytest.raises(RegistryError, match=f"blob {DIGEST}.*more than {MAX_REDIRECTS} redirects"),
    ):
        _get_blob(registry.host)
    assert len(registry.requests) == MAX_REDIRECTS + 1


def test_a_redirected_blob_is_still_checked_against_its_digest() -> None:
    with (
        fault_server(lambda seen: Answer(200, b"other bytes\n")) as storage,
        _registry(f"http://{storage.host}/blob") as registry,
        pytest.raises(RegistryError, match="content does not match its digest"),
    ):
        _get_blob(registry.host)


def test_a_blob_over_the_cap_is_refused_whether_declared_or_not() -> None:
    with (
        fault_server(lambda seen: Answer(200, b"x" * 2048)) as registry,
        pytest.raises(RegistryError, match="response of 2048 bytes exceeds the limit of 1024"),
    ):
        _get_blob(registry.host)


def test_an_error_body_is_read_for_its_message_only() -> None:
    huge = b'{"errors":[{"code":"DENIED","message":"no"}]}' + b" " * (4 * MAX_ERROR_BODY)
    with (
        fault_server(lambda seen: Answer(403, huge)) as registry,
        pytest.raises(RegistryError, match="403 DENIED: no"),
    ):
        _get_blob(registry.host)
