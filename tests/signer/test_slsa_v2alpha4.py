"""slsa/v2alpha4 statements, checked against expectations written by hand from Tekton Chains' rules
(pkg/chains/formats/slsa/v2alpha4 and internal/*). Comments name the rule behind each non-obvious value.

Every input in testdata/ was also run through Chains' own formatters (built from tektoncd/chains
e44b60f, outside this repository) for all formats, both build types and deep inspection on/off; the
statements agree field for field (the slsa-tekton task content byte for byte for v1 input)."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from attestation import intoto
from attestation.errors import InputError
from signer.documents import load_documents
from signer.provenance import Options, generate
from signer.run import Run, to_run

DATA = Path(__file__).parent / "testdata" / "slsa_v2alpha"
SLSA = "https://tekton.dev/chains/v2/slsa"
TEKTON = "https://tekton.dev/chains/v2/slsa-tekton"
H = {c: c * 64 for c in "0123456789abcdef"}  # sha256 hex fixtures
S1 = {c: c * 40 for c in "0123456789abcdef"}  # sha1 hex fixtures


def content(json_text: str) -> str:
    """Standard base64 of a JSON text typed by hand (what Go's json.Marshal would write)."""
    return base64.b64encode(json_text.encode()).decode()


def runs(name: str) -> list[Run]:
    path = DATA / name
    return [to_run(d, source=str(path)) for d in load_documents(path)]


def statement(name: str, **options: object) -> tuple[dict, list[str]]:
    main, *children = runs(name)
    prov = generate(main, children, Options(format="slsa/v2alpha4", **options))  # type: ignore[arg-type]
    return prov.statement, prov.warnings


def test_taskrun_golden() -> None:
    got, warnings = statement("taskrun-build.yaml", builder_id="https://builder.example/tekton")
    expected = {
        "_type": "https://in-toto.io/Statement/v1",
        # Step results first (build step's isBuildArtifact output; its OCI twin has the same name and
        # digest so AppendSubjects merges it), then the TaskRun's results: IMAGE_URL trimmed, tag dropped.
        # sbom (isBuildArtifact absent) and bad (invalid digest) are not subjects.
        "subject": [
            {"name": "gcr.io/acme/bin", "digest": {"sha256": H["5"]}},
            {"name": "gcr.io/acme/app", "digest": {"sha256": H["7"]}},
        ],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": SLSA,
                "externalParameters": {
                    # Remote resolver (git, not Cluster) + refSource => buildConfigSource.
                    "buildConfigSource": {
                        "ref": f"sha1:{S1['a']}",
                        "repository": "git+https://github.com/acme/catalog.git",
                        "path": "task/build.yaml",
                    },
                    # Go round trip of TaskRunSpec: serviceAccountName is not omitempty (""), the empty
                    # workspaces list and the unknown field vanish, timeout is Duration.String().
                    "runSpec": {
                        "params": [
                            {"name": "CHAINS-GIT_URL", "value": "https://github.com/acme/app"},
                            {"name": "CHAINS-GIT_COMMIT", "value": S1["1"]},
                        ],
                        "serviceAccountName": "",
                        "taskRef": {
                            "resolver": "git",
                            "params": [
                                {"name": "url", "value": "https://github.com/acme/catalog.git"},
                                {"name": "pathInRepo", "value": "task/build.yaml"},
                            ],
                        },
                        "timeout": "1h0m0s",
                    },
                },
                # config.FeatureFlags: keys matched case-insensitively, omitempty drops false, unknown
                # keys dropped.
                "internalParameters": {
                    "tekton-pipelines-feature-flags": {
                        "enableAPIFields": "beta",
                        "enableStepActions": True,
                        "maxResultSize": 4096,
                    }
                },
                "resolvedDependencies": [
                    {
                        "name": "task",
                        "uri": "git+https://github.com/acme/catalog.git",
                        "digest": {"sha1": S1["a"]},
                    },
                    # Step images (push repeats fetch's image: merged), then the sidecar; docker-pullable://
                    # stripped, the repository is not normalised.
                    {"uri": "oci://gcr.io/acme/git", "digest": {"sha256": H["2"]}},
                    {"uri": "oci://gcr.io/acme/kaniko", "digest": {"sha256": H["4"]}},
                    {"uri": "oci://docker.io/library/registry", "digest": {"sha256": H["6"]}},
                    # StepAction inputs: a step's CHAINS-GIT_COMMIT without a URL still yields git+.git
                    # (SPDXGit runs before the emptiness check); ARTIFACT_INPUTS algorithm lower-cased.
                    {"name": "inputs/result", "uri": "git+.git", "digest": {"sha1": S1["d"]}},
                    {
                        "name": "inputs/result",
                        "uri": "https://example.com/src.tgz",
                        "digest": {"sha256": H["3"]},
                    },
                    {
                        "name": "stepAction/fetch",
                        "uri": "git+https://github.com/acme/stepactions.git",
                        "digest": {"sha1": S1["c"]},
                    },
                    # Task git: spec.params override the taskSpec default URL; git+ and .git added.
                    {
                        "name": "inputs/result",
                        "uri": "git+https://github.com/acme/app.git",
                        "digest": {"sha1": S1["1"]},
                    },
                    # " SHA1:..." -> ParseDigest trims and lower-cases the algorithm.
                    {"name": "inputs/result", "uri": "pkg:npm/left-pad@1.3.0", "digest": {"sha1": S1["9"]}},
                ],
            },
            "runDetails": {
                "builder": {"id": "https://builder.example/tekton"},
                # completionTime 12:01:30.250+02:00 -> UTC, protobuf Timestamp prints 3 fraction digits.
                "metadata": {
                    "invocationId": "0b6c1d2e-0000-4000-8000-000000000001",
                    "startedOn": "2024-05-01T10:00:00Z",
                    "finishedOn": "2024-05-01T10:01:30.250Z",
                },
                # No IMAGE_URL/IMAGE_DIGEST, no build artifact, no invalid build artifact; objects with
                # sorted keys and raw values; Go escapes < > & in JSON strings.
                "byproducts": [
                    {
                        "name": "taskRunResults/build-app/sbom-ARTIFACT_OUTPUTS",
                        "mediaType": "application/json",
                        "content": content(
                            '{"digest":"sha256:' + H["8"] + '","uri":"https://example.com/sbom.json"}'
                        ),
                    },
                    {
                        "name": "taskRunResults/build-app/lib-ARTIFACT_INPUTS",
                        "mediaType": "application/json",
                        "content": content(
                            '{"digest":" SHA1:' + S1["9"] + '","uri":"pkg:npm/left-pad@1.3.0"}'
                        ),
                    },
                    {
                        "name": "taskRunResults/build-app/notes",
                        "mediaType": "application/json",
                        "content": content('"a\\u003cb \\u0026 c\\u003ed"'),
                    },
                    {
                        "name": "taskRunResults/build-app/tags",
                        "mediaType": "application/json",
                        "content": content('["v1","latest"]'),
                    },
                    {
                        "name": "stepResults/build-app/CHAINS-GIT_COMMIT",
                        "mediaType": "application/json",
                        "content": content('"' + S1["d"] + '"'),
                    },
                    {
                        "name": "stepResults/build-app/src-ARTIFACT_INPUTS",
                        "mediaType": "application/json",
                        "content": content(
                            '{"digest":"SHA256:' + H["3"] + '","uri":"https://example.com/src.tgz"}'
                        ),
                    },
                    {
                        "name": "stepResults/build-app/log",
                        "mediaType": "application/json",
                        "content": content('"done\\n"'),
                    },
                ],
            },
        },
    }
    assert got == expected
    assert any("bad-ARTIFACT_OUTPUTS" in w for w in warnings)


def test_taskrun_statement_parses_as_in_toto() -> None:
    got, _ = statement("taskrun-build.yaml")
    parsed = intoto.parse(intoto.serialize(got))
    assert parsed is not None
    # What a verifier reads back is what was built.
    assert json.loads(intoto.serialize(got)) == got


def test_slsa_tekton_taskrun_adds_labels_and_annotations_unfiltered() -> None:
    got, _ = statement("taskrun-build.yaml", build_type=TEKTON)
    build_def = got["predicate"]["buildDefinition"]
    assert build_def["buildType"] == TEKTON
    # Unlike slsa/v1's environment, chains.tekton.dev/* annotations are kept.
    assert build_def["internalParameters"]["labels"] == {"app": "demo"}
    assert build_def["internalParameters"]["annotations"] == {
        "chains.tekton.dev/signed": "true",
        "note": "x<y",
    }


@pytest.mark.parametrize("build_type", ["https://tekton.dev/chains/v2/other", "slsa"])
def test_unsupported_build_type_is_an_input_error(build_type: str) -> None:
    main, *children = runs("taskrun-build.yaml")
    with pytest.raises(InputError, match="unsupported build type"):
        generate(main, children, Options(format="slsa/v2alpha4", build_type=build_type))


def _deps(st: dict) -> list[dict]:
    return st["predicate"]["buildDefinition"]["resolvedDependencies"]


PIPELINE = {
    "name": "pipeline",
    "uri": "git+https://github.com/acme/pipelines.git",
    "digest": {"sha1": S1["a"]},
}
CATALOG = {"uri": "git+https://github.com/acme/catalog.git", "digest": {"sha1": S1["b"]}}
# Executed children in pipeline order: clone, build (matrix: build-tr-0, build-tr-1), notify (finally);
# lint-tr has no completionTime and contributes nothing anywhere.
DEPS_FROM_TASKS = [
    PIPELINE,
    # clone-tr's pipelineTask descriptor has the pipeline's uri+digest: a later duplicate, dropped.
    {"uri": "oci://gcr.io/acme/git", "digest": {"sha256": H["2"]}},
    {"name": "pipelineTask", **CATALOG},
    {"uri": "oci://gcr.io/acme/kaniko", "digest": {"sha256": H["4"]}},
    # build-tr-1: its pipelineTask and kaniko duplicate build-tr-0's (dropped); stepAction/* always kept.
    {
        "name": "stepAction/restore",
        "uri": "git+https://github.com/acme/stepactions.git",
        "digest": {"sha1": S1["c"]},
    },
    {"uri": "oci://gcr.io/acme/cache-tool", "digest": {"sha256": H["5"]}},
    {"uri": "oci://docker.io/library/registry", "digest": {"sha256": H["6"]}},
    {"uri": "oci://docker.io/library/alpine", "digest": {"sha256": H["f"]}},
]
SRC = {"name": "inputs/result", "uri": "https://example.com/src.tgz", "digest": {"sha256": H["3"]}}
# pipelineSpec default URL + PipelineRun result commit; clone-tr's own git pair is the same artifact.
APP_GIT = {"name": "inputs/result", "uri": "git+https://github.com/acme/app.git", "digest": {"sha1": S1["1"]}}
PR_BYPRODUCTS = [
    # IMAGE_URL/IMAGE_DIGEST and the invalid build artifact bad-ARTIFACT_OUTPUTS are left out.
    {
        "name": "pipelineRunResults/release-42/CHAINS-GIT_COMMIT",
        "mediaType": "application/json",
        "content": content('"' + S1["1"] + '"'),
    },
    {
        "name": "pipelineRunResults/release-42/src-ARTIFACT_INPUTS",
        "mediaType": "application/json",
        "content": content('{"digest":"sha256:' + H["3"] + '","uri":"https://example.com/src.tgz"}'),
    },
]


def test_pipelinerun_without_deep_inspection() -> None:
    got, _ = statement("pipelinerun-release.yaml")
    assert got["subject"] == [{"name": "gcr.io/acme/app", "digest": {"sha256": H["7"]}}]
    assert got["predicate"]["buildDefinition"] == {
        "buildType": SLSA,
        "externalParameters": {
            "buildConfigSource": {
                "ref": f"sha1:{S1['a']}",
                "repository": "git+https://github.com/acme/pipelines.git",
                "path": "pipeline/release.yaml",
            },
            "runSpec": {
                "pipelineRef": {
                    "resolver": "git",
                    "params": [
                        {"name": "url", "value": "https://github.com/acme/pipelines.git"},
                        {"name": "pathInRepo", "value": "pipeline/release.yaml"},
                    ],
                },
                "params": [{"name": "IMAGE", "value": "gcr.io/acme/app"}],
                "taskRunTemplate": {"serviceAccountName": "builder"},
                "timeouts": {"pipeline": "2h0m0s"},
            },
        },
        # No featureFlags recorded: the message is still emitted, empty.
        "internalParameters": {},
        "resolvedDependencies": [*DEPS_FROM_TASKS, SRC, APP_GIT],
    }
    assert got["predicate"]["runDetails"] == {
        "builder": {"id": "https://tekton.dev/chains/v2"},
        "metadata": {
            "invocationId": "5e1f0000-0000-4000-8000-000000000042",
            "startedOn": "2024-05-02T09:00:00Z",
            "finishedOn": "2024-05-02T09:10:00Z",
        },
        "byproducts": PR_BYPRODUCTS,
    }


def test_pipelinerun_with_deep_inspection() -> None:
    got, _ = statement("pipelinerun-release.yaml", deep_inspection=True)
    # PipelineRun subjects first, then each executed child (steps before results); build-tr-0 repeats
    # gcr.io/acme/app with the same digest (merged); never-completed lint-tr's image is absent.
    assert got["subject"] == [
        {"name": "gcr.io/acme/app", "digest": {"sha256": H["7"]}},
        {"name": "gcr.io/acme/scan-report", "digest": {"sha256": H["e"]}},
        {"name": "gcr.io/acme/tool", "digest": {"sha256": H["8"]}},
    ]
    assert _deps(got) == [
        *DEPS_FROM_TASKS,
        # Deep inspection + v2alpha4: StepAction inputs of the children come before the pipeline inputs.
        {"name": "inputs/result", "uri": "oci://gcr.io/acme/cache", "digest": {"sha256": H["9"]}},
        SRC,
        # Children's inputs (clone-tr's git, build-tr-0's ARTIFACT_INPUTS); the PipelineRun's own git
        # pair then merges into clone-tr's entry instead of being appended.
        APP_GIT,
        {"name": "inputs/result", "uri": "docker.io/library/golang", "digest": {"sha256": H["0"]}},
    ]
    assert got["predicate"]["runDetails"]["byproducts"] == [
        *PR_BYPRODUCTS,
        {
            "name": "taskRunResults/clone-tr/CHAINS-GIT_URL",
            "mediaType": "application/json",
            "content": content('"https://github.com/acme/app.git"'),
        },
        {
            "name": "taskRunResults/clone-tr/CHAINS-GIT_COMMIT",
            "mediaType": "application/json",
            "content": content('"' + S1["1"] + '"'),
        },
        {
            "name": "taskRunResults/build-tr-0/base-ARTIFACT_INPUTS",
            "mediaType": "application/json",
            "content": content('{"digest":"sha256:' + H["0"] + '","uri":"docker.io/library/golang"}'),
        },
        # build-tr-1's scan-ARTIFACT_OUTPUTS is a build artifact (a subject), so not a byproduct.
        {
            "name": "stepResults/build-tr-1/cache-ARTIFACT_INPUTS",
            "mediaType": "application/json",
            "content": content('{"digest":"sha256:' + H["9"] + '","uri":"oci://gcr.io/acme/cache"}'),
        },
        {
            "name": "taskRunResults/notify-tr/status",
            "mediaType": "application/json",
            "content": content('"ok"'),
        },
    ]
    intoto.parse(intoto.serialize(got))


def test_slsa_tekton_pipeline_tasks_embed_each_executed_taskrun() -> None:
    main, *children = runs("pipelinerun-release.yaml")
    got = generate(main, children, Options(format="slsa/v2alpha4", build_type=TEKTON)).statement
    tasks = [d for d in _deps(got) if d.get("name") == "pipelineTask"]
    # One per executed TaskRun: content makes each unique, so neither the clone task sharing the
    # pipeline's source nor the second matrix run is de-duplicated; notify has no refSource.
    by_name = {c.name: c for c in children}
    embedded = [json.loads(base64.b64decode(t["content"])) for t in tasks]
    assert [e["metadata"]["name"] for e in embedded] == ["clone-tr", "build-tr-0", "build-tr-1", "notify-tr"]
    for decoded in embedded:
        child = by_name[decoded["metadata"]["name"]]
        # The content is Go's json.Marshal of the TaskRun (tests/signer/test_gojson.py has the byte-level
        # rules); the run's identity, inputs and outcome survive the round trip unchanged.
        assert decoded["metadata"]["uid"] == child.uid
        assert decoded["metadata"]["labels"] == child.labels
        assert decoded["spec"].get("params") == child.spec.get("params")
        assert decoded["status"]["results"] == child.status["results"]
        assert decoded["status"]["completionTime"] == child.completion_time
    assert [(t.get("uri"), t.get("digest")) for t in tasks] == [
        ("git+https://github.com/acme/pipelines.git", {"sha1": S1["a"]}),
        (CATALOG["uri"], CATALOG["digest"]),
        (CATALOG["uri"], CATALOG["digest"]),
        (None, None),
    ]
    internal = got["predicate"]["buildDefinition"]["internalParameters"]
    assert internal == {
        "labels": {"tekton.dev/pipeline": "release"},
        "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
    }


def test_slsa_tekton_content_escapes_like_go() -> None:
    main, *children = runs("pipelinerun-release.yaml")
    children[0].obj["metadata"]["annotations"] = {"msg": "a<b>&c"}
    got = generate(main, children, Options(format="slsa/v2alpha4", build_type=TEKTON)).statement
    raw = base64.b64decode(_deps(got)[1]["content"])
    assert b'"msg":"a\\u003cb\\u003e\\u0026c"' in raw
    assert json.loads(raw)["metadata"]["annotations"] == {"msg": "a<b>&c"}


def test_bad_step_image_id_fails_the_whole_statement() -> None:
    main, *children = runs("pipelinerun-release.yaml")
    children[1].obj["status"]["steps"][0]["imageID"] = "gcr.io/acme/kaniko"
    with pytest.raises(InputError, match=r"build-tr-0.*imageID 'gcr.io/acme/kaniko'"):
        generate(main, children, Options(format="slsa/v2alpha4"))


def test_cluster_resolver_is_not_remote() -> None:
    (tr,) = runs("taskrun-build.yaml")
    tr.obj["spec"]["taskRef"]["resolver"] = "Cluster"
    got = generate(tr, [], Options(format="slsa/v2alpha4")).statement
    assert "buildConfigSource" not in got["predicate"]["buildDefinition"]["externalParameters"]
    # The refSource is still the task's resolved dependency.
    assert _deps(got)[0]["name"] == "task"


SAMPLE = Path(__file__).parents[2] / "signer" / "samples" / "tep0084-pipelinerun.yaml"


@pytest.mark.parametrize("fmt", ["slsa/v2alpha3", "slsa/v2alpha4"])
def test_tep0084_sample_pipeline(fmt: str) -> None:
    main, *children = [to_run(d, source=str(SAMPLE)) for d in load_documents(SAMPLE)]
    got = generate(main, children, Options(format=fmt)).statement
    # The sample's pipeline results propagate image-build's IMAGE_URL/IMAGE_DIGEST.
    assert got["subject"] == [
        {
            "name": "registry.example.com/provgate/demo-app",
            "digest": {"sha256": "b3486b263b16cfa80b670a7875e6706a80572b7ccb829a4c7e51109276ab2744"},
        }
    ]
    deps = _deps(got)
    # Bundle-resolved pipeline first; every pipeline task came from a bundle, so each has a descriptor.
    assert deps[0]["name"] == "pipeline"
    assert deps[0]["uri"] == "gcr.io/tekton-releases/catalog/upstream/tep0084-build"
    assert [d["uri"].rsplit("/", 1)[1] for d in deps if d.get("name") == "pipelineTask"] == [
        "git-clone",
        "trivy-scanner",
        "golangci-lint",
        "buildah",
    ]
    assert deps[-1] == {
        "name": "inputs/result",
        "uri": "git+https://github.com/example/demo-app.git",
        "digest": {"sha1": "5caa6bc727937f77129f56838f4dd7b477ba567f"},
    }
    intoto.parse(intoto.serialize(got))
