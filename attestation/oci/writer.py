"""Write side: attestations and signatures in cosign's tag layout (``.att``/``.sig``), Sigstore bundles
as OCI 1.1 referrers, and a tiny test/demo image pusher.

The tag layout is a read-modify-write of one manifest with no compare-and-swap in the registry API, so
two writers can overwrite each other. We never let that go unnoticed: after writing, a writer re-reads
the tag and starts over until its layer is there, and confirms once more after a quiet period longer
than any provgate writer's read-to-write window (a writer that took longer than ``RMW_WINDOW`` between
reading and writing re-reads instead of writing a stale list). Writers that do not follow this
protocol (cosign, Chains) can still clobber us after we confirmed; docs/oci.md says so.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime

from attestation import bundle, cosign, dsse
from attestation.errors import InputError, RegistryError, RegistryUnavailable
from attestation.oci import layout
from attestation.oci.reader import ResolvedImage, _repo, list_referrers
from attestation.oci.registry import RegistryClient
from attestation.reference import ImageReference, parse

log = logging.getLogger(__name__)

RMW_WINDOW = 0.5  # seconds from reading a tag to starting the PUT that replaces it
CONFIRM_AFTER = 1.0  # quiet period before the second presence check; must exceed RMW_WINDOW + PUT latency


async def _read_modify_write(
    client: RegistryClient,
    repo: ImageReference,
    tag: str,
    *,
    accept: Sequence[str],
    present: Callable[[bytes], bool],
    build: Callable[[bytes | None], Awaitable[tuple[bytes, str]]],
    deadline: float,
    confirm_after: float = CONFIRM_AFTER,
) -> None:
    """Bring ``tag`` to a state where ``present(body)`` holds, and keep checking until it stays so.

    ``build(old_body)`` uploads what the new manifest needs and returns it as ``(body, media_type)``.
    ``confirm_after``: the quiet period before the second presence check. Shorter than ``RMW_WINDOW``
    only for a caller that itself keeps other provgate writers off the tag (the operator: one replica at
    a time, one write per image at a time); it then just reads the tag back once more.
    """
    wrote = False  # we have written at least once: a presence needs confirming
    just_wrote = False  # our last action was a write: absence now means it was overwritten
    attempt = 0
    while True:
        if time.monotonic() >= deadline:
            raise RegistryUnavailable(
                f"{repo.name}:{tag}: deadline exceeded while concurrent writers kept replacing it"
            )
        got = await client.get_manifest(repo, tag, deadline=deadline, accept=accept, missing_ok=True)
        read_at = time.monotonic()
        old = got[0] if got is not None else None
        if old is not None and present(old):
            if not wrote:
                return
            if time.monotonic() + confirm_after >= deadline:
                raise RegistryUnavailable(
                    f"{repo.name}:{tag}: no time left before the deadline to confirm the write"
                )
            await asyncio.sleep(confirm_after)
            confirm = await client.get_manifest(repo, tag, deadline=deadline, accept=accept, missing_ok=True)
            if confirm is not None and present(confirm[0]):
                return
            just_wrote = True  # overwritten after all: treat like a lost write
        if just_wrote:
            # Lost to a concurrent writer. Pause a random while (so writers de-synchronise), then re-read
            # rather than writing the list we read before the pause.
            just_wrote = False
            attempt += 1
            log.debug(
                "%s:%s: overwritten by a concurrent writer; writing again (attempt %d)",
                repo.name,
                tag,
                attempt,
            )
            await asyncio.sleep(random.uniform(0, min(1.0, 0.05 * 2**attempt)))
            continue
        body, media_type = await build(old)
        if time.monotonic() - read_at > RMW_WINDOW:
            log.debug("%s:%s: read too long ago to write over; reading again", repo.name, tag)
            continue  # too slow: what we read may be stale
        await client.put_manifest(repo, tag, body, media_type, deadline=deadline)
        log.debug("%s:%s: written", repo.name, tag)
        wrote = just_wrote = True


def _predicate_type(envelope_json: bytes) -> str | None:
    try:
        envelope = json.loads(envelope_json)
        statement = json.loads(base64.b64decode(envelope["payload"]))
        value = statement.get("predicateType")
        return value if isinstance(value, str) else None
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


async def _push_attachment_layer(
    client: RegistryClient,
    image: ResolvedImage,
    data: bytes,
    media_type: str,
    annotations: Mapping[str, str],
    *,
    suffix: str,
    deadline: float,
    repository: str | None,
    confirm_after: float = CONFIRM_AFTER,
) -> str:
    repo = _repo(image, repository)
    tag = layout.attachment_tag(image.digest, suffix)
    layer = layout.Descriptor.of(data, media_type, annotations)
    await client.upload_blob(repo, data, deadline=deadline)
    what = f"{repo.name}:{tag}"

    def layers_of(body: bytes) -> tuple[layout.Descriptor, ...]:
        manifest = layout.parse_manifest(body, what=what)
        if manifest.is_index:
            raise RegistryError(f"{what} is an index, not a cosign attachment image; refusing to replace it")
        return manifest.layers

    def present(body: bytes) -> bool:
        return layout.append_layer(layers_of(body), layer) is None

    async def build(old: bytes | None) -> tuple[bytes, str]:
        new_layers = layout.append_layer(layers_of(old) if old is not None else (), layer)
        assert new_layers is not None  # present() was false
        manifest, config = layout.cosign_image(new_layers)
        await client.upload_blob(repo, config, deadline=deadline)
        return manifest, layout.OCI_MANIFEST

    await _read_modify_write(
        client,
        repo,
        tag,
        accept=(layout.OCI_MANIFEST, layout.DOCKER_MANIFEST),
        present=present,
        build=build,
        deadline=deadline,
        confirm_after=confirm_after,
    )
    return layer.digest


async def push_attestation_legacy(
    client: RegistryClient,
    image: ResolvedImage,
    envelope_json: bytes,
    *,
    annotations: Mapping[str, str] | None = None,
    predicate_type: str | None = None,
    certificate: bytes | None = None,
    chain: bytes | None = None,
    deadline: float,
    repository: str | None = None,
    confirm_after: float = CONFIRM_AFTER,
) -> str:
    """Append a DSSE envelope as a layer of ``sha256-<hex>.att``; returns the layer digest.

    Identical layers (same bytes, same annotations) are not duplicated. ``certificate``/``chain`` are PEM
    (X.509 signers). ``repository`` stores the tag in another repository (Chains' storage.oci.repository).
    """
    notes = cosign.layer_annotations(
        signature="",
        certificate=certificate.decode("ascii") if certificate is not None else None,
        chain=(chain or b"").decode("ascii"),
        predicate_type=predicate_type or _predicate_type(envelope_json),
    )
    notes.update(annotations or {})
    return await _push_attachment_layer(
        client,
        image,
        envelope_json,
        dsse.MEDIA_TYPE,
        notes,
        suffix="att",
        deadline=deadline,
        repository=repository,
        confirm_after=confirm_after,
    )


def simple_signing_payload(image: ResolvedImage, optional: Mapping[str, str] | None = None) -> bytes:
    """cosign's "simple signing" payload for an image signature (the bytes that get signed)."""
    return layout.encode_json(
        {
            "critical": {
                "identity": {"docker-reference": image.reference.name},
                "image": {"docker-manifest-digest": image.digest},
                "type": "cosign container image signature",
            },
            "optional": dict(optional) if optional else None,
        }
    )


async def push_signature_legacy(
    client: RegistryClient,
    image: ResolvedImage,
    payload: bytes,
    signature: bytes,
    *,
    certificate: bytes | None = None,
    chain: bytes | None = None,
    deadline: float,
    repository: str | None = None,
) -> str:
    """Append a simple-signing payload and its raw signature as a layer of ``sha256-<hex>.sig``."""
    notes = cosign.layer_annotations(
        signature=base64.b64encode(signature).decode("ascii"),
        certificate=certificate.decode("ascii") if certificate is not None else None,
        chain=(chain or b"").decode("ascii"),
    )
    return await _push_attachment_layer(
        client,
        image,
        payload,
        layout.SIMPLESIGNING_MEDIA_TYPE,
        notes,
        suffix="sig",
        deadline=deadline,
        repository=repository,
    )


async def _subject_size(client: RegistryClient, image: ResolvedImage, deadline: float) -> int:
    if image.size is not None:
        return image.size
    got = await client.get_manifest(image.reference, image.digest, deadline=deadline)
    assert got is not None
    return len(got[0])


async def push_attestation_referrer(
    client: RegistryClient,
    image: ResolvedImage,
    bundle_json: bytes,
    *,
    predicate_type: str,
    deadline: float,
    created: datetime | None = None,
    confirm_after: float = CONFIRM_AFTER,
) -> str:
    """Attach a Sigstore bundle v0.3 as an OCI 1.1 referrer of ``image``; returns the referrer manifest
    digest. Uses the referrers API where the registry has it, the ``sha256-<hex>`` index tag otherwise.
    A bundle already attached (same layer digest) is not attached twice."""
    repo = _repo(image, None)
    layer = layout.Descriptor.of(bundle_json, bundle.BUNDLE_MEDIA_TYPE)
    for existing in await list_referrers(client, repo, image.digest, deadline=deadline):
        if not layout.may_be_bundle_referrer(existing) or not layout.is_sha256(existing.digest):
            continue
        got = await client.get_manifest(repo, existing.digest, deadline=deadline)
        assert got is not None
        if any(x.digest == layer.digest for x in layout.parse_manifest(got[0], what=existing.digest).layers):
            log.debug("%s: the bundle is attached already as %s", image.pinned, existing.digest)
            return existing.digest
    await client.upload_blob(repo, bundle_json, deadline=deadline)
    await client.upload_blob(repo, layout.EMPTY_JSON, deadline=deadline)
    subject = layout.Descriptor(image.media_type, image.digest, await _subject_size(client, image, deadline))
    when = (created or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
    manifest = layout.referrer_manifest(
        subject,
        layer,
        artifact_type=bundle.BUNDLE_MEDIA_TYPE,
        annotations={
            layout.ANNOTATION_BUNDLE_CONTENT: "dsse-envelope",
            layout.ANNOTATION_BUNDLE_PREDICATE_TYPE: predicate_type,
            layout.ANNOTATION_CREATED: when,
        },
    )
    digest = await client.put_manifest(
        repo, layout.sha256_digest(manifest), manifest, layout.OCI_MANIFEST, deadline=deadline
    )
    if await client.get_referrers(repo, image.digest, deadline=deadline) is not None:
        listed = await list_referrers(client, repo, image.digest, deadline=deadline)
        if not any(d.digest == digest for d in listed):
            raise RegistryError(f"{repo.name}: referrers API does not list {digest} after it was pushed")
        return digest
    log.debug("%s: no referrers API; %s listed in the fallback index tag", repo.name, digest)
    entry = layout.Descriptor(
        layout.OCI_MANIFEST, digest, len(manifest), artifact_type=bundle.BUNDLE_MEDIA_TYPE
    )
    tag = layout.referrers_fallback_tag(image.digest)
    what = f"referrers index {repo.name}:{tag}"

    def entries(body: bytes) -> tuple[layout.Descriptor, ...]:
        index = layout.parse_manifest(body, what=what, content_type=layout.OCI_INDEX)
        raw = json.loads(body)
        if raw.get("mediaType") != layout.OCI_INDEX or not index.is_index:
            raise RegistryError(f"{what}: exists but is not an OCI image index; refusing to replace it")
        return index.layers

    async def build(old: bytes | None) -> tuple[bytes, str]:
        body = layout.fallback_index(entries(old) if old is not None else (), entry)
        assert body is not None
        return body, layout.OCI_INDEX

    await _read_modify_write(
        client,
        repo,
        tag,
        accept=(layout.OCI_INDEX,),
        present=lambda body: any(e.digest == digest for e in entries(body)),
        build=build,
        deadline=deadline,
        confirm_after=confirm_after,
    )
    return digest


async def push_image(
    client: RegistryClient,
    repository_ref: str | ImageReference,
    layers: Sequence[bytes] = (b"provgate test layer\n",),
    *,
    tag: str = "latest",
    deadline: float,
    architecture: str = "amd64",
) -> ResolvedImage:
    """Push a tiny OCI image (config + the given uncompressed "tar" layers) and tag it."""
    repo = parse(repository_ref) if isinstance(repository_ref, str) else repository_ref
    repo = ImageReference(repo.registry, repo.repository)
    if not layers:
        raise InputError("push_image needs at least one layer")
    descriptors = []
    for data in layers:
        await client.upload_blob(repo, data, deadline=deadline)
        descriptors.append(layout.Descriptor.of(data, layout.OCI_LAYER))
    config = layout.encode_json(
        {
            "architecture": architecture,
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [d.digest for d in descriptors]},
        }
    )
    await client.upload_blob(repo, config, deadline=deadline)
    manifest = layout.encode_json(
        {
            "schemaVersion": 2,
            "mediaType": layout.OCI_MANIFEST,
            "config": layout.Descriptor.of(config, layout.OCI_CONFIG).to_dict(),
            "layers": [d.to_dict() for d in descriptors],
        }
    )
    digest = await client.put_manifest(repo, tag, manifest, layout.OCI_MANIFEST, deadline=deadline)
    return ResolvedImage(repo.with_digest(digest), layout.OCI_MANIFEST, len(manifest))


async def push_index(
    client: RegistryClient,
    repository_ref: str | ImageReference,
    images: Sequence[ResolvedImage],
    *,
    tag: str,
    deadline: float,
) -> ResolvedImage:
    """Push an OCI image index over already pushed platform manifests (linux/<architecture>)."""
    repo = parse(repository_ref) if isinstance(repository_ref, str) else repository_ref
    repo = ImageReference(repo.registry, repo.repository)
    entries = []
    for i, image in enumerate(images):
        entry = layout.Descriptor(
            image.media_type, image.digest, await _subject_size(client, image, deadline)
        ).to_dict()
        entry["platform"] = {"architecture": ["amd64", "arm64", "s390x", "ppc64le"][i % 4], "os": "linux"}
        entries.append(entry)
    body = layout.encode_json({"schemaVersion": 2, "mediaType": layout.OCI_INDEX, "manifests": entries})
    digest = await client.put_manifest(repo, tag, body, layout.OCI_INDEX, deadline=deadline)
    return ResolvedImage(repo.with_digest(digest), layout.OCI_INDEX, len(body))
