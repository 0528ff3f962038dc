"""The document the policies see (DESIGN.md §3, Conforma's shape).

Built only from statements whose signatures verified under the configured trust and whose subject
matches the image digest: nothing unverified can reach a policy through this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from attestation.reference import ImageReference
from gate.policy.model import encode_json
from gate.trust import SignerIdentity


@dataclass(frozen=True)
class VerifiedStatement:
    """A statement as it was signed (the JSON object, untouched) with the identities that signed it."""

    statement: Mapping[str, Any]
    signers: tuple[SignerIdentity, ...]
    source: str = ""
    # The statement as it goes into the policy input's JSON (encode_json), made once where the statement
    # is verified so that a gate remembering it does not encode it again for every evaluation; None when
    # it cannot be encoded (the engine then reports why).
    encoded: bytes | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.signers:
            raise ValueError("a verified statement needs at least one verified signer")

    def with_encoding(self) -> VerifiedStatement:
        try:
            encoded = encode_json(self.statement)
        except (TypeError, ValueError, RecursionError):
            return self
        return VerifiedStatement(self.statement, self.signers, self.source, encoded)


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


def build_policy_input_json(image: ImageReference, statements: Sequence[VerifiedStatement]) -> bytes | None:
    """:func:`build_policy_input` as JSON bytes, from each statement's remembered encoding; None when a
    statement has none (then build the document and let the engine encode it). Encoding a large statement
    again for every evaluation cost as much as the evaluation itself (docs/performance.md)."""
    parts = []
    for s in statements:
        if s.encoded is None:
            return None
        signatures = encode_json([i.to_policy_signature() for i in s.signers])
        parts.append(b'{"statement":' + s.encoded + b',"signatures":' + signatures + b"}")
    head = encode_json({"ref": image.pinned, "digest": image.digest})
    return b'{"image":' + head + b',"attestations":[' + b",".join(parts) + b"]}"
