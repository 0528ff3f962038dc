"""Tekton TaskRun/PipelineRun objects as the provenance builders see them.

:func:`to_run` takes an object as :mod:`signer.documents` reads it, converts ``tekton.dev/v1beta1`` to
the ``tekton.dev/v1`` shape (:mod:`signer.tekton_v1beta1`), and checks the types of the fields the
builders read. Parameter and result values are normalised as Tekton's ``ParamValue`` decoder does, so
every format reads one shape.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from attestation.errors import InputError
from signer.golang import is_rfc3339, parse_go_duration
from signer.tekton_v1beta1 import API_V1, API_V1BETA1, convert_v1beta1, copy_json

PIPELINE_TASK_LABEL = "tekton.dev/pipelineTask"
PIPELINE_RUN_LABEL = "tekton.dev/pipelineRun"

ParamValue = str | list[str] | dict[str, str]


@dataclass(frozen=True)
class Result:
    name: str
    type: str  # "string" | "array" | "object", decided by the value as Tekton does
    value: ParamValue

    @classmethod
    def of(cls, raw: Mapping[str, Any]) -> Result:
        """A ``{name, value}`` entry of ``status.results`` or of a step's results; the type is decided by
        the value as Tekton does (values were normalised when the run was loaded)."""
        value = raw.get("value", "")
        return cls(raw["name"], value_type(value), value)

    @property
    def string_value(self) -> str:
        """Go's ``ParamValue.StringVal``: empty for arrays and objects."""
        return self.value if isinstance(self.value, str) else ""


@dataclass(frozen=True)
class Run:
    obj: dict[str, Any]
    kind: Literal["TaskRun", "PipelineRun"]
    source_api_version: str
    source: str

    @property
    def metadata(self) -> dict[str, Any]:
        return self.obj.get("metadata") or {}

    @property
    def name(self) -> str:
        return cast(str, self.metadata.get("name", ""))

    @property
    def namespace(self) -> str:
        return cast(str, self.metadata.get("namespace", ""))

    @property
    def uid(self) -> str:
        return cast(str, self.metadata.get("uid", ""))

    @property
    def labels(self) -> dict[str, str]:
        return self.metadata.get("labels") or {}

    @property
    def annotations(self) -> dict[str, str]:
        return self.metadata.get("annotations") or {}

    @property
    def spec(self) -> dict[str, Any]:
        return self.obj.get("spec") or {}

    @property
    def status(self) -> dict[str, Any]:
        return self.obj.get("status") or {}

    @property
    def start_time(self) -> str | None:
        return self.status.get("startTime")

    @property
    def completion_time(self) -> str | None:
        return self.status.get("completionTime")

    @property
    def results(self) -> list[Result]:
        return [Result.of(r) for r in self.status.get("results") or []]

    @property
    def step_results(self) -> list[Result]:
        """StepAction results (``status.steps[].results``), in step order."""
        return [Result.of(r) for step in self.status.get("steps") or [] for r in step.get("results") or []]

    @property
    def params(self) -> list[dict[str, Any]]:
        return self.spec.get("params") or []

    @property
    def resolved_spec(self) -> dict[str, Any]:
        """``status.taskSpec`` or ``status.pipelineSpec`` (``{}`` when the controller recorded none)."""
        key = "taskSpec" if self.kind == "TaskRun" else "pipelineSpec"
        return self.status.get(key) or {}

    @property
    def param_specs(self) -> list[dict[str, Any]]:
        return self.resolved_spec.get("params") or []

    @property
    def ref_source(self) -> dict[str, Any] | None:
        return (self.status.get("provenance") or {}).get("refSource")

    @property
    def gvk(self) -> str:
        """``tekton.dev/v1/TaskRun``: Chains' buildType for slsa/v1 (v1beta1 input converted first)."""
        return f"{API_V1}/{self.kind}"

    @property
    def display(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


# --------------------------------------------------------------------------------------------- values


def value_type(value: Any) -> str:
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return "string"


def normalize_param_value(value: Any) -> ParamValue:
    """Decode a value the way Tekton's ``ParamValue.UnmarshalJSON`` does.

    Arrays of strings and string maps keep their type; anything else (numbers, booleans, nested
    structures) becomes a string holding its JSON text, and ``null`` the empty string.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return list(value)
    if isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        return dict(value)
    if value is None:
        return ""
    return json.dumps(value, separators=(",", ":"), sort_keys=False, default=str)


# --------------------------------------------------------------------------------------------- validation


class _Checker:
    """Type checks on the fields the builders read, so they can index without defensive code."""

    def __init__(self, source: str, display: str) -> None:
        self.prefix = f"{source}: {display}"

    def fail(self, field: str, want: str) -> None:
        raise InputError(f"{self.prefix}: field {field} must be {want}")

    def mapping(self, parent: dict[str, Any], key: str, field: str) -> dict[str, Any]:
        value = parent.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(field, "an object")
        return cast(dict[str, Any], value)

    def seq(self, parent: dict[str, Any], key: str, field: str) -> list[Any]:
        value = parent.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(field, "a list")
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                self.fail(f"{field}[{i}]", "an object")
        return cast(list[Any], value)

    def string_map(self, parent: dict[str, Any], key: str, field: str) -> None:
        m = self.mapping(parent, key, field)
        for k, v in m.items():
            if not isinstance(k, str) or not isinstance(v, str):
                self.fail(f"{field}.{k}", "a string")

    def opt_str(self, parent: dict[str, Any], key: str, field: str) -> None:
        if parent.get(key) is not None and not isinstance(parent[key], str):
            self.fail(field, "a string")

    def named(self, parent: dict[str, Any], key: str, field: str, value_key: str | None) -> None:
        """A list of ``{name, <value_key>}`` entries; values normalised like Tekton's decoder."""
        for i, item in enumerate(self.seq(parent, key, field)):
            if not isinstance(item.get("name"), str):
                self.fail(f"{field}[{i}].name", "a string")
            if value_key and value_key in item:
                # A ParamSpec default is a pointer in Go: JSON null means "no default", not "".
                if value_key == "default" and item[value_key] is None:
                    del item[value_key]
                else:
                    item[value_key] = normalize_param_value(item[value_key])

    def duration(self, parent: dict[str, Any], key: str, field: str) -> None:
        """A metav1.Duration: Go's time.ParseDuration syntax (Chains cannot decode the run otherwise)."""
        value = parent.get(key)
        if value is not None and parse_go_duration(value) is None:
            self.fail(field, "a Go duration such as 1h0m0s")

    def time(self, parent: dict[str, Any], key: str, field: str) -> None:
        value = parent.get(key)
        if value is None:
            return
        if not isinstance(value, str) or not is_rfc3339(value):
            self.fail(field, "an RFC 3339 time")

    def spec_params(self, spec: dict[str, Any], field: str) -> None:
        self.named(spec, "params", f"{field}.params", "default")

    def task_spec(self, ts: dict[str, Any], field: str) -> None:
        self.spec_params(ts, field)
        for key in ("steps", "sidecars"):
            for i, step in enumerate(self.seq(ts, key, f"{field}.{key}")):
                where = f"{field}.{key}[{i}]"
                self.opt_str(step, "name", f"{where}.name")
                self.opt_str(step, "script", f"{where}.script")
                for k in ("command", "args"):
                    v = step.get(k)
                    if v is not None and not (isinstance(v, list) and all(isinstance(a, str) for a in v)):
                        self.fail(f"{where}.{k}", "a list of strings")

    def pipeline_task(self, t: dict[str, Any], field: str) -> None:
        if not isinstance(t.get("name"), str):
            self.fail(f"{field}.name", "a string")
        ra = t.get("runAfter")
        if ra is not None and not (isinstance(ra, list) and all(isinstance(a, str) for a in ra)):
            self.fail(f"{field}.runAfter", "a list of strings")
        self.named(t, "params", f"{field}.params", "value")
        self.mapping(t, "taskRef", f"{field}.taskRef")
        self.seq(t, "when", f"{field}.when")
        ts = self.mapping(t, "taskSpec", f"{field}.taskSpec")
        self.task_spec(ts, f"{field}.taskSpec")


def _validate(obj: dict[str, Any], kind: str, checker: _Checker) -> None:
    c = checker
    meta = c.mapping(obj, "metadata", "metadata")
    c.opt_str(meta, "name", "metadata.name")
    c.opt_str(meta, "namespace", "metadata.namespace")
    c.opt_str(meta, "uid", "metadata.uid")
    c.string_map(meta, "labels", "metadata.labels")
    c.string_map(meta, "annotations", "metadata.annotations")
    spec = c.mapping(obj, "spec", "spec")
    c.named(spec, "params", "spec.params", "value")
    c.duration(spec, "timeout", "spec.timeout")
    timeouts = c.mapping(spec, "timeouts", "spec.timeouts")
    for key in ("pipeline", "tasks", "finally"):
        c.duration(timeouts, key, f"spec.timeouts.{key}")
    status = c.mapping(obj, "status", "status")
    c.time(status, "startTime", "status.startTime")
    c.time(status, "completionTime", "status.completionTime")
    c.named(status, "results", "status.results", "value")
    c.seq(status, "conditions", "status.conditions")
    prov = c.mapping(status, "provenance", "status.provenance")
    ref = c.mapping(prov, "refSource", "status.provenance.refSource")
    c.opt_str(ref, "uri", "status.provenance.refSource.uri")
    c.opt_str(ref, "entryPoint", "status.provenance.refSource.entryPoint")
    c.string_map(ref, "digest", "status.provenance.refSource.digest")
    if kind == "TaskRun":
        c.task_spec(c.mapping(status, "taskSpec", "status.taskSpec"), "status.taskSpec")
        for key in ("steps", "sidecars"):
            for i, st in enumerate(c.seq(status, key, f"status.{key}")):
                c.opt_str(st, "name", f"status.{key}[{i}].name")
                c.opt_str(st, "imageID", f"status.{key}[{i}].imageID")
                c.named(st, "results", f"status.{key}[{i}].results", "value")
    else:
        ps = c.mapping(status, "pipelineSpec", "status.pipelineSpec")
        c.spec_params(ps, "status.pipelineSpec")
        for key in ("tasks", "finally"):
            for i, t in enumerate(c.seq(ps, key, f"status.pipelineSpec.{key}")):
                c.pipeline_task(t, f"status.pipelineSpec.{key}[{i}]")
        for i, cr in enumerate(c.seq(status, "childReferences", "status.childReferences")):
            c.opt_str(cr, "name", f"status.childReferences[{i}].name")
        trt = c.mapping(spec, "taskRunTemplate", "spec.taskRunTemplate")
        c.opt_str(trt, "serviceAccountName", "spec.taskRunTemplate.serviceAccountName")


# --------------------------------------------------------------------------------------------- runs


def to_run(obj: Mapping[str, Any], *, source: str) -> Run:
    """Validate a TaskRun/PipelineRun object (v1 or v1beta1) and normalise it to the v1 shape."""
    if not isinstance(obj, Mapping):
        raise InputError(f"{source}: expected a TaskRun or PipelineRun object")
    api = obj.get("apiVersion")
    kind = obj.get("kind")
    meta: Mapping[str, Any] = obj["metadata"] if isinstance(obj.get("metadata"), Mapping) else {}
    label = f"{kind or 'object'} {meta.get('name', '<unnamed>')}"
    if kind not in ("TaskRun", "PipelineRun"):
        raise InputError(f"{source}: {label} is not a TaskRun or PipelineRun (kind {kind!r})")
    if api not in (API_V1, API_V1BETA1):
        raise InputError(f"{source}: {label}: apiVersion {api!r} is not {API_V1} or {API_V1BETA1}")
    if not isinstance(meta.get("name"), str) or not meta.get("name"):
        raise InputError(f"{source}: {kind} has no metadata.name")
    normalized = convert_v1beta1(dict(obj)) if api == API_V1BETA1 else copy_json(dict(obj))
    ns = meta.get("namespace")
    display = f"{kind} {ns}/{meta['name']}" if ns else f"{kind} {meta['name']}"
    _validate(normalized, kind, _Checker(source, display))
    return Run(obj=normalized, kind=kind, source_api_version=str(api), source=source)


def require_completed(run: Run) -> None:
    if not run.completion_time:
        raise InputError(f"{run.source}: {run.display} has not completed (no status.completionTime)")


def child_taskruns(pipelinerun: Run, taskruns: Sequence[Run]) -> list[Run]:
    """The PipelineRun's child TaskRuns, in ``status.childReferences`` order (as Chains collects them).

    Without childReferences, the given TaskRuns not labelled for another PipelineRun are used in input order.
    """
    refs = [
        c for c in pipelinerun.status.get("childReferences") or [] if c.get("kind", "TaskRun") == "TaskRun"
    ]
    candidates = [
        t
        for t in taskruns
        if t.kind == "TaskRun"
        and (not pipelinerun.namespace or not t.namespace or t.namespace == pipelinerun.namespace)
    ]
    if not refs:
        own = pipelinerun.name
        return [t for t in candidates if t.labels.get(PIPELINE_RUN_LABEL, own) == own]
    by_name: dict[str, Run] = {}
    for t in candidates:
        by_name.setdefault(t.name, t)
    missing = [r.get("name", "") for r in refs if r.get("name") not in by_name]
    if missing:
        shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
        raise InputError(
            f"{pipelinerun.source}: {pipelinerun.display} is missing child TaskRun(s) {shown} "
            "(pass them with --taskrun or in the same List)"
        )
    return [by_name[r["name"]] for r in refs]


def children_by_pipeline_task(children: Sequence[Run]) -> dict[str, list[Run]]:
    """Children grouped by label ``tekton.dev/pipelineTask`` (input order kept): one pass, so large
    PipelineRuns do not cost tasks x children lookups."""
    out: dict[str, list[Run]] = {}
    for t in children:
        task = t.labels.get(PIPELINE_TASK_LABEL)
        if task is not None:
            out.setdefault(task, []).append(t)
    return out


def executed_taskruns(pipelinerun: Run, children: Sequence[Run]) -> list[Run]:
    """Children that ran, in pipeline order: ``pipelineSpec.tasks`` then ``finally``, each task's
    TaskRuns (several for a matrix) in input order, only those with a completionTime (Chains'
    ``GetExecutedTasks``)."""
    spec = pipelinerun.resolved_spec
    by_task = children_by_pipeline_task(children)
    return [
        tr
        for task in [*(spec.get("tasks") or []), *(spec.get("finally") or [])]
        for tr in by_task.get(task["name"], [])
        if tr.completion_time
    ]


def runs_from_documents(docs: Sequence[dict[str, Any]], *, source: str) -> list[Run]:
    return [to_run(d, source=source) for d in docs]
