"""The bundled Rego library: OPA's own checks, METADATA conventions, and decisions on known inputs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from attestation.errors import InputError, PolicyError
from gate.policy import load_policy_set, make_engine
from gate.policy.docs import package_docs
from policies import ROOT
from tests.infra.opa import opa_binary, opa_server  # noqa: F401

INPUTS = Path(__file__).parent / "policy_inputs"
TEP_DIGEST = "sha256:52af519cd2cb835e77f971ab303a8ae1c3b9b04fe2aa604d1c50d8d73f110304"


def tep0084_input() -> dict:
    statement = json.loads((INPUTS / "tep0084-statement.json").read_text())
    return {
        "image": {"ref": f"registry.example.com/minimal-container/min@{TEP_DIGEST}", "digest": TEP_DIGEST},
        "attestations": [{"statement": statement, "signatures": [{"keyid": "k", "sig": "c2ln"}]}],
    }


def test_opa_check_strict_accepts_the_library() -> None:
    proc = subprocess.run([str(opa_binary()), "check", "--strict", str(ROOT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_opa_test_passes_every_policy_test() -> None:
    proc = subprocess.run(
        [str(opa_binary()), "test", "--format", "json", str(ROOT)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr
    results = json.loads(proc.stdout)
    assert results and all(r.get("fail") is not True and not r.get("error") for r in results)


def test_every_rule_has_metadata_and_a_code_in_its_package() -> None:
    policy_set = load_policy_set([ROOT])
    codes = {r.code for r in policy_set.rules}
    for required in (
        "attestation_type.known_attestation_type",
        "slsa_provenance.predicate_type_accepted",
        "builder.builder_id_accepted",
        "tasks.pipeline_has_tasks",
        "tasks.successful_pipeline_tasks",
        "tasks.required_tasks_found",
        "tasks.task_order",
        "trusted_task.pinned",
        "trusted_task.trusted",
        "materials.git_source_found",
        "materials.git_commit_pinned",
        "materials.source_repo_allowed",
        "subject.build_task_image_matches",
    ):
        assert required in codes
    for rule in policy_set.rules:
        assert rule.code == f"{rule.package}.{rule.short_name}"
        assert rule.title and rule.description and rule.solution and rule.failure_msg
        # the code comes from the rule's METADATA (rego.metadata.chain()), never spelled by hand
        source = Path(rule.path).read_text()
        assert f'"{rule.code}"' not in source
        assert "lib.result_helper" in source and "rego.metadata.chain()" in source


def opa_annotations() -> dict[tuple[str, str], dict]:
    """OPA's own reading of the library's METADATA: ``{(package path, rule or ""): annotations}``."""
    proc = subprocess.run(
        [str(opa_binary()), "inspect", "--annotations", "--format", "json", str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    out = {}
    for entry in json.loads(proc.stdout)["annotations"]:
        path = [p["value"] for p in entry["path"]][1:]  # without "data"
        if entry["annotations"]["scope"] == "package":
            out[(".".join(path), "")] = entry["annotations"]
        else:
            out[(".".join(path[:-1]), path[-1] + ":" + str(entry["location"]["row"]))] = entry["annotations"]
    return out


def test_gate_reads_metadata_as_opa_does() -> None:
    # The drift test: the code a rule reports is derived by OPA from its METADATA; the title, message and
    # solution the gate attaches come from gate.policy.metadata's reading of the same block. Both must
    # read every block the same way, or results would carry another rule's texts.
    policy_set = load_policy_set([ROOT])
    by_opa = {
        (package.removeprefix("policy.release."), a["custom"]["short_name"]): a
        for (package, rule), a in opa_annotations().items()
        if rule and package.startswith("policy.release.")
    }
    assert set(by_opa) == {(r.package, r.short_name) for r in policy_set.rules}
    for rule in policy_set.rules:
        annotations = by_opa[(rule.package, rule.short_name)]
        assert rule.title == annotations["title"]
        assert rule.description == annotations["description"]
        assert rule.failure_msg == annotations["custom"]["failure_msg"]
        assert rule.solution == annotations["custom"]["solution"]


def test_every_release_package_has_a_title_and_description() -> None:
    policy_set = load_policy_set([ROOT])
    packages = {p: a for (p, rule), a in opa_annotations().items() if not rule}
    for package in policy_set.packages:
        annotations = packages[f"policy.release.{package}"]
        assert annotations["title"].strip() and annotations["description"].strip()
        assert package_docs(policy_set)[package] == (annotations["title"], annotations["description"])


def test_tep0084_doc_statement_is_denied_for_its_tagged_and_unbundled_tasks() -> None:
    # Checked by hand against the TEP-0084 document's statement: source-security-scan references
    # trivy-scanner:0.1 (a tag, though in the trusted catalog); git-clone (a Task) and image-build (a
    # ClusterTask) come from no bundle at all, so they are not from the trusted catalog. Everything else
    # (git-clone, trivy-scanner before buildah, sha1 commit, IMAGE_URL/DIGEST) holds.
    engine = make_engine(load_policy_set([ROOT]))
    evaluation = engine.evaluate(tep0084_input())
    assert [(r.code, r.term) for r in evaluation.violations] == [
        ("trusted_task.pinned", "gcr.io/tekton-releases/catalog/upstream/trivy-scanner:0.1"),
        ("trusted_task.trusted", "git-clone"),
        ("trusted_task.trusted", "image-build"),
    ]
    assert evaluation.violations[0].msg == (
        "Task source-security-scan uses gcr.io/tekton-releases/catalog/upstream/trivy-scanner:0.1, "
        "which is not pinned by digest or commit"
    )
    assert evaluation.violations[1].msg == (
        "Task git-clone comes from the cluster task git-clone, which is not a trusted task location"
    )
    assert {r.code for r in evaluation.warnings} == {"materials.allowed_source_repos_provided"}
    assert evaluation.rules_evaluated == len(load_policy_set([ROOT]).rules) > 0


def test_empty_input_is_denied() -> None:
    engine = make_engine(load_policy_set([ROOT]))
    evaluation = engine.evaluate({"image": {}, "attestations": []})
    codes = {r.code for r in evaluation.violations}
    assert {"attestation_type.attestations_provided", "tasks.pipeline_has_tasks"} <= codes


def test_data_file_overrides_one_rule_data_key(tmp_path: Path) -> None:
    data = tmp_path / "data.yaml"
    data.write_text("rule_data:\n  allowed_builder_ids: [https://other.example/builder]\n")
    policy_set = load_policy_set([ROOT], [data])
    assert policy_set.data["rule_data"]["allowed_builder_ids"] == ["https://other.example/builder"]
    assert policy_set.data["rule_data"]["required_tasks"]  # other defaults kept
    evaluation = make_engine(policy_set).evaluate(tep0084_input())
    assert "builder.builder_id_accepted" in {r.code for r in evaluation.violations}
    assert policy_set.digest != load_policy_set([ROOT]).digest


def test_bad_rego_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.rego"
    bad.write_text("package policy.release.bad\n\ndeny contains x if {\n")
    with pytest.raises(PolicyError, match=r"bad\.rego"):
        make_engine(load_policy_set([ROOT, bad]))


def test_rule_without_metadata_is_rejected(tmp_path: Path) -> None:
    bare = tmp_path / "bare.rego"
    bare.write_text('package policy.release.bare\n\ndeny contains "x" if true\n')
    with pytest.raises(PolicyError, match=r"bare\.rego:3: deny rule without a METADATA block"):
        load_policy_set([bare])


def test_bad_data_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "data.yaml"
    bad.write_text("rule_data: [unclosed\n")
    with pytest.raises(InputError, match=r"data\.yaml"):
        load_policy_set([ROOT], [bad])
    missing = tmp_path / "nope.json"
    with pytest.raises(InputError, match=r"nope\.json"):
        load_policy_set([ROOT], [missing])


SECOND_BODY = """package policy.release.probe

import data.lib

# METADATA
# title: Probe
# description: Denies when input.a is set.
# custom:
#   short_name: a_set
#   failure_msg: a is set
#   solution: unset a
deny contains result if {
	input.a
	result := lib.result_helper(rego.metadata.chain(), [])
}

deny contains result if {
	input.b
	result := lib.result_helper(rego.metadata.chain(), [])
}
"""


@pytest.mark.parametrize("engine", ["embedded", "opa"])
def test_a_rule_body_without_metadata_still_denies(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    # METADATA belongs to the one rule body below it. A second body without its own block has no
    # short_name to derive a code from: its result must still be a violation, visibly undeclared,
    # never an undefined (silently passing) rule.
    (tmp_path / "probe.rego").write_text(SECOND_BODY)
    policy_set = load_policy_set([ROOT, tmp_path / "probe.rego"])
    url = request.getfixturevalue("opa_server") if engine == "opa" else None
    opened = make_engine(policy_set, engine=engine, opa_url=url)
    try:
        evaluation = opened.evaluate({"image": {}, "attestations": [], "a": True, "b": True})
    finally:
        opened.close()
    probe = [r for r in evaluation.violations if r.code.startswith("probe.")]
    assert [(r.code, r.title) for r in probe] == [
        ("probe.a_set", "Probe"),
        ("probe.metadata_missing", "Rule without METADATA"),
    ]
