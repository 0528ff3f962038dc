"""``run_policy_tests`` on every engine: the library's own tests, and failing/crashing user tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from attestation.errors import InputError, PolicyError
from gate.policy import run_policy_tests
from policies import ROOT
from tests.infra.opa import opa_server, opa_url  # noqa: F401

LIB = """package policy.release.demo

import data.lib

# METADATA
# title: Demo
# description: Denies when input.bad is true.
# custom:
#   short_name: bad
#   failure_msg: bad
#   solution: do not be bad
deny contains result if {
	input.bad == true
	count([1]) == 1
	result := lib.result_helper(rego.metadata.chain(), [])
}
"""

TESTS = """package policy.release.demo_test

import data.policy.release.demo

test_allow if count(demo.deny) == 0 with input as {"bad": false}

test_deny if count(demo.deny) == 1 with input as {"bad": true}

test_wrong if count(demo.deny) == 0 with input as {"bad": true}

test_undefined if demo.nothing with input as {}
"""


@pytest.fixture
def user_tree(tmp_path: Path) -> Path:
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "result.rego").write_text((ROOT / "lib" / "result.rego").read_text())
    (tmp_path / "lib" / "rule_data.rego").write_text((ROOT / "lib" / "rule_data.rego").read_text())
    (tmp_path / "demo.rego").write_text(LIB)
    (tmp_path / "demo_test.rego").write_text(TESTS)
    return tmp_path


def outcome(report) -> dict[str, bool]:
    return {c.name.rsplit(".", 1)[1]: c.passed for c in report.cases}


def test_library_tests_pass_on_the_embedded_engine() -> None:
    report = run_policy_tests(ROOT)
    assert report.ok, [(c.name, c.error) for c in report.cases if not c.passed]
    assert report.passed >= 13


def test_library_tests_pass_on_opa(opa_url: str) -> None:  # noqa: F811
    report = run_policy_tests(ROOT, engine="opa", opa_url=opa_url)
    assert report.ok, [(c.name, c.error) for c in report.cases if not c.passed]
    assert [c.name for c in report.cases] == [c.name for c in run_policy_tests(ROOT).cases]


@pytest.mark.parametrize("engine", ["embedded", "opa"])
def test_failing_and_undefined_tests_fail(
    user_tree: Path, engine: str, request: pytest.FixtureRequest
) -> None:
    opa = request.getfixturevalue("opa_server") if engine == "opa" else None
    report = run_policy_tests(user_tree, engine=engine, opa_url=opa)
    assert outcome(report) == {
        "test_allow": True,
        "test_deny": True,
        "test_wrong": False,
        "test_undefined": False,
    }
    assert not report.ok
    undefined = next(c for c in report.cases if c.name.endswith("test_undefined"))
    assert undefined.error == "undefined"


def test_one_opa_server_takes_policy_sets_one_after_another(user_tree: Path, opa_url: str) -> None:  # noqa: F811
    # OPA refuses to delete a module that others still import; a reload must clear the old set in
    # dependency order and leave nothing of it behind.
    first = run_policy_tests(ROOT, engine="opa", opa_url=opa_url)
    assert first.ok
    second = run_policy_tests(user_tree, engine="opa", opa_url=opa_url)
    assert outcome(second) == {
        "test_allow": True,
        "test_deny": True,
        "test_wrong": False,
        "test_undefined": False,
    }
    again = run_policy_tests(ROOT, engine="opa", opa_url=opa_url)
    assert again.ok and again.passed == first.passed


def test_no_tests_is_not_ok(tmp_path: Path) -> None:
    (tmp_path / "x.rego").write_text("package x\n\ny := 1\n")
    report = run_policy_tests(tmp_path)
    assert report.cases == () and not report.ok


def test_test_that_does_not_compile_names_the_file(user_tree: Path) -> None:
    (user_tree / "broken_test.rego").write_text("package broken_test\n\ntest_x if {\n")
    with pytest.raises(PolicyError, match=r"broken_test\.rego"):
        run_policy_tests(user_tree)


def test_unknown_engine_and_missing_opa_url(user_tree: Path) -> None:
    with pytest.raises(InputError, match="unknown policy engine 'nope'"):
        run_policy_tests(user_tree, engine="nope")
    with pytest.raises(InputError, match="OPA URL"):
        run_policy_tests(user_tree, engine="opa")
