"""Format ``slsa/v1`` (alias ``in-toto``): an in-toto v0.1 Statement with a SLSA v0.2 predicate,
as Tekton Chains' ``formats/slsa/v1`` writes it for TaskRuns and PipelineRuns (TEP-0084)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from attestation import intoto
from signer.golang import ZERO_TIME, rfc3339
from signer.provenance import Options, gojson
from signer.provenance.common import (
    condition_status,
    invocation,
    ref_source_artifact,
    reproducible,
    step_image_materials,
)
from signer.result_hints import (
    Artifact,
    ArtifactList,
    append_materials,
    artifact_inputs,
    git_material,
    subjects_v1,
)
from signer.run import Run, children_by_pipeline_task, executed_taskruns

STATEMENT_TYPE = intoto.STATEMENT_V01
PREDICATE_TYPE = "https://slsa.dev/provenance/v0.2"


def build(run: Run, children: Sequence[Run], options: Options, warnings: list[str]) -> dict[str, Any]:
    if options.build_type is not None:
        warnings.append("--build-type applies to the slsa/v2alpha* formats; slsa/v1 records the run's kind")
    subjects = subjects_v1(run, children, deep_inspection=options.deep_inspection, warnings=warnings)
    if run.kind == "TaskRun":
        materials = task_materials(run, warnings)
        build_config: dict[str, Any] = {"steps": taskrun_steps(run)}
    else:
        materials = pipeline_materials(run, children, options.deep_inspection, warnings)
        build_config = {"tasks": pipeline_tasks(run, children)}
    predicate: dict[str, Any] = {
        "builder": {"id": options.builder_id},
        "buildType": run.gvk,
        "invocation": invocation(run),
        "buildConfig": build_config,
        "metadata": metadata(run),
    }
    if materials:
        predicate["materials"] = [_descriptor("uri", m) for m in materials]
    statement: dict[str, Any] = {"_type": STATEMENT_TYPE}
    if subjects:
        statement["subject"] = [_descriptor("name", s) for s in subjects]
    statement["predicateType"] = PREDICATE_TYPE
    statement["predicate"] = predicate
    return statement


def _descriptor(key: str, a: Artifact) -> dict[str, Any]:
    # Go's omitempty drops an empty uri/name and an empty digest set.
    out: dict[str, Any] = {}
    if a.uri:
        out[key] = a.uri
    if a.digest:
        out["digest"] = dict(a.digest)
    return out


def metadata(run: Run) -> dict[str, Any]:
    m: dict[str, Any] = {}
    if run.start_time:
        m["buildStartedOn"] = rfc3339(run.start_time)
    if run.completion_time:
        m["buildFinishedOn"] = rfc3339(run.completion_time)
    m["completeness"] = {"parameters": False, "environment": False, "materials": False}
    m["reproducible"] = reproducible(run)
    return m


def step_attestation(step: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """One step: entryPoint is the script, else the command joined by spaces; args as written (``null``
    when absent); the container is the step state's name, the image its imageID as ``oci://``."""
    entry = step.get("script") or " ".join(step.get("command") or [])
    return {
        "entryPoint": entry,
        "arguments": step.get("args"),
        "environment": {
            "container": state.get("name", ""),
            "image": "oci://" + (state.get("imageID") or "").removeprefix("docker-pullable://"),
        },
        "annotations": None,
    }


def taskrun_steps(run: Run) -> list[dict[str, Any]]:
    # A TaskRun pairs each step state with the first spec step of the same name (or an empty step).
    spec_steps = run.resolved_spec.get("steps") or []
    out = []
    for state in run.status.get("steps") or []:
        step: dict[str, Any] = next((s for s in spec_steps if s.get("name", "") == state.get("name", "")), {})
        out.append(step_attestation(step, state))
    return out


def task_materials(run: Run, warnings: list[str]) -> list[Artifact]:
    mats = append_materials([], step_image_materials(run))
    return append_materials(mats, _task_hint_materials(run, warnings))


def _task_hint_materials(run: Run, warnings: list[str]) -> list[Artifact]:
    """Chains ``FromTaskParamsAndResults``: git material, then ``*ARTIFACT_INPUTS``."""
    git = git_material(run, warnings)
    mats = [git] if git else []
    return append_materials(mats, artifact_inputs(run.results, warnings, where=run.display))


def pipeline_materials(run: Run, children: Sequence[Run], deep: bool, warnings: list[str]) -> list[Artifact]:
    mats = ArtifactList()
    top = ref_source_artifact(run)
    if top is not None:
        mats.add(top)
    executed = executed_taskruns(run, children)
    for tr in executed:
        mats.extend(step_image_materials(tr))
        src = ref_source_artifact(tr)
        if src is not None:
            mats.add(src)
    # Chains FromPipelineParamsAndResults: PR inputs, [deep: each child's git + inputs], PR git.
    hints = ArtifactList(artifact_inputs(run.results, warnings, where=run.display))
    if deep:
        for tr in executed:
            hints.extend(_task_hint_materials(tr, warnings))
    git = git_material(run, warnings)
    if git is not None:
        hints.add(git)
    return mats.extend(hints.items()).items()


def pipeline_tasks(run: Run, children: Sequence[Run]) -> list[dict[str, Any]] | None:
    """TEP-0084 ``buildConfig.tasks``: one entry per executed child TaskRun, tasks then finally."""
    spec = run.status.get("pipelineSpec")
    if spec is None:
        return None  # Chains emits "tasks": null when the run recorded no pipelineSpec
    tasks = spec.get("tasks") or []
    all_tasks = [*tasks, *(spec.get("finally") or [])]
    service_account = (run.spec.get("taskRunTemplate") or {}).get("serviceAccountName", "")
    out: list[dict[str, Any]] = []
    last = ""
    by_task = children_by_pipeline_task(children)
    for index, task in enumerate(all_tasks):
        taskruns = by_task.get(task["name"], [])
        if not taskruns:
            # Chains skips a task without TaskRuns before noting it as the last one run, so a finally
            # task's implicit "after" names the last non-finally task that has a TaskRun (even one that
            # did not complete), not simply the last task of the pipeline.
            continue
        for tr in taskruns:
            entry = _task_entry(task, tr, index >= len(tasks), last, service_account)
            if entry is not None:
                out.append(entry)
        if index < len(tasks):
            last = task["name"]
    return out


def _task_entry(
    task: dict[str, Any], tr: Run, is_finally: bool, last: str, service_account: str
) -> dict[str, Any] | None:
    if not tr.completion_time:
        return None
    spec = tr.status.get("taskSpec")
    if spec is None:
        return None
    spec_steps = spec.get("steps") or []
    states = tr.status.get("steps") or []
    if len(spec_steps) != len(states):
        return None
    steps = []
    # Here steps pair by index; an "unnamed-N" state against a named spec step means the status does
    # not belong to this spec, and Chains drops the task.
    for step, state in zip(spec_steps, states, strict=True):
        if (state.get("name") or "").startswith("unnamed-") and step.get("name"):
            return None
        steps.append(step_attestation(step, state))
    after = list(task.get("runAfter") or [])
    for ref in result_refs(task):
        if ref not in after:
            after.append(ref)
    if not after and is_finally and last:
        after.append(last)
    entry: dict[str, Any] = {"name": task["name"]}
    if after:
        entry["after"] = after
    # A v1.TaskRef struct (Go drops unknown and empty fields); {} for an embedded taskSpec.
    entry["ref"] = gojson.encode("tekton.TaskRef", task.get("taskRef") or {})
    entry["startedOn"] = rfc3339(tr.start_time) or ZERO_TIME
    entry["finishedOn"] = rfc3339(tr.completion_time)
    if service_account:
        entry["serviceAccountName"] = service_account
    status = condition_status(tr)
    if status:
        entry["status"] = status
    if steps:
        entry["steps"] = steps
    entry["invocation"] = invocation(tr)
    results = tr.status.get("results") or []
    if results:
        entry["results"] = [_result(r) for r in results]
    return entry


def _result(r: dict[str, Any]) -> dict[str, Any]:
    out = {"name": r["name"]}
    if r.get("type"):
        out["type"] = r["type"]
    out["value"] = r.get("value", "")
    return out


_VAR_SUBSTITUTION = re.compile(r"\$\([_a-zA-Z0-9.-]+(\.[_a-zA-Z0-9.-]+)*(\[([0-9]+|\*)\])?\)")


def _expressions(value: object) -> list[str]:
    if isinstance(value, str):
        return [m.group(0)[2:-1] for m in _VAR_SUBSTITUTION.finditer(value)]
    if isinstance(value, list):
        return [e for v in value for e in _expressions(v)]
    if isinstance(value, dict):
        return [e for v in value.values() for e in _expressions(v)]
    return []


def _container_expressions(c: dict[str, Any]) -> list[str]:
    out = []
    for key in ("name", "image", "imagePullPolicy", "script", "workingDir", "command", "args"):
        out += _expressions(c.get(key))
    for env in c.get("env") or []:
        if not isinstance(env, dict):
            continue
        out += _expressions(env.get("value"))
        value_from = env.get("valueFrom") or {}
        for ref in ("secretKeyRef", "configMapKeyRef"):
            src = value_from.get(ref) if isinstance(value_from, dict) else None
            if isinstance(src, dict):
                out += _expressions(src.get("key")) + _expressions(src.get("name"))
    return out


def result_refs(task: dict[str, Any]) -> list[str]:
    """Pipeline tasks whose results this task uses, in order of appearance (Tekton
    ``PipelineTaskResultRefs``): ``$(tasks|finally.<name>.results.<r>[...])`` in params (incl. matrix),
    when expressions and an embedded taskSpec's steps and sidecars."""
    exprs: list[str] = []
    matrix = task.get("matrix") or {}
    params = [*(task.get("params") or []), *(matrix.get("params") or [])]
    for include in matrix.get("include") or []:
        params += include.get("params") or []
    for p in params:
        exprs += _expressions(p.get("value"))
    for when in task.get("when") or []:
        exprs += _expressions(when.get("input")) + _expressions(when.get("cel"))
        exprs += _expressions(when.get("values"))
    spec = task.get("taskSpec") or {}
    for c in [*(spec.get("steps") or []), *(spec.get("sidecars") or [])]:
        exprs += _container_expressions(c)
    out = []
    for e in exprs:
        parts = e.split(".")
        if len(parts) in (4, 5) and parts[0] in ("tasks", "finally") and parts[2] == "results":
            out.append(parts[1])
    return out
