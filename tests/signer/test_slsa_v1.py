"""Golden tests for format slsa/v1 (in-toto v0.1 statement, SLSA v0.2 predicate).

The expected JSON files in testdata/slsa_v1 were produced by our code and then checked line by line
against Chains' rules (formats/slsa/v1, attest, internal/material, extract); the assertions below pin
the non-obvious values with the rule each comes from, so a wrong golden cannot hide them.

Every input in testdata/ was also run through Chains' own formatters (built from tektoncd/chains
e44b60f, outside this repository) for all formats, both build types and deep inspection on/off; the
statements agree field for field (the slsa-tekton task content byte for byte for v1 input).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from attestation import intoto
from signer.documents import load_documents
from signer.provenance import Options, generate
from signer.run import child_taskruns, to_run
from signer.samples import load as load_sample

DATA = Path(__file__).parent / "testdata"
BUILDER = "https://ci.example.com/builder"


def runs(path: Path):
    rs = [to_run(d, source=str(path)) for d in load_documents(path)]
    main = next((r for r in rs if r.kind == "PipelineRun"), rs[0])
    others = [r for r in rs if r is not main]
    return main, (child_taskruns(main, others) if main.kind == "PipelineRun" else [])


def statement(path: Path, **opts) -> dict:
    main, children = runs(path)
    return generate(main, children, Options(**opts)).statement


def golden(name: str) -> dict:
    return json.loads((DATA / "slsa_v1" / name).read_text())


def test_taskrun_golden():
    got = statement(DATA / "runs" / "taskrun-build.yaml", builder_id=BUILDER)
    assert got == golden("taskrun-build.json")
    # Serialised key order is the proto order Chains emits.
    assert list(json.loads(intoto.serialize(got))) == ["_type", "subject", "predicateType", "predicate"]


def test_taskrun_rules_pinned():
    got = statement(DATA / "runs" / "taskrun-build.yaml", builder_id=BUILDER)
    pred = got["predicate"]
    assert got["_type"] == "https://in-toto.io/Statement/v0.1"
    assert got["predicateType"] == "https://slsa.dev/provenance/v0.2"
    assert pred["buildType"] == "tekton.dev/v1/TaskRun"
    assert pred["builder"] == {"id": BUILDER}
    # IMAGE_URL "registry.example.com/app:1.0\n": trimmed, tag dropped; ARTIFACT_OUTPUTS keeps its raw uri.
    assert [s["name"] for s in got["subject"]] == [
        "registry.example.com/app",
        "oci://registry.example.com/app.sbom",
    ]
    # Defaults (FLAGS, CONTEXT, CHAINS-GIT_COMMIT) overridden by spec.params.
    assert pred["invocation"]["parameters"]["FLAGS"] == ["--pull", "--no-cache"]
    assert pred["invocation"]["parameters"]["CONTEXT"] == "."
    # last-applied-configuration and chains.tekton.dev/* annotations are dropped.
    assert pred["invocation"]["environment"]["annotations"] == {"team.example.com/owner": "payments"}
    steps = pred["buildConfig"]["steps"]
    assert steps[0]["entryPoint"].startswith("buildah bud") and steps[0]["arguments"] is None
    assert steps[1]["entryPoint"] == "buildah push"  # command joined when there is no script
    # TaskRun steps pair by name: the unnamed spec step does not match state "unnamed-2".
    assert steps[2]["entryPoint"] == "" and steps[2]["environment"]["container"] == "unnamed-2"
    assert steps[0]["environment"]["image"].startswith("oci://quay.io/"), "docker-pullable:// stripped"
    uris = [m["uri"] for m in pred["materials"]]
    # Step images (duplicate merged), sidecar image, git (commit from results wins), ARTIFACT_INPUTS.
    assert uris == [
        "oci://quay.io/buildah/stable",
        "oci://docker.io/library/alpine",
        "oci://docker.io/library/docker",
        "git+https://github.com/example/app.git",
        "pkg:oci/alpine",
    ]
    assert pred["materials"][3]["digest"] == {"sha1": "3" * 40}
    assert pred["materials"][4]["digest"] == {"sha256": "a" * 64}  # "SHA256:" parsed to lower case
    # completionTime "13:00:05+01:00" is reported in UTC; the reproducible label is honoured.
    assert pred["metadata"]["buildFinishedOn"] == "2024-03-01T12:00:05Z"
    assert pred["metadata"]["reproducible"] is True


def test_v1beta1_taskrun_gives_the_same_statement():
    v1 = statement(DATA / "runs" / "taskrun-build.yaml", builder_id=BUILDER)
    beta = statement(DATA / "runs" / "taskrun-build-v1beta1.yaml", builder_id=BUILDER)
    assert beta == v1
    assert beta["predicate"]["buildType"] == "tekton.dev/v1/TaskRun"


@pytest.mark.parametrize(
    ("deep", "name"), [(False, "pipelinerun-matrix.json"), (True, "pipelinerun-matrix-deep.json")]
)
def test_pipelinerun_golden(deep, name):
    assert statement(DATA / "runs" / "pipelinerun-matrix.yaml", deep_inspection=deep) == golden(name)


def test_pipelinerun_build_config_rules():
    pred = statement(DATA / "runs" / "pipelinerun-matrix.yaml")["predicate"]
    tasks = pred["buildConfig"]["tasks"]
    # skipped-task has no TaskRun; broken's step count differs from its taskSpec: both absent.
    assert [t["name"] for t in tasks] == ["fetch", "compile", "compile", "notify"]
    assert tasks[0]["ref"] == {} and "after" not in tasks[0]  # embedded taskSpec
    assert tasks[1]["after"] == ["fetch"]  # from $(tasks.fetch.results.path), no runAfter
    assert [t["invocation"]["parameters"]["arch"] for t in tasks[1:3]] == ["amd64", "arm64"]  # matrix
    assert tasks[3]["after"] == ["broken"]  # finally without runAfter: last non-finally task that ran
    assert tasks[3]["status"] == "Failed"
    assert {t["serviceAccountName"] for t in tasks} == {"sa-build"}
    assert "results" not in tasks[3] and tasks[0]["results"][0] == {
        "name": "path",
        "type": "string",
        "value": "/ws\n",
    }
    assert pred["buildType"] == "tekton.dev/v1/PipelineRun"


def test_deep_inspection_adds_child_subjects_first_and_child_materials():
    shallow = statement(DATA / "runs" / "pipelinerun-matrix.yaml")
    deep = statement(DATA / "runs" / "pipelinerun-matrix.yaml", deep_inspection=True)
    assert [s["name"] for s in shallow["subject"]] == ["gcr.io/x/app", "gcr.io/x/app-debug"]
    assert [s["name"] for s in deep["subject"]] == [
        "https://files.example.com/app-amd64",
        "https://files.example.com/app-arm64",
        "gcr.io/x/broken",
        "gcr.io/x/app",
        "gcr.io/x/app-debug",
    ]
    git = [m["digest"]["sha1"] for m in deep["predicate"]["materials"] if m["uri"].startswith("git+")]
    assert git == ["5" * 40, "4" * 40]  # child git (deep) before the PipelineRun's own
    git = [m["digest"]["sha1"] for m in shallow["predicate"]["materials"] if m["uri"].startswith("git+")]
    assert git == ["4" * 40]  # commit from the pipelineSpec default, URL from spec.params


def test_tep0084_sample_golden_and_deep_inspection_merges():
    pr, trs = load_sample("tep0084-pipelinerun")
    main = to_run(pr, source="sample")
    children = child_taskruns(main, [to_run(t, source="sample") for t in trs])
    shallow = generate(main, children, Options()).statement
    assert shallow == golden("tep0084-pipelinerun.json")
    # The build task emits the same image as the pipeline result and git-clone the same commit:
    # with deep inspection they merge into the same subject and material, nothing is duplicated.
    assert generate(main, children, Options(deep_inspection=True)).statement == shallow
    tasks = shallow["predicate"]["buildConfig"]["tasks"]
    assert [t["name"] for t in tasks] == ["git-clone", "source-scan", "lint", "image-build", "image-scan"]
    assert tasks[3]["after"] == ["source-scan", "git-clone"]  # runAfter, then result refs
    assert all(t["ref"]["resolver"] == "bundles" for t in tasks)


def test_sample_image_substitution():
    digest = "sha256:" + "9" * 64
    pr, trs = load_sample("tep0084-pipelinerun", image_url="localhost:5000/demo", image_digest=digest)
    main = to_run(pr, source="sample")
    children = child_taskruns(main, [to_run(t, source="sample") for t in trs])
    got = generate(main, children, Options(deep_inspection=True)).statement
    assert got["subject"] == [{"name": "localhost:5000/demo", "digest": {"sha256": "9" * 64}}]


def _to_v1beta1_pipelinerun(items: list[dict]) -> list[dict]:
    out = copy.deepcopy(items)
    for obj in out:
        obj["apiVersion"] = "tekton.dev/v1beta1"
        status = obj["status"]
        if obj["kind"] == "PipelineRun":
            status["pipelineResults"] = status.pop("results")
            obj["spec"]["serviceAccountName"] = obj["spec"].pop("taskRunTemplate")["serviceAccountName"]
            status["taskRuns"] = {
                c["name"]: {"pipelineTaskName": c["pipelineTaskName"]} for c in status.pop("childReferences")
            }
        elif "results" in status:
            status["taskResults"] = status.pop("results")
    return out


def test_v1beta1_pipelinerun_gives_the_same_statement(tmp_path):
    path = DATA / "runs" / "pipelinerun-matrix.yaml"
    beta = tmp_path / "beta.json"
    beta.write_text(json.dumps({"kind": "List", "items": _to_v1beta1_pipelinerun(load_documents(path))}))
    for deep in (False, True):
        assert statement(beta, deep_inspection=deep) == statement(path, deep_inspection=deep)


def test_pipelinerun_without_pipeline_spec_has_null_tasks():
    obj = {
        "apiVersion": "tekton.dev/v1",
        "kind": "PipelineRun",
        "metadata": {"name": "p"},
        "status": {"completionTime": "2024-01-01T00:00:00Z"},
    }
    got = generate(to_run(obj, source="x"), [], Options()).statement
    assert got["predicate"]["buildConfig"] == {"tasks": None}
    assert "subject" not in got and "materials" not in got["predicate"]
    assert got["predicate"]["invocation"] == {"configSource": {}, "parameters": {}}


def test_bad_image_id_fails_closed():
    obj = {
        "apiVersion": "tekton.dev/v1",
        "kind": "TaskRun",
        "metadata": {"name": "t"},
        "status": {"completionTime": "2024-01-01T00:00:00Z", "steps": [{"name": "s", "imageID": "alpine"}]},
    }
    from attestation.errors import InputError

    with pytest.raises(InputError, match=r"status.steps\[0\]: imageID 'alpine' is not"):
        generate(to_run(obj, source="x"), [], Options())
