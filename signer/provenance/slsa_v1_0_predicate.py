"""What Tekton Chains' two SLSA v1.0 formats (``slsa/v2alpha3``, ``slsa/v2alpha4``) share.

The statement is an in-toto v1 Statement whose predicate is a SLSA v1.0 Provenance. Chains builds it from
Go structs, marshals it with ``protojson`` and round-trips it through a ``google.protobuf.Struct``; the
rules kept here reproduce what that pipeline emits, not just what the SLSA spec allows:

* proto3 omits empty strings, empty maps and empty repeated fields (``resolvedDependencies``,
  ``byproducts``, ``subject``), but keeps set-but-empty messages (``internalParameters: {}``,
  ``metadata: {}``);
* ``ResourceDescriptor.content`` is bytes, emitted as standard base64; Chains fills it with Go's
  ``json.Marshal`` output, so object keys are sorted and ``<``, ``>``, ``&`` are ``\\u00XX``-escaped;
* the run spec goes through Go's ``json.Marshal`` of the Tekton v1 types, so top-level ``omitempty``
  fields vanish when empty and non-``omitempty`` ones (``serviceAccountName``, ``taskRunTemplate``) appear.

Format-specific choices (subjects, byproduct filtering, StepAction dependencies) are passed in by
:mod:`signer.provenance.formats.slsa_v2alpha3` and :mod:`signer.provenance.formats.slsa_v2alpha4`.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from signer import result_hints
from signer.golang import format_go_duration, go_json, parse_go_duration, proto_timestamp
from signer.provenance import SLSA_BUILD_TYPE, TEKTON_BUILD_TYPE, Options, check_build_type, common, gojson
from signer.result_hints import Artifact
from signer.run import Result, Run, executed_taskruns

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
JSON_MEDIA_TYPE = "application/json"

# Names Chains gives resolved dependencies (pkg/chains/formats/slsa/internal/resolved_dependencies).
PIPELINE_CONFIG = "pipeline"
TASK_CONFIG = "task"
PIPELINE_TASK_CONFIG = "pipelineTask"
INPUT_RESULT = "inputs/result"
STEP_ACTION_PREFIX = "stepAction/"

GIT_COMMIT = "CHAINS-GIT_COMMIT"
GIT_URL = "CHAINS-GIT_URL"
_ARTIFACT_OUTPUTS = "ARTIFACT_OUTPUTS"


def resolve_build_type(build_type: str | None) -> str:
    """The configured ``buildDefinition.buildType``; empty means Chains' default."""
    if not build_type:
        return SLSA_BUILD_TYPE
    check_build_type(build_type)
    return build_type


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# --------------------------------------------------------------------------------------------------
# runDetails.metadata


def _present(value: Any) -> bool:
    # A Go *metav1.Time is nil for a missing key or JSON null.
    return value is not None and value != ""


def build_metadata(run: Run) -> dict[str, Any]:
    """``runDetails.metadata``: empty fields are dropped by protojson, the message itself stays."""
    out: dict[str, Any] = {}
    uid = run.uid
    if uid:
        out["invocationId"] = uid
    status = run.status
    if _present(status.get("startTime")):
        out["startedOn"] = proto_timestamp(status["startTime"], f"{run.source}: status.startTime")
    if _present(status.get("completionTime")):
        out["finishedOn"] = proto_timestamp(
            status["completionTime"], f"{run.source}: status.completionTime"
        )
    return out


# --------------------------------------------------------------------------------------------------
# externalParameters


def _go_duration(value: Any) -> Any:
    """metav1.Duration re-marshals as ``Duration.String()``; values Go could not parse pass through."""
    ns = parse_go_duration(value) if isinstance(value, str) else None
    return value if ns is None else format_go_duration(ns)


def run_spec(run: Run) -> dict[str, Any]:
    """``runSpec``: the run's spec as Chains' Go round trip emits it (see :mod:`signer.provenance.gojson`)."""
    return gojson.run_spec(run.kind, run.spec)


def remote_refsource(run: Run) -> Mapping[str, Any] | None:
    """``status.provenance.refSource`` when the top-level ref went through a remote resolver."""
    ref_key = "taskRef" if run.kind == "TaskRun" else "pipelineRef"
    ref = run.spec.get(ref_key)
    if not isinstance(ref, Mapping):
        return None
    resolver = ref.get("resolver")
    # The "Cluster" resolver reads from the cluster itself: Chains does not treat it as remote.
    if not isinstance(resolver, str) or resolver in ("", "Cluster"):
        return None
    return _refsource(run.status)


def _refsource(status: Mapping[str, Any]) -> Mapping[str, Any] | None:
    provenance = status.get("provenance")
    if not isinstance(provenance, Mapping):
        return None
    ref_source = provenance.get("refSource")
    return ref_source if isinstance(ref_source, Mapping) else None


def _str_field(mapping: Mapping[str, Any], key: str) -> str:
    value = mapping.get(key)
    return value if isinstance(value, str) else ""


def _digest_field(mapping: Mapping[str, Any]) -> dict[str, str]:
    digest = mapping.get("digest")
    if not isinstance(digest, Mapping):
        return {}
    return {str(k): v for k, v in digest.items() if isinstance(v, str)}


def build_config_source(ref_source: Mapping[str, Any]) -> dict[str, str]:
    """A Go ``map[string]string``: all three keys always present. Chains takes "the first" digest
    entry of a Go map (random order); with one entry, as resolvers write, that is unambiguous. With
    several we take the first as written, which is one of the values Chains could emit."""
    digest = _digest_field(ref_source)
    ref = next((f"{alg}:{hex_}" for alg, hex_ in digest.items()), "")
    return {
        "ref": ref,
        "repository": _str_field(ref_source, "uri"),
        "path": _str_field(ref_source, "entryPoint"),
    }


def external_parameters(run: Run) -> dict[str, Any]:
    out: dict[str, Any] = {"runSpec": run_spec(run)}
    ref_source = remote_refsource(run)
    if ref_source is not None:
        out["buildConfigSource"] = build_config_source(ref_source)
    return out


# --------------------------------------------------------------------------------------------------
# internalParameters


# config.FeatureFlags of the Pipeline version Chains vendors (v1.15): json name -> Go kind. All fields
# are omitempty; enableTektonOCIBundles is a *bool, so an explicit false survives.
_FEATURE_FLAGS: dict[str, str] = {
    "disableCredsInit": "bool",
    "runningInEnvWithInjectedSidecars": "bool",
    "requireGitSSHSecretKnownHosts": "bool",
    "enableAPIFields": "string",
    "sendCloudEventsForRuns": "bool",
    "awaitSidecarReadiness": "bool",
    "enforceNonfalsifiability": "string",
    "enableKeepPodOnCancel": "bool",
    "verificationNoMatchPolicy": "string",
    "enableProvenanceInStatus": "bool",
    "resultExtractionMethod": "string",
    "maxResultSize": "int",
    "setSecurityContext": "bool",
    "setSecurityContextReadOnlyRootFilesystem": "bool",
    "coschedule": "string",
    "enableCELInWhenExpression": "bool",
    "enableStepActions": "bool",
    "enableParamEnum": "bool",
    "enableArtifacts": "bool",
    "disableInlineSpec": "string",
    "enableConciseResolverSyntax": "bool",
    "enableKubernetesSidecar": "bool",
    "enableWaitExponentialBackoff": "bool",
    "enableTerminationMessageCompression": "bool",
    "enableTektonOCIBundles": "*bool",
}
_FEATURE_FLAGS_FOLDED = {name.lower(): name for name in _FEATURE_FLAGS}


def _flag_type_ok(kind: str, value: Any) -> bool:
    if kind in ("bool", "*bool"):
        return isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    return isinstance(value, int) and not isinstance(value, bool)


def feature_flags(raw: Mapping[str, Any], warnings: list[str], where: str) -> dict[str, Any]:
    """``status.provenance.featureFlags`` after Go decodes it into ``config.FeatureFlags`` and
    encodes it again: keys match case-insensitively (older Pipelines wrote Go field names such as
    ``EnableAPIFields``), unknown keys and zero values disappear."""
    decoded: dict[str, Any] = {}
    for key, value in raw.items():
        name = key if key in _FEATURE_FLAGS else _FEATURE_FLAGS_FOLDED.get(str(key).lower())
        if name is None:
            continue
        kind = _FEATURE_FLAGS[name]
        if value is None:
            decoded.pop(name, None)
            continue
        if not _flag_type_ok(kind, value):
            warnings.append(f"{where}: feature flag {key!r} has an unexpected value {value!r}; ignored")
            continue
        decoded[name] = value
    out: dict[str, Any] = {}
    for name, kind in _FEATURE_FLAGS.items():
        if name not in decoded:
            continue
        value = decoded[name]
        if kind == "*bool" or value not in (False, "", 0):
            out[name] = value
    return out


def internal_parameters(run: Run, build_type: str, warnings: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    provenance = run.status.get("provenance")
    if isinstance(provenance, Mapping) and isinstance(provenance.get("featureFlags"), Mapping):
        out["tekton-pipelines-feature-flags"] = feature_flags(
            provenance["featureFlags"], warnings, f"{run.source}: status.provenance.featureFlags"
        )
    if build_type == TEKTON_BUILD_TYPE:
        # Unfiltered, and null when the object has none: Chains passes the maps through as they are.
        metadata = run.obj.get("metadata") or {}
        out["labels"] = metadata.get("labels")
        out["annotations"] = metadata.get("annotations")
    return out


# --------------------------------------------------------------------------------------------------
# results and byproducts


def step_results_by_step(run: Run) -> list[list[Result]]:
    """StepAction results grouped by step (values were normalised when the run was loaded)."""
    out: list[list[Result]] = []
    for step in run.status.get("steps") or []:
        out.append([Result.of(r) for r in step.get("results") or []])
    return out


def json_byproduct(name: str, value: Any) -> dict[str, Any]:
    return {"name": name, "mediaType": JSON_MEDIA_TYPE, "content": b64(go_json(value))}


def all_result_byproducts(results: Iterable[Result], prefix: str) -> list[dict[str, Any]]:
    """v2alpha3: every result, named ``<prefix>/<result>``."""
    return [json_byproduct(f"{prefix}/{r.name}", r.value) for r in results]


def _is_image_hint(name: str) -> bool:
    return name.endswith("IMAGE_URL") or name.endswith("IMAGE_DIGEST") or name == "IMAGES"


def is_build_artifact_or_invalid(result: Result) -> bool:
    """Chains' ``IsBuildArtifact`` returning true or an error: such results never become byproducts.

    Only ``*ARTIFACT_OUTPUTS`` qualify: a non-object is an error; an object whose ``isBuildArtifact`` is
    not the string ``"true"`` is an ordinary result (even with a bad uri/digest); one marked as a build
    artifact is either a subject or, with an empty uri/digest or a bad digest, an error.
    """
    return result_hints.is_build_artifact_result(result) or result_hints.is_invalid_artifact_outputs(result)


def filtered_result_byproducts(
    object_name: str, results: Iterable[Result], prefix: str
) -> list[dict[str, Any]]:
    """v2alpha4: results that are neither build artifacts (nor invalid ones) nor image type hints,
    named ``<prefix>/<object name>/<result>``."""
    return [
        json_byproduct(f"{prefix}/{object_name}/{r.name}", r.value)
        for r in results
        if not is_build_artifact_or_invalid(r) and not _is_image_hint(r.name)
    ]


# --------------------------------------------------------------------------------------------------
# resolvedDependencies


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
        name=name, uri=_str_field(ref_source, "uri"), digest=tuple(_digest_field(ref_source).items())
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
        images.append(common.image_material(
            state.get("imageID") or "",
            where=lambda label=label: f"{run.source}: {run.display} status.{field}[{label}]"))
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
        deps.append(_from_refsource(f"{STEP_ACTION_PREFIX}{step.get('name') or ''}",
                                    provenance["refSource"]))
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
    ref_source = _refsource(run.status)
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
    ref_source = _refsource(taskrun.status)
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
            uri=_str_field(ref_source, "uri"),
            digest=tuple(_digest_field(ref_source).items()),
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
    ref_source = _refsource(run.status)
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


# --------------------------------------------------------------------------------------------------
# the statement


def subject_json(artifacts: Iterable[Artifact]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for a in artifacts:
        entry: dict[str, Any] = {}
        if a.uri:
            entry["name"] = a.uri
        if a.digest:
            entry["digest"] = dict(sorted(a.digest.items()))
        out.append(entry)
    return out


def statement(
    run: Run,
    *,
    subjects: Sequence[Artifact],
    build_type: str,
    builder_id: str,
    dependencies: Sequence[Dependency],
    byproducts: Sequence[dict[str, Any]],
    warnings: list[str],
) -> dict[str, Any]:
    """Assemble the statement; empty repeated fields and empty strings are left out as protojson does."""
    build_definition: dict[str, Any] = {
        "buildType": build_type,
        "externalParameters": external_parameters(run),
        "internalParameters": internal_parameters(run, build_type, warnings),
    }
    if dependencies:
        build_definition["resolvedDependencies"] = [d.to_json() for d in dependencies]
    run_details: dict[str, Any] = {
        "builder": {"id": builder_id} if builder_id else {},
        "metadata": build_metadata(run),
    }
    if byproducts:
        run_details["byproducts"] = list(byproducts)
    out: dict[str, Any] = {"_type": STATEMENT_TYPE}
    if subjects:
        out["subject"] = subject_json(subjects)
    out["predicateType"] = PREDICATE_TYPE
    out["predicate"] = {"buildDefinition": build_definition, "runDetails": run_details}
    return out


def build_statement(
    run: Run,
    children: Sequence[Run],
    options: Options,
    *,
    with_step_actions: bool,
    subjects: Callable[[], Sequence[Artifact]],
    byproducts: Callable[[], Sequence[dict[str, Any]]],
    warnings: list[str],
) -> dict[str, Any]:
    """What ``slsa/v2alpha3`` and ``slsa/v2alpha4`` share: the resolved dependencies of a TaskRun or a
    PipelineRun and the assembled statement; the formats differ in subjects, byproducts and StepActions.

    ``subjects`` and ``byproducts`` are called after the dependencies, so warnings and the first error
    come in the order Chains' formatter meets them."""
    resolved_type = resolve_build_type(options.build_type)
    if run.kind == "TaskRun":
        deps = taskrun_dependencies(run, with_step_actions=with_step_actions, warnings=warnings)
    else:
        deps = pipelinerun_dependencies(
            run,
            children,
            build_type=resolved_type,
            deep_inspection=options.deep_inspection,
            with_step_actions=with_step_actions,
            warnings=warnings,
        )
    found_subjects = subjects()
    return statement(
        run,
        subjects=found_subjects,
        build_type=resolved_type,
        builder_id=options.builder_id,
        dependencies=deps,
        byproducts=byproducts(),
        warnings=warnings,
    )
