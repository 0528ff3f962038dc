"""How cosign stores an attestation: a DSSE envelope as a ``.att`` layer whose annotations carry the
certificate, chain and timestamp, or a Sigstore bundle; decoded here into the envelope and the (still
untrusted) material that helps verify it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from attestation.errors import InputError, LimitExceeded
from attestation.limits import MAX_ENVELOPE_BYTES, load_json

if TYPE_CHECKING:
    from attestation.dsse import Envelope

MAX_PEM_ANNOTATION_BYTES = 64 * 1024
MAX_TIMESTAMP_ANNOTATION_BYTES = 64 * 1024

DSSE_MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"
BUNDLE_MEDIA_PREFIX = "application/vnd.dev.sigstore.bundle"
ANN_CERTIFICATE = "dev.sigstore.cosign/certificate"
ANN_CHAIN = "dev.sigstore.cosign/chain"
ANN_TIMESTAMP = "dev.sigstore.cosign/rfc3161timestamp"


@dataclass(frozen=True)
class VerificationMaterial:
    """What came with an envelope to help verify it: from a Sigstore bundle's ``verificationMaterial`` or
    from the cosign ``.att`` layer annotations. All of it is untrusted until checked against the
    :class:`TrustPolicy`; a ``public_key_hint`` only orders attempts, like a DSSE keyid."""

    certificate: bytes | None = None  # leaf, PEM
    chain: tuple[bytes, ...] = ()  # intermediates (and possibly root), PEM each
    public_key_hint: str | None = None
    rfc3161_timestamps: tuple[bytes, ...] = ()  # DER TimeStampResp / TimeStampToken each

    @property
    def has_certificate(self) -> bool:
        return bool(self.certificate)


NO_MATERIAL = VerificationMaterial()


class StoredAttestationLike(Protocol):
    """One attestation as found: a registry layer or blob (D's ``StoredAttestation``) or a file line."""

    @property
    def media_type(self) -> str | None: ...
    @property
    def data(self) -> bytes: ...
    @property
    def annotations(self) -> Mapping[str, str]: ...
    @property
    def source(self) -> str: ...


@dataclass(frozen=True)
class RawAttestation:
    data: bytes
    source: str
    media_type: str | None = None  # None: a DSSE envelope or a Sigstore bundle, told apart by content
    annotations: Mapping[str, str] = field(default_factory=dict)


def _pem_blocks(text: str, what: str) -> tuple[bytes, ...]:
    if len(text) > MAX_PEM_ANNOTATION_BYTES:
        raise LimitExceeded(f"{what} is larger than {MAX_PEM_ANNOTATION_BYTES} bytes")
    marker = "-----END CERTIFICATE-----"
    blocks = []
    for part in text.split(marker):
        if part.strip():
            blocks.append((part.strip() + "\n" + marker + "\n").encode("ascii", "replace"))
    return tuple(blocks)


def material_from_annotations(annotations: Mapping[str, str], source: str) -> VerificationMaterial:
    """cosign's ``.att`` layer annotations -> :class:`VerificationMaterial` (still untrusted)."""
    cert = annotations.get(ANN_CERTIFICATE) or ""
    chain = annotations.get(ANN_CHAIN) or ""
    stamp = annotations.get(ANN_TIMESTAMP) or ""
    if not (cert or chain or stamp):
        return NO_MATERIAL
    certs = _pem_blocks(cert, f"{source}: annotation {ANN_CERTIFICATE}") if cert else ()
    timestamps: tuple[bytes, ...] = ()
    if stamp:
        what = f"{source}: annotation {ANN_TIMESTAMP}"
        doc = load_json(
            stamp.encode("utf-8"), max_bytes=MAX_TIMESTAMP_ANNOTATION_BYTES, what=what, max_depth=2
        )
        value = doc.get("SignedRFC3161Timestamp") if isinstance(doc, dict) else None
        if not isinstance(value, str):
            raise InputError(f"{what} has no SignedRFC3161Timestamp string")
        from attestation.dsse import b64decode_strict

        timestamps = (b64decode_strict(value, what=f"{what} SignedRFC3161Timestamp"),)
    return VerificationMaterial(
        certificate=certs[0] if certs else None,
        chain=_pem_blocks(chain, f"{source}: annotation {ANN_CHAIN}") if chain else (),
        rfc3161_timestamps=timestamps,
    )


def _is_bundle(doc: Any) -> bool:
    return isinstance(doc, dict) and (
        "dsseEnvelope" in doc
        or "verificationMaterial" in doc
        or str(doc.get("mediaType", "")).startswith(BUNDLE_MEDIA_PREFIX)
    )


def decode_attestation(raw: StoredAttestationLike) -> tuple[Envelope, VerificationMaterial]:
    """The envelope and its verification material; nothing in the payload is looked at."""
    from attestation import dsse

    source = raw.source
    media_type = raw.media_type
    if media_type is not None and media_type.startswith(BUNDLE_MEDIA_PREFIX):
        return _decode_bundle(raw.data, source)
    if media_type is not None and media_type != DSSE_MEDIA_TYPE:
        raise InputError(f"{source}: media type {media_type[:100]!r} is neither a DSSE envelope nor a bundle")
    # The bundle has a few more levels than an envelope; still bounded.
    doc = load_json(raw.data, max_bytes=MAX_ENVELOPE_BYTES, what=source, max_depth=12)
    if media_type is None and _is_bundle(doc):
        return _decode_bundle(raw.data, source)
    envelope = dsse.Envelope.from_dict(doc, source=source)
    return envelope, material_from_annotations(raw.annotations, source)


def _decode_bundle(data: bytes, source: str) -> tuple[Envelope, VerificationMaterial]:
    from attestation.bundle import parse_bundle

    # The bundle's key hint and certificates are untrusted material, checked by verify_attestation.
    bundle = parse_bundle(data, source=source)
    return bundle.envelope, VerificationMaterial(
        certificate=bundle.certificate,
        chain=tuple(bundle.chain),
        public_key_hint=bundle.public_key_hint,
        rfc3161_timestamps=tuple(bundle.rfc3161_timestamps),
    )
