"""SPIFFE identities and X.509 trust bundles, one per trust domain.

An SVID is verified only against the bundle of the trust domain its SPIFFE ID names, as go-spiffe's
``x509svid.Verify`` does: a CA trusted for one trust domain must never vouch for an identity of another
(:class:`TrustBundles`). So every bundle is bound to its trust domain:

* a file that says which trust domains its CAs are for: SPIRE's JSON (``spire-server bundle show -output
  json``, and ``bundle list -output json`` with several), and ``spire-server bundle list`` text (a header
  naming each trust domain, PEM or SPIFFE JSON below it);
* a file that does not, PEM (``CERTIFICATE`` blocks, ``bundle show -format pem``) or a SPIFFE bundle
  (JWKS JSON, ``-format spiffe``: keys with ``"use": "x509-svid"`` carry the CA in ``x5c``; the format has
  no trust domain field): its trust domain is given with it, ``TD=FILE`` (:func:`split_bundle_arg`), or by
  the caller when only one is possible.

A CA certificate that names a trust domain itself (SPIRE's carry the URI SAN ``spiffe://<td>``) must name
the one its bundle is for. Operators should keep retired CAs in the file: SPIRE prunes an expired CA from
the live bundle a day after it expires, and attestations it signed must still verify later.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

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
MAX_TRUST_DOMAINS = 64
_PEM_CERT_BEGIN = b"-----BEGIN CERTIFICATE-----"
# The header `spire-server bundle list` prints above each trust domain's bundle.
_LIST_HEADER = re.compile(rb"^\*{40}\r?\n\* ([^\r\n]*)\r?\n\*{40}\r?$", re.MULTILINE)


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
    """The CA certificates SVID chains may end in, for ``trust_domain``; ``source`` names the file for
    messages. ``trust_domain`` is None only for a bundle read from a file that does not say (PEM, SPIFFE
    JSON) until :meth:`TrustBundles.bind` binds it; nothing verifies against an unbound bundle."""

    authorities: tuple[x509.Certificate, ...]
    source: str = "trust bundle"
    trust_domain: str | None = None


def parse_trust_bundles(data: bytes, *, source: str) -> tuple[TrustBundle, ...]:
    """Every bundle in a trust bundle file: one per trust domain it names (SPIRE's JSON and ``bundle list``
    output), or one with ``trust_domain`` None (PEM, SPIFFE JSON). Each has at least one CA; the file's
    size, the CAs and the trust domains are bounded."""
    if len(data) > MAX_BUNDLE_BYTES:
        raise LimitExceeded(f"{source}: trust bundle is larger than {MAX_BUNDLE_BYTES} bytes")
    headers = list(_LIST_HEADER.finditer(data))
    if headers:
        if data[: headers[0].start()].strip():
            raise InputError(f"{source}: text before the first trust domain header")
        if len(headers) > MAX_TRUST_DOMAINS:
            raise LimitExceeded(f"{source}: more than {MAX_TRUST_DOMAINS} trust domains")
        bundles = []
        for i, header in enumerate(headers):
            end = headers[i + 1].start() if i + 1 < len(headers) else len(data)
            name = header.group(1).decode("utf-8", "replace")
            td = validate_trust_domain(name.removeprefix("spiffe://"), what=f"{source}: trust domain header")
            where = f"{source} ({td})"
            bundles.append(
                TrustBundle(_checked_cas(_unnamed(data[header.end() : end], where), where), where, td)
            )
        return _one_per_domain(bundles, source)
    if data.lstrip().startswith(b"{"):
        doc = load_json(data, max_bytes=MAX_BUNDLE_BYTES, what=f"{source} (trust bundle JSON)", max_depth=8)
        if isinstance(doc, dict) and "keys" not in doc and ("trust_domain" in doc or "bundles" in doc):
            return _one_per_domain(_from_spire_json(doc, source), source)
    return (TrustBundle(_checked_cas(_unnamed(data, source), source), source),)


def parse_trust_bundle(data: bytes, *, source: str) -> TrustBundle:
    """The one bundle of a trust bundle file (:func:`parse_trust_bundles`); :class:`InputError` when the file
    holds the bundles of several trust domains."""
    bundles = parse_trust_bundles(data, source=source)
    if len(bundles) != 1:
        names = ", ".join(b.trust_domain or "?" for b in bundles)
        raise InputError(
            f"{source}: holds the bundles of {len(bundles)} trust domains ({names}), expected one"
        )
    return bundles[0]


def _read_bundle_file(path: str | os.PathLike[str]) -> tuple[str, bytes]:
    source = os.fspath(path)
    try:
        with open(source, "rb") as f:
            return source, f.read(MAX_BUNDLE_BYTES + 1)
    except OSError as err:
        raise InputError(f"cannot read trust bundle {source}: {err.strerror or err}") from None


def load_trust_bundles(path: str | os.PathLike[str]) -> tuple[TrustBundle, ...]:
    """Read and parse a trust bundle file (:func:`parse_trust_bundles`); errors name the file."""
    source, data = _read_bundle_file(path)
    return parse_trust_bundles(data, source=source)


def load_trust_bundle(path: str | os.PathLike[str]) -> TrustBundle:
    """Read and parse a trust bundle file of one trust domain (:func:`parse_trust_bundle`)."""
    source, data = _read_bundle_file(path)
    return parse_trust_bundle(data, source=source)


def split_bundle_arg(text: str | os.PathLike[str]) -> tuple[str | None, str]:
    """``TD=FILE`` or ``FILE`` -> (trust domain or None, file). The part before the first ``=`` is a trust
    domain only when it is a valid trust domain name (no ``/``, lowercase, ...), so a path with ``=`` in it
    is still a path when written with a directory (``./a=b.pem``)."""
    raw = os.fspath(text)
    name, sep, path = raw.partition("=")
    if not sep or not path or not _TRUST_DOMAIN_CHARS.fullmatch(name):
        return None, raw
    return validate_trust_domain(name, what=f"trust domain of {raw}"), path


_TRUST_DOMAIN_CHARS = re.compile(r"[a-z0-9._-]+")


@dataclass(frozen=True)
class TrustBundles:
    """X.509 trust bundles by trust domain: an SVID verifies only against the bundle of the trust domain in
    its SPIFFE ID (:meth:`for_spiffe_id`). Build it with :meth:`bind`."""

    bundles: tuple[TrustBundle, ...] = ()  # one per trust domain, each bound, sorted by trust domain

    @property
    def trust_domains(self) -> tuple[str, ...]:
        return tuple(b.trust_domain or "" for b in self.bundles)

    @property
    def authorities(self) -> tuple[x509.Certificate, ...]:
        """Every CA of every trust domain (only to tell whether X.509 trust is configured at all)."""
        return tuple(c for b in self.bundles for c in b.authorities)

    def for_trust_domain(self, trust_domain: str) -> TrustBundle | None:
        return next((b for b in self.bundles if b.trust_domain == trust_domain), None)

    def for_spiffe_id(self, spiffe_id: str) -> TrustBundle:
        """The bundle an SVID of ``spiffe_id`` must chain to; :class:`VerificationError` without one."""
        td = trust_domain_of(spiffe_id)
        found = self.for_trust_domain(td)
        if found is None:
            configured = ", ".join(self.trust_domains) or "none"
            raise VerificationError(
                f"SPIFFE ID {spiffe_id}: no trust bundle for its trust domain {td} (configured: {configured})"
            )
        return found

    @classmethod
    def bind(
        cls,
        bundles: Iterable[TrustBundle],
        *,
        default_trust_domain: str | None = None,
        why_no_default: str = "",
    ) -> TrustBundles:
        """Bundles bound to their trust domains: a bundle that names none is ``default_trust_domain``'s
        (:class:`InputError` when there is none, ending with ``why_no_default``), bundles of one trust
        domain are merged (old and new CAs in two files), and a CA that names a trust domain itself must
        name that one."""
        by_domain: dict[str, list[TrustBundle]] = {}
        for bundle in bundles:
            td = bundle.trust_domain or default_trust_domain
            if td is None:
                raise InputError(
                    f"{bundle.source}: the file does not say which trust domain its CAs are for; "
                    f"give it as TD={bundle.source}{why_no_default}"
                )
            _check_ca_trust_domains(bundle, td)
            by_domain.setdefault(td, []).append(bundle)
        if len(by_domain) > MAX_TRUST_DOMAINS:
            raise LimitExceeded(f"trust bundles for more than {MAX_TRUST_DOMAINS} trust domains")
        merged = []
        for td in sorted(by_domain):
            group = by_domain[td]
            certs = _dedupe([c for b in group for c in b.authorities])
            if len(certs) > MAX_BUNDLE_CERTIFICATES:
                raise LimitExceeded(
                    f"trust domain {td}: {len(certs)} CA certificates, the limit is {MAX_BUNDLE_CERTIFICATES}"
                )
            merged.append(TrustBundle(tuple(certs), ", ".join(b.source for b in group), td))
        return cls(tuple(merged))

    @classmethod
    def of(
        cls, bundle: TrustBundle | TrustBundles, *, default_trust_domain: str | None = None
    ) -> TrustBundles:
        """``bundle`` as :class:`TrustBundles` (a lone bundle that names no trust domain is
        ``default_trust_domain``'s)."""
        if isinstance(bundle, TrustBundles):
            return bundle
        return cls.bind([bundle], default_trust_domain=default_trust_domain)


def load_bundle_args(
    args: Sequence[str | os.PathLike[str]],
    *,
    default_trust_domain: str | None = None,
    why_no_default: str = "",
) -> TrustBundles:
    """The bundles of ``[TD=]FILE`` arguments, bound to their trust domains: ``TD=`` binds a file that names
    none, and picks TD's bundle from one that names several; a file without either is
    ``default_trust_domain``'s (:meth:`TrustBundles.bind`)."""
    bundles: list[TrustBundle] = []
    for arg in args:
        td, path = split_bundle_arg(arg)
        found = load_trust_bundles(path)
        if td is None:
            bundles.extend(found)
        elif all(b.trust_domain is None for b in found):
            bundles.extend(replace(b, trust_domain=td) for b in found)
        else:
            chosen = [b for b in found if b.trust_domain == td]
            if not chosen:
                names = ", ".join(b.trust_domain or "?" for b in found)
                raise InputError(f"{path}: holds no bundle for trust domain {td} (it has: {names})")
            bundles.extend(chosen)
    return TrustBundles.bind(
        bundles, default_trust_domain=default_trust_domain, why_no_default=why_no_default
    )


def _check_ca_trust_domains(bundle: TrustBundle, trust_domain: str) -> None:
    for i, cert in enumerate(bundle.authorities):
        for uri in uri_sans(cert):
            if not uri.startswith("spiffe://"):
                continue
            named = uri.removeprefix("spiffe://").split("/", 1)[0]
            if named != trust_domain:
                raise InputError(
                    f"{bundle.source}: CA certificate {i} ({cert.subject.rfc4514_string()}) belongs to trust "
                    f"domain {named[:100]} (URI SAN), not {trust_domain}"
                )


def _one_per_domain(bundles: Sequence[TrustBundle], source: str) -> tuple[TrustBundle, ...]:
    seen: set[str | None] = set()
    for b in bundles:
        if b.trust_domain in seen:
            raise InputError(f"{source}: trust domain {b.trust_domain} appears twice")
        seen.add(b.trust_domain)
    if not bundles:
        raise InputError(f"{source}: trust bundle holds no X.509 authorities")
    return tuple(bundles)


def _unnamed(data: bytes, source: str) -> list[x509.Certificate]:
    """The CAs of a PEM or SPIFFE JSON bundle (formats without a trust domain)."""
    stripped = data.lstrip()
    if stripped.startswith(b"{"):
        return _certs_from_spiffe_json(data, source)
    if _PEM_CERT_BEGIN in data:
        return load_pem_certificates(data, source=source, max_count=MAX_BUNDLE_CERTIFICATES)
    raise InputError(f"{source}: trust bundle is neither PEM certificates nor a SPIFFE bundle (JSON)")


def _checked_cas(certs: Sequence[x509.Certificate], source: str) -> tuple[x509.Certificate, ...]:
    if not certs:
        raise InputError(f"{source}: trust bundle holds no X.509 authorities")
    for i, cert in enumerate(certs):
        if not _is_ca(cert):
            raise InputError(
                f"{source}: trust bundle certificate {i} ({cert.subject.rfc4514_string()}) is not a CA"
            )
    return tuple(_dedupe(certs))


def _from_spire_json(doc: dict[str, object], source: str) -> list[TrustBundle]:
    """``spire-server bundle show -output json`` (one bundle) or ``bundle list -output json`` (several)."""
    items = doc.get("bundles") if "bundles" in doc else [doc]
    if not isinstance(items, list):
        raise InputError(f"{source}: 'bundles' must be an array")
    if len(items) > MAX_TRUST_DOMAINS:
        raise LimitExceeded(f"{source}: more than {MAX_TRUST_DOMAINS} trust domains")
    bundles = []
    for i, item in enumerate(items):
        where = f"{source}: bundles[{i}]" if "bundles" in doc else source
        if not isinstance(item, dict) or not isinstance(item.get("trust_domain"), str):
            raise InputError(f"{where} must be an object with a trust_domain string")
        td = validate_trust_domain(item["trust_domain"], what=f"{where} trust_domain")
        authorities = item.get("x509_authorities") or []
        if not isinstance(authorities, list):
            raise InputError(f"{where}.x509_authorities must be an array")
        if len(authorities) > MAX_BUNDLE_CERTIFICATES:
            raise LimitExceeded(f"{where}: more than {MAX_BUNDLE_CERTIFICATES} X.509 authorities")
        certs = []
        for j, authority in enumerate(authorities):
            at = f"{where}.x509_authorities[{j}]"
            if not isinstance(authority, dict) or not isinstance(authority.get("asn1"), str):
                raise InputError(f"{at} must be an object with an asn1 string")
            if authority.get("tainted") is True:
                continue  # an authority the operator marked compromised vouches for nothing
            try:
                certs.append(
                    x509.load_der_x509_certificate(base64.b64decode(authority["asn1"], validate=True))
                )
            except (binascii.Error, ValueError) as err:
                raise InputError(f"{at}.asn1 is not a base64 DER certificate: {_one_line(err)}") from None
        where_td = f"{source} ({td})"
        bundles.append(TrustBundle(_checked_cas(certs, where_td), where_td, td))
    return bundles


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
