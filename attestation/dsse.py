"""DSSE envelopes (https://github.com/secure-systems-lab/dsse): PAE, sign, verify, strict JSON I/O.

Signatures are always over ``PAE(payloadType, payload)`` of the decoded payload bytes, never over the
base64 text or the raw payload. Verification tries every signature against every configured key: the
``keyid`` of a signature is an untrusted hint that may only change the order of attempts.

Base64: we always write standard, padded base64 (cosign's claim check decodes with StdEncoding only).
When reading we accept standard or URL-safe alphabet (the DSSE spec allows both, and Go's decoders do),
padding required, no whitespace, no mixing of the two alphabets in one field. Anything else is an
:class:`InputError` naming the field.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from attestation.errors import InputError, LimitExceeded, VerificationError
from attestation.limits import (
    MAX_ENVELOPE_BYTES,
    MAX_KEYID_CHARS,
    MAX_PAYLOAD_TYPE_CHARS,
    MAX_SIGNATURE_BYTES,
    MAX_SIGNATURES_PER_ENVELOPE,
    load_json,
)

if TYPE_CHECKING:
    from attestation.keys import PublicKey, Signer

# The media type of an envelope as an OCI layer or blob, and the payload type of an in-toto statement.
MEDIA_TYPE = "application/vnd.dsse.envelope.v1+json"
PAYLOAD_TYPE_INTOTO = "application/vnd.in-toto+json"

_URL_TO_STD = bytes.maketrans(b"-_", b"+/")
log = logging.getLogger(__name__)


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 Pre-Authentication Encoding: ``DSSEv1 SP LEN(type) SP type SP LEN(body) SP body``."""
    type_bytes = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(type_bytes), type_bytes, len(payload), payload)


def b64decode_strict(text: str, *, what: str) -> bytes:
    """Decode padded standard or URL-safe base64; :class:`InputError` naming ``what`` otherwise."""
    if not isinstance(text, str):
        raise InputError(f"{what} must be a base64 string, not {_json_type(text)}")
    if len(text) % 4:
        raise InputError(f"{what} is not valid base64 (length {len(text)} is not a multiple of 4)")
    try:
        raw = text.encode("ascii")
        if b"-" in raw or b"_" in raw:
            if b"+" in raw or b"/" in raw:
                raise ValueError("mixed alphabets")
            raw = raw.translate(_URL_TO_STD)
        # strict_mode: only alphabet characters, correct padding, nothing after it
        return binascii.a2b_base64(raw, strict_mode=True)
    except (binascii.Error, ValueError):
        raise InputError(f"{what} is not valid base64") from None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, int | float) else type(value).__name__
    )


@dataclass(frozen=True)
class Signature:
    sig: bytes
    keyid: str = ""


@dataclass(frozen=True)
class Envelope:
    payload: bytes
    payload_type: str
    signatures: tuple[Signature, ...]
    # Where the envelope came from (file, image layer), for error messages; not part of its identity.
    source: str = field(default="envelope", compare=False, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "payloadType": self.payload_type,
            "payload": base64.b64encode(self.payload).decode("ascii"),
            "signatures": [
                {"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode("ascii")} for s in self.signatures
            ],
        }

    def to_json(self) -> bytes:
        """Compact JSON, standard padded base64."""
        return json.dumps(self.to_dict(), separators=(",", ":")).encode("utf-8")

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, source: str = "envelope") -> Envelope:
        """Validate a decoded envelope object. Unknown fields are ignored."""
        if not isinstance(d, Mapping):
            raise InputError(f"{source}: DSSE envelope must be a JSON object, not {_json_type(d)}")
        payload_type = d.get("payloadType")
        if not isinstance(payload_type, str) or not payload_type:
            problem = "is missing" if payload_type is None else "must be a non-empty string"
            raise InputError(f"{source}: field payloadType {problem}")
        if len(payload_type) > MAX_PAYLOAD_TYPE_CHARS:
            raise LimitExceeded(
                f"{source}: field payloadType is longer than {MAX_PAYLOAD_TYPE_CHARS} characters"
            )
        if "payload" not in d or d["payload"] is None:
            raise InputError(f"{source}: field payload is missing")
        payload = b64decode_strict(d["payload"], what=f"{source}: field payload")
        raw_sigs = d.get("signatures")
        if raw_sigs is None:
            raise InputError(f"{source}: field signatures is missing")
        if not isinstance(raw_sigs, list):
            raise InputError(f"{source}: field signatures must be an array, not {_json_type(raw_sigs)}")
        if not raw_sigs:
            raise InputError(f"{source}: field signatures is empty (the envelope is unsigned)")
        if len(raw_sigs) > MAX_SIGNATURES_PER_ENVELOPE:
            raise LimitExceeded(
                f"{source}: field signatures has {len(raw_sigs)} entries, "
                f"the limit is {MAX_SIGNATURES_PER_ENVELOPE}"
            )
        signatures = tuple(_signature_from(s, f"{source}: signatures[{i}]") for i, s in enumerate(raw_sigs))
        return cls(payload=payload, payload_type=payload_type, signatures=signatures, source=source)

    @classmethod
    def from_json(cls, data: bytes | str, *, source: str = "envelope") -> Envelope:
        """Parse envelope JSON, bounded by :data:`MAX_ENVELOPE_BYTES`. Only :class:`InputError` escapes."""
        doc = load_json(data, max_bytes=MAX_ENVELOPE_BYTES, what=f"{source} (DSSE envelope)", max_depth=8)
        return cls.from_dict(doc, source=source)


def _signature_from(obj: Any, where: str) -> Signature:
    if not isinstance(obj, Mapping):
        raise InputError(f"{where} must be an object, not {_json_type(obj)}")
    keyid = obj.get("keyid")
    if keyid is None:
        keyid = ""  # cosign v3 omits an empty keyid
    if not isinstance(keyid, str):
        raise InputError(f"{where}: field keyid must be a string, not {_json_type(keyid)}")
    if len(keyid) > MAX_KEYID_CHARS:
        raise LimitExceeded(f"{where}: field keyid is longer than {MAX_KEYID_CHARS} characters")
    raw = obj.get("sig")
    if raw is None:
        raise InputError(f"{where}: field sig is missing")
    if isinstance(raw, str) and len(raw) > MAX_SIGNATURE_BYTES * 2:
        raise LimitExceeded(f"{where}: field sig is longer than {MAX_SIGNATURE_BYTES} bytes")
    sig = b64decode_strict(raw, what=f"{where}: field sig")
    if not sig:
        raise InputError(f"{where}: field sig is empty")
    if len(sig) > MAX_SIGNATURE_BYTES:
        raise LimitExceeded(f"{where}: field sig is longer than {MAX_SIGNATURE_BYTES} bytes")
    return Signature(sig=sig, keyid=keyid)


def sign(payload: bytes, signer: Signer, payload_type: str = PAYLOAD_TYPE_INTOTO) -> Envelope:
    """A one-signature envelope; the keyid is the signer's (the SSH fingerprint for keys, as Chains does)."""
    sig = signer.sign(pae(payload_type, payload))
    return Envelope(
        payload=payload, payload_type=payload_type, signatures=(Signature(sig=sig, keyid=signer.keyid),)
    )


@dataclass(frozen=True)
class VerifiedSignature:
    signature: Signature
    key: PublicKey


def verify(
    envelope: Envelope, keys: Sequence[PublicKey], *, source: str | None = None
) -> list[VerifiedSignature]:
    """The signatures of ``envelope`` that verify with one of ``keys``; each signature and each key (by
    SubjectPublicKeyInfo) appears at most once, so ``len(result)`` is the number of distinct signers.

    Raises :class:`VerificationError` when none does (or no key is configured): callers need not check for
    an empty list. The payload must not be parsed before this returns.
    """
    where = source or envelope.source
    if not keys:
        raise VerificationError(f"no keys configured to verify {where}")
    message = pae(envelope.payload_type, envelope.payload)
    verified: list[VerifiedSignature] = []
    seen: set[bytes] = set()
    # Each key counts at most once: byte-level dedup alone would let one ECDSA key count twice, since
    # (r, n - s) is a second valid signature with different bytes.
    used: set[bytes] = set()
    for n, signature in enumerate(envelope.signatures):
        if signature.sig in seen:
            continue
        seen.add(signature.sig)
        # The hint only moves matching keys to the front; every key is still tried.
        ordered = sorted(keys, key=lambda k: k.keyid != signature.keyid) if signature.keyid else keys
        for key in ordered:
            if key.spki_der in used:
                continue
            if key.verify(signature.sig, message):
                log.debug("%s: signature %d verifies with key %s (%s)", where, n, key.keyid, key.source)
                verified.append(VerifiedSignature(signature=signature, key=key))
                used.add(key.spki_der)
                break
            log.debug("%s: signature %d does not verify with key %s (%s)", where, n, key.keyid, key.source)
    if not verified:
        raise VerificationError(f"no signature on {where} verifies with the {len(keys)} configured keys")
    return verified
