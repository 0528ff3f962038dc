"""X.509 path validation for SPIFFE X509-SVIDs at a chosen time.

Path building and validation is ``cryptography.x509.verification`` (RFC 5280 with the CA/B Forum
"web PKI" profile). That profile fits SVIDs as SPIRE issues them (checked against real SPIRE v1.15 certs
in ``tests/spire``): leaf with CA:false, a URI SAN, EKU serverAuth+clientAuth; CAs with CA:true and
keyCertSign. The client verifier is used because it does not ask for a DNS name. On top of it we require
what the SPIFFE X509-SVID spec requires of a signing leaf and the profile does not check: keyUsage
digitalSignature, and exactly one URI SAN that is a SPIFFE ID.

The validation time is a parameter on purpose: SVIDs live about an hour, so a signature is checked at the
trusted time it was made (an RFC 3161 timestamp), and only without one at "now".
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import verification

from attestation.errors import InputError, LimitExceeded, VerificationError
from attestation.keys import PublicKey
from attestation.spiffe import (
    TrustBundle,
    TrustBundles,
    load_pem_certificates,
    svid_spiffe_id,
    trust_domain_of,
)

log = logging.getLogger(__name__)

# SPIRE issues leaf + (with an UpstreamAuthority) one or two intermediates; nothing honest is deeper.
MAX_CHAIN_DEPTH = 8
MAX_INTERMEDIATES = 8


@dataclass(frozen=True)
class VerifiedSvid:
    """An SVID whose chain reached the trust bundle at the time it was checked at."""

    spiffe_id: str
    leaf: x509.Certificate
    chain: tuple[x509.Certificate, ...]  # leaf first, ending in the trust anchor
    public_key: PublicKey


def certificate_to_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode("ascii")


def load_certificate(data: bytes | str, *, source: str) -> x509.Certificate:
    """Exactly one certificate from PEM (or DER bytes)."""
    raw = data.encode("ascii", "replace") if isinstance(data, str) else data
    if raw.lstrip().startswith(b"-----BEGIN"):
        certs = load_pem_certificates(raw, source=source, max_count=1)
        if len(certs) != 1:
            raise InputError(f"{source}: expected one PEM certificate, found {len(certs)}")
        return certs[0]
    try:
        return x509.load_der_x509_certificate(raw)
    except ValueError as err:
        raise InputError(f"{source}: not a PEM or DER certificate ({' '.join(str(err).split())})") from None


def _aware(when: dt.datetime) -> dt.datetime:
    if when.tzinfo is None:
        raise ValueError("validation time must be timezone-aware")
    return when.astimezone(dt.UTC)


def verify_chain(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    *,
    at: dt.datetime,
) -> list[x509.Certificate]:
    """Validate ``leaf`` up to one of ``roots`` at time ``at``; the chain, leaf first.

    Intermediates are untrusted hints for path building. :class:`VerificationError` with the reason
    otherwise (expired at that time, unknown issuer, bad signature, CA used as leaf, ...).
    """
    if not roots:
        raise VerificationError("no trusted CA certificates configured")
    if len(intermediates) > MAX_INTERMEDIATES:
        raise LimitExceeded(
            f"certificate chain has {len(intermediates)} intermediates, the limit is {MAX_INTERMEDIATES}"
        )
    when = _aware(at)
    # cryptography compares against naive UTC internally; give it the instant, not a local time.
    naive_utc = when.replace(tzinfo=None)
    if not leaf.not_valid_before_utc <= when <= leaf.not_valid_after_utc:
        raise VerificationError(
            f"certificate is not valid at {when.isoformat()} "
            f"(valid {leaf.not_valid_before_utc.isoformat()} to {leaf.not_valid_after_utc.isoformat()})"
        )
    try:
        verifier = (
            verification.PolicyBuilder()
            .store(verification.Store(list(roots)))
            .time(naive_utc)
            .max_chain_depth(MAX_CHAIN_DEPTH)
            .build_client_verifier()
        )
        verified = verifier.verify(leaf, list(intermediates))
    except verification.VerificationError as err:
        raise VerificationError(f"certificate chain does not verify: {_short(err)}") from None
    except ValueError as err:
        raise VerificationError(f"certificate chain does not verify: {_short(err)}") from None
    _check_signing_leaf(leaf)
    return list(verified.chain)


def verify_svid(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    bundles: TrustBundles | TrustBundle,
    *,
    at: dt.datetime,
    allowed_ids: Collection[str] | None = None,
    trust_domain: str | None = None,
) -> VerifiedSvid:
    """Validate an X509-SVID: one URI SAN, an allowed identity, and a chain at ``at`` to the bundle of the
    trust domain that identity names, never to another trust domain's CA (go-spiffe's
    ``x509svid.Verify``). A lone :class:`TrustBundle` must be bound to its trust domain.

    ``allowed_ids`` (exact SPIFFE IDs) and ``trust_domain`` are checked when given; a caller that passes
    neither accepts any workload of any trust domain it has a bundle for, which is rarely what it wants.
    """
    spiffe_id = svid_spiffe_id(leaf)
    if trust_domain is not None and trust_domain_of(spiffe_id) != trust_domain:
        raise VerificationError(f"SPIFFE ID {spiffe_id} is not in trust domain {trust_domain}")
    if allowed_ids is not None and spiffe_id not in allowed_ids:
        allowed = ", ".join(sorted(allowed_ids)) or "none"
        raise VerificationError(f"SPIFFE ID {spiffe_id} is not allowed (allowed: {allowed})")
    if isinstance(bundles, TrustBundle) and bundles.trust_domain is None:
        raise ValueError(f"{bundles.source}: a trust bundle must be bound to its trust domain to verify")
    bundle = TrustBundles.of(bundles).for_spiffe_id(spiffe_id)
    chain = verify_chain(leaf, intermediates, bundle.authorities, at=at)
    try:
        key = PublicKey(leaf.public_key(), source=f"certificate of {spiffe_id}")
    except InputError as err:
        raise VerificationError(str(err)) from None
    return VerifiedSvid(spiffe_id=spiffe_id, leaf=leaf, chain=tuple(chain), public_key=key)


def _check_signing_leaf(leaf: x509.Certificate) -> None:
    try:
        usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        raise VerificationError(
            "certificate has no keyUsage extension (an X509-SVID must have one)"
        ) from None
    if not usage.digital_signature:
        raise VerificationError("certificate keyUsage does not allow digitalSignature")


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split())
    # cryptography appends "(encountered processing <Certificate(...)>)"; the reason is before it.
    cut = text.find(" (encountered processing")
    return text[:cut] if cut > 0 else text


@dataclass(frozen=True)
class X509Signature:
    """One envelope signature that verified with a trusted SVID."""

    spiffe_id: str
    sig: bytes
    keyid: str  # the leaf key's fingerprint, never the envelope's hint
    algorithm: str
    certificate_pem: str
    chain_pems: tuple[str, ...]  # the validated chain without the leaf, up to the trust anchor
    signed_at: dt.datetime | None  # from a verified RFC 3161 timestamp; None: checked at "now"


def verify_envelope_x509(
    envelope: Any,
    *,
    certificate: bytes,
    chain: Sequence[bytes],
    timestamps: Sequence[bytes],
    bundles: TrustBundles | TrustBundle,
    allowed_ids: Collection[str],
    tsa: Any | None = None,
    now: dt.datetime | None = None,
) -> list[X509Signature]:
    """The signatures of a DSSE ``envelope`` made by the SVID ``certificate`` under this trust.

    Order of checks: the leaf names exactly one allowed SPIFFE ID; a signature verifies over the PAE of
    the stored payload with the leaf key; the signing time is the ``genTime`` of an RFC 3161 token over
    that signature, verified against ``tsa`` (without TSA trust or a token: ``now``); the chain reaches
    the bundle of the leaf's own trust domain in ``bundles`` at that time. Any failure raises
    :class:`VerificationError` with the reason; a token that is present but does not verify is a failure,
    not a fallback to "now".
    """
    from attestation.dsse import pae
    from attestation.timestamp import verify_timestamp

    where = getattr(envelope, "source", "envelope")
    if not allowed_ids:
        raise VerificationError(f"{where}: no SPIFFE IDs are allowed to sign (configure --spiffe-id)")
    if len(chain) > MAX_INTERMEDIATES + 1:
        raise LimitExceeded(f"{where}: certificate chain has {len(chain)} certificates")
    try:
        leaf = load_certificate(certificate, source=f"{where}: certificate")
        intermediates = [load_certificate(c, source=f"{where}: chain") for c in chain]
    except InputError as err:
        raise VerificationError(str(err)) from None
    try:
        spiffe_id = svid_spiffe_id(leaf)
    except VerificationError as err:
        raise VerificationError(f"{where}: {err}") from None
    if spiffe_id not in allowed_ids:
        allowed = ", ".join(sorted(allowed_ids))
        raise VerificationError(
            f"{where}: signed by {spiffe_id}, which is not an allowed SPIFFE ID ({allowed})"
        )
    try:
        key = PublicKey(leaf.public_key(), source=f"certificate of {spiffe_id}")
    except InputError as err:
        raise VerificationError(f"{where}: {err}") from None
    message = pae(envelope.payload_type, envelope.payload)
    out: list[X509Signature] = []
    for signature in envelope.signatures:
        if any(s.sig == signature.sig for s in out) or not key.verify(signature.sig, message):
            continue
        signed_at: dt.datetime | None = None
        if tsa is not None and timestamps:
            times = [
                verify_timestamp(t, signature.sig, tsa, what=f"{where}: RFC 3161 timestamp")
                for t in timestamps
            ]
            signed_at = min(times)
        at = signed_at or now or dt.datetime.now(dt.UTC)
        log.debug(
            "%s: signature by %s, chain checked at %s (%s)",
            where,
            spiffe_id,
            at.isoformat(),
            "trusted timestamp" if signed_at else "no trusted timestamp: now",
        )
        try:
            verified = verify_svid(leaf, intermediates, bundles, at=at, allowed_ids=allowed_ids)
        except VerificationError as err:
            hint = "" if signed_at else " (no trusted timestamp: checked at the current time)"
            raise VerificationError(f"{where}: {err}{hint}") from None
        out.append(
            X509Signature(
                spiffe_id=spiffe_id,
                sig=signature.sig,
                keyid=key.keyid,
                algorithm=key.algorithm,
                certificate_pem=certificate_to_pem(leaf),
                chain_pems=tuple(certificate_to_pem(c) for c in verified.chain[1:]),
                signed_at=signed_at,
            )
        )
    if not out:
        raise VerificationError(f"{where}: no signature verifies with the key of certificate {spiffe_id}")
    return out
