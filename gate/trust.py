"""Who the gate trusts to sign attestations, and the one function that decides whether an envelope was
signed by them.

Trust is configured once (:func:`load_trust_policy`) and reused for every verification: public keys
(``--key``), X.509/SPIFFE signers (CA certificates from ``--trust-bundle``, kept per trust domain, the
exact SPIFFE IDs of ``--spiffe-id``, the timestamp authorities of ``--tsa-certs``), and keyless identities
(Fulcio certificates, transparency log; ``--certificate-identity`` ..., :mod:`gate.trust_keyless`).
:func:`verify_attestation` tries an envelope's certificate against the keyless trust and the CAs when they
are there (only the CAs of the trust domain the certificate's SPIFFE ID names), and the keys otherwise or
after; each
signature that verifies becomes a :class:`SignerIdentity`, which flows into the decision (``signer``) and
the policy input (``signatures[]``).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from attestation.dsse import PAYLOAD_TYPE_INTOTO
from attestation.errors import InputError, VerificationError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from cryptography import x509

    from attestation.cosign import VerificationMaterial
    from attestation.dsse import Envelope
    from attestation.keys import PublicKey
    from attestation.spiffe import TrustBundle
    from gate.trust_keyless import KeylessEntry, KeylessTrust


@dataclass(frozen=True)
class SignerIdentity:
    """A signature that verified and whom it proves signed the envelope."""

    kind: Literal["key", "x509", "keyless"]
    keyid: str  # the trusted key's fingerprint (key) or the leaf key's (x509); never the envelope's hint
    sig: bytes
    algorithm: str = ""
    spiffe_id: str | None = None
    certificate: str | None = None  # PEM
    chain: tuple[str, ...] = ()
    signed_at: str | None = None  # RFC 3339, from a verified RFC 3161 timestamp (or Rekor promise) only
    # keyless: the certificate's identity (the SAN that matched), its OIDC issuer, the log entry index
    # (None: verified without a log, which a trust entry allowed explicitly)
    san: str | None = None
    issuer: str | None = None
    log_index: int | None = None

    def to_signer_dict(self) -> dict[str, Any]:
        """The decision's ``attestations[].signer``."""
        out: dict[str, Any] = {"kind": self.kind, "keyid": self.keyid}
        if self.algorithm:
            out["algorithm"] = self.algorithm
        if self.spiffe_id:
            out["spiffe_id"] = self.spiffe_id
        if self.signed_at:
            out["signed_at"] = self.signed_at
        if self.kind == "keyless":
            out.update(san=self.san, issuer=self.issuer, log_index=self.log_index)
        return out

    def to_policy_signature(self) -> dict[str, Any]:
        """An entry of the policy input's ``attestations[].signatures`` (DESIGN.md §3)."""
        out: dict[str, Any] = {"keyid": self.keyid, "sig": base64.b64encode(self.sig).decode("ascii")}
        if self.certificate:
            out["certificate"] = self.certificate
            out["chain"] = list(self.chain)
        if self.spiffe_id:
            out["spiffe_id"] = self.spiffe_id
        if self.signed_at:
            out["signed_at"] = self.signed_at
        if self.kind == "keyless":
            out["san"] = self.san
            out["issuer"] = self.issuer
            out["log_index"] = self.log_index
        return out


@dataclass(frozen=True)
class TrustPolicy:
    """Everything the gate trusts. Immutable; build it once with :func:`load_trust_policy`."""

    keys: tuple[PublicKey, ...] = ()
    # X.509/SPIFFE trust: the CA bundle of each trust domain (bound, one per domain), the SPIFFE IDs
    # allowed to sign, TSA certificates.
    x509_bundles: tuple[TrustBundle, ...] = ()
    spiffe_ids: tuple[str, ...] = ()
    tsa_certs: tuple[Any, ...] = ()
    # Keyless: Fulcio identities under Sigstore trusted roots (gate.trust_keyless.KeylessTrust).
    keyless: KeylessTrust | None = None

    @property
    def x509_roots(self) -> tuple[Any, ...]:
        """Every trusted CA certificate, of every trust domain: only to tell whether there are any."""
        return tuple(c for b in self.x509_bundles for c in b.authorities)

    @property
    def empty(self) -> bool:
        return not self.keys and not self.x509_bundles and (self.keyless is None or self.keyless.empty)

    @functools.cached_property
    def digest(self) -> str:
        """``sha256:<hex>`` over everything trusted, for verdict-cache keys (DESIGN.md §6): the same for
        the same trust however it was given (file order, a file given twice), different as soon as any
        key, CA certificate or the trust domain it is trusted for, allowed SPIFFE ID or TSA certificate is
        added, removed or replaced."""
        h = hashlib.sha256(b"provgate trust policy v2\0")

        def part(kind: bytes, items: Iterable[bytes]) -> None:
            # Every item length-prefixed and every part counted: no two trust policies hash alike by
            # moving bytes from one item (or part) to the next.
            values = sorted(set(items))
            h.update(b"%s\0%d\0" % (kind, len(values)))
            for value in values:
                h.update(b"%d\0%s" % (len(value), value))

        part(b"keys", (k.spki_der for k in self.keys))
        # Which trust domain a CA vouches for is part of the trust: the same CAs mapped to other trust
        # domains admit other signers.
        domains: dict[str, list[Any]] = {}
        for bundle in self.x509_bundles:
            domains.setdefault(bundle.trust_domain or "", []).extend(bundle.authorities)
        part(b"trust-domains", (td.encode() for td in domains))
        for td in sorted(domains):
            part(b"x509-roots:" + td.encode(), (_der(c) for c in domains[td]))
        part(b"spiffe-ids", (i.encode() for i in self.spiffe_ids))
        part(b"tsa-certs", (_der(c) for c in self.tsa_certs))
        if self.keyless is not None and not self.keyless.empty:
            # Only when configured: key and SPIFFE trust keep the digests they had before keyless existed.
            part(b"keyless", self.keyless.digest_parts())
        return "sha256:" + h.hexdigest()


def load_trust_policy(
    key_files: Sequence[str | os.PathLike[str]] = (),
    *,
    trust_bundles: Sequence[str | os.PathLike[str]] = (),
    spiffe_ids: Sequence[str] = (),
    tsa_cert_files: Sequence[str | os.PathLike[str]] = (),
    keyless: Sequence[KeylessEntry] = (),
) -> TrustPolicy:
    """Load and check every trust file now, so a bad one is an error at start-up, never per request.

    Raises :class:`~attestation.errors.KeyLoadError` / :class:`~attestation.errors.InputError` naming the
    file. ``trust_bundles`` (``[TD=]FILE``: PEM, SPIFFE JSON or SPIRE's JSON, old CAs kept) need at least
    one exact ``spiffe_ids``. A file that does not name its trust domain is for ``TD`` when given, else for
    the one trust domain of the ``spiffe_ids`` (an error when they name several); every trust domain of
    ``spiffe_ids`` needs a bundle. ``keyless`` entries (:class:`gate.trust_keyless.KeylessEntry`) have
    their trusted roots loaded once.
    """
    from attestation.keys import load_public_key_file

    keys: list[PublicKey] = []
    seen: set[bytes] = set()
    for path in key_files:
        key = load_public_key_file(path)
        if key.spki_der not in seen:  # the same key given twice must not count twice anywhere
            seen.add(key.spki_der)
            keys.append(key)
    bundles, ids, tsa = _load_x509_trust(trust_bundles, spiffe_ids, tsa_cert_files)
    keyless_trust = None
    if keyless:
        from gate.trust_keyless import load_keyless_trust

        keyless_trust = load_keyless_trust(keyless)
    return TrustPolicy(
        keys=tuple(keys), x509_bundles=bundles, spiffe_ids=ids, tsa_certs=tsa, keyless=keyless_trust
    )


def _der(cert: x509.Certificate) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.DER)


def _load_x509_trust(
    bundle_files: Sequence[str | os.PathLike[str]],
    spiffe_ids: Sequence[str],
    tsa_cert_files: Sequence[str | os.PathLike[str]],
) -> tuple[tuple[TrustBundle, ...], tuple[str, ...], tuple[Any, ...]]:
    if not (bundle_files or spiffe_ids or tsa_cert_files):
        return (), (), ()  # key-only trust: spare every start-up the SPIFFE/TSA imports (grpc, httpx)
    from attestation.spiffe import parse_spiffe_id
    from attestation.timestamp import load_tsa_certs

    ids = tuple(sorted({parse_spiffe_id(i, what="--spiffe-id") for i in spiffe_ids}))
    if bundle_files and not ids:
        raise InputError("--trust-bundle needs at least one --spiffe-id naming who may sign")
    if ids and not bundle_files:
        raise InputError("--spiffe-id needs a --trust-bundle to verify the certificates against")
    bundles = _load_bundles(bundle_files, ids) if bundle_files else ()
    tsa: list[Any] = []
    for f in tsa_cert_files:
        loaded = load_tsa_certs(f)
        tsa.extend([*loaded.roots, *loaded.intermediates])
    return bundles, ids, tuple(tsa)


def _load_bundles(
    bundle_files: Sequence[str | os.PathLike[str]], ids: Sequence[str]
) -> tuple[TrustBundle, ...]:
    """The ``--trust-bundle`` files bound to their trust domains (a file that names none is for the one
    trust domain of the ``--spiffe-id`` values), one for every trust domain an allowed ID names."""
    from attestation.spiffe import load_bundle_args, trust_domain_of

    domains = sorted({trust_domain_of(i) for i in ids})
    loaded = load_bundle_args(
        bundle_files,
        default_trust_domain=domains[0] if len(domains) == 1 else None,
        why_no_default=f" (the --spiffe-id values name {len(domains)} trust domains: {', '.join(domains)})",
    )
    for spiffe_id in ids:
        td = trust_domain_of(spiffe_id)
        if loaded.for_trust_domain(td) is None:
            given = ", ".join(loaded.trust_domains)
            raise InputError(
                f"--spiffe-id {spiffe_id}: no --trust-bundle for its trust domain {td} (given: {given})"
            )
    return loaded.bundles


def _verify_keys(
    envelope: Envelope, trust: TrustPolicy, material: VerificationMaterial
) -> list[SignerIdentity]:
    from attestation import dsse

    keys: Sequence[PublicKey] = trust.keys
    if material.public_key_hint:
        # The hint is untrusted; it only moves a matching key to the front, every key is still tried.
        keys = sorted(keys, key=lambda k: material.public_key_hint not in _hints(k))
    verified = dsse.verify(envelope, keys)
    return [
        SignerIdentity(
            kind="key",
            keyid=v.key.keyid,
            sig=v.signature.sig,
            algorithm=v.key.algorithm,
        )
        for v in verified
    ]


def _hints(key: PublicKey) -> set[str]:
    # cosign writes base64(sha256(SPKI DER)) as a bundle's publicKey.hint; others write the keyid.
    return {key.keyid, base64.b64encode(hashlib.sha256(key.spki_der).digest()).decode("ascii")}


def _verify_x509(
    envelope: Envelope, trust: TrustPolicy, material: VerificationMaterial
) -> list[SignerIdentity]:
    from attestation.spiffe import TrustBundles
    from attestation.timestamp import TsaTrust
    from attestation.x509 import verify_envelope_x509

    tsa = None
    if trust.tsa_certs:
        tsa = TsaTrust(
            roots=tuple(c for c in trust.tsa_certs if c.issuer == c.subject),
            intermediates=tuple(c for c in trust.tsa_certs if c.issuer != c.subject),
        )
    assert material.certificate is not None  # routed here only when it has one
    verified = verify_envelope_x509(
        envelope,
        certificate=material.certificate,
        chain=material.chain,
        timestamps=material.rfc3161_timestamps,
        bundles=TrustBundles(trust.x509_bundles),
        allowed_ids=set(trust.spiffe_ids),
        tsa=tsa,
    )
    return [
        SignerIdentity(
            kind="x509",
            keyid=v.keyid,
            sig=v.sig,
            algorithm=v.algorithm,
            spiffe_id=v.spiffe_id,
            certificate=v.certificate_pem,
            chain=v.chain_pems,
            signed_at=v.signed_at.isoformat().replace("+00:00", "Z") if v.signed_at else None,
        )
        for v in verified
    ]


def _verify_keyless(
    envelope: Envelope, trust: TrustPolicy, material: VerificationMaterial
) -> list[SignerIdentity]:
    from attestation.spiffe import parse_spiffe_id
    from gate.trust_keyless import verify_keyless

    assert trust.keyless is not None  # routed here only when configured
    out = []
    for v in verify_keyless(envelope, material, trust.keyless):
        spiffe_id = None
        if v.identity.startswith("spiffe://"):
            try:
                spiffe_id = parse_spiffe_id(v.identity, what="certificate identity")
            except InputError:
                spiffe_id = None
        out.append(
            SignerIdentity(
                kind="keyless",
                keyid=v.keyid,
                sig=v.sig,
                algorithm=v.algorithm,
                spiffe_id=spiffe_id,
                certificate=v.certificate_pem,
                chain=v.chain_pems,
                signed_at=v.signed_at.isoformat().replace("+00:00", "Z"),
                san=v.identity,
                issuer=v.issuer,
                log_index=v.log_index,
            )
        )
    return out


def verify_attestation(
    envelope: Envelope, material: VerificationMaterial, trust: TrustPolicy
) -> list[SignerIdentity]:
    """The identities whose signatures over the envelope's PAE verify under ``trust``.

    Checks the payload type first (it is signed, but an envelope of another type is never an attestation
    for us). Raises :class:`VerificationError` when nothing verifies; never returns an empty list. Call
    before parsing the payload.
    """
    if envelope.payload_type != PAYLOAD_TYPE_INTOTO:
        raise VerificationError(
            f"{envelope.source}: payload type {envelope.payload_type[:100]!r} is not {PAYLOAD_TYPE_INTOTO}"
        )
    if trust.empty:
        raise VerificationError("no trusted keys, certificate roots or keyless identities configured")
    errors: list[str] = []
    if material.has_certificate and trust.keyless is not None and not trust.keyless.empty:
        try:
            return _verify_keyless(envelope, trust, material)
        except VerificationError as err:
            log.debug("%s: not a trusted keyless signature: %s", envelope.source, err)
            errors.append(str(err))
    if material.has_certificate and trust.x509_bundles:
        try:
            return _verify_x509(envelope, trust, material)
        except VerificationError as err:
            log.debug("%s: the certificate did not verify: %s", envelope.source, err)
            errors.append(str(err))
    if trust.keys:
        try:
            return _verify_keys(envelope, trust, material)
        except VerificationError as err:
            errors.append(str(err))
    if not errors:
        raise VerificationError(
            f"{envelope.source}: carries no certificate and no trusted keys are configured"
        )
    raise VerificationError("; ".join(errors))
