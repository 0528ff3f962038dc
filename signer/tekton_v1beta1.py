"""``tekton.dev/v1beta1`` TaskRuns and PipelineRuns converted to the ``tekton.dev/v1`` shape the way the
API server's conversion webhook does, because Chains (>= v0.26) only ever sees v1 objects.
"""

from __future__ import annotations

from typing import Any

API_V1 = "tekton.dev/v1"


API_V1BETA1 = "tekton.dev/v1beta1"


def _bundle_ref(ref: dict[str, Any]) -> None:
    """The v1beta1 ``bundle`` field has no v1 counterpart: the TaskRef/PipelineRef conversion of the
    Pipeline release Chains vendors (v1.15) copies name, kind, apiVersion and the resolver fields only,
    so the bundle reference is dropped (older Pipelines rewrote it into a ``bundles`` resolver)."""
    ref.pop("bundle", None)


def _convert_steps(spec: dict[str, Any]) -> None:
    for key in ("steps", "sidecars", "stepTemplate"):
        items = spec.get(key)
        for step in [items] if isinstance(items, dict) else items or []:
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


def _convert_provenance(status: dict[str, Any]) -> None:
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
        _convert_overrides(s)


def _convert_overrides(spec: dict[str, Any]) -> None:
    """stepOverrides/sidecarOverrides -> stepSpecs/sidecarSpecs, their resources -> computeResources
    (a TaskRun's spec and a PipelineRun's taskRunSpecs entries alike)."""
    if "stepOverrides" in spec:
        spec["stepSpecs"] = spec.pop("stepOverrides")
    if "sidecarOverrides" in spec:
        spec["sidecarSpecs"] = spec.pop("sidecarOverrides")
    for key in ("stepSpecs", "sidecarSpecs"):
        for o in spec.get(key) or []:
            if isinstance(o, dict) and "resources" in o:
                o["computeResources"] = o.pop("resources")


def convert_v1beta1(obj: dict[str, Any]) -> dict[str, Any]:
    """Return a v1-shaped deep copy of a v1beta1 TaskRun or PipelineRun."""
    out: dict[str, Any] = copy_json(dict(obj))
    out["apiVersion"] = API_V1
    spec: dict[str, Any] = out["spec"] if isinstance(out.get("spec"), dict) else {}
    status: dict[str, Any] = out["status"] if isinstance(out.get("status"), dict) else {}
    spec.pop("resources", None)
    if out.get("kind") == "TaskRun":
        if isinstance(spec.get("taskRef"), dict):
            _bundle_ref(spec["taskRef"])
        _convert_task_spec(spec.get("taskSpec"))
        _convert_overrides(spec)
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
                    ref = {
                        "apiVersion": API_V1 if kind == "TaskRun" else "tekton.dev/v1beta1",
                        "kind": kind,
                        "name": name,
                        "pipelineTaskName": entry.get("pipelineTaskName", ""),
                    }
                    if entry.get("whenExpressions"):
                        ref["whenExpressions"] = entry["whenExpressions"]
                    if not any(isinstance(c, dict) and c.get("name") == name for c in children):
                        children.append(ref)
        if children:
            status["childReferences"] = children
    _convert_provenance(status)
    return out


def copy_json(value: Any) -> Any:
    # Much cheaper than copy.deepcopy for the plain dict/list/scalar trees YAML and JSON produce.
    if isinstance(value, dict):
        return {k: copy_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) for v in value]
    return value
