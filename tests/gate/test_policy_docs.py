"""docs/policies.md is generated from the rules' METADATA and must be kept up to date."""

from __future__ import annotations

from pathlib import Path

from gate.policy import load_policy_set
from gate.policy.docs import render
from policies import ROOT

DOC = Path(__file__).resolve().parents[2] / "docs" / "policies.md"


def test_committed_docs_are_up_to_date() -> None:
    assert DOC.read_text() == render(load_policy_set([ROOT])), (
        "docs/policies.md is stale: run python -m gate.policy.docs > docs/policies.md"
    )


def test_every_rule_is_documented_with_its_metadata() -> None:
    text = render(load_policy_set([ROOT]))
    for rule in load_policy_set([ROOT]).rules:
        assert f"* Code: `{rule.code}` ({rule.kind})" in text
        assert f"### {rule.title}\n" in text
    assert "* Code: `trusted_task.trusted` (deny)" in text
    assert "* Message: `Pipeline task %s comes from %s, which is not a trusted task bundle`" in text
