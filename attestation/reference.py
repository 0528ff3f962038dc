"""Container image references, parsed and normalised the way go-containerregistry's ``name`` package
does it, because Tekton Chains names subjects with ``Repository.Name()`` and the gate must agree with it.

``busybox`` -> ``index.docker.io/library/busybox``; ``docker.io/x/y`` -> ``index.docker.io/x/y``; a
registry is the first path component when it contains ``.`` or ``:`` or is ``localhost``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from attestation.errors import InputError

DEFAULT_REGISTRY = "index.docker.io"
_DOCKER_HUB_ALIASES = {"docker.io", "index.docker.io", "registry-1.docker.io"}

_REPO_COMPONENT = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
# ggcr accepts exactly sha256 with 64 lowercase hex digits in a digest reference.
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_REGISTRY = re.compile(r"[A-Za-z0-9.-]+(?::[0-9]+)?|\[[0-9A-Fa-f:.]+\](?::[0-9]+)?")
MAX_REFERENCE_LENGTH = 4096


class InvalidReference(InputError, ValueError):
    """A string is not a valid image reference."""


@dataclass(frozen=True)
class ImageReference:
    registry: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """``<registry>/<repository>``: ggcr's ``Repository.Name()``."""
        return f"{self.registry}/{self.repository}"

    @property
    def digest_hex(self) -> str | None:
        return self.digest.split(":", 1)[1] if self.digest else None

    def with_digest(self, digest: str) -> ImageReference:
        if not _DIGEST.fullmatch(digest):
            raise InvalidReference(f"invalid digest {digest!r}: want sha256:<64 lowercase hex>")
        return replace(self, digest=digest)

    def __str__(self) -> str:
        out = self.name
        if self.tag:
            out += f":{self.tag}"
        if self.digest:
            out += f"@{self.digest}"
        return out

    @property
    def pinned(self) -> str:
        """``<name>@<digest>``, the only form the gate evaluates."""
        if not self.digest:
            raise InvalidReference(f"image {self} has no digest")
        return f"{self.name}@{self.digest}"


def _split_registry(remainder: str) -> tuple[str, str]:
    first, sep, rest = remainder.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        registry = DEFAULT_REGISTRY if first in _DOCKER_HUB_ALIASES else first
        return registry, rest
    return DEFAULT_REGISTRY, remainder


def parse(ref: str, *, require_digest: bool = False) -> ImageReference:
    """Parse ``[registry/]repo[:tag][@sha256:hex]``. Raises :class:`InvalidReference`."""
    if not isinstance(ref, str) or not ref:
        raise InvalidReference("empty image reference")
    if len(ref) > MAX_REFERENCE_LENGTH:
        raise InvalidReference(f"image reference longer than {MAX_REFERENCE_LENGTH} characters")
    if ref != ref.strip():
        raise InvalidReference(f"image reference {ref!r} has surrounding whitespace")
    base, at, digest = ref.partition("@")
    if at and not _DIGEST.fullmatch(digest):
        raise InvalidReference(f"image reference {ref!r}: digest must be sha256:<64 lowercase hex>")
    registry, path = _split_registry(base)
    tag = None
    # A tag is a ':' after the last '/', so registry ports are not mistaken for tags.
    last_slash = path.rfind("/")
    colon = path.rfind(":")
    if colon > last_slash:
        path, tag = path[:colon], path[colon + 1 :]
        if not _TAG.fullmatch(tag):
            raise InvalidReference(f"image reference {ref!r}: invalid tag {tag!r}")
    if not _REGISTRY.fullmatch(registry):
        raise InvalidReference(f"image reference {ref!r}: invalid registry {registry!r}")
    if not path or not all(_REPO_COMPONENT.fullmatch(c) for c in path.split("/")):
        raise InvalidReference(
            f"image reference {ref!r}: repository must be lowercase letters, digits and separators"
        )
    if registry == DEFAULT_REGISTRY and "/" not in path:
        path = f"library/{path}"
    if len(path) > 255:
        raise InvalidReference(f"image reference {ref!r}: repository longer than 255 characters")
    if require_digest and not at:
        raise InvalidReference(
            f"image reference {ref!r} has no digest (@sha256:...); tags are never evaluated"
        )
    return ImageReference(registry=registry, repository=path, tag=tag, digest=digest or None)
