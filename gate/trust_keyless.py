"""Keyless trust for the gate: which certificate identities, from which OIDC issuers, under which Sigstore
trusted root, may sign attestations; loaded once, used for every verification.

A trust entry is cosign's flags (``--certificate-identity`` / ``--certificate-identity-regexp``,
``--certificate-oidc-issuer`` / ``--certificate-oidc-issuer-regexp``, ``--trusted-root``) or, in
``gate serve``'s config, ``trust.keyless[]`` with the same names in camelCase
(:func:`keyless_entry_from_config`). Entries that name the same trusted root share one loaded root.
The verification itself is :func:`attestation.keyless.verify_keyless_bundle`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from attestation.errors import InputError, VerificationError

if TYPE_CHECKING:
    from attestation.cosign import VerificationMaterial
    from attestation.dsse import Envelope
    from attestation.keyless import IdentityMatcher, KeylessRoot, KeylessSignature

MAX_KEYLESS_ENTRIES = 256


@dataclass(frozen=True)
class KeylessEntry:
    """One trusted identity as configured: exact or regexp identity and issuer, the trusted root file
    (None: the public-good root shipped with provgate), and whether a signature in no transparency log
    may count (cosign's ``--insecure-ignore-tlog``; off unless said)."""

    certificate_identity: str | None = None
    certificate_identity_regexp: str | None = None
    certificate_oidc_issuer: str | None = None
    certificate_oidc_issuer_regexp: str | None = None
    trusted_root: str | None = None
    insecure_ignore_tlog: bool = False


_CONFIG_KEYS = {
    "certificateIdentity": "certificate_identity",
    "certificateIdentityRegexp": "certificate_identity_regexp",
    "certificateOidcIssuer": "certificate_oidc_issuer",
    "certificateOidcIssuerRegexp": "certificate_oidc_issuer_regexp",
    "trustedRoot": "trusted_root",
    "insecureIgnoreTlog": "insecure_ignore_tlog",
}


def keyless_entry_from_config(doc: Mapping[str, Any], *, where: str = "trust.keyless[]") -> KeylessEntry:
    """A ``trust.keyless[]`` entry of ``gate serve``'s config (camelCase flag names)."""
    if not isinstance(doc, Mapping):
        raise InputError(f"{where} must be a mapping")
    unknown = sorted(set(doc) - set(_CONFIG_KEYS))
    if unknown:
        raise InputError(f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(_CONFIG_KEYS)})")
    values: dict[str, Any] = {}
    for key, field_name in _CONFIG_KEYS.items():
        if key not in doc:
            continue
        value = doc[key]
        if field_name == "insecure_ignore_tlog":
            if not isinstance(value, bool):
                raise InputError(f"{where}.{key} must be true or false")
        elif not isinstance(value, str) or not value:
            raise InputError(f"{where}.{key} must be a non-empty string")
        values[field_name] = value
    return KeylessEntry(**values)


def entries_from_flags(
    identities: Sequence[str],
    identity_regexps: Sequence[str],
    issuer: str | None,
    issuer_regexp: str | None,
    trusted_root: str | None,
) -> list[KeylessEntry]:
    """The entries ``gate verify``'s flags describe: every identity (exact or regexp) with the one
    issuer (exact or regexp) under the one trusted root."""
    if not identities and not identity_regexps:
        if issuer or issuer_regexp or trusted_root:
            raise InputError(
                "--certificate-oidc-issuer and --trusted-root need a --certificate-identity or "
                "--certificate-identity-regexp naming who may sign"
            )
        return []
    if (issuer is None) == (issuer_regexp is None):
        raise InputError(
            "keyless trust needs exactly one of --certificate-oidc-issuer or --certificate-oidc-issuer-regexp"
        )

    def make(identity: str | None, identity_regexp: str | None) -> KeylessEntry:
        return KeylessEntry(
            certificate_identity=identity,
            certificate_identity_regexp=identity_regexp,
            certificate_oidc_issuer=issuer,
            certificate_oidc_issuer_regexp=issuer_regexp,
            trusted_root=trusted_root,
        )

    return [make(i, None) for i in identities] + [make(None, r) for r in identity_regexps]


@dataclass(frozen=True)
class KeylessTrust:
    """Loaded keyless trust: per trusted root, the identities it may vouch for."""

    groups: tuple[tuple[KeylessRoot, tuple[IdentityMatcher, ...], bool], ...]

    @property
    def empty(self) -> bool:
        return not self.groups

    def digest_parts(self) -> list[bytes]:
        """What the trust policy digest covers: each root's bytes digest with its identities."""
        parts = []
        for root, matchers, allow_no_tlog in self.groups:
            for m in matchers:
                parts.append(
                    "\0".join(
                        [
                            root.digest,
                            m.identity or "",
                            m.identity_regexp or "",
                            m.issuer or "",
                            m.issuer_regexp or "",
                            "no-tlog" if allow_no_tlog else "tlog",
                        ]
                    ).encode()
                )
        return parts


NO_KEYLESS = KeylessTrust(groups=())


def load_keyless_trust(entries: Sequence[KeylessEntry]) -> KeylessTrust:
    """Load every trusted root now (a bad file is an error at start-up, naming it), once per file."""
    if not entries:
        return NO_KEYLESS
    if len(entries) > MAX_KEYLESS_ENTRIES:
        raise InputError(f"{len(entries)} keyless trust entries, the limit is {MAX_KEYLESS_ENTRIES}")
    from attestation.keyless import IdentityMatcher, load_keyless_root

    roots: dict[tuple[str | None, bool], list[IdentityMatcher]] = {}
    for entry in entries:
        matcher = IdentityMatcher(
            identity=entry.certificate_identity,
            identity_regexp=entry.certificate_identity_regexp,
            issuer=entry.certificate_oidc_issuer,
            issuer_regexp=entry.certificate_oidc_issuer_regexp,
        )
        key = (
            os.path.abspath(entry.trusted_root) if entry.trusted_root else None,
            entry.insecure_ignore_tlog,
        )
        group = roots.setdefault(key, [])
        if matcher not in group:
            group.append(matcher)
    loaded: dict[str | None, KeylessRoot] = {}
    groups = []
    for (path, allow_no_tlog), matchers in roots.items():
        if path not in loaded:
            loaded[path] = load_keyless_root(path)
        groups.append((loaded[path], tuple(matchers), allow_no_tlog))
    return KeylessTrust(groups=tuple(groups))


def verify_keyless(
    envelope: Envelope, material: VerificationMaterial, trust: KeylessTrust
) -> list[KeylessSignature]:
    """The keyless signature over ``envelope`` (its bundle in ``material``) under one of the trusted
    roots, by a trusted identity; :class:`VerificationError` with every root's reason otherwise."""
    from attestation.keyless import verify_keyless_bundle

    if material.bundle is None:
        raise VerificationError(
            f"{envelope.source}: a certificate without a Sigstore bundle cannot be verified keyless "
            "(the transparency log entry travels in the bundle)"
        )
    errors = []
    for root, matchers, allow_no_tlog in trust.groups:
        try:
            return [
                verify_keyless_bundle(
                    material.bundle,
                    envelope,
                    root,
                    matchers,
                    source=envelope.source,
                    allow_no_tlog=allow_no_tlog,
                )
            ]
        except VerificationError as err:
            errors.append(str(err) if len(trust.groups) == 1 else f"{err} (trusted root {root.source})")
    raise VerificationError("; ".join(errors))
