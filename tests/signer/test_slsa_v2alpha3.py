"""slsa/v2alpha3 statements, checked against expectations written by hand from Tekton Chains' rules
(pkg/chains/formats/slsa/v2alpha3 and internal/*). Comments name the rule behind each non-obvious value.

Every input in testdata/ was also run through Chains' own formatters (built from tektoncd/chains
e44b60f, outside this repository) for all formats, both build types and deep inspection on/off; the
statements agree field for field (the slsa-tekton task content byte for byte for v1 input)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from attestation import intoto
from attestation.errors import InputError
from signer.documents import load_documents
from signer.provenance import Options, generate
from signer.run import Run, to_run

DATA = Path(__file__).parent / "testdata" / "slsa_v2alpha"
TEKTON = "https://tekton.dev/chains/v2/slsa-tekton"
H = {c: c * 64 for c in "0123456789abcdef"}
S1 = {c: c * 40 for c in "0123456789abcdef"}


def content(json_text: str) -> str:
    return base64.b64encode(json_text.encode()).decode()


def byproduct(name: str, json_text: str) -> dict:
    return {"name": name, "mediaType": "application/json", "content": content(json_text)}


def runs(name: str) -> list[Run]:
    path = DATA / name
    return [to_run(d, source=str(path)) for d in load_documents(path)]


def statement(name: str, **options: object) -> dict:
    main, *children = runs(name)
    return generate(main, children, Options(format="slsa/v2alpha3", **options)).statement  # type: ignore[arg-type]


def test_taskrun_golden() -> None:
    got = statement("taskrun-build.yaml")
    # SubjectDigests: OCI images (IMAGE_URL pair, tag dropped), then valid ARTIFACT_OUTPUTS whatever their
    # isBuildArtifact; StepAction results are not read; the invalid bad-ARTIFACT_OUTPUTS is skipped.
    assert got["subject"] == [
        {"name": "gcr.io/acme/app", "digest": {"sha256": H["7"]}},
        {"name": "https://example.com/sbom.json", "digest": {"sha256": H["8"]}},
    ]
    build_def = got["predicate"]["buildDefinition"]
    assert build_def["buildType"] == "https://tekton.dev/chains/v2/slsa"
    assert build_def["externalParameters"]["buildConfigSource"] == {
        "ref": f"sha1:{S1['a']}",
        "repository": "git+https://github.com/acme/catalog.git",
        "path": "task/build.yaml",
    }
    # No StepAction inputs and no stepAction/<step> entries in v2alpha3.
    assert build_def["resolvedDependencies"] == [
        {"name": "task", "uri": "git+https://github.com/acme/catalog.git", "digest": {"sha1": S1["a"]}},
        {"uri": "oci://gcr.io/acme/git", "digest": {"sha256": H["2"]}},
        {"uri": "oci://gcr.io/acme/kaniko", "digest": {"sha256": H["4"]}},
        {"uri": "oci://docker.io/library/registry", "digest": {"sha256": H["6"]}},
        {"name": "inputs/result", "uri": "git+https://github.com/acme/app.git", "digest": {"sha1": S1["1"]}},
        {"name": "inputs/result", "uri": "pkg:npm/left-pad@1.3.0", "digest": {"sha1": S1["9"]}},
    ]
    # Every TaskRun result, in order, named taskRunResults/<result> (no object name); the trailing
    # newline of IMAGE_URL is kept in the content.
    assert got["predicate"]["runDetails"]["byproducts"] == [
        byproduct("taskRunResults/IMAGE_URL", '"gcr.io/acme/app:v1\\n"'),
        byproduct("taskRunResults/IMAGE_DIGEST", '"sha256:' + H["7"] + '"'),
        byproduct(
            "taskRunResults/sbom-ARTIFACT_OUTPUTS",
            '{"digest":"sha256:' + H["8"] + '","uri":"https://example.com/sbom.json"}',
        ),
        byproduct(
            "taskRunResults/bad-ARTIFACT_OUTPUTS",
            '{"digest":"sha256:basd-sha","isBuildArtifact":"true","uri":"gcr.io/acme/bad"}',
        ),
        byproduct(
            "taskRunResults/lib-ARTIFACT_INPUTS",
            '{"digest":" SHA1:' + S1["9"] + '","uri":"pkg:npm/left-pad@1.3.0"}',
        ),
        byproduct("taskRunResults/notes", '"a\\u003cb \\u0026 c\\u003ed"'),
        byproduct("taskRunResults/tags", '["v1","latest"]'),
    ]
    assert got["predicate"]["runDetails"]["metadata"]["finishedOn"] == "2024-05-01T10:01:30.250Z"
    intoto.parse(intoto.serialize(got))


PR_BYPRODUCTS = [
    byproduct("pipelineRunResults/IMAGE_URL", '"gcr.io/acme/app"'),
    byproduct("pipelineRunResults/IMAGE_DIGEST", '"sha256:' + H["7"] + '"'),
    byproduct("pipelineRunResults/CHAINS-GIT_COMMIT", '"' + S1["1"] + '"'),
    byproduct(
        "pipelineRunResults/src-ARTIFACT_INPUTS",
        '{"digest":"sha256:' + H["3"] + '","uri":"https://example.com/src.tgz"}',
    ),
    byproduct(
        "pipelineRunResults/bad-ARTIFACT_OUTPUTS",
        '{"digest":"sha256:basd-sha","isBuildArtifact":"true","uri":"gcr.io/acme/bad"}',
    ),
]
DEPS_FROM_TASKS = [
    {"name": "pipeline", "uri": "git+https://github.com/acme/pipelines.git", "digest": {"sha1": S1["a"]}},
    {"uri": "oci://gcr.io/acme/git", "digest": {"sha256": H["2"]}},
    {"name": "pipelineTask", "uri": "git+https://github.com/acme/catalog.git", "digest": {"sha1": S1["b"]}},
    {"uri": "oci://gcr.io/acme/kaniko", "digest": {"sha256": H["4"]}},
    # build-tr-1: no stepAction/restore in v2alpha3, but its step image is still a dependency.
    {"uri": "oci://gcr.io/acme/cache-tool", "digest": {"sha256": H["5"]}},
    {"uri": "oci://docker.io/library/registry", "digest": {"sha256": H["6"]}},
    {"uri": "oci://docker.io/library/alpine", "digest": {"sha256": H["f"]}},
]
SRC = {"name": "inputs/result", "uri": "https://example.com/src.tgz", "digest": {"sha256": H["3"]}}
APP_GIT = {"name": "inputs/result", "uri": "git+https://github.com/acme/app.git", "digest": {"sha1": S1["1"]}}


def test_pipelinerun_without_deep_inspection() -> None:
    got = statement("pipelinerun-release.yaml")
    assert got["subject"] == [{"name": "gcr.io/acme/app", "digest": {"sha256": H["7"]}}]
    assert got["predicate"]["buildDefinition"]["resolvedDependencies"] == [*DEPS_FROM_TASKS, SRC, APP_GIT]
    # All PipelineRun results, the invalid ARTIFACT_OUTPUTS included; children's results never.
    assert got["predicate"]["runDetails"]["byproducts"] == PR_BYPRODUCTS


def test_pipelinerun_with_deep_inspection() -> None:
    got = statement("pipelinerun-release.yaml", deep_inspection=True)
    # Children's subjects first (task results only), then the PipelineRun's, merged by AppendSubjects.
    assert got["subject"] == [
        {"name": "gcr.io/acme/app", "digest": {"sha256": H["7"]}},
        {"name": "gcr.io/acme/tool", "digest": {"sha256": H["8"]}},
    ]
    assert got["predicate"]["buildDefinition"]["resolvedDependencies"] == [
        *DEPS_FROM_TASKS,
        SRC,
        APP_GIT,
        {"name": "inputs/result", "uri": "docker.io/library/golang", "digest": {"sha256": H["0"]}},
    ]
    assert got["predicate"]["runDetails"]["byproducts"] == PR_BYPRODUCTS


def test_v1beta1_taskrun_is_formatted_as_v1() -> None:
    got = statement("taskrun-v1beta1.yaml")
    # IMAGES entries normalised (busybox -> index.docker.io/library/busybox); ARTIFACT_URI pair keeps
    # its raw uri and algorithm.
    assert got["subject"] == [
        {"name": "gcr.io/acme/a", "digest": {"sha256": H["a"]}},
        {"name": "index.docker.io/library/busybox", "digest": {"sha256": H["b"]}},
        {"name": "pkg:npm/app@1.0.0", "digest": {"sha512": "cd" * 64}},
    ]
    run_spec = got["predicate"]["buildDefinition"]["externalParameters"]["runSpec"]
    # TaskRef.convertTo (Pipeline v1.15) drops the v1beta1 bundle field; without a resolver the task is
    # not remote, so there is no buildConfigSource.
    assert run_spec["taskRef"] == {"name": "build"}
    assert "buildConfigSource" not in got["predicate"]["buildDefinition"]["externalParameters"]
    assert [b["name"] for b in got["predicate"]["runDetails"]["byproducts"]] == [
        "taskRunResults/IMAGES",
        "taskRunResults/pkg-ARTIFACT_URI",
        "taskRunResults/pkg-ARTIFACT_DIGEST",
    ]
    # No featureFlags, no refSource: internalParameters still emitted, empty.
    assert got["predicate"]["buildDefinition"]["internalParameters"] == {}


def test_taskrun_without_results_or_times_omits_empty_fields() -> None:
    (tr,) = runs("taskrun-v1beta1.yaml")
    for key in ("results", "startTime", "completionTime", "steps"):
        tr.obj["status"].pop(key, None)
    tr.obj["metadata"].pop("uid")
    got = generate(tr, [], Options(format="slsa/v2alpha3", builder_id="")).statement
    # protojson drops empty repeated fields and empty strings but keeps set messages.
    assert "subject" not in got
    assert "resolvedDependencies" not in got["predicate"]["buildDefinition"]
    assert got["predicate"]["runDetails"] == {"builder": {}, "metadata": {}}


def test_slsa_tekton_labels_null_when_absent() -> None:
    got = statement("taskrun-v1beta1.yaml", build_type=TEKTON)
    assert got["predicate"]["buildDefinition"]["internalParameters"] == {"labels": None, "annotations": None}


def test_unsupported_build_type() -> None:
    main, *children = runs("pipelinerun-release.yaml")
    with pytest.raises(InputError, match="unsupported build type"):
        generate(main, children, Options(format="slsa/v2alpha3", build_type="https://example.com/x"))
