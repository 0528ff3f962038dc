"""The document the policies see (DESIGN.md §3, Conforma's shape).

Built only from statements whose signatures verified under the configured trust and whose subject
matches the image digest: nothing unverified can reach a policy through this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from attestation.reference import ImageReference
from gate.trust import SignerIdentity


@dataclass(frozen=True)
class VerifiedStatement:
    """A statement as it was signed (the JSON object, untouched) with the identities that signed it."""

    statement: Mapping[str, Any]
    signers: tuple[SignerIdentity, ...]
    source: str = ""

    def __post_init__(self) -> None:
        if not self.signers:
            raise ValueError("a verified statement needs at least one verified signer")


def build_policy_input(image: ImageReference, statements: Sequence[VerifiedStatement]) -> dict[str, Any]:
    """``{"image": {"ref", "digest"}, "attestations": [{"statement", "signatures"}]}``.

    ``image`` must be pinned: the gate evaluates digests, never tags.
    """
    return {
        "image": {"ref": image.pinned, "digest": image.digest},
        "attestations": [
            {"statement": s.statement, "signatures": [i.to_policy_signature() for i in s.signers]}
            for s in statements
        ],
    }
