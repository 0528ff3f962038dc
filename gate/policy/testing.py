"""``gate policy test``: run the ``test_*`` rules of a policy tree, like ``opa test``.

Engines (docs/rego-engines.md, "Running the policy tests"):

* ``embedded`` (``wasm``): the tree, tests included, is compiled by ``opa build -t wasm`` with every test
  rule as an entrypoint and each entrypoint is evaluated in process. OPA's planner compiles ``with ... as``
  itself, so the test files run unchanged and decide as under ``opa test``.
* ``opa``: an OPA server, one query per test rule.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from attestation.errors import InputError, PolicyError
from gate.config import DEFAULT_EMBEDDED, ENGINES
from gate.policy.loader import load_policy_set
from gate.policy.metadata import package_of
from gate.policy.model import PolicySet


@dataclass(frozen=True)
class TestCase:
    __test__ = False  # not a pytest class

    name: str  # "data.<package>.test_x"
    passed: bool
    error: str | None = None


@dataclass(frozen=True)
class TestReport:
    __test__ = False

    cases: tuple[TestCase, ...]

    @property
    def passed(self) -> int:
        return sum(1 for c in self.cases if c.passed)

    @property
    def failed(self) -> int:
        return sum(1 for c in self.cases if not c.passed)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and bool(self.cases)

    @property
    def summary(self) -> str:
        return f"{self.passed} passed, {self.failed} failed"


_TEST_RULE = re.compile(r"^(test_[A-Za-z0-9_]*)\b", re.MULTILINE)
MAX_TESTS = 10_000
# One test rule may evaluate this long (a test of a 200-task input is slow, not stuck).
TEST_EVAL_TIMEOUT_S = 120.0


def discover_tests(test_modules: Mapping[str, str]) -> list[str]:
    """Fully qualified test rule names, in file then source order, each once."""
    names: list[str] = []
    for path in sorted(test_modules):
        source = test_modules[path]
        package = package_of(source, path)
        for match in _TEST_RULE.finditer(source):
            name = f"data.{package}.{match.group(1)}"
            if name not in names:
                names.append(name)
    if len(names) > MAX_TESTS:
        raise InputError(f"more than {MAX_TESTS} test rules")
    return names


def _case(name: str, value: object) -> TestCase:
    if value is True:
        return TestCase(name=name, passed=True)
    return TestCase(name=name, passed=False, error="undefined" if value is None else f"got {value!r}")


def _resolve(engine: str) -> str:
    if engine not in ENGINES:
        raise InputError(f"unknown policy engine {engine!r}: choose one of {', '.join(ENGINES)}")
    return DEFAULT_EMBEDDED if engine == "embedded" else engine


def run_policy_tests(path: Path, *, engine: str = "embedded", opa_url: str | None = None) -> TestReport:
    """Run every ``test_*`` rule of the ``*_test.rego`` files under ``path``.

    A test passes when its rule evaluates to true; false, undefined or an error fail it. An empty test
    run is reported as not ok (``TestReport.ok``) so a typo in the path cannot pass.
    """
    policy_set = load_policy_set([Path(path)])
    names = discover_tests(policy_set.test_modules)
    resolved = _resolve(engine)
    if not names:
        return TestReport(cases=())
    if resolved == "wasm":
        return TestReport(cases=tuple(_run_wasm(policy_set, names)))
    if not opa_url:
        raise InputError("running policy tests on OPA needs an OPA URL (--opa-url)")
    from gate.policy.opa_server import OpaEngine

    opa = OpaEngine(policy_set, opa_url, with_tests=True)
    return TestReport(cases=tuple(_run_each(names, lambda n: opa.query(f"x := {n}"))))


def _run_each(names: Sequence[str], run: Callable[[str], object]) -> list[TestCase]:
    cases: list[TestCase] = []
    for name in names:
        try:
            cases.append(_case(name, run(name)))
        except PolicyError as err:
            cases.append(TestCase(name=name, passed=False, error=str(err)))
    return cases


# --- wasm ---------------------------------------------------------------------------------------------


def _entrypoint(name: str) -> str:
    return name.removeprefix("data.").replace(".", "/")


def _build_test_wasm(policy_set: PolicySet, names: Sequence[str]) -> bytes:
    from gate.policy.opa_build import compile_wasm_entrypoints, find_opa

    with tempfile.TemporaryDirectory(prefix="provgate-tests-") as tmp:
        src = Path(tmp)
        files: dict[str, str] = {}
        modules = {**policy_set.modules, **policy_set.test_modules}
        # Numbered files: modules from several roots may share a name. Errors are mapped back.
        for n, (path, source) in enumerate(sorted(modules.items())):
            target = src / f"m{n:04d}.rego"
            target.write_text(source, encoding="utf-8")
            files[str(target)] = path
        return compile_wasm_entrypoints(src, [_entrypoint(n) for n in names], find_opa(), files)


def _run_wasm(policy_set: PolicySet, names: Sequence[str]) -> list[TestCase]:
    from opapywasm import OpaWasmError, PolicyConfig

    from gate.policy.wasm import load_wasm_policy

    wasm = _build_test_wasm(policy_set, names)
    # The production engine's loader: the same host built-ins (undefined on failure, as on OPA), the same
    # refusal of built-ins it cannot evaluate exactly, and a memory import of any initial size.
    policy = load_wasm_policy(wasm, PolicyConfig(pool_size=1, eval_timeout_seconds=TEST_EVAL_TIMEOUT_S))
    try:
        policy.set_data(dict(policy_set.data))

        def run(name: str) -> object:
            try:
                value = policy.evaluate({}, _entrypoint(name))
            except OpaWasmError as err:
                raise PolicyError(f"evaluation failed: {str(err).splitlines()[0][:300]}") from None
            return value if isinstance(value, (bool, int, float, str, list, dict)) else None

        return _run_each(names, run)
    finally:
        policy.close()
