"""How cosign stores an attestation: a DSSE envelope as a layer of the ``.att`` image whose annotations
carry the signer's certificate, chain and RFC 3161 timestamp, or a Sigstore bundle. The annotations are
written (:func:`layer_annotations`) and read (:func:`material_from_annotations`) here, and a stored
attestation of either kind is decoded into the envelope and the (still untrusted) material that helps
verify it (:func:`decode_attestation`)."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from attestation import bundle, dsse
from attestation.errors import InputError, LimitExceeded
from attestation.limits import MAX_ENVELOPE_BYTES, load_json

MAX_PEM_ANNOTATION_BYTES = 64 * 1024
MAX_TIMESTAMP_ANNOTATION_BYTES = 64 * 1024

# Layer annotations of cosign's attachment images (``.att``, ``.sig``).
ANNOTATION_SIGNATURE = "dev.cosignproject.cosign/signature"  # empty for a DSSE attestation
ANNOTATION_CERTIFICATE = "dev.sigstore.cosign/certificate"  # the signer's leaf, PEM
ANNOTATION_CHAIN = "dev.sigstore.cosign/chain"  # its intermediates, PEM
ANNOTATION_TIMESTAMP = "dev.sigstore.cosign/rfc3161timestamp"  # {"SignedRFC3161Timestamp": base64 DER}
ANNOTATION_PREDICATE_TYPE = "predicateType"


@dataclass(frozen=True)
class VerificationMaterial:
    """What came with an envelope to help verify it: from a Sigstore bundle's ``verificationMaterial`` or
    from the cosign ``.att`` layer annotations. All of it is untrusted until checked against the
    :class:`TrustPolicy`; a ``public_key_hint`` only orders attempts, like a DSSE keyid."""

    certificate: bytes | None = None  # leaf: PEM from annotations, DER from a bundle
    chain: tuple[bytes, ...] = ()  # intermediates (and possibly root), PEM or DER each
    public_key_hint: str | None = None
    rfc3161_timestamps: tuple[bytes, ...] = ()  # DER TimeStampResp / TimeStampToken each
    # The whole Sigstore bundle it came from, for a verifier that needs all of it (keyless: the log entry).
    bundle: bytes | None = None

    @property
    def has_certificate(self) -> bool:
        return bool(self.certificate)


NO_MATERIAL = VerificationMaterial()


class StoredAttestationLike(Protocol):
    """One attestation as found: a registry layer or blob (``attestation.oci.reader.StoredAttestation``)
    or a line of an attestations file."""

    @property
    def media_type(self) -> str | None: ...
    @property
    def data(self) -> bytes: ...
    @property
    def annotations(self) -> Mapping[str, str]: ...
    @property
    def source(self) -> str: ...
    @property
    def problem(self) -> str | None: ...


@dataclass(frozen=True)
class RawAttestation:
    data: bytes
    source: str
    media_type: str | None = None  # None: a DSSE envelope or a Sigstore bundle, told apart by content
    annotations: Mapping[str, str] = field(default_factory=dict)
    # Set when what was found cannot be an attestation (the reason, naming it); data is then empty.
    problem: str | None = None


def layer_annotations(
    *,
    signature: str | None = None,
    certificate: str | None = None,
    chain: str | None = None,
    predicate_type: str | None = None,
    rfc3161_timestamp: bytes | None = None,
) -> dict[str, str]:
    """A layer's annotations as cosign writes them; each only when given (a chain only with a certificate,
    as an empty string when there are no intermediates)."""
    out: dict[str, str] = {}
    if signature is not None:
        out[ANNOTATION_SIGNATURE] = signature
    if certificate is not None:
        out[ANNOTATION_CERTIFICATE] = certificate
        out[ANNOTATION_CHAIN] = chain or ""
    if predicate_type:
        out[ANNOTATION_PREDICATE_TYPE] = predicate_type
    if rfc3161_timestamp is not None:
        token = base64.b64encode(rfc3161_timestamp).decode("ascii")
        out[ANNOTATION_TIMESTAMP] = json.dumps({"SignedRFC3161Timestamp": token}, separators=(",", ":"))
    return out


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
    cert = annotations.get(ANNOTATION_CERTIFICATE) or ""
    chain = annotations.get(ANNOTATION_CHAIN) or ""
    stamp = annotations.get(ANNOTATION_TIMESTAMP) or ""
    if not (cert or chain or stamp):
        return NO_MATERIAL
    certs = _pem_blocks(cert, f"{source}: annotation {ANNOTATION_CERTIFICATE}") if cert else ()
    timestamps: tuple[bytes, ...] = ()
    if stamp:
        what = f"{source}: annotation {ANNOTATION_TIMESTAMP}"
        # The text itself, not its UTF-8: an annotation may hold what UTF-8 cannot (a lone surrogate).
        doc = load_json(stamp, max_bytes=MAX_TIMESTAMP_ANNOTATION_BYTES, what=what, max_depth=2)
        value = doc.get("SignedRFC3161Timestamp") if isinstance(doc, dict) else None
        if not isinstance(value, str):
            raise InputError(f"{what} has no SignedRFC3161Timestamp string")
        timestamps = (dsse.b64decode_strict(value, what=f"{what} SignedRFC3161Timestamp"),)
    return VerificationMaterial(
        certificate=certs[0] if certs else None,
        chain=_pem_blocks(chain, f"{source}: annotation {ANNOTATION_CHAIN}") if chain else (),
        rfc3161_timestamps=timestamps,
    )


def decode_attestation(raw: StoredAttestationLike) -> tuple[dsse.Envelope, VerificationMaterial]:
    """The envelope and its verification material; nothing in the payload is looked at."""
    source = raw.source
    media_type = raw.media_type
    if bundle.is_bundle_media_type(media_type):
        return _decode_bundle(raw.data, source)
    if media_type is not None and media_type != dsse.MEDIA_TYPE:
        raise InputError(f"{source}: media type {media_type[:100]!r} is neither a DSSE envelope nor a bundle")
    # The bundle has a few more levels than an envelope; still bounded.
    doc = load_json(raw.data, max_bytes=MAX_ENVELOPE_BYTES, what=source, max_depth=12)
    if media_type is None and bundle.looks_like_bundle(doc):
        return _decode_bundle(raw.data, source)
    envelope = dsse.Envelope.from_dict(doc, source=source)
    return envelope, material_from_annotations(raw.annotations, source)


def _decode_bundle(data: bytes, source: str) -> tuple[dsse.Envelope, VerificationMaterial]:
    # The bundle's key hint and certificates are untrusted material, checked by verify_attestation.
    parsed = bundle.parse_bundle(data, source=source)
    return parsed.envelope, VerificationMaterial(
        certificate=parsed.certificate,
        chain=tuple(parsed.chain),
        public_key_hint=parsed.public_key_hint,
        rfc3161_timestamps=tuple(parsed.rfc3161_timestamps),
        bundle=data,
    )
