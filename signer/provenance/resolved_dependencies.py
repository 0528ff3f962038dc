"""``buildDefinition.resolvedDependencies`` of the SLSA v1.0 predicate, as Chains' ``slsa/v2alpha3`` and
``slsa/v2alpha4`` list them (``pkg/chains/formats/slsa/internal/resolved_dependencies``): the task or
pipeline definition, step and sidecar images, type-hinted inputs, StepActions, de-duplicated as Chains
does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from signer import result_hints
from signer.golang import b64, go_json
from signer.provenance import TEKTON_BUILD_TYPE, common, gojson
from signer.result_hints import GIT_COMMIT, GIT_URL, Artifact
from signer.run import Result, Run, executed_taskruns

# Names Chains gives resolved dependencies (pkg/chains/formats/slsa/internal/resolved_dependencies).
PIPELINE_CONFIG = "pipeline"
TASK_CONFIG = "task"
PIPELINE_TASK_CONFIG = "pipelineTask"
INPUT_RESULT = "inputs/result"
STEP_ACTION_PREFIX = "stepAction/"


def status_ref_source(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    provenance = status.get("provenance")
    if not isinstance(provenance, Mapping):
        return None
    ref_source = provenance.get("refSource")
    return ref_source if isinstance(ref_source, Mapping) else None


def str_field(mapping: Mapping[str, Any], key: str) -> str:
    value = mapping.get(key)
    return value if isinstance(value, str) else ""


def digest_field(mapping: Mapping[str, Any]) -> dict[str, str]:
    digest = mapping.get("digest")
    if not isinstance(digest, Mapping):
        return {}
    return {str(k): v for k, v in digest.items() if isinstance(v, str)}


def step_results_by_step(run: Run) -> list[list[Result]]:
    """StepAction results grouped by step (values were normalised when the run was loaded)."""
    out: list[list[Result]] = []
    for step in run.status.get("steps") or []:
        out.append([Result.of(r) for r in step.get("results") or []])
    return out


@dataclass(frozen=True)
class Dependency:
    """An ``in_toto.v1.ResourceDescriptor`` in ``resolvedDependencies``; ``content`` is raw bytes."""

    name: str = ""
    uri: str = ""
    digest: tuple[tuple[str, str], ...] = ()
    content: bytes = b""

    def key(self) -> tuple[str, tuple[tuple[str, str], ...], bytes]:
        # Chains compares the protojson of {uri, digest, content}: map keys sorted, name ignored.
        return (self.uri, tuple(sorted(self.digest)), self.content)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.name:
            out["name"] = self.name
        if self.uri:
            out["uri"] = self.uri
        if self.digest:
            out["digest"] = dict(sorted(self.digest))
        if self.content:
            out["content"] = b64(self.content)
        return out


def _from_artifacts(artifacts: Iterable[Artifact], name: str = "") -> list[Dependency]:
    return [Dependency(name=name, uri=a.uri, digest=tuple(a.digest.items())) for a in artifacts]


def _from_refsource(name: str, ref_source: Mapping[str, Any]) -> Dependency:
    return Dependency(
        name=name, uri=str_field(ref_source, "uri"), digest=tuple(digest_field(ref_source).items())
    )


def dedupe(deps: Sequence[Dependency]) -> list[Dependency]:
    """Chains' ``RemoveDuplicateResolvedDependencies``: the first of equal {uri, digest, content} wins,
    except that ``task``, ``pipeline`` and ``stepAction/*`` entries are always kept."""
    seen: set[tuple[str, tuple[tuple[str, str], ...], bytes]] = set()
    out: list[Dependency] = []
    for dep in deps:
        key = dep.key()
        if key in seen and not (
            dep.name in (TASK_CONFIG, PIPELINE_CONFIG) or dep.name.startswith(STEP_ACTION_PREFIX)
        ):
            continue
        seen.add(key)
        out.append(dep)
    return out


def _container_images(run: Run, field: str) -> list[Artifact]:
    states = run.status.get(field)
    if not isinstance(states, list):
        return []
    images: list[Artifact] = []
    for i, state in enumerate(states):
        state = state if isinstance(state, Mapping) else {}
        label = state.get("name") or i

        def where(label: object = label) -> str:
            return f"{run.source}: {run.display} status.{field}[{label}]"

        images.append(common.image_material(state.get("imageID") or "", where=where))
    # Chains merges repeated images of one list with AppendMaterials.
    return result_hints.append_subjects([], images)


def step_and_sidecar_images(run: Run) -> list[Artifact]:
    """Step images, then sidecar images; each list merged on its own, the two just concatenated."""
    return _container_images(run, "steps") + _container_images(run, "sidecars")


def _step_git(results: Sequence[Result]) -> Artifact | None:
    """One step's CHAINS-GIT_* pair. As for TaskRuns, Chains adds ``git+``/``.git`` before checking for
    emptiness, so only the commit is required (a lone commit gives ``git+.git``)."""
    commit = url = ""
    for r in results:
        if r.name == GIT_COMMIT:
            commit = r.string_value
        elif r.name == GIT_URL:
            url = r.string_value
    return Artifact(uri=result_hints.spdx_git(url), digest={"sha1": commit}) if commit else None


def step_action_inputs(run: Run, warnings: list[str]) -> list[Artifact]:
    """v2alpha4: type-hinted inputs written by StepActions — per step the CHAINS-GIT_* pair of that
    step, then every ``*ARTIFACT_INPUTS`` step result — merged with AppendMaterials."""
    per_step = step_results_by_step(run)
    mats: list[Artifact] = []
    for results in per_step:
        git = _step_git(results)
        if git is not None:
            mats = result_hints.append_subjects(mats, [git])
    flat = [r for results in per_step for r in results]
    return result_hints.append_subjects(mats, result_hints.artifact_inputs(flat, warnings))


def remote_step_actions(run: Run) -> list[Dependency]:
    """``stepAction/<step>`` for every step whose StepAction came from a remote resolver."""
    deps: list[Dependency] = []
    for step in run.status.get("steps") or []:
        provenance = step.get("provenance")
        if not isinstance(provenance, Mapping) or not isinstance(provenance.get("refSource"), Mapping):
            continue
        deps.append(_from_refsource(f"{STEP_ACTION_PREFIX}{step.get('name') or ''}", provenance["refSource"]))
    return deps


def task_inputs(run: Run, warnings: list[str]) -> list[Artifact]:
    """A TaskRun's type-hinted inputs: its git pair, then its ``*ARTIFACT_INPUTS`` results."""
    mats: list[Artifact] = []
    git = result_hints.git_material(run, warnings)
    if git is not None:
        mats = result_hints.append_subjects(mats, [git])
    return result_hints.append_subjects(mats, result_hints.artifact_inputs(run.results, warnings))


def taskrun_dependencies(run: Run, *, with_step_actions: bool, warnings: list[str]) -> list[Dependency]:
    deps: list[Dependency] = []
    ref_source = status_ref_source(run.status)
    if ref_source is not None:
        deps.append(_from_refsource(TASK_CONFIG, ref_source))
    # Only what follows the task descriptor is de-duplicated, as in Chains' taskDependencies.
    rest = _from_artifacts(step_and_sidecar_images(run))
    if with_step_actions:
        rest += _from_artifacts(step_action_inputs(run, warnings), INPUT_RESULT)
        rest += remote_step_actions(run)
    rest += _from_artifacts(task_inputs(run, warnings), INPUT_RESULT)
    return deps + dedupe(rest)


def _pipeline_task_descriptor(taskrun: Run, build_type: str) -> Dependency | None:
    ref_source = status_ref_source(taskrun.status)
    if build_type == TEKTON_BUILD_TYPE:
        # The whole TaskRun as Go's json.Marshal writes it: struct field order, map keys sorted. Chains
        # takes the child from its informer's lister, and client-go's typed decoders clear TypeMeta, so
        # the embedded object has no kind or apiVersion.
        obj = {k: v for k, v in taskrun.obj.items() if k not in ("kind", "apiVersion")}
        content = go_json(gojson.taskrun(obj), sort_keys=False)
        if ref_source is None:
            return Dependency(name=PIPELINE_TASK_CONFIG, content=content)
        return Dependency(
            name=PIPELINE_TASK_CONFIG,
            uri=str_field(ref_source, "uri"),
            digest=tuple(digest_field(ref_source).items()),
            content=content,
        )
    if ref_source is None:
        return None
    return _from_refsource(PIPELINE_TASK_CONFIG, ref_source)


def pipeline_inputs(
    pipelinerun: Run, executed: Sequence[Run], *, deep_inspection: bool, warnings: list[str]
) -> list[Artifact]:
    """Chains' ``FromPipelineParamsAndResults``: the PipelineRun's ``*ARTIFACT_INPUTS``, then (deep
    inspection) each child's git pair and inputs, then the PipelineRun's git pair."""
    mats = result_hints.ArtifactList().extend(result_hints.artifact_inputs(pipelinerun.results, warnings))
    if deep_inspection:
        for tr in executed:
            mats.extend(task_inputs(tr, warnings))
    git = result_hints.git_material(pipelinerun, warnings)
    if git is not None:
        mats.add(git)
    return mats.items()


def pipelinerun_dependencies(
    run: Run,
    children: Sequence[Run],
    *,
    build_type: str,
    deep_inspection: bool,
    with_step_actions: bool,
    warnings: list[str],
) -> list[Dependency]:
    deps: list[Dependency] = []
    ref_source = status_ref_source(run.status)
    if ref_source is not None:
        deps.append(_from_refsource(PIPELINE_CONFIG, ref_source))
    executed = executed_taskruns(run, children)
    for tr in executed:
        descriptor = _pipeline_task_descriptor(tr, build_type)
        if descriptor is not None:
            deps.append(descriptor)
        if with_step_actions:
            deps += remote_step_actions(tr)
        deps += _from_artifacts(step_and_sidecar_images(tr))
    if deep_inspection and with_step_actions:
        for tr in executed:
            deps += _from_artifacts(step_action_inputs(tr, warnings), INPUT_RESULT)
    deps += _from_artifacts(
        pipeline_inputs(run, executed, deep_inspection=deep_inspection, warnings=warnings), INPUT_RESULT
    )
    return dedupe(deps)
