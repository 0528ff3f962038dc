"""Policy evaluation: the Rego library in ``policies/`` run in process or by an OPA server.

Engines (docs/rego-engines.md): ``embedded`` is the default, in process: ``wasm``, the OPA compiler's wasm
output run by opapywasm; ``opa`` is an OPA server.

Public API (shared with the verification pipeline and the CLI)::

    policy_set = load_policy_set([Path("policies")], [Path("my-data.yaml")])
    engine = make_engine(policy_set)                 # or engine="opa", opa_url="http://127.0.0.1:8181"
    evaluation = evaluate_input(policy_input, policy_set, engine)

``evaluate`` raising, or ``rules_evaluated == 0``, must be treated as a denial by the caller.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from attestation.errors import InputError
from gate.config import DEFAULT_EMBEDDED, ENGINES, EngineOptions
from gate.policy.loader import load_policy_set
from gate.policy.model import (
    Evaluation,
    PolicyEngine,
    PolicySet,
    Result,
    Rule,
)

if TYPE_CHECKING:
    from gate.policy.testing import TestCase, TestReport, run_policy_tests

__all__ = [
    "ENGINES",
    "Evaluation",
    "PolicyEngine",
    "PolicySet",
    "Result",
    "Rule",
    "TestCase",
    "TestReport",
    "evaluate_input",
    "load_policy_set",
    "make_engine",
    "run_policy_tests",
]


def make_engine(
    policy_set: PolicySet,
    *,
    engine: str = "embedded",
    opa_url: str | None = None,
    options: EngineOptions | None = None,
) -> PolicyEngine:
    """Compile (in-process engines) or upload (opa) ``policy_set`` once; reuse the engine for every
    evaluation.

    Every engine is safe to call from several threads: ``wasm`` evaluates concurrently on a pool of
    instances, ``opa`` serialises calls on a lock. The OPA engine takes over the server's policies and
    data: one OPA server serves one policy set.
    """
    options = options or EngineOptions()
    if engine == "embedded":
        engine = DEFAULT_EMBEDDED
    if engine == "wasm":
        from gate.policy.wasm import WasmEngine

        return WasmEngine(
            policy_set,
            pool_size=options.pool_size,
            borrow_timeout=options.borrow_timeout,
            eval_timeout=options.eval_timeout,
        )
    if engine == "opa":
        if not opa_url:
            raise InputError("--engine opa needs --opa-url (for example http://127.0.0.1:8181)")
        from gate.policy.opa_server import OpaEngine

        return OpaEngine(policy_set, opa_url, timeout=options.opa_timeout)
    raise InputError(f"unknown policy engine {engine!r}: choose one of {', '.join(ENGINES)}")


def evaluate_input(input_doc: Mapping[str, Any], policy_set: PolicySet, engine: PolicyEngine) -> Evaluation:
    """Evaluate a policy-input document (``gate eval``): no registry, no crypto.

    The document must have the policy-input shape (DESIGN.md §3); anything else is an
    :class:`InputError` naming the field.
    """
    if not isinstance(input_doc, Mapping):
        raise InputError("policy input must be a JSON/YAML object with image and attestations")
    attestations = input_doc.get("attestations")
    if not isinstance(attestations, list):
        raise InputError("policy input: attestations must be a list")
    for n, att in enumerate(attestations):
        if not isinstance(att, Mapping) or not isinstance(att.get("statement"), Mapping):
            raise InputError(f"policy input: attestations[{n}].statement must be an object")
    image = input_doc.get("image")
    if image is not None and not isinstance(image, Mapping):
        raise InputError("policy input: image must be an object")
    del policy_set  # the engine was built from it; kept in the signature for callers' clarity
    return engine.evaluate(input_doc)


def __getattr__(name: str) -> Any:
    # The policy test runner (and its two dataclasses) only when asked for: a verification never runs
    # policy tests, and defining a dataclass costs every cold start (docs/performance.md).
    if name in _TESTING:
        from gate.policy import testing

        return getattr(testing, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_TESTING = frozenset({"TestCase", "TestReport", "run_policy_tests"})
