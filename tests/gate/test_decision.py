"""The decision model: its JSON contract (DESIGN.md §3), exit codes, fail-closed construction and the
text a person reads."""

from __future__ import annotations

import json

import pytest

from gate.decision import AttestationReport, Decision, Finding, render_text, undecided

IMAGE = "localhost:5000/app@sha256:" + "a" * 64
DENY = Finding(
    code="tasks.required_tasks_found",
    msg="Required task 'buildah' is missing",
    title="All required tasks were included",
    description="Ensure that the set of required tasks is included.",
    solution="Add the buildah task to the pipeline.",
    term="buildah",
)
WARN = Finding(
    code="tasks.pinned", msg="task 'git-clone' is not pinned", title="Tasks are pinned", solution="Pin it."
)


def test_json_has_the_contract_fields() -> None:
    decision = Decision(
        allowed=False,
        image=IMAGE,
        violations=(DENY,),
        warnings=(WARN,),
        attestations=(
            AttestationReport(
                source="a.jsonl:1",
                verified=True,
                predicate_type="https://slsa.dev/provenance/v0.2",
                build_type="tekton.dev/v1beta1/PipelineRun",
                signer={"kind": "key", "keyid": "SHA256:x"},
            ),
            AttestationReport(source="a.jsonl:2", verified=False, error="a.jsonl:2: bad"),
        ),
        errors=("a.jsonl:2: bad",),
        elapsed_ms=1.23456,
        rules_evaluated=7,
    )
    doc = json.loads(json.dumps(decision.to_dict()))
    assert {"allowed", "image", "violations", "warnings", "attestations", "errors", "elapsed_ms"} <= set(doc)
    assert doc["allowed"] is False
    assert doc["image"] == IMAGE
    assert doc["violations"] == [
        {
            "code": "tasks.required_tasks_found",
            "msg": "Required task 'buildah' is missing",
            "title": "All required tasks were included",
            "description": "Ensure that the set of required tasks is included.",
            "solution": "Add the buildah task to the pipeline.",
            "term": "buildah",
        }
    ]
    assert "term" not in doc["warnings"][0]  # optional: absent, not null
    assert doc["attestations"][0] == {
        "source": "a.jsonl:1",
        "predicateType": "https://slsa.dev/provenance/v0.2",
        "buildType": "tekton.dev/v1beta1/PipelineRun",
        "signer": {"kind": "key", "keyid": "SHA256:x"},
        "verified": True,
    }
    assert doc["attestations"][1]["verified"] is False
    assert doc["attestations"][1]["error"] == "a.jsonl:2: bad"
    assert doc["errors"] == ["a.jsonl:2: bad"]
    assert doc["elapsed_ms"] == 1.235
    assert set(doc["timings"]) == {"resolve_ms", "fetch_ms", "verify_ms", "policy_ms"}


@pytest.mark.parametrize(
    ("decision", "code", "verdict"),
    [
        (Decision(allowed=True, image=IMAGE, rules_evaluated=3), 0, "allowed"),
        (Decision(allowed=False, image=IMAGE, violations=(DENY,)), 1, "denied"),
        (undecided(IMAGE, ["registry down"]), 2, "could not decide"),
    ],
)
def test_exit_codes(decision: Decision, code: int, verdict: str) -> None:
    assert decision.exit_code == code
    assert decision.verdict == verdict


def test_undecided_is_never_allowed() -> None:
    decision = undecided(IMAGE, ["registry down"])
    assert decision.allowed is False
    assert decision.to_dict()["decided"] is False
    assert decision.to_dict()["errors"] == ["registry down"]


def test_allowed_with_violations_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="allowed"):
        Decision(allowed=True, image=IMAGE, violations=(DENY,))
    with pytest.raises(ValueError, match="allowed"):
        Decision(allowed=True, image=IMAGE, decided=False)


def test_text_puts_the_verdict_first_then_what_to_fix() -> None:
    decision = Decision(allowed=False, image=IMAGE, violations=(DENY,), warnings=(WARN,), rules_evaluated=4)
    text = render_text(decision)
    lines = text.splitlines()
    assert lines[0] == f"DENIED: {IMAGE}"
    # violation: title, message, solution, in that order; warnings after all violations
    i_title = text.index("All required tasks were included")
    i_msg = text.index("Required task 'buildah' is missing")
    i_fix = text.index("Add the buildah task to the pipeline.")
    i_warn = text.index("Tasks are pinned")
    assert i_title < i_msg < i_fix < i_warn
    assert "task 'git-clone' is not pinned" in text
    assert "4 rule(s) evaluated" in lines[-1]


def test_text_of_undecided_says_treat_as_denied() -> None:
    text = render_text(undecided(IMAGE, ["registry localhost:1: connection refused"]))
    assert text.startswith(f"COULD NOT DECIDE: {IMAGE}\n")
    assert "treat as denied" in text
    assert "connection refused" in text


def test_text_lists_rejected_attestations_with_reason() -> None:
    decision = Decision(
        allowed=False,
        image=IMAGE,
        violations=(DENY,),
        attestations=(
            AttestationReport(source="a.jsonl:2", verified=False, error="a.jsonl:2: no signature"),
        ),
        errors=("a.jsonl:2: no signature",),
    )
    text = render_text(decision)
    assert "attestations: 0 of 1 verified" in text
    assert text.count("a.jsonl:2: no signature") == 1  # shown once, under its attestation
