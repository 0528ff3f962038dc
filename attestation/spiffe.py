"""SPIFFE identities and X.509 trust bundles.

A trust bundle file is either PEM (any number of ``CERTIFICATE`` blocks, as ``spire-server bundle show
-format pem`` prints) or a SPIFFE bundle (JWKS JSON, ``-format spiffe``: keys with ``"use": "x509-svid"``
carry the CA in ``x5c``). Operators should keep retired CAs in the file: SPIRE prunes an expired CA from
the live bundle a day after it expires, and attestations it signed must still verify later.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from spiffe import SpiffeId
from spiffe.errors import PySpiffeError

from attestation.errors import InputError, LimitExceeded, VerificationError
from attestation.limits import load_json

# A bundle with old and new CAs of a few trust domains stays far below this.
MAX_BUNDLE_CERTIFICATES = 64
MAX_BUNDLE_BYTES = 1024 * 1024
MAX_SPIFFE_ID_CHARS = 2048  # the SPIFFE ID spec's limit for URI SANs
_PEM_CERT_BEGIN = b"-----BEGIN CERTIFICATE-----"


def parse_spiffe_id(text: str, *, what: str = "SPIFFE ID") -> str:
    """The normalised SPIFFE ID ``spiffe://<trust-domain>/<path>``; :class:`InputError` if invalid.

    Validation is py-spiffe's (the SPIFFE ID spec: lowercase trust domain, no port, no user info, no query,
    no empty, ``.`` or ``..`` path segments, no trailing slash).
    """
    if not isinstance(text, str):
        raise InputError(f"{what} must be a string")
    if len(text) > MAX_SPIFFE_ID_CHARS:
        raise LimitExceeded(f"{what} is longer than {MAX_SPIFFE_ID_CHARS} characters")
    try:
        parsed = SpiffeId(text)
    except PySpiffeError as err:
        raise InputError(f"{what} {text!r} is not a valid SPIFFE ID: {_one_line(err)}") from None
    # py-spiffe lowercases the trust domain; go-spiffe (and so SPIRE) refuses uppercase. Comparing IDs
    # as strings is only sound if there is one spelling, so anything not already normal is refused.
    if str(parsed) != text:
        raise InputError(f"{what} {text!r} is not in normal form (expected {str(parsed)!r})")
    # py-spiffe accepts the trust domain alone; an SVID for a workload always has a path.
    if not parsed.path:
        raise InputError(f"{what} {text!r} has no path (a trust domain is not a workload identity)")
    return str(parsed)


def trust_domain_of(spiffe_id: str) -> str:
    """The trust domain name of an already validated SPIFFE ID."""
    return str(SpiffeId(spiffe_id).trust_domain.name)


def validate_trust_domain(name: str, *, what: str = "trust domain") -> str:
    """A bare trust domain name (``example.org``), checked by parsing ``spiffe://<name>/x``."""
    if not isinstance(name, str) or not name or "/" in name or ":" in name:
        raise InputError(f"{what} {name!r} must be a bare name such as example.org")
    try:
        normal = str(SpiffeId(f"spiffe://{name}/x").trust_domain.name)
    except PySpiffeError as err:
        raise InputError(f"{what} {name!r} is not valid: {_one_line(err)}") from None
    if normal != name:
        raise InputError(f"{what} {name!r} must be lowercase")
    return normal


def uri_sans(cert: x509.Certificate) -> list[str]:
    """All URI SubjectAlternativeNames of ``cert`` (empty when it has no SAN extension)."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return list(san.get_values_for_type(x509.UniformResourceIdentifier))


def svid_spiffe_id(cert: x509.Certificate) -> str:
    """The SPIFFE ID of an X509-SVID leaf: it must carry exactly one URI SAN, a valid SPIFFE ID.

    A second URI SAN would let one certificate speak for two workloads, so it is refused, as the SPIFFE
    X509-SVID spec requires and Tekton's ``verifyCertURI`` does.
    """
    uris = uri_sans(cert)
    if len(uris) != 1:
        raise VerificationError(
            f"certificate must carry exactly one URI SAN (a SPIFFE ID), it has {len(uris)}"
        )
    try:
        return parse_spiffe_id(uris[0], what="certificate URI SAN")
    except InputError as err:
        raise VerificationError(str(err)) from None


@dataclass(frozen=True)
class TrustBundle:
    """The CA certificates SVID chains may end in; ``source`` names the file for messages."""

    authorities: tuple[x509.Certificate, ...]
    source: str = "trust bundle"


def parse_trust_bundle(data: bytes, *, source: str) -> TrustBundle:
    """Parse a PEM or SPIFFE-JSON trust bundle. At least one CA; bounded size and count."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise LimitExceeded(f"{source}: trust bundle is larger than {MAX_BUNDLE_BYTES} bytes")
    stripped = data.lstrip()
    if stripped.startswith(b"{"):
        certs = _certs_from_spiffe_json(data, source)
    elif _PEM_CERT_BEGIN in data:
        certs = load_pem_certificates(data, source=source, max_count=MAX_BUNDLE_CERTIFICATES)
    else:
        raise InputError(f"{source}: trust bundle is neither PEM certificates nor a SPIFFE bundle (JSON)")
    if not certs:
        raise InputError(f"{source}: trust bundle holds no X.509 authorities")
    for i, cert in enumerate(certs):
        if not _is_ca(cert):
            raise InputError(
                f"{source}: trust bundle certificate {i} ({cert.subject.rfc4514_string()}) is not a CA"
            )
    return TrustBundle(authorities=tuple(_dedupe(certs)), source=source)


def load_trust_bundle(path: str | os.PathLike[str]) -> TrustBundle:
    """Read and parse a trust bundle file; errors name the file."""
    source = os.fspath(path)
    try:
        with open(source, "rb") as f:
            data = f.read(MAX_BUNDLE_BYTES + 1)
    except OSError as err:
        raise InputError(f"cannot read trust bundle {source}: {err.strerror or err}") from None
    return parse_trust_bundle(data, source=source)


def merge_bundles(bundles: Sequence[TrustBundle]) -> TrustBundle:
    """One bundle with the authorities of all, duplicates removed (old and new CAs side by side)."""
    certs = [c for b in bundles for c in b.authorities]
    return TrustBundle(authorities=tuple(_dedupe(certs)), source=", ".join(b.source for b in bundles))


def load_pem_certificates(
    data: bytes, *, source: str, max_count: int = MAX_BUNDLE_CERTIFICATES
) -> list[x509.Certificate]:
    """All ``CERTIFICATE`` blocks of a PEM text, in order; :class:`InputError` on a malformed block."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise LimitExceeded(f"{source}: PEM data is larger than {MAX_BUNDLE_BYTES} bytes")
    count = data.count(_PEM_CERT_BEGIN)
    if count > max_count:
        raise LimitExceeded(f"{source}: {count} certificates, the limit is {max_count}")
    if count == 0:
        return []
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError as err:
        raise InputError(f"{source}: malformed PEM certificate: {_one_line(err)}") from None


def _certs_from_spiffe_json(data: bytes, source: str) -> list[x509.Certificate]:
    doc = load_json(data, max_bytes=MAX_BUNDLE_BYTES, what=f"{source} (SPIFFE bundle)", max_depth=8)
    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list):
        raise InputError(f"{source}: SPIFFE bundle must be a JSON object with a 'keys' array")
    certs: list[x509.Certificate] = []
    for i, key in enumerate(keys):
        if not isinstance(key, dict):
            raise InputError(f"{source}: keys[{i}] must be an object")
        if key.get("use") != "x509-svid":
            continue  # JWT authorities (use jwt-svid) do not sign X.509 chains
        x5c = key.get("x5c")
        if not isinstance(x5c, list) or len(x5c) != 1 or not isinstance(x5c[0], str):
            raise InputError(f"{source}: keys[{i}].x5c must hold exactly one certificate")
        if len(certs) >= MAX_BUNDLE_CERTIFICATES:
            raise LimitExceeded(f"{source}: more than {MAX_BUNDLE_CERTIFICATES} X.509 authorities")
        try:
            der = base64.b64decode(x5c[0], validate=True)
            certs.append(x509.load_der_x509_certificate(der))
        except (binascii.Error, ValueError) as err:
            raise InputError(
                f"{source}: keys[{i}].x5c[0] is not a base64 DER certificate: {_one_line(err)}"
            ) from None
    return certs


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _dedupe(certs: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    seen: set[bytes] = set()
    out: list[x509.Certificate] = []
    for cert in certs:
        fp = cert.fingerprint(hashes.SHA256())
        if fp not in seen:
            seen.add(fp)
            out.append(cert)
    return out


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__
