"""docs/policies.md is generated from the rules' METADATA and must be kept up to date."""

from __future__ import annotations

from pathlib import Path

import pytest

from attestation.errors import PolicyError
from gate.policy import load_policy_set
from gate.policy.docs import render
from gate.policy.metadata import parse_package
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
    assert "* Message: `Task %s comes from %s, which is not a trusted task location`" in text


def test_package_sections_carry_the_package_metadata() -> None:
    text = render(load_policy_set([ROOT]))
    for package in load_policy_set([ROOT]).packages:
        assert f"## `{package}`: " in text
    assert "## `tasks`: Tasks\n" in text


PACKAGE_DOC = """# METADATA
# title: Probe
# description: >-
#   First paragraph,
#   still the first.
#
#   Second paragraph.
package policy.release.probe

# METADATA
# title: Probe rule
# description: Probes.
# custom:
#   short_name: probe
#   failure_msg: probe
#   solution: none
deny contains lib.result_helper(rego.metadata.chain(), [])
"""


def test_package_description_keeps_its_paragraphs(tmp_path: Path) -> None:
    module = tmp_path / "probe.rego"
    module.write_text(PACKAGE_DOC)
    assert parse_package(PACKAGE_DOC, "probe.rego") == (
        "Probe",
        "First paragraph, still the first.\nSecond paragraph.",
    )
    text = render(load_policy_set([tmp_path]))
    assert "## `probe`: Probe\n\nFirst paragraph, still the first.\n\nSecond paragraph.\n" in text
    # the package block is not taken for a rule's
    assert [r.code for r in load_policy_set([tmp_path]).rules] == ["probe.probe"]


def test_package_without_metadata_has_a_bare_heading(tmp_path: Path) -> None:
    source = PACKAGE_DOC.split("package ", 1)[1]
    assert parse_package("package " + source, "probe.rego") is None
    (tmp_path / "probe.rego").write_text("package " + source)
    assert "## `probe`\n" in render(load_policy_set([tmp_path]))


@pytest.mark.parametrize(
    ("block", "error"),
    [
        ("# METADATA\n# title: Probe\n", r"probe\.rego:1: package METADATA lacks description"),
        ("# METADATA\n# description: d\n", r"probe\.rego:1: package METADATA lacks title"),
        ("# METADATA\n# title: [unclosed\n", r"probe\.rego:1: METADATA is not valid YAML"),
        ("# METADATA\n# - a list\n", r"probe\.rego:1: METADATA must be a YAML mapping"),
    ],
)
def test_malformed_package_metadata_names_the_file_and_line(block: str, error: str) -> None:
    source = block + "package policy.release.probe\n"
    with pytest.raises(PolicyError, match=error):
        parse_package(source, "probe.rego")
