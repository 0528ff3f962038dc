"""Small helpers shared by the OCI tests."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import httpx

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


def deadline(seconds: float = 30.0) -> float:
    return time.monotonic() + seconds


def envelope(n: int, predicate_type: str = "https://slsa.dev/provenance/v0.2") -> bytes:
    """A DSSE envelope-shaped document (storage does not verify; these tests check bytes survive)."""
    statement = {
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": predicate_type,
        "subject": [{"name": "x", "digest": {"sha256": "0" * 64}}],
        "predicate": {"n": n},
    }
    payload = base64.b64encode(json.dumps(statement).encode()).decode()
    return json.dumps(
        {
            "payloadType": "application/vnd.in-toto+json",
            "payload": payload,
            "signatures": [{"keyid": "", "sig": base64.b64encode(b"sig%d" % n).decode()}],
        }
    ).encode()


def raw_manifest(host: str, repository: str, reference: str, accept: str, **kw: Any) -> httpx.Response:
    """Read a manifest straight from the registry, independent of the code under test."""
    scheme = "https" if kw.get("verify") else "http"
    return httpx.get(
        f"{scheme}://{host}/v2/{repository}/manifests/{reference}", headers={"Accept": accept}, **kw
    )


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def push_small_image(server: Any, name: str = "app") -> tuple[str, str]:
    """(repository, digest) of a fresh one-layer image pushed to ``server`` (a ``RegistryServer``)."""
    from attestation.oci.writer import push_image

    repo = server.repo(name)

    async def push() -> str:
        async with server.client() as client:
            image = await push_image(client, repo, [repo.encode()], deadline=deadline())
            return image.reference.digest

    return repo, run(push())
