"""Read side: resolve an image reference to a digest, then collect every attestation stored for that
digest — the cosign ``sha256-<hex>.att`` layers and the OCI 1.1 referrers (API or tag-schema fallback)
carrying Sigstore bundles — as raw bytes verified against their descriptors. Nothing is parsed or
trusted here beyond the OCI structure; signature verification is the caller's job.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from attestation import bundle, dsse
from attestation.errors import RegistryError
from attestation.oci import layout
from attestation.oci.registry import RegistryClient
from attestation.reference import ImageReference, parse

T = TypeVar("T")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ResolvedImage:
    reference: ImageReference  # with digest set
    media_type: str
    size: int | None = None  # of the manifest; needed as the subject of a referrer

    @property
    def pinned(self) -> str:
        return self.reference.pinned

    @property
    def digest(self) -> str:
        assert self.reference.digest is not None
        return self.reference.digest


@dataclass(frozen=True)
class StoredAttestation:
    media_type: str
    data: bytes
    annotations: dict[str, str] = field(default_factory=dict)
    source: str = ""
    # Why what was pushed there cannot be an attestation (data is then empty): reported as one
    # unverified attestation, never an error of the whole lookup (see fetch_attestations).
    problem: str | None = None


def _unusable(source: str, problem: str) -> StoredAttestation:
    return StoredAttestation(media_type="", data=b"", source=source, problem=problem)


async def resolve(client: RegistryClient, ref: str | ImageReference, *, deadline: float) -> ResolvedImage:
    """Tag -> digest by fetching the manifest and hashing its bytes (a digest reference is checked)."""
    image = parse(ref) if isinstance(ref, str) else ref
    reference = image.digest or image.tag or "latest"
    got = await client.get_manifest(image, reference, deadline=deadline, missing_ok=True)
    if got is None:
        raise RegistryError(f"image {image}: not found in {image.registry}")
    body, content_type, digest = got
    manifest = layout.parse_manifest(body, what=f"manifest of {image}", content_type=content_type)
    return ResolvedImage(image.with_digest(digest), manifest.media_type, len(body))


def _repo(image: ResolvedImage, repository: str | None) -> ImageReference:
    """Where attachments live: the image's repository, or an override (cosign's COSIGN_REPOSITORY,
    Chains' storage.oci.repository)."""
    if repository is None:
        return ImageReference(image.reference.registry, image.reference.repository)
    other = parse(repository)
    return ImageReference(other.registry, other.repository)


async def _gather_bounded(jobs: Sequence[Callable[[], Awaitable[T]]], limit: int = 8) -> list[T]:
    sem = asyncio.Semaphore(limit)

    async def run(job: Callable[[], Awaitable[T]]) -> T:
        async with sem:
            return await job()

    return list(await asyncio.gather(*(run(job) for job in jobs)))


async def fetch_legacy(
    client: RegistryClient, image: ResolvedImage, *, deadline: float, repository: str | None = None
) -> list[StoredAttestation]:
    """The DSSE layers of the ``.att`` attachment image (none when the tag does not exist)."""
    repo = _repo(image, repository)
    tag = layout.attachment_tag(image.digest, "att")
    got = await client.get_manifest(repo, tag, deadline=deadline, missing_ok=True)
    if got is None:
        return []
    where = f"{repo.name}:{tag}"
    try:
        manifest = layout.parse_manifest(got[0], what=where, content_type=got[1])
    except RegistryError as err:  # what was pushed under the tag, not a registry failure
        return [_unusable(where, str(err))]
    if manifest.is_index:
        return [_unusable(where, f"{where} is an index, not a cosign attestation image")]
    wanted = [(i, d) for i, d in enumerate(manifest.layers) if d.media_type == dsse.MEDIA_TYPE]

    def job(i: int, d: layout.Descriptor) -> Callable[[], Awaitable[StoredAttestation]]:
        async def fetch() -> StoredAttestation:
            source = f"{where} layer {i}"
            too_large = _too_large(d, source)
            if too_large is not None:
                return too_large
            data = await client.get_blob(
                repo, d.digest, size=d.size, deadline=deadline, max_bytes=layout.MAX_ATTESTATION_BYTES
            )
            return StoredAttestation(d.media_type, data, dict(d.annotations), source)

        return fetch

    return await _gather_bounded([job(i, d) for i, d in wanted])


def _too_large(layer: layout.Descriptor, source: str) -> StoredAttestation | None:
    # The size is the pusher's claim: too large is this attestation's problem, never a reason to fetch.
    if layer.size > layout.MAX_ATTESTATION_BYTES:
        limit = layout.MAX_ATTESTATION_BYTES
        return _unusable(source, f"{source}: declared size {layer.size} exceeds the limit of {limit}")
    return None


async def list_referrers(
    client: RegistryClient, repo: ImageReference, digest: str, *, deadline: float
) -> list[layout.Descriptor]:
    """Referrer descriptors from the referrers API, or from the ``sha256-<hex>`` index tag without it."""
    body = await client.get_referrers(repo, digest, deadline=deadline)
    where = f"referrers of {repo.name}@{digest}"
    if body is None:
        tag = layout.referrers_fallback_tag(digest)
        got = await client.get_manifest(
            repo, tag, deadline=deadline, accept=(layout.OCI_INDEX,), missing_ok=True
        )
        if got is None:
            return []
        body, where = got[0], f"referrers index {repo.name}:{tag}"
    index = layout.parse_manifest(body, what=where, content_type=layout.OCI_INDEX)
    if not index.is_index:
        raise RegistryError(f"{where}: not an OCI index")
    return list(index.layers)


async def fetch_referrers(
    client: RegistryClient, image: ResolvedImage, *, deadline: float
) -> list[StoredAttestation]:
    """Sigstore bundles attached as OCI 1.1 referrers of the image (one bundle layer per manifest)."""
    repo = _repo(image, None)
    descriptors = await list_referrers(client, repo, image.digest, deadline=deadline)
    candidates = [d for d in descriptors if layout.may_be_bundle_referrer(d)]

    def job(d: layout.Descriptor) -> Callable[[], Awaitable[StoredAttestation | None]]:
        async def fetch() -> StoredAttestation | None:
            if not layout.is_sha256(d.digest):
                return None
            got = await client.get_manifest(repo, d.digest, deadline=deadline)
            assert got is not None
            what = f"referrer {repo.name}@{d.digest}"
            source = f"referrer {d.digest}"
            # Anyone who may push to the repository may push a referrer: what it holds is judged as one
            # attestation, and only the registry's own failures fail the lookup.
            try:
                manifest = layout.parse_manifest(got[0], what=what, content_type=got[1])
            except RegistryError as err:
                return _unusable(source, str(err))
            if manifest.subject is not None and manifest.subject.digest != image.digest:
                subject = manifest.subject.digest
                return _unusable(source, f"{what}: its subject is {subject}, not {image.digest}")
            bundles = [x for x in manifest.layers if bundle.is_bundle_media_type(x.media_type)]
            if manifest.is_index or len(bundles) != 1:
                return None  # not a bundle artifact (e.g. an SBOM referrer): not ours to judge
            layer = bundles[0]
            too_large = _too_large(layer, source)
            if too_large is not None:
                return too_large
            data = await client.get_blob(
                repo, layer.digest, size=layer.size, deadline=deadline, max_bytes=layout.MAX_ATTESTATION_BYTES
            )
            annotations = {**manifest.annotations, **layer.annotations}
            return StoredAttestation(layer.media_type, data, annotations, source)

        return fetch

    found = await _gather_bounded([job(d) for d in candidates])
    return [a for a in found if a is not None]


async def fetch_attestations(
    client: RegistryClient, image: ResolvedImage, *, deadline: float, repository: str | None = None
) -> list[StoredAttestation]:
    """Every attestation for ``image``'s digest: ``.att`` layers first, then referrer bundles.

    ``repository`` overrides where the ``.att`` tag is looked up (referrers always live beside the
    image). Any registry failure raises :class:`RegistryError`: a partial answer could hide a
    deny-worthy attestation set, so the caller must treat it as "cannot decide". What someone pushed
    that cannot be an attestation (an unparsable ``.att`` or referrer manifest, a referrer about another
    image, a layer declared larger than the bound) is not a registry failure: it comes back as one
    :class:`StoredAttestation` with its ``problem``, so it cannot block the image's other attestations.
    """
    if image.reference.digest is None:
        raise RegistryError(f"image {image.reference}: attestations are only looked up by digest")
    legacy, referrers = await asyncio.gather(
        fetch_legacy(client, image, deadline=deadline, repository=repository),
        fetch_referrers(client, image, deadline=deadline),
    )
    log.debug("%s: %d .att layer(s), %d referrer bundle(s)", image.pinned, len(legacy), len(referrers))
    return [*legacy, *referrers]


def fetch_attestations_sync(
    ref: str, *, timeout: float = 60.0
) -> tuple[ResolvedImage, list[StoredAttestation]]:
    """Resolve and fetch in one blocking call, with a default :class:`RegistryClient`."""

    async def run() -> tuple[ResolvedImage, list[StoredAttestation]]:
        deadline = time.monotonic() + timeout
        async with RegistryClient() as client:
            image = await resolve(client, ref, deadline=deadline)
            return image, await fetch_attestations(client, image, deadline=deadline)

    return asyncio.run(run())
