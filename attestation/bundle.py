"""Sigstore bundle v0.3 JSON (protobuf-specs ``Bundle``, protojson encoding) for DSSE attestations:
build one from a signed envelope, and parse one strictly and within bounds.

Only ``dsseEnvelope`` bundles carry attestations; a ``messageSignature`` bundle (a signature over a
blob) is rejected. Parsing does not verify anything: the caller verifies the envelope signature with
the key or certificate it trusts, never with material taken on the bundle's word.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from attestation import dsse
from attestation.errors import InputError, LimitExceeded
from attestation.limits import KiB, MiB, load_json

if TYPE_CHECKING:
    from attestation.keys import PublicKey

# What we write; what we read: v0.3 and the older spellings sigstore clients still write.
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
BUNDLE_MEDIA_TYPE_PREFIX = "application/vnd.dev.sigstore.bundle"
ACCEPTED_MEDIA_TYPES = frozenset(
    {
        BUNDLE_MEDIA_TYPE,
        "application/vnd.dev.sigstore.bundle+json;version=0.3",
        "application/vnd.dev.sigstore.bundle+json;version=0.2",
        "application/vnd.dev.sigstore.bundle+json;version=0.1",
    }
)
MAX_BUNDLE_BYTES = 17 * MiB
MAX_CERTIFICATES = 10
MAX_CERTIFICATE_BYTES = 64 * KiB
MAX_TIMESTAMPS = 16
MAX_TIMESTAMP_BYTES = 64 * KiB
MAX_TLOG_ENTRIES = 16

_TOP_FIELDS = {"mediaType", "verificationMaterial", "dsseEnvelope", "messageSignature"}
_MATERIAL_FIELDS = {
    "publicKey",
    "x509CertificateChain",
    "certificate",
    "tlogEntries",
    "timestampVerificationData",
}


def is_bundle_media_type(media_type: str | None) -> bool:
    """Whether an OCI media type names a Sigstore bundle (of any version: :func:`parse_bundle` decides)."""
    return media_type is not None and media_type.startswith(BUNDLE_MEDIA_TYPE_PREFIX)


def looks_like_bundle(doc: Any) -> bool:
    """Whether a parsed JSON document of unknown kind is a bundle rather than a DSSE envelope."""
    return isinstance(doc, dict) and (
        "dsseEnvelope" in doc
        or "verificationMaterial" in doc
        or is_bundle_media_type(str(doc.get("mediaType", "")))
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def public_key_hint(key: PublicKey) -> str:
    """cosign's hint for a key: standard base64 of sha256(SubjectPublicKeyInfo DER)."""
    return _b64(hashlib.sha256(key.spki_der).digest())


def envelope_to_bundle(
    envelope: dsse.Envelope,
    *,
    public_key: PublicKey | None = None,
    certificate_chain: Sequence[bytes] = (),
    rfc3161_timestamps: Sequence[bytes] = (),
) -> bytes:
    """Bundle v0.3 JSON for a signed envelope.

    ``certificate_chain`` is DER, leaf first: a lone leaf goes to ``certificate`` (what v0.3 wants); a
    longer chain goes to ``x509CertificateChain`` so SPIFFE intermediates travel with the signature
    (sigstore-go accepts that only in older bundle versions; our gate reads both). Without a
    certificate, ``public_key`` gives the key hint. ``rfc3161_timestamps`` are DER TimeStampResp tokens.
    """
    if len(envelope.signatures) != 1:
        # sigstore-go insists on exactly one signature in a bundle's envelope.
        raise InputError(
            f"a Sigstore bundle carries exactly one signature, the envelope has {len(envelope.signatures)}"
        )
    material: dict[str, Any] = {}
    if len(certificate_chain) == 1:
        material["certificate"] = {"rawBytes": _b64(certificate_chain[0])}
    elif certificate_chain:
        material["x509CertificateChain"] = {
            "certificates": [{"rawBytes": _b64(c)} for c in certificate_chain]
        }
    elif public_key is not None:
        material["publicKey"] = {"hint": public_key_hint(public_key)}
    else:
        raise InputError("a Sigstore bundle needs a certificate or a public key")
    material["tlogEntries"] = []
    if rfc3161_timestamps:
        material["timestampVerificationData"] = {
            "rfc3161Timestamps": [{"signedTimestamp": _b64(t)} for t in rfc3161_timestamps]
        }
    signature: dict[str, str] = {"sig": _b64(envelope.signatures[0].sig)}
    if envelope.signatures[0].keyid:
        signature["keyid"] = envelope.signatures[0].keyid
    doc = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": material,
        "dsseEnvelope": {
            "payload": _b64(envelope.payload),
            "payloadType": envelope.payload_type,
            "signatures": [signature],
        },
    }
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")


@dataclass(frozen=True)
class ParsedBundle:
    envelope: dsse.Envelope
    certificate: bytes | None  # DER leaf
    chain: tuple[bytes, ...]  # DER certificates after the leaf
    public_key_hint: str | None
    rfc3161_timestamps: tuple[bytes, ...]  # DER TimeStampResp tokens
    media_type: str
    tlog_entries: tuple[Mapping[str, Any], ...] = ()


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InputError(f"{where} must be an object")
    return value


def _bytes_field(obj: Mapping[str, Any], key: str, where: str, limit: int) -> bytes:
    raw = obj.get(key)
    if not isinstance(raw, str) or not raw:
        raise InputError(f"{where}.{key} is missing or not a base64 string")
    if len(raw) > limit * 4 // 3 + 4:
        raise LimitExceeded(f"{where}.{key} is larger than {limit} bytes")
    return dsse.b64decode_strict(raw, what=f"{where}.{key}")


def _certificate(obj: Any, where: str) -> bytes:
    # Here, not at the top: only a bundle with certificates needs the X.509 code, a costly import.
    from cryptography import x509

    der = _bytes_field(_object(obj, where), "rawBytes", where, MAX_CERTIFICATE_BYTES)
    try:
        x509.load_der_x509_certificate(der)
    except ValueError:
        raise InputError(f"{where} is not a DER X.509 certificate") from None
    return der


def _names(fields: set[str]) -> str:
    # Field names come from the document: quoted, a few, each cut short.
    shown = ", ".join(repr(f[:40]) for f in sorted(fields)[:5])
    return shown + (f" and {len(fields) - 5} more" if len(fields) > 5 else "")


def parse_bundle(data: bytes, *, source: str) -> ParsedBundle:
    """Parse a Sigstore bundle carrying a DSSE envelope. :class:`InputError` (or
    :class:`LimitExceeded`) naming ``source`` for anything malformed, oversized or not an attestation."""
    doc = _object(
        load_json(data, max_bytes=MAX_BUNDLE_BYTES, what=f"{source} (Sigstore bundle)", max_depth=16),
        f"{source}: bundle",
    )
    unknown = set(doc) - _TOP_FIELDS
    if unknown:
        raise InputError(f"{source}: unknown bundle field(s) {_names(unknown)}")
    media_type = doc.get("mediaType")
    if media_type not in ACCEPTED_MEDIA_TYPES:
        raise InputError(f"{source}: unsupported bundle mediaType {str(media_type)[:100]!r}")
    if "messageSignature" in doc:
        raise InputError(f"{source}: bundle holds a message signature, not an attestation (no dsseEnvelope)")
    if "dsseEnvelope" not in doc:
        raise InputError(f"{source}: bundle has no dsseEnvelope")
    material = _object(doc.get("verificationMaterial"), f"{source}: verificationMaterial")
    unknown = set(material) - _MATERIAL_FIELDS
    if unknown:
        raise InputError(f"{source}: unknown verificationMaterial field(s) {_names(unknown)}")
    kinds = [k for k in ("publicKey", "x509CertificateChain", "certificate") if k in material]
    if len(kinds) != 1:
        raise InputError(
            f"{source}: verificationMaterial needs exactly one of publicKey, x509CertificateChain, "
            f"certificate (found {len(kinds)})"
        )
    where = f"{source}: verificationMaterial"
    certificate: bytes | None = None
    chain: tuple[bytes, ...] = ()
    hint: str | None = None
    if kinds[0] == "certificate":
        certificate = _certificate(material["certificate"], f"{where}.certificate")
    elif kinds[0] == "x509CertificateChain":
        certs = _object(material["x509CertificateChain"], f"{where}.x509CertificateChain").get("certificates")
        if not isinstance(certs, list) or not certs:
            raise InputError(f"{where}.x509CertificateChain.certificates must be a non-empty array")
        if len(certs) > MAX_CERTIFICATES:
            raise LimitExceeded(f"{where}.x509CertificateChain has more than {MAX_CERTIFICATES} certificates")
        ders = [
            _certificate(c, f"{where}.x509CertificateChain.certificates[{i}]") for i, c in enumerate(certs)
        ]
        certificate, chain = ders[0], tuple(ders[1:])
    else:
        public_key = _object(material["publicKey"], f"{where}.publicKey")
        raw_hint = public_key.get("hint", "")
        if not isinstance(raw_hint, str) or len(raw_hint) > 1024:
            raise InputError(f"{where}.publicKey.hint must be a short string")
        hint = raw_hint or None
    tlog = material.get("tlogEntries", [])
    if not isinstance(tlog, list) or not all(isinstance(e, dict) for e in tlog):
        raise InputError(f"{where}.tlogEntries must be an array of objects")
    if len(tlog) > MAX_TLOG_ENTRIES:
        raise LimitExceeded(f"{where}.tlogEntries has more than {MAX_TLOG_ENTRIES} entries")
    timestamps: list[bytes] = []
    if "timestampVerificationData" in material:
        tvd = _object(material["timestampVerificationData"], f"{where}.timestampVerificationData")
        entries = tvd.get("rfc3161Timestamps", [])
        if not isinstance(entries, list):
            raise InputError(f"{where}.timestampVerificationData.rfc3161Timestamps must be an array")
        if len(entries) > MAX_TIMESTAMPS:
            raise LimitExceeded(
                f"{where}.timestampVerificationData has more than {MAX_TIMESTAMPS} timestamps"
            )
        for i, entry in enumerate(entries):
            at = f"{where}.timestampVerificationData.rfc3161Timestamps[{i}]"
            timestamps.append(_bytes_field(_object(entry, at), "signedTimestamp", at, MAX_TIMESTAMP_BYTES))
    envelope = dsse.Envelope.from_dict(_object(doc["dsseEnvelope"], f"{source}: dsseEnvelope"), source=source)
    return ParsedBundle(
        envelope=envelope,
        certificate=certificate,
        chain=chain,
        public_key_hint=hint,
        rfc3161_timestamps=tuple(timestamps),
        media_type=media_type,
        tlog_entries=tuple(tlog),
    )
