"""``/validate`` and ``/mutate``: which images of a request are decided, how the decisions become one
admission answer (modes, scoping, failure), and the pinning patch.

* Exempt namespaces are admitted untouched. DELETE and CONNECT are admitted. On UPDATE only images the
  old object did not name are decided.
* Every distinct image is decided concurrently; the request is denied if any image is denied or could
  not be decided (``mode: enforce``). ``mode: warn`` never denies: what would have denied becomes a
  warning. "Could not decide" is never a silent allow.
* An image outside ``images.check`` gets ``images.noMatch`` (deny by default).
* ``/mutate`` pins every image to the digest its tag names now, keeping the tag for people
  (``repo:tag@sha256:…``), so the kubelet runs exactly what ``/validate`` decided.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from attestation.oci.auth import CredentialLookup
from attestation.reference import DEFAULT_REGISTRY, ImageReference, InvalidReference, parse
from gate.checklist import NO_VERIFIED_ATTESTATION
from gate.decision import Decision
from gate.render import printable
from gate.serve.admission import (
    BadObject,
    ImageUse,
    Review,
    denial_message,
    images_to_decide,
    pin_patch,
    pod_spec,
    response,
)
from gate.serve.config import ServeConfig
from gate.serve.decider import Decider
from gate.serve.pullsecrets import PullSecrets

# Codes and messages listed per image in a denial line.
MAX_FINDINGS_PER_LINE = 4
# Characters of an attestation's verification error quoted in a denial line (MAX_LINE bounds the line).
MAX_REASON = 160


@lru_cache(maxsize=256)
def _glob(pattern: str) -> re.Pattern[str]:
    for alias in ("docker.io/", "registry-1.docker.io/"):
        if pattern.startswith(alias):
            pattern = f"{DEFAULT_REGISTRY}/{pattern[len(alias) :]}"
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def in_scope(ref: ImageReference, globs: Sequence[str]) -> bool:
    """Whether ``ref``'s name (``registry/repository``, Docker Hub as ``index.docker.io``) matches one of
    ``globs`` (``*`` within a path segment, ``**`` across them)."""
    return any(_glob(g).fullmatch(ref.name) for g in globs)


@dataclass
class Judgement:
    """What one image gets: ``allow``, ``deny`` or ``undecided``, the line a denial shows, and warnings."""

    image: str
    verdict: str
    line: str = ""
    warnings: list[str] = field(default_factory=list)
    decision: Decision | None = None


def _findings_line(decision: Decision) -> str:
    if not decision.decided:
        return "could not decide: " + ("; ".join(decision.errors) or "no reason given")
    parts = [f"[{v.code}] {v.msg}" for v in decision.violations[:MAX_FINDINGS_PER_LINE]]
    why = _why_unverified(decision)
    if why and decision.violations and decision.violations[0].code == NO_VERIFIED_ATTESTATION:
        # The line's label names the image already: the digest alone leaves room for the reason.
        name, at, digest = decision.image.rpartition("@")
        first = parts[0].replace(f" of {decision.image} ", f" of {digest} ") if at and name else parts[0]
        parts[0] = f"{first} ({why})"
    more = len(decision.violations) - MAX_FINDINGS_PER_LINE
    if more > 0:
        parts.append(f"(+{more} more; gate verify {decision.image} shows all)")
    return "; ".join(parts)


def _why_unverified(decision: Decision) -> str:
    """Why the first attestation that did not verify did not (an untrusted key, a certificate chain,
    another identity), so that the line in ``kubectl``'s error says what to fix; the others are in
    ``gate verify``'s output."""
    failed = [a for a in decision.attestations if not a.verified and a.error]
    if not failed:
        return ""
    first = failed[0]
    reason = first.error or ""
    reason = reason.removeprefix(f"{first.source}: ")
    if len(reason) > MAX_REASON:
        reason = reason[: MAX_REASON - 1] + "…"
    more = len(failed) - 1
    return reason + (f"; {more} more attestation(s) did not verify" if more else "")


def _label(image: str, uses: Sequence[ImageUse]) -> str:
    wheres = ", ".join(dict.fromkeys(u.where for u in uses))
    return f"{printable(image)} ({wheres})"


async def judge(
    image: str,
    uses: Sequence[ImageUse],
    config: ServeConfig,
    decider: Decider,
    deadline: float,
    credentials: CredentialLookup | None,
) -> Judgement:
    label = _label(image, uses)
    try:
        ref = parse(image)
    except InvalidReference as err:
        return Judgement(image, "deny", f"{label}: [builtin.image.reference] {err}")
    if config.require_digest and ref.digest is None:
        return Judgement(
            image,
            "deny",
            f"{label}: [builtin.image.digest] not pinned by digest (images.requireDigest); "
            "write it as name@sha256:… or let the mutating webhook pin it",
        )
    if not in_scope(ref, config.images):
        if config.no_match == "allow":
            return Judgement(image, "allow")
        text = f"{label}: [builtin.image.no_policy] no policy applies to this image (images.check)"
        if config.no_match == "warn":
            return Judgement(image, "allow", warnings=[text])
        return Judgement(image, "deny", text)
    decision, _ = await decider.decide(ref, deadline, credentials=credentials)
    warnings = [f"{printable(image)}: [{w.code}] {w.msg}" for w in decision.warnings]
    if decision.allowed:
        return Judgement(image, "allow", warnings=warnings, decision=decision)
    verdict = "deny" if decision.decided else "undecided"
    return Judgement(image, verdict, f"{label}: {_findings_line(decision)}", warnings, decision)


def _group(uses: Sequence[ImageUse]) -> dict[str, list[ImageUse]]:
    grouped: dict[str, list[ImageUse]] = {}
    for use in uses:
        grouped.setdefault(use.image, []).append(use)
    return grouped


def _credentials(review: Review, pull_secrets: PullSecrets | None) -> CredentialLookup | None:
    if pull_secrets is None or review.obj is None or not review.namespace:
        return None
    try:
        spec, _ = pod_spec(review.obj, review.kind)
    except BadObject:
        return None
    return pull_secrets.lookup(review.namespace, spec or {})


@dataclass
class Answer:
    """The AdmissionReview answer, and what the metrics record about it."""

    body: dict[str, Any]
    outcome: str


async def validate(
    review: Review, config: ServeConfig, decider: Decider, deadline: float, pull_secrets: PullSecrets | None
) -> Answer:
    if review.namespace in config.exempt_namespaces:
        return Answer(response(review.uid, allowed=True, audit={"decision": "exempt-namespace"}), "exempt")
    if review.operation not in ("CREATE", "UPDATE"):
        return Answer(response(review.uid, allowed=True), "allowed")
    try:
        uses = images_to_decide(review)
    except BadObject as err:
        return Answer(response(review.uid, allowed=False, code=400, message=f"provgate: {err}"), "invalid")
    grouped = _group(uses)
    if not grouped:
        return Answer(response(review.uid, allowed=True, audit={"decision": "no-new-images"}), "allowed")
    credentials = _credentials(review, pull_secrets)
    judgements = await asyncio.gather(
        *(judge(image, u, config, decider, deadline, credentials) for image, u in grouped.items())
    )
    warnings = [w for j in judgements for w in j.warnings]
    refused = [j for j in judgements if j.verdict != "allow"]
    audit = {"decision": "allowed" if not refused else "denied", "images": str(len(judgements))}
    if not refused:
        return Answer(response(review.uid, allowed=True, warnings=warnings, audit=audit), "allowed")
    if config.mode == "warn":
        warned = [f"provgate (warn mode) would deny {j.line}" for j in refused]
        audit["decision"] = "warned"
        return Answer(
            response(review.uid, allowed=True, warnings=[*warned, *warnings], audit=audit), "warned"
        )
    undecided = any(j.verdict == "undecided" for j in refused)
    message = denial_message([j.line for j in refused], len(judgements))
    outcome = "undecided" if undecided else "denied"
    return Answer(
        response(review.uid, allowed=False, message=message, warnings=warnings, audit=audit), outcome
    )


async def mutate(
    review: Review, config: ServeConfig, decider: Decider, deadline: float, pull_secrets: PullSecrets | None
) -> Answer:
    """Pin each image the request adds to the digest its tag names now. Never denies: an image that
    cannot be pinned is left as it is, and ``/validate`` decides it (a tag that cannot be resolved is
    "could not decide" there)."""
    if review.namespace in config.exempt_namespaces:
        return Answer(response(review.uid, allowed=True), "exempt")
    if review.operation not in ("CREATE", "UPDATE"):
        return Answer(response(review.uid, allowed=True), "allowed")
    try:
        uses = images_to_decide(review)
    except BadObject:
        return Answer(response(review.uid, allowed=True), "invalid")  # /validate denies it, with why
    pinned: dict[str, str] = {}
    warnings: list[str] = []
    credentials = _credentials(review, pull_secrets)

    async def pin(image: str) -> None:
        try:
            ref = parse(image)
        except InvalidReference:
            return
        if ref.digest is not None or not in_scope(ref, config.images):
            return
        try:
            resolved = await decider.pin(ref, deadline, credentials=credentials)
        except Exception as err:  # any failure leaves the image as written; /validate decides it
            warnings.append(
                f"provgate could not pin {printable(image)} to a digest: {err or type(err).__name__}"
            )
            return
        pinned[image] = f"{image}@{resolved.digest}"

    await asyncio.gather(*(pin(image) for image in _group(uses)))
    patch = pin_patch(uses, pinned)
    return Answer(
        response(review.uid, allowed=True, patch=patch, warnings=warnings), "pinned" if patch else "allowed"
    )


def decisions_json(decisions: Sequence[Decision]) -> list[Mapping[str, Any]]:
    return [d.to_dict() for d in decisions]
