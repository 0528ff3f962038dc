"""Signing backends: each turns an in-toto statement into a :class:`signer.storage.SignedProvenance`.

A backend is configured once (the operator: at start, from its signing secrets) and asked with
``ready()`` for what signs this run, before any provenance is built: the key backend has its key loaded
already, the SPIRE backend fetches the SVID the agent issues now (SVIDs rotate at half-life, so one kept
from an earlier run would soon be expired). A signer that cannot sign thus fails a run before any work.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from signer.storage import SignedProvenance

Sign = Callable[[Mapping[str, Any]], "SignedProvenance"]


class SigningBackend(Protocol):
    """What :func:`signer.attest.attest` needs of a signing backend."""

    @property
    def label(self) -> str:
        """Which key or identity signs, for logs (never secret material)."""
        ...

    def ready(self) -> Sign:
        """What signs this run; raises (one line) when nothing can sign now."""
        ...
