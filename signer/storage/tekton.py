"""The ``tekton`` storage backend: the signed provenance as run annotations, encoded as Tekton Chains
does (``chains.tekton.dev/{payload,signature,cert,chain}-<key>``), returned as a map the operator
applies to the run later (server-side apply, field manager of its own)."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from attestation import dsse
from attestation.errors import InputError, LimitExceeded

PREFIX = "chains.tekton.dev/"
# Kubernetes refuses an object whose annotations total more than 256 KiB (keys + values).
MAX_ANNOTATIONS_BYTES = 256 * 1024


@dataclass(frozen=True)
class TektonStored:
    """The run annotations to apply; ``written_to`` the file they were also written to, if any."""

    annotations: Mapping[str, str]
    written_to: str | None = None
    backend: str = "tekton"

    def __str__(self) -> str:
        where = f"written to {self.written_to}" if self.written_to else "to put on the run"
        return f"tekton: {len(self.annotations)} annotations {where}"


def short_key(kind: Literal["TaskRun", "PipelineRun"], uid: str) -> str:
    """Chains' ShortKey of a run artifact: ``taskrun-<uid>`` / ``pipelinerun-<uid>``."""
    if not uid:
        raise InputError(f"the {kind} has no metadata.uid; the tekton storage backend keys annotations by it")
    return f"{kind.lower()}-{uid}"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def tekton_annotations(
    kind: Literal["TaskRun", "PipelineRun"],
    uid: str,
    envelope: dsse.Envelope,
    *,
    certificate_pem: bytes | None = None,
    chain_pem: bytes | None = None,
    transparency: str | None = None,
    existing_size: int = 0,
) -> dict[str, str]:
    """The four annotations for one signed in-toto statement.

    ``payload`` is base64 of the raw statement bytes; ``signature`` is base64 of the whole DSSE
    envelope JSON (for in-toto formats Chains' "signature" is the envelope); ``cert``/``chain`` are
    base64 of PEM and present, possibly empty, even for key signers. ``existing_size`` is what the
    run's annotations already take, so an oversized result is refused here rather than by the API
    server after the signature was made. ``transparency`` (keyless: the log entry) becomes Chains'
    ``chains.tekton.dev/transparency``.
    """
    key = short_key(kind, uid)
    out = {
        f"{PREFIX}payload-{key}": _b64(envelope.payload),
        f"{PREFIX}signature-{key}": _b64(envelope.to_json()),
        f"{PREFIX}cert-{key}": _b64(certificate_pem or b""),
        f"{PREFIX}chain-{key}": _b64(chain_pem or b""),
    }
    if transparency:
        out[ANNOTATION_TRANSPARENCY] = transparency
    total = existing_size + sum(len(k) + len(v) for k, v in out.items())
    if total > MAX_ANNOTATIONS_BYTES:
        raise LimitExceeded(
            f"{kind} {uid}: the provenance annotations would take {total} bytes, more than Kubernetes' "
            f"{MAX_ANNOTATIONS_BYTES}; use the oci or file storage for this run"
        )
    return out


ANNOTATION_SIGNED = f"{PREFIX}signed"
ANNOTATION_TRANSPARENCY = f"{PREFIX}transparency"
ANNOTATION_NOT_VERIFIED = "provgate.dev/not-verified"
MAX_REASON_BYTES = 4096


def failure_annotations(reasons: list[str] | tuple[str, ...]) -> dict[str, str]:
    """The run marked failed, with the reason: ``chains.tekton.dev/signed: failed`` is Chains' own
    "never attest this run" marker; the reasons (bounded) say why, for the person who looks."""
    text = "; ".join(reasons) or "not verified"
    if len(text.encode()) > MAX_REASON_BYTES:
        text = text.encode()[: MAX_REASON_BYTES - 3].decode("utf-8", "ignore") + "..."
    return {ANNOTATION_SIGNED: "failed", ANNOTATION_NOT_VERIFIED: text}
