"""The policy library over provenance Tekton Chains wrote on real clusters (tests/gate/real_provenance/).

Issue 11: no real statement may be denied for a task that ran. Each fixture is decided twice, on the
embedded engine and on a real OPA server (the decisions must be equal): once with the shipped rule data,
and once with rule data that trusts what the build used (its task definitions' locations, its source
repositories, its task names). With that rule data a fixture is denied only for what the statement
really lacks, each listed below with the reason; nothing is denied for a task that ran (no
required_tasks_found, task_order or task_names_known for a recorded task).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gate.cli import run
from gate.policy import PolicyEngine, load_policy_set, make_engine
from policies import ROOT
from tests.infra.opa import opa_server  # noqa: F401

HERE = Path(__file__).parent / "real_provenance"
Doc = dict[str, Any]


def statement_input(statements: list[Doc], ref: str) -> Doc:
    return {
        "image": {"ref": ref, "digest": ref.split("@", 1)[1]},
        "attestations": [{"statement": s, "signatures": [{"keyid": "", "sig": ""}]} for s in statements],
    }


def subject_ref(statement: Doc) -> str:
    subject = statement["subject"][0]
    return f"{subject['name']}@sha256:{subject['digest']['sha256']}"


def load(name: str) -> Doc:
    """The policy input for one fixture, as the gate would hand it to the engine."""
    path = HERE / name
    doc = json.loads(path.read_text())
    if name.endswith(".dsse.json"):
        statement = json.loads(base64.b64decode(doc["payload"]))
        return statement_input([statement], subject_ref(statement))
    if "policy-input" in name:
        # ec's policy input; the gate's carries the image reference and the statements
        return statement_input([a["statement"] for a in doc["attestations"]], doc["image"]["ref"])
    return statement_input([doc], subject_ref(doc))


HACKS = {
    "required_tasks": ["mock-git-clone", "mock-build", "mock-av-scanner"],
    "task_order": [{"before": "mock-git-clone", "after": "mock-build"}],
    "trusted_task_bundles": ["quay.io/lucarval/test-policies-chains"],
    "trusted_task_git_repos": ["https://github.com/enterprise-contract/hacks"],
    "allowed_source_repos": ["https://github.com/enterprise-contract/hacks"],
}
HACKS_2023 = {
    **HACKS,
    "required_tasks": ["mock-git-clone", "mock-build"],
    "trusted_task_git_repos": ["https://github.com/lcarva/ec-policies"],
    "allowed_source_repos": ["https://github.com/lcarva/ec-policies"],
}
KONFLUX = {
    "required_tasks": [
        "init",
        "git-clone",
        ["buildah", "buildah-remote"],
        "clair-scan",
        "sast-snyk-check",
        "clamav-scan",
    ],
    "task_order": [
        {"before": "git-clone", "after": ["buildah", "buildah-remote"]},
        {"before": ["buildah", "build-image-manifest"], "after": ["clair-scan", "clamav-scan"]},
    ],
    "trusted_task_bundles": [
        "quay.io/konflux-ci/tekton-catalog/",
        "quay.io/redhat-appstudio-tekton-catalog/",
    ],
    "allowed_source_repos": [
        "https://github.com/enterprise-contract/golden-container",
        "https://github.com/conforma/golden-container",
    ],
}
EDP = {
    "required_tasks": ["kaniko"],
    "trusted_task_bundles": ["docker.io/epamedp/"],
    "allowed_source_repos": ["https://github.com/epam/"],
}

# Why a fixture is denied although the rule data trusts what it used. Never a task that ran:
EMBEDDED_AND_CLUSTER = [
    # an inline taskSpec and a Task from the cluster have no content-addressed origin to trust
    ("trusted_task.trusted", "av-scan"),
    ("trusted_task.trusted", "scan"),
]
PLACEHOLDER_SOURCE = [
    # the recording's CHAINS-GIT_URL was the placeholder "gitspam.spam/spam/spam", which is no URL
    ("materials.source_url_canonical", "git+gitspam.spam/spam/spam.git"),
]
NO_TASK_RECORDS = [
    # SLSA v1.0 with the plain slsa build type lists pipelineTask dependencies by URI alone: it records
    # no task, so no required task can be shown to have run
    ("tasks.pipeline_has_tasks", None),
    ("tasks.required_tasks_found", "mock-av-scanner"),
    ("tasks.required_tasks_found", "mock-build"),
    ("tasks.required_tasks_found", "mock-git-clone"),
]
TASKRUN_ONLY = [
    # TaskRun provenance alone records no PipelineRun; its one task is checked (trusted_task) but
    # cannot satisfy required_tasks
    ("tasks.pipeline_has_tasks", None),
    ("tasks.required_tasks_found", "kaniko"),
    ("trusted_task.trusted", "kaniko-build"),
]

FIXTURES: dict[str, tuple[Doc, list[tuple[str, str | None]]]] = {
    "hacks-2024-01/01-SLSA-v0-2-Pipeline-in-cluster.json": (HACKS, EMBEDDED_AND_CLUSTER + PLACEHOLDER_SOURCE),
    "hacks-2024-01/02-SLSA-v0-2-Pipeline-inline.json": (HACKS, EMBEDDED_AND_CLUSTER + PLACEHOLDER_SOURCE),
    "hacks-2024-01/03-SLSA-v1-0-plain-build-type-Pipeline-in-cluster.json": (
        HACKS,
        NO_TASK_RECORDS + PLACEHOLDER_SOURCE,
    ),
    "hacks-2024-01/04-SLSA-v1-0-plain-build-type-Pipeline-inline.json": (
        HACKS,
        NO_TASK_RECORDS + PLACEHOLDER_SOURCE,
    ),
    "hacks-2024-01/05-SLSA-v1-0-tekton-build-type-Pipeline-in-cluster.json": (
        HACKS,
        EMBEDDED_AND_CLUSTER + PLACEHOLDER_SOURCE,
    ),
    "hacks-2024-01/06-SLSA-v1-0-tekton-build-type-Pipeline-inline.json": (
        HACKS,
        EMBEDDED_AND_CLUSTER + PLACEHOLDER_SOURCE,
    ),
    "ec-policies-2023-10/01-SLSA-v0-2-Pipeline-in-cluster.json": (
        HACKS_2023,
        [("trusted_task.trusted", "scan"), *PLACEHOLDER_SOURCE],
    ),
    "ec-policies-2023-10/05-SLSA-v1-0-tekton-build-type-Pipeline-in-cluster.json": (
        HACKS_2023,
        [("trusted_task.trusted", "scan"), *PLACEHOLDER_SOURCE],
    ),
    "golden-container/policy-input-2024-01-16-0d2f0cf.json": (KONFLUX, []),
    "golden-container/policy-input-2024-10-07-7270a71.json": (KONFLUX, []),
    "golden-container/policy-input-2025-06-25-6d3e89a.json": (KONFLUX, []),
    "edp/codebase-operator-2.20.0.dsse.json": (EDP, TASKRUN_ONLY),
    "edp/keycloak-operator-1.18.2.dsse.json": (EDP, TASKRUN_ONLY),
}


def decide(engine: PolicyEngine, doc: Doc) -> tuple[list[tuple[str, str | None]], list[str]]:
    evaluation = engine.evaluate(doc)
    return [(r.code, r.term) for r in evaluation.violations], [r.code for r in evaluation.warnings]


def engines_for(rule_data: Doc | None, tmp: Path, opa_url: str) -> Iterator[tuple[str, PolicyEngine]]:
    data = []
    if rule_data is not None:
        (tmp / "rule-data.json").write_text(json.dumps({"rule_data": rule_data}))
        data = [tmp / "rule-data.json"]
    policy_set = load_policy_set([ROOT], data)
    for kind in ("embedded", "opa"):
        engine = make_engine(policy_set, engine=kind, opa_url=opa_url if kind == "opa" else None)
        try:
            yield kind, engine
        finally:
            engine.close()


def test_fixtures_are_real_chains_statements() -> None:
    # every file listed in SOURCES.md is tested, and every tested file is listed
    sources = (HERE / "SOURCES.md").read_text()
    files = sorted(str(p.relative_to(HERE)) for p in HERE.rglob("*.json"))
    assert files == sorted(FIXTURES)
    for directory in {f.split("/")[0] for f in files}:
        assert f"`{directory}/" in sources
    for name in FIXTURES:
        doc = load(name)
        for att in doc["attestations"]:
            statement = att["statement"]
            assert statement["_type"] == "https://in-toto.io/Statement/v0.1"
            assert statement["predicateType"] in {
                "https://slsa.dev/provenance/v0.2",
                "https://slsa.dev/provenance/v1",
            }
            builder = statement["predicate"].get("builder") or statement["predicate"]["runDetails"]["builder"]
            assert builder["id"] == "https://tekton.dev/chains/v2"


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_no_task_that_ran_is_denied_when_the_rule_data_trusts_what_was_used(
    name: str,
    tmp_path: Path,
    opa_server: str,  # noqa: F811
) -> None:
    rule_data, expected = FIXTURES[name]
    decisions = {
        kind: decide(engine, load(name)) for kind, engine in engines_for(rule_data, tmp_path, opa_server)
    }
    assert decisions["embedded"] == decisions["opa"]
    violations, warnings = decisions["embedded"]
    assert sorted(violations, key=str) == sorted(expected, key=str)
    assert warnings == []


def test_with_the_shipped_rule_data_real_statements_are_denied_only_by_their_configuration(
    tmp_path: Path,
    opa_server: str,  # noqa: F811
) -> None:
    # The shipped defaults describe the TEP-0084 sample pipeline (its task names, the Tekton catalog),
    # so these builds miss its required tasks and their task origins are not trusted. What must not
    # happen: a task that ran missed because of how it was referenced, a promoted image denied, a
    # decision that differs between the engines.
    for kind, engine in engines_for(None, tmp_path, opa_server):
        for name in FIXTURES:
            violations, warnings = decide(engine, load(name))
            codes = {code for code, _ in violations}
            assert codes <= {
                "tasks.required_tasks_found",
                "tasks.task_order",
                "tasks.pipeline_has_tasks",
                "trusted_task.trusted",
            }, (kind, name)
            assert "subject.build_task_image_matches" not in codes
            assert warnings == ["materials.allowed_source_repos_provided"]
            # the required task names the defaults ask for, never the names of tasks that ran
            ran = {t for t in tasks_that_ran(load(name))}
            assert not {term for code, term in violations if code == "tasks.required_tasks_found"} & ran


def tasks_that_ran(doc: Doc) -> set[str]:
    names = set()
    for att in doc["attestations"]:
        predicate = att["statement"]["predicate"]
        for task in predicate.get("buildConfig", {}).get("tasks", []) or []:
            names.add(
                task.get("invocation", {}).get("environment", {}).get("labels", {}).get("tekton.dev/task")
            )
        for dep in predicate.get("buildDefinition", {}).get("resolvedDependencies", []):
            if dep.get("name") == "pipelineTask" and dep.get("content"):
                taskrun = json.loads(base64.b64decode(dep["content"]))
                names.add(taskrun["metadata"]["labels"].get("tekton.dev/task"))
    return names - {None}


def test_git_resolver_tasks_are_found_by_name() -> None:
    # Issue 11 §1 on the recordings: git-clone comes from the git resolver, whose reference names no
    # task; the tekton.dev/task label Chains copies from the TaskRun does, in SLSA v0.2 and v1.0
    for name in FIXTURES:
        if name.startswith(("hacks", "ec-policies")) and "plain" not in name:
            assert "mock-git-clone" in tasks_that_ran(load(name)), name


PROMOTED = "golden-container/policy-input-2024-10-07-7270a71.json"


@pytest.mark.parametrize(
    ("targets", "allowed"),
    [
        (["*"], True),  # the shipped default: the gate decides on digests
        ([], False),  # bound to the repository the build pushed to
        (["quay.io/konflux-ci/"], True),
        (["quay.io/konflux-ci/ec-golden-image"], True),
        (["quay.io/konflux-ci/ec-golden-image-evil", "quay.io/konflux"], False),
    ],
)
def test_promoted_copy_follows_allowed_promotion_targets(
    targets: list[str],
    allowed: bool,
    tmp_path: Path,
    opa_server: str,  # noqa: F811
) -> None:
    # the admitted reference is the copy Conforma's release flow promoted; the build pushed to
    # quay.io/redhat-user-workloads/rhtap-contract-tenant/golden-container/golden-container
    doc = load(PROMOTED)
    assert doc["image"]["ref"].startswith("quay.io/konflux-ci/ec-golden-image@")
    for _, engine in engines_for({**KONFLUX, "allowed_promotion_targets": targets}, tmp_path, opa_server):
        violations, _ = decide(engine, doc)
        if allowed:
            assert violations == []
        else:
            assert violations == [("subject.image_repository_allowed", doc["image"]["ref"])]


@pytest.mark.parametrize("name", ["codebase-operator-2.20.0", "keycloak-operator-1.18.2"])
def test_real_signed_taskrun_provenance_end_to_end(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The EDP envelope verifies with EDP's published key (offline, --attestations), and its TaskRun
    # statement goes through the same task-origin rules as a PipelineRun's: a kaniko Task from the
    # cluster is not a trusted origin. Without any PipelineRun statement the image is denied.
    envelope = HERE / "edp" / f"{name}.dsse.json"
    statement = json.loads(base64.b64decode(json.loads(envelope.read_text())["payload"]))
    data = tmp_path / "data.json"
    data.write_text(json.dumps({"rule_data": EDP}))
    image = subject_ref(statement)
    code = run(
        [
            *("verify", image, "--attestations", str(envelope), "--key", str(HERE / "edp" / "cosign.pub")),
            *("--data", str(data), "--output", "json"),
        ]
    )
    decision = json.loads(capsys.readouterr().out)
    assert code == 1
    assert [a["verified"] for a in decision["attestations"]] == [True]
    assert sorted((v["code"], v.get("term")) for v in decision["violations"]) == sorted(TASKRUN_ONLY, key=str)

    # the same envelope under another image is not about it: nothing verified reaches the policy
    other = image.split("@")[0] + "@sha256:" + "0" * 64
    code = run(["verify", other, "--attestations", str(envelope), "--key", str(HERE / "edp" / "cosign.pub")])
    assert code == 1
    assert "attestation_type.attestations_provided" in capsys.readouterr().out
