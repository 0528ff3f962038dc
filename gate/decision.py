"""The gate's verdict, one shape for every surface (CLI, HTTP API, admission webhook): DESIGN.md §3.

``allowed`` is true only when the pipeline reached a verdict *and* it found no violation. A decision that
could not be reached (registry down, policy engine failed, deadline passed) has ``decided`` false and is
never allowed: callers must treat it as a denial, the CLI exits 2 for it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from gate.render import printable

EXIT_ALLOWED = 0
EXIT_DENIED = 1
EXIT_UNDECIDED = 2

NO_RULES_EVALUATED = "builtin.policy.rules_evaluated"


class ResultLike(Protocol):
    """What the policy engines return per deny/warn result (``gate.policy.Result``); read-only, so the
    frozen :class:`Finding` is one."""

    @property
    def code(self) -> str: ...
    @property
    def msg(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def description(self) -> str: ...
    @property
    def solution(self) -> str: ...
    @property
    def term(self) -> str | None: ...


@dataclass(frozen=True)
class Finding:
    """One violation or warning: ``R`` of DESIGN.md §3."""

    code: str
    msg: str
    title: str = ""
    description: str = ""
    solution: str = ""
    term: str | None = None

    @classmethod
    def from_result(cls, result: ResultLike) -> Finding:
        # The engines return Findings (gate.policy.Result is this class); anything else is copied.
        if isinstance(result, cls):
            return result
        return cls(
            code=result.code,
            msg=result.msg,
            title=result.title,
            description=result.description,
            solution=result.solution,
            term=result.term,
        )

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Finding:
        term = doc.get("term")
        return cls(
            code=_text(doc, "code"),
            msg=_text(doc, "msg"),
            title=_text(doc, "title"),
            description=_text(doc, "description"),
            solution=_text(doc, "solution"),
            term=None if term is None else _text(doc, "term"),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "code": self.code,
            "msg": self.msg,
            "title": self.title,
            "description": self.description,
            "solution": self.solution,
        }
        if self.term is not None:
            out["term"] = self.term
        return out


@dataclass(frozen=True)
class AttestationReport:
    """What the decision says about one attestation found for the image, verified or not."""

    source: str
    verified: bool
    predicate_type: str | None = None
    build_type: str | None = None
    signer: Mapping[str, Any] = field(default_factory=dict)
    # Signatures that verified but the statement was rejected afterwards (e.g. subject of another image)
    # are still "verified: false": only statements that reach the policy count as verified.
    error: str | None = None

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> AttestationReport:
        return cls(
            source=_text(doc, "source"),
            verified=_flag(doc, "verified"),
            predicate_type=_optional_text(doc, "predicateType"),
            build_type=_optional_text(doc, "buildType"),
            signer=dict(_object(doc, "signer")),
            error=_optional_text(doc, "error"),
        )

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "source": self.source,
            "predicateType": self.predicate_type,
            "buildType": self.build_type,
            "signer": dict(self.signer),
            "verified": self.verified,
        }
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass(frozen=True)
class Timings:
    """Milliseconds spent in each stage; zero for stages that did not run. For an image named by digest
    the fetch starts with the resolve (they run concurrently), so the two overlap."""

    resolve_ms: float = 0.0
    fetch_ms: float = 0.0
    verify_ms: float = 0.0
    policy_ms: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return {
            "resolve_ms": round(self.resolve_ms, 3),
            "fetch_ms": round(self.fetch_ms, 3),
            "verify_ms": round(self.verify_ms, 3),
            "policy_ms": round(self.policy_ms, 3),
        }


@dataclass(frozen=True)
class Decision:
    allowed: bool
    image: str
    violations: tuple[Finding, ...] = ()
    warnings: tuple[Finding, ...] = ()
    attestations: tuple[AttestationReport, ...] = ()
    errors: tuple[str, ...] = ()
    elapsed_ms: float = 0.0
    decided: bool = True
    rules_evaluated: int = 0
    timings: Timings = field(default_factory=Timings)

    def __post_init__(self) -> None:
        # Fail closed by construction: no code path can build an allowed decision that has violations,
        # pipeline errors of its own, or no verdict.
        if self.allowed and (self.violations or not self.decided):
            raise ValueError("an allowed decision cannot carry violations or be undecided")

    @property
    def exit_code(self) -> int:
        if not self.decided:
            return EXIT_UNDECIDED
        return EXIT_ALLOWED if self.allowed else EXIT_DENIED

    @property
    def verdict(self) -> str:
        if not self.decided:
            return "could not decide"
        return "allowed" if self.allowed else "denied"

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> Decision:
        """The decision :meth:`to_dict` wrote (another worker's, gate.serve.peers). Raises
        :class:`ValueError` for anything else; an allowed decision with violations cannot be built."""
        timings = _object(doc, "timings")
        return cls(
            allowed=_flag(doc, "allowed"),
            decided=_flag(doc, "decided"),
            image=_text(doc, "image"),
            violations=tuple(Finding.from_dict(v) for v in _objects(doc, "violations")),
            warnings=tuple(Finding.from_dict(w) for w in _objects(doc, "warnings")),
            attestations=tuple(AttestationReport.from_dict(a) for a in _objects(doc, "attestations")),
            errors=tuple(_texts(doc, "errors")),
            rules_evaluated=int(_number(doc, "rules_evaluated")),
            elapsed_ms=_number(doc, "elapsed_ms"),
            timings=Timings(**{k: _number(timings, k) for k in Timings().to_dict()}),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "decided": self.decided,
            "image": self.image,
            "violations": [v.to_dict() for v in self.violations],
            "warnings": [w.to_dict() for w in self.warnings],
            "attestations": [a.to_dict() for a in self.attestations],
            "errors": list(self.errors),
            "rules_evaluated": self.rules_evaluated,
            "elapsed_ms": round(self.elapsed_ms, 3),
            "timings": self.timings.to_dict(),
        }


def _text(doc: Mapping[str, Any], key: str) -> str:
    value = doc.get(key, "")
    if not isinstance(value, str):
        raise ValueError(f"{key}: not a string")
    return value


def _optional_text(doc: Mapping[str, Any], key: str) -> str | None:
    return None if doc.get(key) is None else _text(doc, key)


def _flag(doc: Mapping[str, Any], key: str) -> bool:
    value = doc.get(key)
    if not isinstance(value, bool):
        raise ValueError(f"{key}: not true or false")
    return value


def _number(doc: Mapping[str, Any], key: str) -> float:
    value = doc.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key}: not a number")
    return float(value)


def _object(doc: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, Mapping):
        raise ValueError(f"{key}: not an object")
    return value


def _objects(doc: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, Mapping) for v in value):
        raise ValueError(f"{key}: not a list of objects")
    return value


def _texts(doc: Mapping[str, Any], key: str) -> list[str]:
    value = doc.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"{key}: not a list of strings")
    return value


def undecided(image: str, errors: Iterable[str], *, elapsed_ms: float = 0.0, **kwargs: Any) -> Decision:
    """A decision the pipeline could not reach; never allowed."""
    return Decision(
        allowed=False, image=image, errors=tuple(errors), elapsed_ms=elapsed_ms, decided=False, **kwargs
    )


NO_RULES = Finding(
    code=NO_RULES_EVALUATED,
    msg="the policy evaluated no rules",
    title="No policy rules evaluated",
    description="A policy that checks nothing cannot allow an image.",
    solution="Point --policy at a directory with policy.release.* packages that have deny or warn rules.",
)


class EvaluationLike(Protocol):
    """What the policy engines return for one evaluation (``gate.policy.Evaluation``)."""

    @property
    def violations(self) -> Sequence[ResultLike]: ...
    @property
    def warnings(self) -> Sequence[ResultLike]: ...
    @property
    def rules_evaluated(self) -> int: ...


def from_evaluation(
    image: str,
    evaluation: EvaluationLike,
    *,
    before: Sequence[Finding] = (),
    after: Sequence[Finding] = (),
    attestations: Sequence[AttestationReport] = (),
    errors: Sequence[str] = (),
    elapsed_ms: float = 0.0,
    timings: Timings | None = None,
) -> Decision:
    """The decision for a policy evaluation that ran: the policy's violations between the gate's own
    findings ``before`` and ``after`` them, and :data:`NO_RULES` when no rule was evaluated (a policy that
    checks nothing allows nothing). Allowed only without any violation."""
    violations = [*before, *(Finding.from_result(r) for r in evaluation.violations), *after]
    if evaluation.rules_evaluated <= 0:
        violations.append(NO_RULES)
    return Decision(
        allowed=not violations,
        image=image,
        violations=tuple(violations),
        warnings=tuple(Finding.from_result(r) for r in evaluation.warnings),
        attestations=tuple(attestations),
        errors=tuple(errors),
        elapsed_ms=elapsed_ms,
        rules_evaluated=evaluation.rules_evaluated,
        timings=timings or Timings(),
    )


def policy_failed(image: str, err: BaseException, *, errors: Sequence[str] = (), **kwargs: Any) -> Decision:
    """The engine failed: undecided, never allowed, with why after the ``errors`` already found."""
    message = " ".join(str(err).split()) or type(err).__name__
    if not message.startswith("policy evaluation failed"):
        message = f"policy evaluation failed: {message}"
    return undecided(image, [*errors, message], **kwargs)


def ms_since(started: float) -> float:
    """Milliseconds from ``started`` (a :func:`time.perf_counter` value) to now."""
    return (time.perf_counter() - started) * 1000


def _wrap(text: str, indent: str, width: int = 100) -> list[str]:
    import textwrap

    text = printable(text)
    return textwrap.wrap(text, width=width, initial_indent=indent, subsequent_indent=indent) or [indent]


def render_text(decision: Decision) -> str:
    """For a person in a hurry: the verdict first, then what to fix, then the details."""
    lines: list[str] = []
    head = {"allowed": "ALLOWED", "denied": "DENIED", "could not decide": "COULD NOT DECIDE"}[
        decision.verdict
    ]
    lines.append(f"{head}: {printable(decision.image)}")
    if not decision.decided:
        lines.append("  (treat as denied)")
    for err in decision.errors if not decision.decided else ():
        lines.append(printable(f"  error: {err}"))
    sections = ((decision.violations, "violation", "✗"), (decision.warnings, "warning", "!"))
    for findings, noun, mark in sections:
        if not findings:
            continue
        lines.append("")
        lines.append(f"{len(findings)} {noun}(s):")
        for f in findings:
            lines.append(printable(f"  {mark} [{f.code}] {f.title or f.code}"))
            lines.extend(_wrap(f.msg, "      "))
            if f.solution:
                lines.extend(_wrap(f"fix: {f.solution}", "      "))
    if decision.attestations:
        lines.append("")
        verified = sum(1 for a in decision.attestations if a.verified)
        lines.append(f"attestations: {verified} of {len(decision.attestations)} verified")
        for a in decision.attestations:
            mark = "✓" if a.verified else "✗"
            what = a.predicate_type or "(unparsed)"
            signer = a.signer.get("keyid") or a.signer.get("spiffe_id") or ""
            line = f"  {mark} {a.source}: {what}" + (f" signed by {signer}" if signer else "")
            lines.append(printable(line))
            if a.error:
                lines.extend(_wrap(a.error, "      "))
    shown = {a.error for a in decision.attestations if a.error}
    other_errors = [e for e in decision.errors if e not in shown] if decision.decided else []
    if other_errors:
        lines.append("")
        lines.append("errors:")
        for err in other_errors:
            lines.extend(_wrap(err, "  "))
    lines.append("")
    if decision.decided:
        lines.append(f"{decision.rules_evaluated} rule(s) evaluated in {decision.elapsed_ms:.1f} ms")
    else:
        lines.append(f"gave up after {decision.elapsed_ms:.1f} ms")
    return "\n".join(lines) + "\n"
