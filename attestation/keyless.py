"""Keyless (Fulcio certificate + transparency log) attestations: the Sigstore trust files, the facts of a
keyless bundle, and its verification against a trusted root, offline.

Verification (:func:`verify_keyless_bundle`) is sigstore-python's ``Verifier.verify_dsse`` over a trusted
root loaded once (:class:`KeylessRoot`): the signing time proven by an RFC 3161 timestamp or the log's
inclusion promise (never "now", never a time the payload claims), the certificate chain to a trusted
Fulcio CA at that time, the embedded SCT against the trusted CT logs, the log entry's inclusion proof and
checkpoint against the trusted log keys, the DSSE signature with the certificate's key and the log
entry's consistency with it. Then ours: the verified payload must be the envelope the gate will parse,
and the certificate's identity (SAN) and OIDC issuer must match a trusted pair.

Nothing here depends on the current time except sigstore's check that a trusted-root entry's validity
has started, which, once true, stays true: a verification that succeeded succeeds again for the same
bytes, so a caller may remember successes by exact bytes.

A keyless signature in no transparency log counts only when the caller asks (``allow_no_tlog``, a trust
entry's explicit choice, as cosign's ``--insecure-ignore-tlog``); it is then checked on the same terms
minus the log, and a signing time from a trusted timestamp is still required. sigstore-python refuses
such bundles outright, so that path (:func:`_verify_without_log`) is ours, built from the same pieces.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from attestation.errors import InputError, LimitExceeded, VerificationError
from attestation.files import read_bounded
from attestation.limits import KiB, MiB, load_json

if TYPE_CHECKING:
    from sigstore.models import Bundle, ClientTrustConfig, TrustedRoot

    from attestation.dsse import Envelope

log = logging.getLogger(__name__)

MAX_TRUST_FILE_BYTES = 4 * MiB
MAX_PATTERN_CHARS = 1 * KiB
MAX_TOKEN_BYTES = 64 * KiB
# Fulcio's OIDC issuer extensions: v2 (DER UTF8String) and the deprecated v1 (raw bytes).
OID_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
OID_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
OID_OTHERNAME_SAN = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.7")


# --------------------------------------------------------------------------------------------- files


def _read(path: str | os.PathLike[str], what: str) -> bytes:
    return read_bounded(path, MAX_TRUST_FILE_BYTES, what)


def load_client_trust_config_json(path: str | os.PathLike[str]) -> ClientTrustConfig:
    """A Sigstore ClientTrustConfig file (``clienttrustconfig.v0.1``: trusted root + signing config)."""
    from sigstore.models import ClientTrustConfig

    data = _read(path, "Sigstore trust config")
    load_json(data, max_bytes=MAX_TRUST_FILE_BYTES, what=f"trust config {os.fspath(path)}")
    try:
        return ClientTrustConfig.from_json(data.decode("utf-8"))
    except Exception as err:  # pydantic's ValidationError, sigstore's MetadataError
        raise InputError(f"{os.fspath(path)}: not a Sigstore client trust config: {_short(err)}") from None


def public_good_trusted_root() -> str:
    """The trusted root of Sigstore's public-good instance shipped with provgate: the TUF target
    ``trusted_root.json`` of its repository as of this release; a newer one is given with
    ``--trusted-root`` (docs/keyless.md says how to get it). Never fetched at decision time."""
    return os.path.join(os.path.dirname(__file__), "public_good_trusted_root.json")


@dataclass(frozen=True)
class KeylessRoot:
    """A trusted root, parsed once, and what verifying with it needs (a sigstore ``Verifier``, the TSA
    certificates for reading the signing time)."""

    source: str
    digest: str  # sha256 of the file's bytes: the same root, the same digest
    trusted_root: Any  # sigstore.models.TrustedRoot
    verifier: Any  # sigstore.verify.Verifier
    tsa: tuple[tuple[x509.Certificate, ...], ...]  # each timestamp authority's chain, leaf first


def load_keyless_root(path: str | os.PathLike[str] | None = None) -> KeylessRoot:
    """Load a Sigstore trusted root file (``trustedroot+json;version=0.1``); None: the public-good one.

    Raises :class:`InputError` naming the file when it is unreadable or not a usable root (no Fulcio CA,
    no transparency log: sigstore's verifier needs both)."""
    from sigstore.models import TrustedRoot
    from sigstore.verify import Verifier
    from sigstore_models.trustroot import v1 as trustroot_v1

    name = os.fspath(path) if path is not None else public_good_trusted_root()
    data = _read(name, "trusted root")
    load_json(data, max_bytes=MAX_TRUST_FILE_BYTES, what=f"trusted root {name}")
    try:
        root = TrustedRoot(trustroot_v1.TrustedRoot.from_json(data))
        verifier = Verifier(trusted_root=root)
    except Exception as err:
        raise InputError(f"{name}: not a usable Sigstore trusted root: {_short(err)}") from None
    return KeylessRoot(
        source=name,
        digest="sha256:" + hashlib.sha256(data).hexdigest(),
        trusted_root=root,
        verifier=verifier,
        tsa=tuple(_tsa_trusts(root, name)),
    )


def _tsa_trusts(root: TrustedRoot, source: str) -> list[tuple[x509.Certificate, ...]]:
    """Each timestamp authority's chain as the trusted root lists it: signing certificate first, root last."""
    out = []
    for authority in root.get_timestamp_authorities():
        certs = tuple(authority.certificates(allow_expired=True))
        if len(certs) >= 2:
            out.append(certs)
    return out


def verify_token_time(token: bytes, signature: bytes, chain: Sequence[x509.Certificate]) -> dt.datetime:
    """The ``genTime`` of an RFC 3161 token over ``signature`` signed by the TSA whose chain (signing
    certificate first, root last) the trusted root lists; :class:`VerificationError` otherwise.

    The signing certificate is given, not taken from the token: cosign asks for tokens without it."""
    from rfc3161_client import VerificationError as TsaError
    from rfc3161_client import VerifierBuilder, decode_timestamp_response

    if len(token) > MAX_TOKEN_BYTES:
        raise LimitExceeded(f"RFC 3161 timestamp is larger than {MAX_TOKEN_BYTES} bytes")
    try:
        response = decode_timestamp_response(token)
        builder = VerifierBuilder().tsa_certificate(chain[0]).add_root_certificate(chain[-1])
        for cert in chain[1:-1]:
            builder = builder.add_intermediate_certificate(cert)
        builder.build().verify_message(response, signature)
    except (TsaError, ValueError, TypeError) as err:
        raise VerificationError(f"RFC 3161 timestamp does not verify: {_short(err)}") from None
    when = response.tst_info.gen_time
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


# --------------------------------------------------------------------------------------------- identities


def _pattern(text: str, what: str) -> re.Pattern[str]:
    if len(text) > MAX_PATTERN_CHARS:
        raise LimitExceeded(f"{what} is longer than {MAX_PATTERN_CHARS} characters")
    try:
        return re.compile(text)
    except re.error as err:
        raise InputError(f"{what} {text!r} is not a valid regular expression: {err}") from None


@dataclass(frozen=True)
class IdentityMatcher:
    """One trusted (identity, issuer) pair, each exact or a regular expression that must match the whole
    value (cosign's flags, anchored: ``spiffe://example.org/ns/ci`` never matches ``.../ns/ci-evil``)."""

    identity: str | None = None
    identity_regexp: str | None = None
    issuer: str | None = None
    issuer_regexp: str | None = None

    def __post_init__(self) -> None:
        if (self.identity is None) == (self.identity_regexp is None):
            raise InputError(
                "a keyless trust entry needs exactly one of certificateIdentity / "
                "certificateIdentityRegexp (--certificate-identity / --certificate-identity-regexp)"
            )
        if (self.issuer is None) == (self.issuer_regexp is None):
            raise InputError(
                "a keyless trust entry needs exactly one of certificateOidcIssuer / "
                "certificateOidcIssuerRegexp (--certificate-oidc-issuer / --certificate-oidc-issuer-regexp)"
            )
        for value, what in ((self.identity, "certificate identity"), (self.issuer, "OIDC issuer")):
            if value is not None and (not value or len(value) > MAX_PATTERN_CHARS):
                raise InputError(f"{what} must be a non-empty string of at most {MAX_PATTERN_CHARS} chars")
        if self.identity_regexp is not None:
            _pattern(self.identity_regexp, "certificate identity regexp")
        if self.issuer_regexp is not None:
            _pattern(self.issuer_regexp, "OIDC issuer regexp")

    def matches(self, sans: Sequence[str], issuer: str) -> bool:
        if self.issuer is not None:
            issuer_ok = issuer == self.issuer
        else:
            issuer_ok = _pattern(self.issuer_regexp or "", "").fullmatch(issuer) is not None
        if not issuer_ok:
            return False
        if self.identity is not None:
            return self.identity in sans
        pattern = _pattern(self.identity_regexp or "", "")
        return any(pattern.fullmatch(san) is not None for san in sans)

    def describe(self) -> str:
        who = self.identity if self.identity is not None else f"/{self.identity_regexp}/"
        by = self.issuer if self.issuer is not None else f"/{self.issuer_regexp}/"
        return f"{who} from {by}"


def certificate_sans(cert: x509.Certificate) -> list[str]:
    """The identities Fulcio puts in a certificate's SAN: URIs (SPIFFE IDs, workflows), emails, and
    Sigstore's otherName (usernames)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    values: list[str] = list(san.get_values_for_type(x509.UniformResourceIdentifier))
    values += san.get_values_for_type(x509.RFC822Name)
    for other in san.get_values_for_type(x509.OtherName):
        if other.type_id == OID_OTHERNAME_SAN:
            values.append(_der_utf8(other.value) or other.value.decode("utf-8", "replace"))
    return values


def _der_utf8(value: bytes) -> str | None:
    # A short DER UTF8String: tag 0x0C, one length byte (long form for >127 bytes).
    if len(value) < 2 or value[0] != 0x0C:
        return None
    length, start = value[1], 2
    if length & 0x80:
        count = length & 0x7F
        length, start = int.from_bytes(value[2 : 2 + count], "big"), 2 + count
    body = value[start : start + length]
    return body.decode("utf-8") if len(body) == length else None


def certificate_issuer(cert: x509.Certificate) -> str:
    """The OIDC issuer Fulcio recorded (extension 1.8, else the older 1.1); :class:`VerificationError`
    without one, or when the two disagree."""
    v1 = v2 = None
    try:
        ext = cert.extensions.get_extension_for_oid(OID_ISSUER_V2).value
        v2 = _der_utf8(ext.value)  # type: ignore[attr-defined]
        if v2 is None:
            raise VerificationError("certificate OIDC issuer extension (1.3.6.1.4.1.57264.1.8) is malformed")
    except x509.ExtensionNotFound:
        pass
    try:
        ext = cert.extensions.get_extension_for_oid(OID_ISSUER_V1).value
        v1 = ext.value.decode("utf-8")  # type: ignore[attr-defined]
    except x509.ExtensionNotFound:
        pass
    except UnicodeDecodeError:
        raise VerificationError(
            "certificate OIDC issuer extension (1.3.6.1.4.1.57264.1.1) is not UTF-8"
        ) from None
    if v1 is not None and v2 is not None and v1 != v2:
        raise VerificationError(f"certificate names two OIDC issuers ({v1!r} and {v2!r})")
    issuer = v2 if v2 is not None else v1
    if not issuer:
        raise VerificationError("certificate has no OIDC issuer extension: not a Fulcio certificate")
    return issuer


# --------------------------------------------------------------------------------------------- bundles


def normalize_bundle_json(doc: Mapping[str, Any]) -> dict[str, Any]:
    """The bundle with the zero-valued log fields protobuf's JSON encoding omits put back.

    cosign (Go protojson) leaves out ``logIndex`` when it is 0 and an empty ``hashes`` list (a tree of
    size 1): the first entry of a log. sigstore-models insists on both and would refuse a valid bundle, so
    they are restored with the values their absence means; nothing else changes.
    """
    out: dict[str, Any] = json.loads(json.dumps(doc))
    material = out.get("verificationMaterial")
    entries = material.get("tlogEntries") if isinstance(material, dict) else None
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict):
            continue
        entry.setdefault("logIndex", "0")
        proof = entry.get("inclusionProof")
        if isinstance(proof, dict):
            proof.setdefault("logIndex", "0")
            proof.setdefault("hashes", [])
    return out


@dataclass(frozen=True)
class BundleFacts:
    """What a keyless bundle says (unverified): for storage and messages, never for trust decisions."""

    envelope: dict[str, Any]
    certificate: x509.Certificate
    certificate_chain_der: tuple[bytes, ...]  # leaf first
    timestamps: tuple[bytes, ...]
    log_index: int | None
    log_id: str | None  # base64 key id
    kind_version: str | None
    integrated_time: int | None
    entry_reference: str | None = None


def bundle_facts(raw: bytes, *, source: str, log_url: str | None = None) -> BundleFacts:
    """The facts of a keyless bundle (one with a certificate). ``log_url`` (the log's API base, e.g.
    ``https://rekor.sigstore.dev/api/v1``) makes ``entry_reference`` as Chains writes it."""
    from attestation.bundle import parse_bundle

    parsed = parse_bundle(raw, source=source)
    if parsed.certificate is None:
        raise InputError(f"{source}: not a keyless bundle (no certificate)")
    doc = load_json(raw, max_bytes=len(raw) + 1, what=source, max_depth=16)
    entries = parsed.tlog_entries
    index = log_id = kind = None
    integrated = None
    if entries:
        entry = entries[0]
        index = _int(entry.get("logIndex", "0"))
        key_id = (entry.get("logId") or {}).get("keyId")
        log_id = key_id if isinstance(key_id, str) else None
        kv = entry.get("kindVersion") or {}
        kind = f"{kv.get('kind')}/{kv.get('version')}" if isinstance(kv, dict) else None
        integrated = _int(entry.get("integratedTime", "0")) or None
        if integrated is not None and not entry.get("inclusionPromise"):
            integrated = None  # a time nothing signed
    reference = None
    if log_url and index is not None:
        reference = f"{log_url.rstrip('/')}/log/entries?logIndex={index}"
    return BundleFacts(
        envelope=doc["dsseEnvelope"],
        certificate=x509.load_der_x509_certificate(parsed.certificate),
        certificate_chain_der=(parsed.certificate, *parsed.chain),
        timestamps=parsed.rfc3161_timestamps,
        log_index=index,
        log_id=log_id,
        kind_version=kind,
        integrated_time=integrated,
        entry_reference=reference,
    )


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# --------------------------------------------------------------------------------------------- verify


@dataclass(frozen=True)
class KeylessSignature:
    """A keyless signature that verified, and who made it."""

    identity: str  # the SAN that matched (a SPIFFE ID for SPIRE workloads)
    sans: tuple[str, ...]
    issuer: str
    sig: bytes
    keyid: str  # the certificate key's fingerprint
    algorithm: str
    certificate_pem: str
    chain_pems: tuple[str, ...]  # the trusted CA chain the certificate verified to
    signed_at: dt.datetime  # the earliest verified signing time (timestamp or inclusion promise)
    log_index: int | None  # None only for a bundle verified without a log (allow_no_tlog)
    log_id: str | None
    trusted_root: str  # which root file


class _Deferred:
    """A sigstore VerificationPolicy that accepts every certificate: identity and issuer are checked
    after the signature and the log (the gate's order), by :class:`IdentityMatcher`, which sigstore's
    exact-match policies cannot express (regular expressions, several pairs)."""

    def verify(self, cert: x509.Certificate) -> None:
        return None


def verify_keyless_bundle(
    raw: bytes,
    envelope: Envelope,
    root: KeylessRoot,
    matchers: Sequence[IdentityMatcher],
    *,
    source: str,
    allow_no_tlog: bool = False,
) -> KeylessSignature:
    """Verify the keyless bundle ``raw`` (whose envelope the caller parsed as ``envelope``) under
    ``root`` and return who signed; :class:`VerificationError` with the reason otherwise."""
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import Bundle

    if not matchers:
        raise VerificationError(f"{source}: no certificate identities are trusted")
    doc = load_json(raw, max_bytes=len(raw) + 1, what=source, max_depth=16)
    material = doc.get("verificationMaterial") if isinstance(doc, dict) else None
    in_log = isinstance(material, dict) and bool(material.get("tlogEntries"))
    if not in_log:
        if not allow_no_tlog:
            raise VerificationError(
                f"{source}: the keyless signature is in no transparency log (a trust entry must allow "
                "that explicitly)"
            )
        return _verify_without_log(doc, envelope, root, matchers, source=source)
    try:
        bundle = Bundle.from_json(json.dumps(normalize_bundle_json(doc)))
        payload_type, payload = root.verifier.verify_dsse(bundle, _Deferred())
    except SigstoreError as err:
        raise VerificationError(f"{source}: {_short(err)}") from None
    except ValueError as err:  # pydantic, cryptography
        raise VerificationError(f"{source}: malformed bundle: {_short(err)}") from None
    _same_envelope(envelope, payload_type, payload, bundle.signature, source)
    cert = bundle.signing_certificate
    entry = bundle.log_entry._inner
    integrated = entry.integrated_time if entry.inclusion_promise else None
    times = _verified_times(bundle, raw, root, envelope, source, log_time=bool(integrated))
    if integrated:
        times.append(dt.datetime.fromtimestamp(integrated, tz=dt.UTC))
    if not times:  # sigstore required one; reading it back failed: do not guess
        raise VerificationError(f"{source}: no verified signing time")
    return _identify(
        cert,
        matchers,
        root,
        sig=bundle.signature,
        signed_at=min(times),
        log_index=int(entry.log_index),
        log_id=_b64(entry.log_id.key_id),
        source=source,
    )


def _same_envelope(envelope: Envelope, payload_type: str, payload: bytes, sig: bytes, source: str) -> None:
    # The gate parses the payload it decoded itself: it must be the one sigstore verified, byte for byte.
    if (
        envelope.payload_type != payload_type
        or envelope.payload != payload
        or len(envelope.signatures) != 1
        or envelope.signatures[0].sig != sig
    ):
        raise VerificationError(f"{source}: the verified envelope differs from the envelope read")


def _verified_times(
    bundle: Bundle, raw: bytes, root: KeylessRoot, envelope: Envelope, source: str, *, log_time: bool
) -> list[dt.datetime]:
    """The verified signing times of the bundle's timestamps (sigstore checked them but does not say).

    With one token and no time from the log, that token is the only source of time sigstore could have
    accepted, so it verified: its time is read without verifying the CMS signature a second time (a
    third of the whole verification). Otherwise each token is verified again here."""
    data = bundle.verification_material.timestamp_verification_data
    responses = data.rfc3161_timestamps if data else []
    if len(responses) == 1 and not log_time:
        when = responses[0].tst_info.gen_time
        return [(when if when.tzinfo else when.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)]
    from attestation.bundle import parse_bundle

    tokens = parse_bundle(raw, source=source).rfc3161_timestamps
    return _times_from_tokens(tokens, envelope.signatures[0].sig, root)


def _times_from_tokens(tokens: Sequence[bytes], sig: bytes, root: KeylessRoot) -> list[dt.datetime]:
    """The times of the tokens that verify with one of the trusted root's timestamp authorities."""
    times: list[dt.datetime] = []
    for token in tokens:
        for chain in root.tsa:
            try:
                times.append(verify_token_time(token, sig, chain))
                break
            except VerificationError:
                continue
    return times


def _identify(
    cert: x509.Certificate,
    matchers: Sequence[IdentityMatcher],
    root: KeylessRoot,
    *,
    sig: bytes,
    signed_at: dt.datetime,
    log_index: int | None,
    log_id: str | None,
    source: str,
) -> KeylessSignature:
    from attestation.keys import PublicKey

    sans = certificate_sans(cert)
    issuer = certificate_issuer(cert)
    match = next((m for m in matchers if m.matches(sans, issuer)), None)
    if match is None:
        trusted = "; ".join(m.describe() for m in matchers)
        raise VerificationError(
            f"{source}: signed by {', '.join(sans) or 'no identity'} from issuer {issuer}, which is not "
            f"trusted ({trusted[:400]})"
        )
    identity = next(
        s
        for s in sans
        if (match.identity is not None and s == match.identity)
        or (match.identity_regexp is not None and re.fullmatch(match.identity_regexp, s))
    )
    key = PublicKey(cert.public_key(), source="Fulcio certificate")
    return KeylessSignature(
        identity=identity,
        sans=tuple(sans),
        issuer=issuer,
        sig=sig,
        keyid=key.keyid,
        algorithm=key.algorithm,
        certificate_pem=cert.public_bytes(serialization.Encoding.PEM).decode("ascii"),
        chain_pems=_chain_pems(cert, root),
        signed_at=signed_at,
        log_index=log_index,
        log_id=log_id,
        trusted_root=root.source,
    )


_CHAINS: dict[tuple[str, bytes], tuple[str, ...]] = {}
_MAX_CHAINS = 256


def _chain_pems(cert: x509.Certificate, root: KeylessRoot) -> tuple[str, ...]:
    """The trusted CA certificates above ``cert``, for the policy input; by issuer, remembered per root
    and issuer name (sigstore has verified the chain by then: this only names it)."""
    key = (root.digest, cert.issuer.public_bytes())
    found = _CHAINS.get(key)
    if found is None:
        found = tuple(_find_chain(cert, root))
        if len(_CHAINS) >= _MAX_CHAINS:
            _CHAINS.clear()
        _CHAINS[key] = found
    return found


def _find_chain(cert: x509.Certificate, root: KeylessRoot) -> list[str]:
    pool = root.trusted_root.get_fulcio_certs()
    out: list[str] = []
    current = cert
    for _ in range(8):
        parent = next((c for c in pool if c.subject == current.issuer and _signed_by(current, c)), None)
        if parent is None:
            break
        out.append(parent.public_bytes(serialization.Encoding.PEM).decode("ascii"))
        if parent.subject == parent.issuer:
            break
        current = parent
    return out


def _signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, Exception):
        return False
    return True


def _verify_without_log(
    doc: Mapping[str, Any],
    envelope: Envelope,
    root: KeylessRoot,
    matchers: Sequence[IdentityMatcher],
    *,
    source: str,
) -> KeylessSignature:
    """A keyless bundle with no log entry, allowed by the trust entry: sigstore-python refuses any bundle
    without exactly one log entry (sigstore/sigstore-python#1529), so the same checks minus the log are
    made here with the same pieces: a signing time from a trusted timestamp (no log, so no other), the
    chain to a trusted Fulcio CA at that time, the SCT against the trusted CT logs, the Fulcio profile
    (digitalSignature, codeSigning), the DSSE signature with the certificate's key."""
    from cryptography.x509 import ExtendedKeyUsage, KeyUsage
    from cryptography.x509.oid import ExtendedKeyUsageOID
    from cryptography.x509.verification import Criticality, ExtensionPolicy, PolicyBuilder, Store
    from cryptography.x509.verification import VerificationError as X509Error
    from sigstore._internal.sct import verify_sct
    from sigstore._internal.trust import KeyringPurpose
    from sigstore.errors import Error as SigstoreError

    from attestation import bundle as bundle_format
    from attestation import dsse
    from attestation.keys import PublicKey

    parsed = bundle_format.parse_bundle(json.dumps(doc).encode(), source=source)
    if parsed.certificate is None:
        raise VerificationError(f"{source}: a keyless bundle needs a certificate")
    cert = x509.load_der_x509_certificate(parsed.certificate)
    if len(envelope.signatures) != 1:
        raise VerificationError(f"{source}: a keyless envelope carries exactly one signature")
    sig = envelope.signatures[0].sig
    times = _times_from_tokens(parsed.rfc3161_timestamps, sig, root)
    if not times:
        raise VerificationError(
            f"{source}: no verified signing time: a keyless signature without a log needs a trusted timestamp"
        )
    ca_policy = ExtensionPolicy.webpki_defaults_ca().may_be_present(
        ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    ee_policy = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    chain: list[x509.Certificate] = []
    for when in times:
        try:
            verified = (
                PolicyBuilder()
                .store(Store(root.trusted_root.get_fulcio_certs()))
                .time(when)
                .extension_policies(ca_policy=ca_policy, ee_policy=ee_policy)
                .build_client_verifier()
                .verify(cert, [])
            )
        except (X509Error, ValueError) as err:
            raise VerificationError(f"{source}: certificate chain does not verify: {_short(err)}") from None
        chain = list(verified.chain[1:])
    try:
        verify_sct(cert, chain, root.trusted_root.ct_keyring(KeyringPurpose.VERIFY))
    except SigstoreError as err:
        raise VerificationError(
            f"{source}: failed to verify SCT on signing certificate: {_short(err)}"
        ) from None
    usage = cert.extensions.get_extension_for_class(KeyUsage).value
    eku = cert.extensions.get_extension_for_class(ExtendedKeyUsage).value
    if not usage.digital_signature or ExtendedKeyUsageOID.CODE_SIGNING not in eku:
        raise VerificationError(f"{source}: certificate is not for code signing")
    key = PublicKey(cert.public_key(), source="Fulcio certificate")
    try:
        dsse.verify(envelope, [key])
    except VerificationError:
        raise VerificationError(
            f"{source}: the signature does not verify with the certificate's key"
        ) from None
    return _identify(
        cert, matchers, root, sig=sig, signed_at=min(times), log_index=None, log_id=None, source=source
    )


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode("ascii")


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    # cryptography appends "(encountered processing <Certificate(...)>)"; the reason is before it.
    cut = text.find(" (encountered processing")
    return (text[:cut] if cut > 0 else text)[:500]
