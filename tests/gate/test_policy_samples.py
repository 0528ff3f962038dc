"""The default policy over the bundled TEP-0084 samples' provenance, as the signer generates it.

Expected codes checked by hand against the sample YAML (signer/samples/): the good pipeline runs git-clone,
trivy-scanner (source-scan) before buildah (image-build), every task from a digest-pinned bundle of
gcr.io/tekton-releases/catalog/upstream/; injected-task adds inject-miner from quay.io/evil/tasks/miner;
no-scan drops source-scan, so the only trivy-scanner left is image-scan in `finally`, after the build.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gate.policy import PolicyEngine, evaluate_input, load_policy_set, make_engine
from policies import ROOT
from signer import samples
from signer.provenance import Options, generate
from signer.run import to_run
from tests.infra.opa import opa_server, opa_url  # noqa: F401

FORMATS = {
    "slsa/v1": Options(format="slsa/v1"),
    "slsa/v2alpha4": Options(format="slsa/v2alpha4", build_type="https://tekton.dev/chains/v2/slsa-tekton"),
}
EXPECTED = {
    "tep0084-pipelinerun": [],
    "tep0084-injected-task": [("trusted_task.trusted", "inject-miner")],
    "tep0084-no-scan": [("tasks.task_order", "image-build")],
}


def sample_input(name: str, fmt: str) -> dict:
    pipelinerun, taskruns = samples.load(name)
    run = to_run(pipelinerun, source=name)
    children = [to_run(tr, source=name) for tr in taskruns]
    statement = generate(run, children, FORMATS[fmt]).statement
    subject = statement["subject"][0]
    digest = "sha256:" + subject["digest"]["sha256"]
    return {
        "image": {"ref": f"{subject['name']}@{digest}", "digest": digest},
        "attestations": [{"statement": statement, "signatures": [{"keyid": "k", "sig": "c2ln"}]}],
    }


@pytest.fixture(scope="module", params=["embedded", "opa"])
def engine(request: pytest.FixtureRequest) -> Iterator[PolicyEngine]:
    policy_set = load_policy_set([ROOT])
    if request.param == "opa":
        opened = make_engine(policy_set, engine="opa", opa_url=request.getfixturevalue("opa_server"))
    else:
        opened = make_engine(policy_set)
    yield opened
    opened.close()


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_default_policy_decides_the_samples(engine: PolicyEngine, name: str, fmt: str) -> None:
    policy_input = sample_input(name, fmt)
    evaluation = evaluate_input(policy_input, load_policy_set([ROOT]), engine)
    assert [(r.code, r.term) for r in evaluation.violations] == EXPECTED[name]
    # allowed_source_repos is empty by default: a warning, never silence
    assert [r.code for r in evaluation.warnings] == ["materials.allowed_source_repos_provided"]


def test_sample_messages_name_the_offending_task(engine: PolicyEngine) -> None:
    policy_set = load_policy_set([ROOT])
    injected = evaluate_input(sample_input("tep0084-injected-task", "slsa/v1"), policy_set, engine)
    assert injected.violations[0].msg == (
        "Task inject-miner comes from quay.io/evil/tasks/miner@sha256:"
        "b2a45dfd5205401213a74023969a9c78363a846bb3eb186bc9602b60a39dcc8d, "
        "which is not a trusted task location"
    )
    no_scan = evaluate_input(sample_input("tep0084-no-scan", "slsa/v2alpha4"), policy_set, engine)
    assert no_scan.violations[0].msg == (
        "Task image-build did not run after a task sast-scan or source-scan or trivy-scanner"
    )


def test_plain_slsa_v1_build_type_records_no_tasks(engine: PolicyEngine) -> None:
    # slsa/v2alpha3 (build type .../slsa) lists pipelineTask dependencies without content: no task names,
    # so the task rules cannot pass it, and the reason given is the missing task list.
    pipelinerun, taskruns = samples.load("tep0084-pipelinerun")
    run = to_run(pipelinerun, source="s")
    statement = generate(
        run, [to_run(t, source="s") for t in taskruns], Options(format="slsa/v2alpha3")
    ).statement
    digest = "sha256:" + statement["subject"][0]["digest"]["sha256"]
    doc = {
        "image": {"ref": f"{statement['subject'][0]['name']}@{digest}", "digest": digest},
        "attestations": [{"statement": statement, "signatures": []}],
    }
    codes = {r.code for r in evaluate_input(doc, load_policy_set([ROOT]), engine).violations}
    assert "tasks.pipeline_has_tasks" in codes
    assert "tasks.task_records_readable" not in codes
