"""cosign's OCI layouts as pure functions: tag names, media types, and the manifests and indexes we read
and write (see docs/oci.md and reference/oci-cosign-sigstore.md §1-§2). What goes inside a layer has its
own module: the envelope (``attestation.dsse``), the bundle (``attestation.bundle``) and cosign's layer
annotations (``attestation.cosign``).

Everything here works on bytes and plain values; the registry I/O lives in ``registry.py``. Parsers are
strict and bounded because manifests come from a registry we do not trust.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from attestation import bundle
from attestation.errors import InputError, RegistryError
from attestation.limits import MiB, load_json

# Media types.
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
IMAGE_MEDIA_TYPES: tuple[str, ...] = (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_LIST)
INDEX_MEDIA_TYPES = frozenset({OCI_INDEX, DOCKER_LIST})
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
SIMPLESIGNING_MEDIA_TYPE = "application/vnd.dev.cosign.simplesigning.v1+json"

EMPTY_JSON = b"{}"
EMPTY_JSON_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"

# Manifest annotations (bundle referrers).
ANNOTATION_BUNDLE_CONTENT = "dev.sigstore.bundle.content"
ANNOTATION_BUNDLE_PREDICATE_TYPE = "dev.sigstore.bundle.predicateType"
ANNOTATION_CREATED = "org.opencontainers.image.created"

# Bounds. The distribution spec asks registries to accept manifests of at least 4 MiB; cosign stops
# appending at 1000 layers. Attestation blobs: a 16 MiB envelope plus certificates and timestamps.
MAX_MANIFEST_BYTES = 4 * MiB
MAX_LAYERS = 1000
MAX_REFERRERS = 1000
MAX_ATTESTATION_BYTES = 17 * MiB
MAX_ANNOTATIONS = 256
MAX_ANNOTATION_BYTES = 256 * 1024

_DIGEST = re.compile(r"[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_SHA256 = re.compile(r"sha256:[0-9a-f]{64}")


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def is_sha256(digest: str) -> bool:
    return bool(_SHA256.fullmatch(digest))


def encode_json(obj: Any) -> bytes:
    """Compact JSON, the bytes we upload and whose sha256 is the digest."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _require_sha256(digest: str) -> str:
    if not is_sha256(digest):
        raise InputError(f"digest {digest!r} is not sha256:<64 lowercase hex>")
    return digest.split(":", 1)[1]


def attachment_tag(digest: str, suffix: str) -> str:
    """cosign's tag for an attachment of ``digest``: ``sha256-<hex>.att`` / ``.sig``."""
    return f"sha256-{_require_sha256(digest)}.{suffix}"


def referrers_fallback_tag(digest: str) -> str:
    """The OCI 1.1 referrers tag schema: ``sha256-<hex>`` names an index of the referrers."""
    return f"sha256-{_require_sha256(digest)}"


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    artifact_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mediaType": self.media_type, "digest": self.digest, "size": self.size}
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        return out

    @staticmethod
    def of(data: bytes, media_type: str, annotations: Mapping[str, str] | None = None) -> Descriptor:
        return Descriptor(media_type, sha256_digest(data), len(data), dict(annotations or {}))


@dataclass(frozen=True)
class Manifest:
    """An image manifest or index as parsed from the registry's bytes."""

    media_type: str
    config: Descriptor | None
    layers: tuple[Descriptor, ...]  # for an index: its manifests
    subject: Descriptor | None
    artifact_type: str | None
    annotations: Mapping[str, str]

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_MEDIA_TYPES


def _bad(what: str, msg: str) -> RegistryError:
    return RegistryError(f"{what}: {msg}")


def _short(value: Any) -> str:
    """A value from the manifest, quoted for a message and cut short (it may be megabytes)."""
    text = repr(value)
    return text if len(text) <= 100 else text[:100] + "..."


def _annotations(obj: Any, what: str) -> dict[str, str]:
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise _bad(what, "annotations must be an object")
    if len(obj) > MAX_ANNOTATIONS:
        raise _bad(what, f"more than {MAX_ANNOTATIONS} annotations")
    total = 0
    for key, value in obj.items():
        if not isinstance(value, str):
            raise _bad(what, f"annotation {key[:100]!r} is not a string")
        total += len(key) + len(value)
    if total > MAX_ANNOTATION_BYTES:
        raise _bad(what, f"annotations larger than {MAX_ANNOTATION_BYTES} bytes")
    return dict(obj)


def _descriptor(obj: Any, what: str) -> Descriptor:
    if not isinstance(obj, dict):
        raise _bad(what, "descriptor is not an object")
    media_type, digest, size = obj.get("mediaType"), obj.get("digest"), obj.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise _bad(what, "descriptor has no mediaType")
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise _bad(what, f"descriptor digest {_short(digest)} is malformed")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise _bad(what, f"descriptor size {_short(size)} is not a non-negative integer")
    artifact_type = obj.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _bad(what, "descriptor artifactType is not a string")
    return Descriptor(media_type, digest, size, _annotations(obj.get("annotations"), what), artifact_type)


def parse_manifest(body: bytes, *, what: str, content_type: str | None = None) -> Manifest:
    """Parse an OCI/Docker image manifest or index. :class:`RegistryError` naming ``what`` if unusable."""
    try:
        doc = load_json(body, max_bytes=MAX_MANIFEST_BYTES, what=what)
    except InputError as err:
        raise RegistryError(str(err)) from None
    if not isinstance(doc, dict):
        raise _bad(what, "manifest is not a JSON object")
    if doc.get("schemaVersion") != 2:
        raise _bad(what, f"unsupported schemaVersion {_short(doc.get('schemaVersion'))}")
    media_type = doc.get("mediaType") or content_type
    if media_type not in IMAGE_MEDIA_TYPES:
        # OCI allows mediaType to be absent; tell an index from a manifest by its fields then.
        media_type = OCI_INDEX if "manifests" in doc else OCI_MANIFEST
    is_index = media_type in INDEX_MEDIA_TYPES
    items = doc.get("manifests" if is_index else "layers", [])
    if items is None:
        items = []
    if not isinstance(items, list):
        raise _bad(what, "manifests/layers is not a list")
    limit = MAX_REFERRERS if is_index else MAX_LAYERS
    if len(items) > limit:
        raise _bad(what, f"{len(items)} entries, more than the limit of {limit}")
    config = None if is_index or "config" not in doc else _descriptor(doc["config"], what + " config")
    subject = _descriptor(doc["subject"], what + " subject") if doc.get("subject") is not None else None
    artifact_type = doc.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _bad(what, "artifactType is not a string")
    return Manifest(
        media_type=media_type,
        config=config,
        layers=tuple(_descriptor(item, f"{what} entry {i}") for i, item in enumerate(items)),
        subject=subject,
        artifact_type=artifact_type,
        annotations=_annotations(doc.get("annotations"), what),
    )


def cosign_image(layers: Sequence[Descriptor]) -> tuple[bytes, bytes]:
    """``(manifest, config)`` bytes of a cosign attachment image (``.att``/``.sig``) with these layers.

    cosign re-reads and appends to these images with go-containerregistry, which parses the config, so
    the config has the shape cosign itself writes: an empty image with one history entry and diff_id per
    (uncompressed) layer.
    """
    config = encode_json(
        {
            "architecture": "",
            "created": "0001-01-01T00:00:00Z",
            "history": [{"created": "0001-01-01T00:00:00Z"} for _ in layers],
            "os": "",
            "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]},
            "config": {},
        }
    )
    manifest = encode_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": Descriptor.of(config, OCI_CONFIG).to_dict(),
            "layers": [layer.to_dict() for layer in layers],
        }
    )
    return manifest, config


def append_layer(existing: Sequence[Descriptor], layer: Descriptor) -> list[Descriptor] | None:
    """The layer list with ``layer`` appended, or None when an identical layer is already there.

    Identical means same blob and same annotations: the same envelope re-signed with a new certificate
    is a different signature and is kept.
    """
    for old in existing:
        if old.digest == layer.digest and dict(old.annotations) == dict(layer.annotations):
            return None
    if len(existing) >= MAX_LAYERS:
        raise InputError(f"attachment image already has {len(existing)} layers, the limit is {MAX_LAYERS}")
    return [*existing, layer]


def referrer_manifest(
    subject: Descriptor, layer: Descriptor, *, artifact_type: str, annotations: Mapping[str, str]
) -> bytes:
    """An OCI 1.1 artifact manifest referring to ``subject`` with one layer and the empty config."""
    return encode_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": artifact_type,
            "config": {"mediaType": OCI_EMPTY, "digest": EMPTY_JSON_DIGEST, "size": len(EMPTY_JSON)},
            "layers": [layer.to_dict()],
            "subject": Descriptor(subject.media_type, subject.digest, subject.size).to_dict(),
            "annotations": dict(annotations),
        }
    )


def fallback_index(existing: Iterable[Descriptor], entry: Descriptor) -> bytes | None:
    """The referrers tag-schema index with ``entry`` added (sorted by digest like go-containerregistry),
    or None when it is already listed. Foreign entries are kept as they are."""
    entries = list(existing)
    if any(e.digest == entry.digest for e in entries):
        return None
    if len(entries) >= MAX_REFERRERS:
        raise InputError(
            f"referrers index already lists {len(entries)} manifests, the limit is {MAX_REFERRERS}"
        )
    entries.append(entry)
    entries.sort(key=lambda e: e.digest)
    return encode_json(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [e.to_dict() for e in entries]}
    )


def may_be_bundle_referrer(descriptor: Descriptor) -> bool:
    """Whether a referrers-list entry is worth fetching to look for a bundle. Registries that ignore a
    manifest's ``artifactType`` report its config media type (go-containerregistry's registry reports
    the empty config type), and a foreign fallback index may have none: the manifest then decides."""
    artifact_type = descriptor.artifact_type
    return artifact_type in (None, OCI_EMPTY) or bundle.is_bundle_media_type(artifact_type)
