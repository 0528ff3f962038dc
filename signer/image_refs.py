"""Digests and image references read the way the Go libraries Chains uses read them: go-digest (with
Chains' sha1 extension) for artifact digests, go-containerregistry's ``name`` package for images.

Deliberately not :mod:`attestation.reference`, the gate's strict parser: a subject must be named exactly
as Chains would have named it, leniencies included.
"""

from __future__ import annotations

import re

# go-digest validates these (hex length = 2 x hash size, lowercase); Chains adds sha1 by regexp.
_GO_DIGEST_HEX = {"sha256": 64, "sha384": 96, "sha512": 128}
SHA1_HEX = re.compile(r"[a-f0-9]{40}")
_LOWER_HEX = re.compile(r"[a-f0-9]+")
_SHA256_HEX = re.compile(r"[a-f0-9]{64}")
_MAX_SHOWN = 120


def show(value: object) -> str:
    """A value quoted for a one-line message, cut short when long (it comes from the run)."""
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "...'"


def parse_digest(value: str) -> tuple[str, str]:
    """Chains' ``ParseDigest``: ``<alg>:<hex>`` with exactly one ``:``; alg lower-cased and trimmed,
    hex trimmed; sha256/384/512 checked as go-digest does, sha1 as 40 lowercase hex; others rejected."""
    if not isinstance(value, str):
        raise ValueError(f"digest {show(value)} is not a string")
    parts = value.split(":")
    if len(parts) != 2:
        raise ValueError(f"digest {show(value)} is not in the format <algorithm>:<hex>")
    alg = parts[0].strip().lower()
    hexpart = parts[1].strip()
    if alg in _GO_DIGEST_HEX:
        if len(hexpart) != _GO_DIGEST_HEX[alg]:
            raise ValueError(f"digest {show(value)}: {alg} needs {_GO_DIGEST_HEX[alg]} hex characters")
        if not _LOWER_HEX.fullmatch(hexpart):
            raise ValueError(f"digest {show(value)}: {alg} must be lowercase hex")
    elif alg == "sha1":
        if not SHA1_HEX.fullmatch(hexpart):
            raise ValueError(f"digest {show(value)}: sha1 must be 40 lowercase hex characters")
    else:
        raise ValueError(f"digest {show(value)}: unsupported algorithm {alg!r}")
    return alg, hexpart


_GGCR_REPOSITORY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-./")
_GGCR_TAG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_-.ABCDEFGHIJKLMNOPQRSTUVWXYZ")
# Characters Go's url.Parse accepts in a host (RFC 3986 authority without userinfo).
_AUTHORITY = re.compile(r"(\[[0-9A-Fa-f:.]*\]|[A-Za-z0-9\-._~!$&'()*+,;=]*)(:[0-9]*)?")
_DOCKER_HUB = "index.docker.io"


def _ggcr_repository(name: str) -> str | None:
    """ggcr ``name.NewRepository(name).Name()`` (weak validation), or None where it errs.

    Unlike a reference grammar, ggcr only checks the repository's characters and its length (2..255,
    before ``library/`` is added), so ``gcr.io/a`` is rejected and ``gcr.io/a__b`` accepted.
    """
    if not name:
        return None
    registry, repo = "", name
    first, sep, rest = name.partition("/")
    if sep and (first == "localhost" or "." in first or ":" in first):
        registry, repo = first, rest
    if not 2 <= len(repo) <= 255 or not set(repo) <= _GGCR_REPOSITORY_CHARS:
        return None
    if not _AUTHORITY.fullmatch(registry):
        return None
    if registry in ("", "docker.io"):
        registry = _DOCKER_HUB
    if "/" not in repo and registry == _DOCKER_HUB:
        repo = "library/" + repo
    return f"{registry}/{repo}"


def _ggcr_tagged_repository(name: str) -> str | None:
    """The repository of ggcr ``name.NewTag(name)``, or None where it errs."""
    base, tag = name, ""
    parts = name.split(":")
    # A last ':' part without '/' is a tag (not a registry port).
    if len(parts) > 1 and "/" not in parts[-1]:
        base, tag = ":".join(parts[:-1]), parts[-1]
        if not tag:
            return None
    if tag and (len(tag) > 128 or not set(tag) <= _GGCR_TAG_CHARS):
        return None
    return _ggcr_repository(base)


def digest_reference(ref: str) -> tuple[str, str] | None:
    """ggcr ``name.NewDigest(ref)`` as Chains calls it for type hints: exactly one ``@``, a
    ``sha256:`` digest of 64 lowercase hex; a valid tag is dropped; the subject name is
    ``Repository.Name()`` (``busybox`` -> ``index.docker.io/library/busybox``)."""
    parts = ref.split("@")
    if len(parts) != 2:
        return None
    base, digest = parts
    if not digest.startswith("sha256:") or not _SHA256_HEX.fullmatch(digest[7:]):
        return None
    tagged = _ggcr_tagged_repository(base)
    name = _ggcr_repository(tagged if tagged is not None else base)
    return (name, digest) if name is not None else None
