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

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from attestation import intoto
from signer import result_hints
from signer.golang import b64, go_json, proto_timestamp
from signer.provenance import SLSA_BUILD_TYPE, TEKTON_BUILD_TYPE, Options, check_build_type, gojson
from signer.provenance.resolved_dependencies import (
    Dependency,
    digest_field,
    pipelinerun_dependencies,
    status_ref_source,
    str_field,
    taskrun_dependencies,
)
from signer.result_hints import Artifact
from signer.run import Result, Run

STATEMENT_TYPE = intoto.STATEMENT_V1
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
JSON_MEDIA_TYPE = "application/json"


def resolve_build_type(build_type: str | None) -> str:
    """The configured ``buildDefinition.buildType``; empty means Chains' default."""
    if not build_type:
        return SLSA_BUILD_TYPE
    check_build_type(build_type)
    return build_type


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
        out["finishedOn"] = proto_timestamp(status["completionTime"], f"{run.source}: status.completionTime")
    return out


# --------------------------------------------------------------------------------------------------
# externalParameters


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
    return status_ref_source(run.status)


def build_config_source(ref_source: Mapping[str, Any]) -> dict[str, str]:
    """A Go ``map[string]string``: all three keys always present. Chains takes "the first" digest
    entry of a Go map (random order); with one entry, as resolvers write, that is unambiguous. With
    several we take the first as written, which is one of the values Chains could emit."""
    digest = digest_field(ref_source)
    ref = next((f"{alg}:{hex_}" for alg, hex_ in digest.items()), "")
    return {
        "ref": ref,
        "repository": str_field(ref_source, "uri"),
        "path": str_field(ref_source, "entryPoint"),
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
