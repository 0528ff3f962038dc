"""slsa/v2alpha4 statements, checked against expectations written by hand from Tekton Chains' rules
(pkg/chains/formats/slsa/v2alpha4 and internal/*). Comments name the rule behind each non-obvious value."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from attestation import intoto
from attestation.errors import InputError
from signer.provenance import Options, generate
from signer.run import Run, load_documents, to_run

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
                    {"name": "task", "uri": "git+https://github.com/acme/catalog.git",
                     "digest": {"sha1": S1["a"]}},
                    # Step images (push repeats fetch's image: merged), then the sidecar; docker-pullable://
                    # stripped, the repository is not normalised.
                    {"uri": "oci://gcr.io/acme/git", "digest": {"sha256": H["2"]}},
                    {"uri": "oci://gcr.io/acme/kaniko", "digest": {"sha256": H["4"]}},
                    {"uri": "oci://docker.io/library/registry", "digest": {"sha256": H["6"]}},
                    # StepAction inputs: a step's CHAINS-GIT_COMMIT without a URL still yields git+.git
                    # (SPDXGit runs before the emptiness check); ARTIFACT_INPUTS algorithm lower-cased.
                    {"name": "inputs/result", "uri": "git+.git", "digest": {"sha1": S1["d"]}},
                    {"name": "inputs/result", "uri": "https://example.com/src.tgz",
                     "digest": {"sha256": H["3"]}},
                    {"name": "stepAction/fetch", "uri": "git+https://github.com/acme/stepactions.git",
                     "digest": {"sha1": S1["c"]}},
                    # Task git: spec.params override the taskSpec default URL; git+ and .git added.
                    {"name": "inputs/result", "uri": "git+https://github.com/acme/app.git",
                     "digest": {"sha1": S1["1"]}},
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
                    {"name": "taskRunResults/build-app/sbom-ARTIFACT_OUTPUTS",
                     "mediaType": "application/json",
                     "content": content(
                         '{"digest":"sha256:' + H["8"] + '","uri":"https://example.com/sbom.json"}')},
                    {"name": "taskRunResults/build-app/lib-ARTIFACT_INPUTS", "mediaType": "application/json",
                     "content": content('{"digest":" SHA1:' + S1["9"] + '","uri":"pkg:npm/left-pad@1.3.0"}')},
                    {"name": "taskRunResults/build-app/notes", "mediaType": "application/json",
                     "content": content('"a\\u003cb \\u0026 c\\u003ed"')},
                    {"name": "taskRunResults/build-app/tags", "mediaType": "application/json",
                     "content": content('["v1","latest"]')},
                    {"name": "stepResults/build-app/CHAINS-GIT_COMMIT", "mediaType": "application/json",
                     "content": content('"' + S1["d"] + '"')},
                    {"name": "stepResults/build-app/src-ARTIFACT_INPUTS", "mediaType": "application/json",
                     "content": content(
                         '{"digest":"SHA256:' + H["3"] + '","uri":"https://example.com/src.tgz"}')},
                    {"name": "stepResults/build-app/log", "mediaType": "application/json",
                     "content": content('"done\\n"')},
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
