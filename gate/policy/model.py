"""The policy decision model shared by both engines, the loader and the gate (DESIGN.md §3)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

# A deny/warn result is what the decision reports as a finding (DESIGN.md §3's R): one type for both, so
# nothing is copied field by field between the engines and the decision.
from gate.decision import Finding

Result = Finding

RuleKind = Literal["deny", "warn"]

# Compact, UTF-8, no NaN/Infinity: the policy input as the engines are handed it. check_circular=False:
# parsed JSON has no cycles, and a cycle would still fail (RecursionError); the bookkeeping was a large
# part of the encoding time (docs/rego-engines.md).
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False, check_circular=False)


def encode_json(doc: Any) -> bytes:
    """``doc`` as compact UTF-8 JSON; TypeError/ValueError (a lone surrogate, NaN)/RecursionError if it is
    not plain JSON."""
    return _ENCODER.encode(doc).encode("utf-8")


@dataclass(frozen=True)
class Rule:
    """One ``deny``/``warn`` rule as described by its METADATA block."""

    code: str  # "<package>.<short_name>"
    package: str  # last component of policy.release.<package>
    short_name: str
    title: str
    description: str
    solution: str
    failure_msg: str
    kind: RuleKind
    path: str = ""  # source file, for error messages and docs


@dataclass(frozen=True)
class Evaluation:
    violations: list[Result]
    warnings: list[Result]
    rules_evaluated: int
    elapsed_ms: float


class PolicyEngine(Protocol):
    """A policy set loaded into an engine once, evaluated many times from any thread."""

    # True when an evaluation is a function of the input alone (with the policies and data loaded once),
    # so its result may be remembered (gate.memo.EvaluationMemo).
    pure: bool

    def evaluate(self, policy_input: Mapping[str, Any]) -> Evaluation: ...

    def evaluate_json(self, raw: bytes) -> Evaluation:
        """:meth:`evaluate` for an input provgate encoded itself as compact UTF-8 JSON (the gate assembles
        it from the statements' remembered encodings: ``gate.policy_input.build_policy_input_json``);
        never for bytes from outside."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class PolicySet:
    """Policies and data, loaded and validated once.

    ``modules`` excludes ``*_test.rego`` (tests never take part in a decision); ``test_modules`` holds them
    for ``run_policy_tests``. ``digest`` is a sha256 over every source and the merged data.
    """

    roots: tuple[Path, ...]
    modules: Mapping[str, str]
    data: Mapping[str, Any]
    rules: tuple[Rule, ...]
    digest: str
    test_modules: Mapping[str, str] = field(default_factory=dict)

    @property
    def packages(self) -> dict[str, set[RuleKind]]:
        """Rule packages (``policy.release.<name>``) and the rule kinds each defines."""
        out: dict[str, set[RuleKind]] = {}
        for rule in self.rules:
            out.setdefault(rule.package, set()).add(rule.kind)
        return out

    def rule(self, code: str) -> Rule | None:
        for rule in self.rules:
            if rule.code == code:
                return rule
        return None
