"""The Rego library's own checks on the real OPA: strict compile, formatting, tests, coverage >= 90%.

The same test rules must also pass on the embedded engine (``gate policy test``), so a library change
cannot pass ``opa test`` while deciding differently where the gate runs it.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from gate.policy import run_policy_tests
from policies import ROOT
from tests.infra import require_binary

MIN_COVERAGE = 90.0


def opa(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(require_binary("opa")), *args], capture_output=True, text=True, timeout=300, cwd=ROOT.parent
    )


def test_library_compiles_in_strict_mode() -> None:
    proc = opa("check", "--strict", "policies/")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_library_is_opa_fmt_clean() -> None:
    proc = opa("fmt", "--list", "policies/")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"not formatted (run opa fmt -w policies/):\n{proc.stdout}"


def test_every_policy_file_has_a_test_file_beside_it() -> None:
    policy_files = [p for p in ROOT.rglob("*.rego") if not p.name.endswith("_test.rego")]
    assert policy_files
    missing = [
        str(p.relative_to(ROOT)) for p in policy_files if not p.with_name(f"{p.stem}_test.rego").exists()
    ]
    assert not missing, f"policy files without a _test.rego beside them: {missing}"


def opa_test_results() -> list[dict]:
    proc = opa("test", "--format", "json", "policies/")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    return json.loads(proc.stdout)


def test_opa_test_passes() -> None:
    results = opa_test_results()
    failed = [f"{r['package']}.{r['name']}" for r in results if r.get("fail") or r.get("error")]
    assert results and not failed, f"failing policy tests: {failed}"


def test_policy_coverage_is_at_least_90_percent() -> None:
    proc = opa("test", "--coverage", "--format", "json", "policies/")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    report = json.loads(proc.stdout)
    # Policy lines only: the test files cover themselves and would inflate the figure.
    covered = not_covered = 0
    gaps: list[str] = []
    for path, entry in sorted(report["files"].items()):
        if path.endswith("_test.rego"):
            continue
        covered += entry.get("covered_lines", 0)
        not_covered += entry.get("not_covered_lines", 0)
        rows = sorted({r["start"]["row"] for r in entry.get("not_covered", [])})
        if rows:
            gaps.append(f"{path}: lines {', '.join(map(str, rows))}")
    assert covered > 0, "coverage report names no policy file"
    percent = 100.0 * covered / (covered + not_covered)
    assert percent >= MIN_COVERAGE, (
        f"policy coverage {percent:.1f}% < {MIN_COVERAGE}%; not covered:\n" + "\n".join(gaps)
    )


def test_embedded_engine_passes_the_same_tests_as_opa() -> None:
    # opa test names packages with their data. prefix ("data.lib.image_test").
    expected = {f"{r['package']}.{r['name']}" for r in opa_test_results()}
    assert len(expected) >= 100
    report = run_policy_tests(Path(ROOT), engine="embedded")
    failed = [f"{c.name}: {c.error}" for c in report.cases if not c.passed]
    assert not failed, "policy tests failing on the embedded engine:\n" + "\n".join(failed)
    assert {c.name for c in report.cases} == expected
    assert report.ok
