"""The operator's ``enforce-nonfalsifiability`` switch, with Tekton's values (``none`` | ``spire``).

With ``spire`` a run whose SPIRE-signed results do not verify gets no provenance, and the reasons are
recorded; with ``none`` every run is processed as before (its results are not checked).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from attestation.errors import InputError
from attestation.spiffe import TrustBundle, TrustBundles, validate_trust_domain
from signer.spire.results import verify_run_results

MODES = ("none", "spire")


@dataclass(frozen=True)
class SpireConfig:
    enforce_nonfalsifiability: str = "none"
    trust_domain: str = "example.org"
    # The TaskRuns' trust domain's bundle (one that names no trust domain is taken as trust_domain's), or
    # the bundles of several trust domains (the controller's may be another).
    bundle: TrustBundle | TrustBundles | None = None
    # Also require the controller's status signature (status.annotations tekton.dev/status-hash...),
    # optionally pinned to the controller's SPIFFE IDs; off by default as Tekton never wrote it.
    require_status_signature: bool = False
    controller_spiffe_ids: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.enforce_nonfalsifiability not in MODES:
            raise InputError(
                f"enforce-nonfalsifiability: {self.enforce_nonfalsifiability!r} "
                f"is not one of {', '.join(MODES)}"
            )
        validate_trust_domain(self.trust_domain, what="spire-trust-domain")
        if self.enforce_nonfalsifiability == "spire" and self.bundle is None:
            raise InputError("enforce-nonfalsifiability is spire but no SPIRE trust bundle is configured")


@dataclass(frozen=True)
class Verdict:
    """``allowed``: provenance may be produced. ``reasons``: why not (one line each), or notes."""

    allowed: bool
    reasons: tuple[str, ...] = ()


def _kind(run: Any) -> str:
    return cast(str, run.get("kind", "") if isinstance(run, dict) else run.kind)


def _label(run: Any) -> str:
    if isinstance(run, dict):
        meta = run.get("metadata") or {}
        return f"{run.get('kind', 'object')} {meta.get('namespace', '')}/{meta.get('name', '')}"
    return f"{run.kind} {run.namespace}/{run.name}"


def check_nonfalsifiability(
    run: Any, config: SpireConfig, *, children: Sequence[Any] = (), at: dt.datetime | None = None
) -> Verdict:
    """May ``run`` get provenance under ``config``? A PipelineRun needs all its child TaskRuns verified.

    Pure: the trust bundle comes from ``config``, the time from ``at`` (default now).
    """
    if config.enforce_nonfalsifiability == "none":
        return Verdict(True)
    assert config.bundle is not None  # guaranteed by SpireConfig
    taskruns = [run] if _kind(run) == "TaskRun" else list(children)
    if not taskruns:
        return Verdict(False, (f"{_label(run)}: no TaskRuns to verify SPIRE-signed results of",))
    reasons: list[str] = []
    for tr in taskruns:
        try:
            verdict = verify_run_results(
                tr,
                trust_domain=config.trust_domain,
                bundle=config.bundle,
                at=at,
                require_status_signature=config.require_status_signature,
                controller_spiffe_ids=config.controller_spiffe_ids,
            )
        except InputError as err:
            reasons.append(f"{_label(tr)}: {err}")
            continue
        reasons.extend(f"{_label(tr)}: {r}" for r in verdict.reasons)
    return Verdict(not reasons, tuple(reasons))
