"""``gate policy test``: run the ``test_*`` rules of a policy tree, like ``opa test``."""

from __future__ import annotations

import re
from pathlib import Path

from attestation.errors import InputError, PolicyError
from gate.policy.loader import load_policy_set
from gate.policy.metadata import package_of
from gate.policy.model import TestCase, TestReport

_TEST_RULE = re.compile(r"^(test_[A-Za-z0-9_]*)\b", re.MULTILINE)


def discover_tests(test_modules: dict[str, str]) -> list[str]:
    """Fully qualified test rule names, in file then source order, each once."""
    names: list[str] = []
    for path in sorted(test_modules):
        source = test_modules[path]
        package = package_of(source, path)
        for match in _TEST_RULE.finditer(source):
            name = f"data.{package}.{match.group(1)}"
            if name not in names:
                names.append(name)
    return names


def run_policy_tests(path: Path, *, engine: str = "embedded", opa_url: str | None = None) -> TestReport:
    """Run every ``test_*`` rule of the ``*_test.rego`` files under ``path``.

    A test passes when its rule evaluates to true; false, undefined or an error fail it. An empty test
    run is reported as not ok (``TestReport.ok``) so a typo in the path cannot pass.
    """
    policy_set = load_policy_set([Path(path)])
    names = discover_tests(dict(policy_set.test_modules))
    if engine == "embedded":
        crashing = sorted(
            p for p, src in policy_set.test_modules.items() if re.search(r"\bwith\s+\S+\s+as\b", src)
        )
        if crashing:
            # rego-cpp 1.5.2 segfaults on `with ... as` (docs/rego-engines.md); refuse instead of crashing.
            raise PolicyError(
                f"{crashing[0]}: uses `with ... as`, which the embedded engine cannot run; use the OPA engine"
            )
        from gate.policy.embedded import new_interpreter, raw_query

        rego = new_interpreter(policy_set, with_tests=True)

        def run(name: str) -> object:
            return raw_query(rego, f"x := {name}")
    elif engine == "opa":
        from gate.policy.opa_server import OpaEngine

        if not opa_url:
            raise InputError("running policy tests on OPA needs an OPA URL")
        opa = OpaEngine(policy_set, opa_url, with_tests=True)

        def run(name: str) -> object:
            return opa.query(f"x := {name}")
    else:
        raise InputError(f"unknown policy engine {engine!r}")
    cases: list[TestCase] = []
    for name in names:
        try:
            value = run(name)
        except PolicyError as err:
            cases.append(TestCase(name=name, passed=False, error=str(err)))
            continue
        cases.append(
            TestCase(name=name, passed=value is True, error=None if value is True else f"got {value!r}")
        )
    return TestReport(cases=tuple(cases))
