"""Tekton TaskRun/PipelineRun objects as the provenance builders see them.

Input is what ``kubectl get -o yaml|json`` prints: a single object, several YAML documents or a ``List``.
``tekton.dev/v1beta1`` objects are converted to the ``tekton.dev/v1`` shape the way the API server's
conversion webhook does, because Chains (>= v0.26) only ever sees v1 objects. Parameter and result
values are normalised as Tekton's ``ParamValue`` decoder does, so every format reads one shape.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from attestation.errors import InputError, LimitExceeded
from signer.golang import is_rfc3339, parse_go_duration

MAX_FILE_BYTES = 32 * 1024 * 1024
MAX_NODES = 2_000_000
MAX_DEPTH = 64
MAX_DOCUMENTS = 10_000

API_V1 = "tekton.dev/v1"
API_V1BETA1 = "tekton.dev/v1beta1"
PIPELINE_TASK_LABEL = "tekton.dev/pipelineTask"
PIPELINE_RUN_LABEL = "tekton.dev/pipelineRun"

ParamValue = str | list[str] | dict[str, str]


@dataclass(frozen=True)
class Result:
    name: str
    type: str  # "string" | "array" | "object", decided by the value as Tekton does
    value: ParamValue

    @property
    def string_value(self) -> str:
        """Go's ``ParamValue.StringVal``: empty for arrays and objects."""
        return self.value if isinstance(self.value, str) else ""


@dataclass(frozen=True)
class Run:
    obj: dict
    kind: Literal["TaskRun", "PipelineRun"]
    source_api_version: str
    source: str

    @property
    def metadata(self) -> dict:
        return self.obj.get("metadata") or {}

    @property
    def name(self) -> str:
        return self.metadata.get("name", "")

    @property
    def namespace(self) -> str:
        return self.metadata.get("namespace", "")

    @property
    def uid(self) -> str:
        return self.metadata.get("uid", "")

    @property
    def labels(self) -> dict[str, str]:
        return self.metadata.get("labels") or {}

    @property
    def annotations(self) -> dict[str, str]:
        return self.metadata.get("annotations") or {}

    @property
    def spec(self) -> dict:
        return self.obj.get("spec") or {}

    @property
    def status(self) -> dict:
        return self.obj.get("status") or {}

    @property
    def start_time(self) -> str | None:
        return self.status.get("startTime")

    @property
    def completion_time(self) -> str | None:
        return self.status.get("completionTime")

    @property
    def results(self) -> list[Result]:
        return [Result(r["name"], value_type(r.get("value", "")), r.get("value", "")) for r in
                self.status.get("results") or []]

    @property
    def step_results(self) -> list[Result]:
        """StepAction results (``status.steps[].results``), in step order."""
        return [Result(r["name"], value_type(r.get("value", "")), r.get("value", ""))
                for step in self.status.get("steps") or [] for r in step.get("results") or []]

    @property
    def params(self) -> list[dict]:
        return self.spec.get("params") or []

    @property
    def resolved_spec(self) -> dict:
        """``status.taskSpec`` or ``status.pipelineSpec`` (``{}`` when the controller recorded none)."""
        key = "taskSpec" if self.kind == "TaskRun" else "pipelineSpec"
        return self.status.get(key) or {}

    @property
    def param_specs(self) -> list[dict]:
        return self.resolved_spec.get("params") or []

    @property
    def ref_source(self) -> dict | None:
        return (self.status.get("provenance") or {}).get("refSource")

    @property
    def gvk(self) -> str:
        """``tekton.dev/v1/TaskRun``: Chains' buildType for slsa/v1 (v1beta1 input converted first)."""
        return f"{API_V1}/{self.kind}"

    @property
    def display(self) -> str:
        return f"{self.kind} {self.namespace}/{self.name}" if self.namespace else f"{self.kind} {self.name}"


# --------------------------------------------------------------------------------------------- loading

def _check_shape(doc: Any, source: str) -> None:
    """Bound nesting depth and node count; YAML aliases can make a small file expand enormously."""
    stack: list[tuple[Any, int]] = [(doc, 0)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise LimitExceeded(f"{source}: more than {MAX_NODES} values (YAML aliases?)")
        if depth > MAX_DEPTH:
            raise LimitExceeded(f"{source}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def parse_documents(text: str, *, source: str) -> list[dict]:
    """The objects in a YAML/JSON text: one object, multi-document YAML, or ``kind: List`` items."""
    stripped = text.lstrip()
    try:
        if stripped[:1] in ("{", "["):
            docs = [json.loads(text)]
        else:
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            docs = list(yaml.load_all(text, Loader=loader))
    except (ValueError, yaml.YAMLError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"{source}: not valid YAML or JSON: {first}") from None
    out: list[dict] = []
    for doc in docs:
        if doc is None:
            continue
        _check_shape(doc, source)
        if isinstance(doc, list):
            items: list = doc
        elif isinstance(doc, dict) and str(doc.get("kind", "")).endswith("List") and "items" in doc:
            items = doc.get("items") or []
            if not isinstance(items, list):
                raise InputError(f"{source}: {doc.get('kind')}.items is not a list")
        else:
            items = [doc]
        for item in items:
            if not isinstance(item, dict):
                raise InputError(f"{source}: expected Kubernetes objects, found a {type(item).__name__}")
            out.append(item)
        if len(out) > MAX_DOCUMENTS:
            raise LimitExceeded(f"{source}: more than {MAX_DOCUMENTS} objects")
    if not out:
        raise InputError(f"{source}: no objects found")
    return out


def load_documents(path: str | Path) -> list[dict]:
    """Read a YAML or JSON file of Kubernetes objects (bounded in size, depth and count)."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise InputError(f"{p}: cannot read: {err.strerror or err}") from None
    if len(data) > MAX_FILE_BYTES:
        raise LimitExceeded(f"{p}: larger than {MAX_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{p}: not UTF-8 text") from None
    return parse_documents(text, source=str(p))


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

    def mapping(self, parent: dict, key: str, field: str) -> dict:
        value = parent.get(key)
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.fail(field, "an object")
        return value

    def seq(self, parent: dict, key: str, field: str) -> list:
        value = parent.get(key)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(field, "a list")
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                self.fail(f"{field}[{i}]", "an object")
        return value

    def string_map(self, parent: dict, key: str, field: str) -> None:
        m = self.mapping(parent, key, field)
        for k, v in m.items():
            if not isinstance(k, str) or not isinstance(v, str):
                self.fail(f"{field}.{k}", "a string")

    def opt_str(self, parent: dict, key: str, field: str) -> None:
        if parent.get(key) is not None and not isinstance(parent[key], str):
            self.fail(field, "a string")

    def named(self, parent: dict, key: str, field: str, value_key: str | None) -> None:
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

    def duration(self, parent: dict, key: str, field: str) -> None:
        """A metav1.Duration: Go's time.ParseDuration syntax (Chains cannot decode the run otherwise)."""
        value = parent.get(key)
        if value is not None and parse_go_duration(value) is None:
            self.fail(field, "a Go duration such as 1h0m0s")

    def time(self, parent: dict, key: str, field: str) -> None:
        value = parent.get(key)
        if value is None:
            return
        if not isinstance(value, str) or not is_rfc3339(value):
            self.fail(field, "an RFC 3339 time")

    def spec_params(self, spec: dict, field: str) -> None:
        self.named(spec, "params", f"{field}.params", "default")

    def task_spec(self, ts: dict, field: str) -> None:
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

    def pipeline_task(self, t: dict, field: str) -> None:
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


def _validate(obj: dict, kind: str, checker: _Checker) -> None:
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


# --------------------------------------------------------------------------------------------- v1beta1 -> v1

def _bundle_ref(ref: dict) -> None:
    """The v1beta1 ``bundle`` field has no v1 counterpart: the TaskRef/PipelineRef conversion of the
    Pipeline release Chains vendors (v1.15) copies name, kind, apiVersion and the resolver fields only,
    so the bundle reference is dropped (older Pipelines rewrote it into a ``bundles`` resolver)."""
    ref.pop("bundle", None)


def _convert_steps(spec: dict) -> None:
    for key in ("steps", "sidecars", "stepTemplate"):
        items = spec.get(key)
        for step in ([items] if isinstance(items, dict) else items or []):
            if isinstance(step, dict) and "resources" in step:
                step["computeResources"] = step.pop("resources")


def _convert_task_spec(ts: Any) -> None:
    if not isinstance(ts, dict):
        return
    _convert_steps(ts)
    ts.pop("resources", None)  # PipelineResources do not exist in v1


def _convert_pipeline_spec(ps: Any) -> None:
    if not isinstance(ps, dict):
        return
    ps.pop("resources", None)
    for key in ("tasks", "finally"):
        for t in ps.get(key) or []:
            if not isinstance(t, dict):
                continue
            t.pop("resources", None)
            if isinstance(t.get("taskRef"), dict):
                _bundle_ref(t["taskRef"])
            _convert_task_spec(t.get("taskSpec"))


def _convert_provenance(status: dict) -> None:
    # Provenance.convertTo copies refSource and featureFlags only: the deprecated configSource does not
    # exist in v1, so Chains (which reads v1 objects) never sees it.
    prov = status.get("provenance")
    if isinstance(prov, dict):
        prov.pop("configSource", None)


def _convert_run_specs(items: Any) -> None:
    for s in items or []:
        if not isinstance(s, dict):
            continue
        if "taskServiceAccountName" in s:
            s["serviceAccountName"] = s.pop("taskServiceAccountName")
        if "taskPodTemplate" in s:
            s["podTemplate"] = s.pop("taskPodTemplate")
        if "stepOverrides" in s:
            s["stepSpecs"] = s.pop("stepOverrides")
        if "sidecarOverrides" in s:
            s["sidecarSpecs"] = s.pop("sidecarOverrides")
        for key in ("stepSpecs", "sidecarSpecs"):
            for o in s.get(key) or []:
                if isinstance(o, dict) and "resources" in o:
                    o["computeResources"] = o.pop("resources")


def convert_v1beta1(obj: dict) -> dict:
    """Return a v1-shaped deep copy of a v1beta1 TaskRun or PipelineRun."""
    out = _copy_json(dict(obj))
    out["apiVersion"] = API_V1
    spec = out.get("spec") if isinstance(out.get("spec"), dict) else {}
    status = out.get("status") if isinstance(out.get("status"), dict) else {}
    spec.pop("resources", None)
    if out.get("kind") == "TaskRun":
        if isinstance(spec.get("taskRef"), dict):
            _bundle_ref(spec["taskRef"])
        _convert_task_spec(spec.get("taskSpec"))
        if "stepOverrides" in spec:
            spec["stepSpecs"] = spec.pop("stepOverrides")
        if "sidecarOverrides" in spec:
            spec["sidecarSpecs"] = spec.pop("sidecarOverrides")
        for key in ("stepSpecs", "sidecarSpecs"):
            for o in spec.get(key) or []:
                if isinstance(o, dict) and "resources" in o:
                    o["computeResources"] = o.pop("resources")
        if "taskResults" in status:
            status["results"] = status.pop("taskResults")
        # StepState.convertTo: v1's terminationReason is the terminated container's reason.
        for step in status.get("steps") or []:
            if isinstance(step, dict):
                terminated = step.get("terminated")
                step.pop("terminationReason", None)
                if isinstance(terminated, dict) and terminated.get("reason"):
                    step["terminationReason"] = terminated["reason"]
        _convert_task_spec(status.get("taskSpec"))
        status.pop("cloudEvents", None)
    else:
        if isinstance(spec.get("pipelineRef"), dict):
            _bundle_ref(spec["pipelineRef"])
        _convert_pipeline_spec(spec.get("pipelineSpec"))
        # PipelineRunSpec.ConvertTo: taskRunTemplate is built from the v1beta1 fields (v1beta1 has no
        # taskRunTemplate), and a v1beta1 timeout replaces the whole timeouts block.
        template = {}
        spec.pop("taskRunTemplate", None)
        if "serviceAccountName" in spec:
            template["serviceAccountName"] = spec.pop("serviceAccountName")
        if "podTemplate" in spec:
            template["podTemplate"] = spec.pop("podTemplate")
        if template:
            spec["taskRunTemplate"] = template
        timeout = spec.pop("timeout", None)
        if timeout is not None:
            spec["timeouts"] = {"pipeline": timeout}
        _convert_run_specs(spec.get("taskRunSpecs"))
        if "pipelineResults" in status:
            status["results"] = status.pop("pipelineResults")
        _convert_pipeline_spec(status.get("pipelineSpec"))
        children = list(status.get("childReferences") or [])
        # The long-removed embedded status maps name the children; the API server's conversion turned
        # them into childReferences. Sort by name: a map has no order.
        for field, kind in (("taskRuns", "TaskRun"), ("runs", "CustomRun")):
            embedded = status.pop(field, None)
            if isinstance(embedded, dict):
                for name in sorted(embedded):
                    entry = embedded[name] if isinstance(embedded[name], dict) else {}
                    ref = {"apiVersion": API_V1 if kind == "TaskRun" else "tekton.dev/v1beta1",
                           "kind": kind, "name": name,
                           "pipelineTaskName": entry.get("pipelineTaskName", "")}
                    if entry.get("whenExpressions"):
                        ref["whenExpressions"] = entry["whenExpressions"]
                    if not any(isinstance(c, dict) and c.get("name") == name for c in children):
                        children.append(ref)
        if children:
            status["childReferences"] = children
    _convert_provenance(status)
    return out


# --------------------------------------------------------------------------------------------- runs

def to_run(obj: Mapping, *, source: str) -> Run:
    """Validate a TaskRun/PipelineRun object (v1 or v1beta1) and normalise it to the v1 shape."""
    if not isinstance(obj, Mapping):
        raise InputError(f"{source}: expected a TaskRun or PipelineRun object")
    api = obj.get("apiVersion")
    kind = obj.get("kind")
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), Mapping) else {}
    label = f"{kind or 'object'} {meta.get('name', '<unnamed>')}"
    if kind not in ("TaskRun", "PipelineRun"):
        raise InputError(f"{source}: {label} is not a TaskRun or PipelineRun (kind {kind!r})")
    if api not in (API_V1, API_V1BETA1):
        raise InputError(f"{source}: {label}: apiVersion {api!r} is not {API_V1} or {API_V1BETA1}")
    if not isinstance(meta.get("name"), str) or not meta.get("name"):
        raise InputError(f"{source}: {kind} has no metadata.name")
    normalized = convert_v1beta1(dict(obj)) if api == API_V1BETA1 else _copy_json(dict(obj))
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
    refs = [c for c in pipelinerun.status.get("childReferences") or []
            if c.get("kind", "TaskRun") == "TaskRun"]
    candidates = [t for t in taskruns if t.kind == "TaskRun"
                  and (not pipelinerun.namespace or not t.namespace or t.namespace == pipelinerun.namespace)]
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


def taskruns_for_pipeline_task(children: Sequence[Run], pipeline_task: str) -> list[Run]:
    return [t for t in children if t.labels.get(PIPELINE_TASK_LABEL) == pipeline_task]


def children_by_pipeline_task(children: Sequence[Run]) -> dict[str, list[Run]]:
    """Children grouped by label ``tekton.dev/pipelineTask`` (input order kept): one pass, so large
    PipelineRuns do not cost tasks x children lookups."""
    out: dict[str, list[Run]] = {}
    for t in children:
        task = t.labels.get(PIPELINE_TASK_LABEL)
        if task is not None:
            out.setdefault(task, []).append(t)
    return out


def _copy_json(value: Any) -> Any:
    # Much cheaper than copy.deepcopy for the plain dict/list/scalar trees YAML and JSON produce.
    if isinstance(value, dict):
        return {k: _copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy_json(v) for v in value]
    return value


def runs_from_documents(docs: Sequence[dict], *, source: str) -> list[Run]:
    return [to_run(d, source=source) for d in docs]
