"""Tekton Chains' bookkeeping on a run, as pure functions of the run object.

* ``chains.tekton.dev/signed``: ``"true"`` once every configured backend stored the attestation,
  ``"failed"`` when the retries are exhausted or the failure is permanent; either value means the run is
  never looked at again.
* ``chains.tekton.dev/retries``: ``"0"`` on the first failure, then ``"1"``, ``"2"``, ``"3"``; a failure
  when it is already 3 marks the run failed (at most five attempts), as Chains counts.
* Finalizers ``chains.tekton.dev/taskrun`` / ``chains.tekton.dev/pipelinerun`` keep a run from being
  deleted before it is attested; provgate removes its finalizer once the run is marked.
* Annotations are written with server-side apply under the operator's own field manager, carrying every
  ``chains.tekton.dev/*`` annotation the run has (as Chains does, so none is dropped by the apply).

A run can opt out with the label or annotation ``provgate.dev/skip: "true"`` (a backlog of old runs
one does not want attested).
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping
from typing import Any

PREFIX = "chains.tekton.dev/"
SIGNED = f"{PREFIX}signed"
RETRIES = f"{PREFIX}retries"
MAX_RETRIES = 3
FINALIZERS = {"TaskRun": f"{PREFIX}taskrun", "PipelineRun": f"{PREFIX}pipelinerun"}
LEGACY_FINALIZER = "chains.tekton.dev"
SKIP = "provgate.dev/skip"
FAILURE = "provgate.dev/failure"
NOT_VERIFIED = "provgate.dev/not-verified"
FIELD_MANAGER = "provgate-signer"
# kopf's handler progress while a run is retried; never part of the run's provenance (it changes between
# attempts, so an attestation stored by an attempt that died would not be recognised by the next one).
OPERATOR_PREFIX = "signer.provgate.dev/"
MAX_REASON_CHARS = 1024
TEKTON_MANAGED_BY = "tekton.dev/pipeline"


def annotations_of(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("annotations") or {})


def labels(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def is_done(obj: Mapping[str, Any]) -> bool:
    """Succeeded or failed, as Tekton's ``IsDone()``: the Succeeded condition is True or False."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == "Succeeded":
            return cond.get("status") in ("True", "False")
    return False


def reconciled(obj: Mapping[str, Any]) -> bool:
    """Chains' ``Reconciled``: the run is marked signed or failed and is never attested again."""
    return annotations_of(obj).get(SIGNED) in ("true", "failed")


def opted_out(obj: Mapping[str, Any]) -> bool:
    return labels(obj).get(SKIP) == "true" or annotations_of(obj).get(SKIP) == "true"


def managed(obj: Mapping[str, Any], extra: frozenset[str] = frozenset()) -> bool:
    """Chains' ``filter.managed-by``: runs managed by Tekton (no ``spec.managedBy``, or Tekton's) and the
    values configured."""
    value = (obj.get("spec") or {}).get("managedBy")
    return value in (None, "", TEKTON_MANAGED_BY) or value in extra


def retries(obj: Mapping[str, Any]) -> int | None:
    """The retry count Chains recorded (None: none yet; -1: unreadable, which Chains treats as used up)."""
    raw = annotations_of(obj).get(RETRIES)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        return -1


def retry_available(obj: Mapping[str, Any]) -> bool:
    count = retries(obj)
    return count is None or 0 <= count < MAX_RETRIES


def next_retry(obj: Mapping[str, Any]) -> str:
    """The value of ``chains.tekton.dev/retries`` after one more failure."""
    count = retries(obj)
    return "0" if count is None else str(count + 1)


def retry_delay(obj: Mapping[str, Any], base: float) -> float:
    """Seconds before the next attempt: ``base`` doubled per retry already made."""
    count = retries(obj)
    exponent = 0 if count is None else max(count, 0) + 1
    return float(base * 2**exponent)


def finalizer(kind: str) -> str:
    return FINALIZERS[kind]


def has_finalizer(obj: Mapping[str, Any], kind: str) -> bool:
    return finalizer(kind) in ((obj.get("metadata") or {}).get("finalizers") or [])


def deleting(obj: Mapping[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def completion_time(obj: Mapping[str, Any]) -> dt.datetime | None:
    raw = (obj.get("status") or {}).get("completionTime")
    if not isinstance(raw, str):
        return None
    try:
        return dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None


def for_provenance(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The run as its provenance describes it: without the operator's own bookkeeping annotations, and
    without server-side bookkeeping (managed fields), which differ between two reads of one run."""
    out = copy.deepcopy(dict(obj))
    meta = out.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
        notes = meta.get("annotations")
        if isinstance(notes, dict):
            meta["annotations"] = {k: v for k, v in notes.items() if not k.startswith(OPERATOR_PREFIX)}
    return out


def bounded(reason: str) -> str:
    text = " ".join(reason.split())
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 3] + "..."


def apply_body(
    obj: Mapping[str, Any],
    new: Mapping[str, str],
    *,
    keep_finalizer: bool,
) -> dict[str, Any]:
    """The server-side apply body that sets ``new`` on the run and keeps or releases its finalizer.

    Carries the run's current ``chains.tekton.dev/*`` and provgate annotations, so an apply never drops
    one that an earlier apply of this field manager set (SSA removes what a manager no longer applies).
    """
    kind = str(obj.get("kind"))
    meta = obj.get("metadata") or {}
    current = {
        k: v for k, v in annotations_of(obj).items() if k.startswith(PREFIX) or k in (FAILURE, NOT_VERIFIED)
    }
    body: dict[str, Any] = {
        "apiVersion": obj.get("apiVersion"),
        "kind": kind,
        "metadata": {
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "annotations": {**current, **new},
        },
    }
    if keep_finalizer:
        body["metadata"]["finalizers"] = [finalizer(kind)]
    return body


def signed(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {SIGNED: "true", **(extra or {})}


def failed(reason: str, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    return {**(extra or {}), SIGNED: "failed", FAILURE: bounded(reason)}
