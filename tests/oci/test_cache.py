"""A long-lived registry client remembers content fetched by digest, and which repositories lack the
referrers API for a while; it never remembers a tag, so attestations added later are always seen.

The registry tests count the requests that reach the real registry (distribution without the referrers
API, ggcr with it) through the client's own request hook."""

from __future__ import annotations

import urllib.parse
from typing import Any

import pytest

from attestation.errors import RegistryError
from attestation.oci.cache import ContentCache
from attestation.oci.reader import fetch_attestations, resolve
from attestation.oci.registry import RegistryClient
from attestation.oci.writer import push_attestation_legacy, push_attestation_referrer, push_image
from tests.infra.registry import RegistryServer
from tests.oci.faults import Answer, Seen, fault_server
from tests.oci.helpers import deadline, envelope, run, sha256

MiB = 1024 * 1024
BUNDLE = b'{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","dsseEnvelope":{}}'


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the cache itself ------------------------------------------------------------------------------


def test_bounded_by_bytes_least_recently_used_first_out() -> None:
    cache = ContentCache(max_bytes=10, ttl=60)
    cache.put(("a",), b"aaaa")
    cache.put(("b",), b"bbbb")
    assert cache.get(("a",), fresh=False) == (b"aaaa", "")  # a is now the most recently used
    cache.put(("c",), b"cccc")  # 12 bytes > 10: b goes
    assert cache.get(("b",), fresh=False) is None
    assert cache.get(("a",), fresh=False) is not None and cache.get(("c",), fresh=False) is not None
    assert cache.size == 8
    cache.put(("big",), b"x" * 11)  # larger than the whole cache: not kept, nothing evicted for it
    assert cache.get(("big",), fresh=False) is None and len(cache) == 2


def test_freshness_applies_to_existence_not_to_content() -> None:
    clock = Clock()
    cache = ContentCache(max_bytes=MiB, ttl=60, clock=clock)
    cache.put(("m",), b"manifest", "application/vnd.oci.image.manifest.v1+json")
    clock.now += 59
    assert cache.get(("m",), fresh=True) == (b"manifest", "application/vnd.oci.image.manifest.v1+json")
    clock.now += 2
    assert cache.get(("m",), fresh=False) == (b"manifest", "application/vnd.oci.image.manifest.v1+json")
    assert cache.get(("m",), fresh=True) is None  # too old to say the registry still has it: dropped
    assert cache.get(("m",), fresh=False) is None and cache.size == 0


def test_referrers_capability_is_remembered_for_ttl_and_per_repository() -> None:
    clock = Clock()
    cache = ContentCache(max_bytes=MiB, ttl=60, clock=clock)
    cache.note_referrers_api("r/a", supported=False)
    assert cache.lacks_referrers_api("r/a") and not cache.lacks_referrers_api("r/b")
    clock.now += 60
    assert not cache.lacks_referrers_api("r/a")  # asked again after the ttl (the registry may be upgraded)
    cache.note_referrers_api("r/a", supported=False)
    cache.note_referrers_api("r/a", supported=True)
    assert not cache.lacks_referrers_api("r/a")


def test_size_zero_remembers_nothing() -> None:
    cache = ContentCache(max_bytes=0, ttl=60)
    cache.put(("a",), b"")
    cache.note_referrers_api("r/a", supported=False)
    assert not cache.enabled and len(cache) == 0 and not cache.lacks_referrers_api("r/a")


# -- against the real registries -------------------------------------------------------------------


def _counting(client: RegistryClient) -> list[str]:
    """The path of every request ``client`` sends from now on (each hop of a redirect counts once)."""
    seen: list[str] = []
    send = client._http.send

    async def counting(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        seen.append(urllib.parse.urlsplit(url).path)
        return await send(method, url, *args, **kwargs)

    client._http.send = counting  # type: ignore[method-assign]
    return seen


def _kinds(paths: list[str]) -> dict[str, int]:
    out = {"att tag": 0, "manifest by digest": 0, "blob": 0, "referrers api": 0, "fallback tag": 0}
    for path in paths:
        if path.endswith(".att"):
            out["att tag"] += 1
        elif "/manifests/sha256:" in path:
            out["manifest by digest"] += 1
        elif "/manifests/sha256-" in path:
            out["fallback tag"] += 1
        elif "/blobs/" in path:
            out["blob"] += 1
        elif "/referrers/" in path:
            out["referrers api"] += 1
    return out


async def _attach(client: RegistryClient, image, n: int, *, bundle: bool = True) -> None:
    """A ``.att`` layer (envelope ``n``) and, with ``bundle``, a referrer bundle for ``image``."""
    await push_attestation_legacy(client, image, envelope(n), deadline=deadline())
    if bundle:
        await push_attestation_referrer(
            client, image, BUNDLE, predicate_type="https://slsa.dev/provenance/v1", deadline=deadline()
        )


def test_second_lookup_asks_only_for_what_can_change(any_registry: RegistryServer) -> None:
    repo = any_registry.repo()

    async def go():
        async with any_registry.client(cache_bytes=MiB) as client:
            image = await push_image(client, repo, deadline=deadline())
            await _attach(client, image, 1)
            seen = _counting(client)
            rounds = []
            for _ in range(2):
                seen.clear()
                pinned = await resolve(client, image.pinned, deadline=deadline())
                found = await fetch_attestations(client, pinned, deadline=deadline())
                rounds.append((_kinds(seen), sorted(a.data for a in found)))
            return rounds

    (first, found_first), (second, found_second) = run(go())
    assert found_first == found_second == sorted([envelope(1), BUNDLE])
    assert first["blob"] == 2 and second["blob"] == 0  # content by digest: fetched once
    assert second["manifest by digest"] == 0  # the image and the referrer manifest, both by digest
    assert second["att tag"] == 1  # a tag is asked every time
    if any_registry.referrers_api:
        assert second["referrers api"] == 1  # the listing can change: asked every time
    else:
        # distribution answered 404 to the API (when the referrer was pushed); the fallback tag is still
        # read each time
        assert second["referrers api"] == 0
        assert second["fallback tag"] == 1


def test_attestations_added_later_are_seen_by_the_same_client(any_registry: RegistryServer) -> None:
    repo = any_registry.repo()

    async def go():
        async with any_registry.client(cache_bytes=MiB) as client:
            image = await push_image(client, repo, deadline=deadline())
            await _attach(client, image, 1, bundle=False)
            before = await fetch_attestations(client, image, deadline=deadline())
            # another writer (the signer, cosign) adds attestations meanwhile
            async with any_registry.client() as other:
                await _attach(other, image, 2)
            after = await fetch_attestations(client, image, deadline=deadline())
            return before, after

    before, after = run(go())
    assert [a.data for a in before] == [envelope(1)]
    assert sorted(a.data for a in after) == sorted([envelope(1), envelope(2), BUNDLE])


def _two_lookups(server: RegistryServer, **client_options: object) -> dict[str, int]:
    """Requests, by kind, of resolving and fetching one image's attestations twice with one client."""
    repo = server.repo()

    async def go():
        async with server.client(**client_options) as client:
            image = await push_image(client, repo, deadline=deadline())
            await _attach(client, image, 1, bundle=False)
            seen = _counting(client)
            for _ in range(2):
                await resolve(client, image.pinned, deadline=deadline())
                await fetch_attestations(client, image, deadline=deadline())
            return _kinds(seen)

    return run(go())


def test_without_cache_bytes_every_lookup_asks_again(registry_plain: RegistryServer) -> None:
    kinds = _two_lookups(registry_plain)  # the default: the signer's and the CLI's client
    assert kinds["blob"] == 2 and kinds["manifest by digest"] == 2 and kinds["referrers api"] == 2


def test_referrers_api_is_asked_again_after_the_ttl(registry_plain: RegistryServer) -> None:
    kinds = _two_lookups(registry_plain, cache_bytes=MiB, cache_ttl=0.0)
    # ttl 0: nothing about existence or capability outlives the call that learnt it
    assert kinds["referrers api"] == 2 and kinds["manifest by digest"] == 2
    assert kinds["blob"] == 1  # content by digest needs no freshness


def test_content_that_fails_its_digest_is_not_remembered() -> None:
    good = b"attestation bytes"
    digest = sha256(good)
    answers = iter([Answer(200, b"tampered bytes!!!"), Answer(200, good)])

    def script(seen: Seen) -> Answer:
        return next(answers)

    with fault_server(script) as server:
        from attestation.reference import parse

        ref = parse(f"{server.host}/app@{digest}")

        async def go():
            async with RegistryClient(cache_bytes=MiB, max_retries=0) as client:
                with pytest.raises(RegistryError, match="does not match its digest"):
                    await client.get_blob(ref, digest, size=None, deadline=deadline(), max_bytes=MiB)
                assert len(client.cache) == 0
                first = await client.get_blob(ref, digest, size=None, deadline=deadline(), max_bytes=MiB)
                again = await client.get_blob(ref, digest, size=None, deadline=deadline(), max_bytes=MiB)
                return first, again

        first, again = run(go())
    assert first == again == good
    assert server.count("/blobs/") == 2  # the tampered answer, then the good one; the third call was a hit


def test_a_blob_is_remembered_per_repository(registry_plain: RegistryServer) -> None:
    # The same bytes in another repository are asked for there: a pull right in one repository says
    # nothing about another.
    first, second = registry_plain.repo(), registry_plain.repo()

    async def go():
        async with registry_plain.client(cache_bytes=MiB) as client:
            a = await push_image(client, first, deadline=deadline())
            b = await push_image(client, second, deadline=deadline())
            await push_attestation_legacy(client, a, envelope(7), deadline=deadline())
            await push_attestation_legacy(client, b, envelope(7), deadline=deadline())
            seen = _counting(client)
            await fetch_attestations(client, a, deadline=deadline())
            await fetch_attestations(client, b, deadline=deadline())
            return _kinds(seen)

    assert run(go())["blob"] == 2
