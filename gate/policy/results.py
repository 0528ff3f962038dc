"""Turning raw rule results (``{"code", "params", "term"?}``) into :class:`Result` objects."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from typing import Any

from attestation.errors import PolicyError
from gate.policy.model import Evaluation, PolicySet, Result, Rule

_PLACEHOLDER_GROUP = re.compile(r"(%%|%s)")
MAX_RESULTS = 10_000


def _text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


@functools.lru_cache(maxsize=1024)
def _template_parts(template: str) -> tuple[str, ...]:
    """The literal text around each ``%s`` of ``template``, ``%%`` unescaped: n placeholders, n+1 parts."""
    literals = [""]
    # re.split with a group alternates text (even indexes) and placeholders (odd indexes).
    for n, token in enumerate(_PLACEHOLDER_GROUP.split(template)):
        if n % 2 == 0:
            literals[-1] += token
        elif token == "%%":
            literals[-1] += "%"
        else:
            literals.append("")
    return tuple(literals)


def format_message(template: str, params: list[Any]) -> str:
    """Fill ``%s`` placeholders in order; missing parameters stay visible as ``%s``."""
    literals = _template_parts(template)
    out = [literals[0]]
    for n, literal in enumerate(literals[1:]):
        out.append(_text(params[n]) if n < len(params) else "%s")
        out.append(literal)
    return "".join(out)


def enrich(raw: Any, package: str, rules: Mapping[str, Rule]) -> Result:
    """One raw result. Anything malformed still becomes a result (a violation stays a violation)."""
    if not isinstance(raw, Mapping):
        return Result(
            code=f"{package}.unknown",
            msg=_text(raw),
            title="Result without a code",
            description=f"A rule of package {package} returned a result that is not an object.",
            solution="Fix the rule to build its result with lib.result_helper.",
        )
    code = raw.get("code")
    term = raw.get("term")
    params = raw.get("params")
    params = params if isinstance(params, list) else []
    rule = rules.get(code) if isinstance(code, str) else None
    if rule is None:
        return Result(
            code=code if isinstance(code, str) else f"{package}.unknown",
            msg=_text(raw.get("msg", code)),
            title="Rule without METADATA",
            description=f"A rule of package {package} returned a code no METADATA block declares.",
            solution="Add a METADATA block with custom.short_name to the rule.",
            term=None if term is None else _text(term),
        )
    return Result(
        code=rule.code,
        msg=format_message(rule.failure_msg, params),
        title=rule.title,
        description=rule.description,
        solution=rule.solution,
        term=None if term is None else _text(term),
    )


def _sort_key(r: Result) -> tuple[str, str, str]:
    return (r.code, r.term or "", r.msg)


def evaluation_from(output: Any, policy_set: PolicySet, elapsed_ms: float) -> Evaluation:
    """Build an Evaluation from ``{"<package>": {"deny": [...], "warn": [...]}}``.

    Raises :class:`PolicyError` when the output does not have that shape, so a broken evaluation can
    never read as "no violations".
    """
    if not isinstance(output, Mapping):
        raise PolicyError("policy evaluation returned no result document")
    violations: list[Result] = []
    warnings: list[Result] = []
    expected = policy_set.packages
    rules = {rule.code: rule for rule in reversed(policy_set.rules)}  # the first rule of a code wins
    for package, kinds in expected.items():
        doc = output.get(package)
        if not isinstance(doc, Mapping):
            raise PolicyError(f"policy evaluation returned nothing for package policy.release.{package}")
        for kind in kinds:
            items = doc.get(kind)
            if not isinstance(items, list):
                raise PolicyError(f"policy evaluation returned no {kind} set for policy.release.{package}")
            if len(items) > MAX_RESULTS:
                raise PolicyError(f"policy.release.{package}.{kind} returned more than {MAX_RESULTS} results")
            target = violations if kind == "deny" else warnings
            target.extend(enrich(item, package, rules) for item in items)
    violations.sort(key=_sort_key)
    warnings.sort(key=_sort_key)
    return Evaluation(
        violations=violations,
        warnings=warnings,
        rules_evaluated=len(policy_set.rules),
        elapsed_ms=elapsed_ms,
    )


def decision_query(policy_set: PolicySet) -> str:
    """One query that collects every deny/warn set, the same text for both engines."""
    parts = []
    for package, kinds in sorted(policy_set.packages.items()):
        fields = ", ".join(f'"{k}": data.policy.release.{package}.{k}' for k in sorted(kinds))
        parts.append(f'"{package}": {{{fields}}}')
    return "x := {" + ", ".join(parts) + "}"
