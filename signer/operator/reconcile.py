"""What the operator does with one run, given the API to read and write it: :func:`reconcile`.

Called for every change kopf sees on a run that is not marked yet (and again for retries). It reads the
run afresh (a run marked by an earlier attempt is never attested again), then:

* still running: adds Chains' finalizer, registers the TaskRun's SPIRE entry when configured;
* done: attests it with :func:`signer.attest.attest` and marks it ``chains.tekton.dev/signed: "true"``
  with the ``tekton`` storage's annotations, in one server-side apply that also releases the finalizer.
  A PipelineRun first waits (bounded) until its child TaskRuns are complete and marked.

Failures come back as :class:`Retry` (wait, then call again: kopf's ``TemporaryError``) or :class:`Failed`
(the run is marked failed: kopf's ``PermanentError``), each with one line for the person who looks. A
failure the same run would meet again is permanent; one that may pass (a registry or the SPIRE agent
down, credentials not granted yet) is retried as Chains retries: ``chains.tekton.dev/retries`` counts,
and the fifth failure marks the run failed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from attestation.errors import (
    InputError,
    KeyLoadError,
    ProvgateError,
    RegistryAuthError,
    RegistryError,
    ResultsNotVerified,
    TimestampUnavailable,
    TransientError,
)
from signer.attest import AttestConfig, AttestOutcome, attest
from signer.operator import chains, credentials
from signer.operator.config import OperatorConfig
from signer.operator.kube import KubeApiError
from signer.operator.metrics import Metrics
from signer.operator.registration import Registrar
from signer.run import Run, to_run

log = logging.getLogger(__name__)

MAX_RUN_BYTES = 3 * 1024 * 1024  # etcd's default request limit is 1.5 MiB; twice that as JSON text
MAX_CHILDREN = 2000
CHILD_POLL = 1.0  # seconds between looks at a PipelineRun's unfinished children
CREDENTIALS_TTL = 5.0  # seconds a run's registry credentials are reused for runs of the same account
NO_DELAY = 0.0


class Cluster(Protocol):
    """The API calls :func:`reconcile` makes (:class:`signer.operator.kube.KubeApi`)."""

    def get_run(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None: ...

    def apply_run(self, body: Mapping[str, Any]) -> dict[str, Any]: ...

    def post_event(self, obj: Mapping[str, Any], type_: str, reason: str, message: str) -> None: ...

    def get_service_account(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def get_secret(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None: ...


class Retry(Exception):
    """Call again after ``delay`` seconds (the run is unchanged or has one more Chains retry recorded)."""

    def __init__(self, message: str, delay: float) -> None:
        super().__init__(message)
        self.delay = delay


class Failed(Exception):
    """The run is marked ``chains.tekton.dev/signed: failed`` (or was already); never retried."""


@dataclass
class CredentialsCache:
    """Registry credentials per (namespace, ServiceAccount, pull secrets), for a few seconds: a burst of
    runs of one account reads its Secrets once, and a Secret added to the account is seen soon."""

    ttl: float = CREDENTIALS_TTL
    _entries: dict[tuple[str, ...], tuple[float, credentials.RunCredentials]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def lookup(self, cluster: Cluster, run: Mapping[str, Any]) -> credentials.RunCredentials:
        namespace = str((run.get("metadata") or {}).get("namespace"))
        account = credentials.service_account(run)
        pod_secrets = credentials.pod_template_pull_secrets(run)
        key = (namespace, account, *pod_secrets)
        now = time.monotonic()
        with self._lock:
            hit = self._entries.get(key)
        if hit is not None and now - hit[0] < self.ttl:
            return hit[1]
        sa = cluster.get_service_account(namespace, account)
        names = credentials.secret_names(run, sa)
        found = credentials.merge(account, names, {n: cluster.get_secret(namespace, n) for n in names})
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[key] = (now, found)
        return found


@dataclass
class WaitClock:
    """When this process first found each PipelineRun waiting for its children (by uid): the wait is
    bounded from then, not from the run's completion, so runs that completed while the operator was
    away still wait for their children to be attested first."""

    _first: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def waited(self, uid: str) -> float:
        now = time.monotonic()
        with self._lock:
            if len(self._first) > 100_000:
                self._first.clear()
            return now - self._first.setdefault(uid, now)

    def forget(self, uid: str) -> None:
        with self._lock:
            self._first.pop(uid, None)


@dataclass
class Context:
    """What one reconcile needs; ``config`` is the configuration in force when it started."""

    cluster: Cluster
    config: OperatorConfig
    metrics: Metrics | None = None
    registrar: Registrar | None = None
    credentials: CredentialsCache = field(default_factory=CredentialsCache)
    docker_config: str | None = None  # an empty docker config: the operator's own is never used
    waits: WaitClock = field(default_factory=WaitClock)


def _ref(obj: Mapping[str, Any]) -> dict[str, Any]:
    meta = obj.get("metadata") or {}
    return {
        "k8s_ref": {"kind": obj.get("kind"), "namespace": meta.get("namespace"), "name": meta.get("name")}
    }


def _label(kind: str, namespace: str, name: str) -> str:
    return f"{kind} {namespace}/{name}"


def reconcile(kind: str, namespace: str, name: str, ctx: Context, *, final: bool = False) -> str:
    """Bring one run to its next state; returns what happened in a word (``signed``, ``running``,
    ``gone``, ``marked`` ...). ``final``: the run is being deleted, so nothing is waited for."""
    fresh = ctx.cluster.get_run(kind, namespace, name)
    if fresh is None:
        return "gone"
    if chains.reconciled(fresh):
        if chains.deleting(fresh) and chains.has_finalizer(fresh, kind):
            ctx.cluster.apply_run(chains.apply_body(fresh, {}, keep_finalizer=False))
        return "marked"
    config = ctx.config
    attest_config = config.for_kind(kind)
    if attest_config is None or chains.opted_out(fresh) or not chains.managed(fresh, config.managed_by):
        return "ignored"
    if not chains.is_done(fresh):
        return _running(kind, fresh, ctx)
    if kind == "TaskRun" and ctx.registrar is not None:
        _deregister(fresh, ctx)
    return _attest(kind, fresh, attest_config, ctx, final=final)


def _running(kind: str, run: dict[str, Any], ctx: Context) -> str:
    if chains.deleting(run):
        if chains.has_finalizer(run, kind):  # it will never complete: nothing to wait for
            ctx.cluster.apply_run(chains.apply_body(run, {}, keep_finalizer=False))
        return "deleted before completion"
    if not chains.has_finalizer(run, kind):
        ctx.cluster.apply_run(chains.apply_body(run, {}, keep_finalizer=True))
    if kind == "TaskRun" and ctx.registrar is not None:
        try:
            ctx.registrar.ensure(run, ctx.cluster.get_pod)
        except ProvgateError as err:
            ctx.cluster.post_event(run, "Warning", "SpireRegistrationFailed", str(err))
            raise Retry(f"SPIRE registration: {err}", max(ctx.config.retry_delay, 1.0)) from None
    return "running"


def _deregister(run: dict[str, Any], ctx: Context) -> None:
    assert ctx.registrar is not None
    try:
        ctx.registrar.remove(run)
    except ProvgateError as err:
        # The entry expires by itself (entry-ttl); attesting the run must not wait for the SPIRE server.
        log.warning("could not delete the SPIRE entry: %s", err, extra=_ref(run))
        ctx.cluster.post_event(run, "Warning", "SpireDeregistrationFailed", str(err))


# --------------------------------------------------------------------------------------------- children


@dataclass(frozen=True)
class Children:
    runs: list[dict[str, Any]]  # the child TaskRuns that exist, in childReferences order
    pending: list[str]  # exist, but not complete or not marked yet
    missing: list[str]  # named TaskRuns that do not exist (deleted, never created)
    not_taskruns: list[str]  # CustomRuns and the like: Chains cannot look into them (#1210)


def children_of(pipelinerun: Mapping[str, Any], ctx: Context) -> Children:
    """Read the child TaskRuns named in ``status.childReferences`` from the API server."""
    namespace = str((pipelinerun.get("metadata") or {}).get("namespace"))
    refs = (pipelinerun.get("status") or {}).get("childReferences") or []
    if not isinstance(refs, list):
        raise InputError("status.childReferences must be a list")
    if len(refs) > MAX_CHILDREN:
        raise InputError(f"status.childReferences names {len(refs)} children, more than {MAX_CHILDREN}")
    runs, pending, missing, others = [], [], [], []
    taskruns_marked = ctx.config.taskrun is not None
    for ref in refs:
        if not isinstance(ref, Mapping) or not isinstance(ref.get("name"), str):
            raise InputError("status.childReferences: every entry needs a name")
        child_kind = ref.get("kind") or "TaskRun"
        if child_kind != "TaskRun":
            others.append(f"{child_kind} {ref['name']}")
            continue
        child = ctx.cluster.get_run("TaskRun", namespace, ref["name"])
        if child is None:
            missing.append(ref["name"])
            continue
        runs.append(child)
        complete = bool((child.get("status") or {}).get("completionTime"))
        attested_here = (
            taskruns_marked and not chains.opted_out(child) and chains.managed(child, ctx.config.managed_by)
        )
        if not complete or (attested_here and not chains.reconciled(child)):
            pending.append(ref["name"])
    return Children(runs, pending, missing, others)


# --------------------------------------------------------------------------------------------- attesting


def _attest(
    kind: str, fresh: dict[str, Any], attest_config: AttestConfig, ctx: Context, *, final: bool
) -> str:
    meta = fresh.get("metadata") or {}
    namespace, name = str(meta.get("namespace")), str(meta.get("name"))
    label = _label(kind, namespace, name)
    children: list[Run] = []
    try:
        size = len(json.dumps(fresh))
        if size > MAX_RUN_BYTES:
            raise InputError(f"the {kind} is {size} bytes as JSON, more than the {MAX_RUN_BYTES} attested")
        run = to_run(chains.for_provenance(fresh), source=label)
        if kind == "PipelineRun":
            children = _children_ready(fresh, ctx, final=final)
        config = _with_credentials(fresh, attest_config, ctx)
        outcome = attest(run, children, config)
    except Retry:
        raise
    except ResultsNotVerified as err:
        _record_failure(kind, "results_not_verified", ctx)
        notes = {chains.NOT_VERIFIED: chains.bounded("; ".join(err.reasons) or str(err))}
        return _fail(kind, fresh, ctx, "ResultsNotVerified", f"{err}: {'; '.join(err.reasons)}", notes)
    except KubeApiError:
        raise  # the API server, not the run: kopf retries without counting a Chains retry
    except RegistryAuthError as err:
        creds = ctx.credentials.lookup(ctx.cluster, fresh)
        _record_failure(kind, "storage", ctx)
        return _retry(kind, fresh, ctx, "RegistryCredentials", f"{err}; {creds.describe()}")
    except TransientError as err:
        _record_failure(kind, _error_type(err), ctx)
        return _retry(kind, fresh, ctx, "AttestationRetry", str(err))
    except ProvgateError as err:
        _record_failure(kind, _error_type(err), ctx)
        return _fail(kind, fresh, ctx, "AttestationFailed", str(err))
    except Exception as err:  # a bug, or a library error nobody classified: retried as Chains retries
        log.exception("unexpected error attesting %s", label, extra=_ref(fresh))
        _record_failure(kind, "payload_creation", ctx)
        return _retry(kind, fresh, ctx, "AttestationRetry", f"internal error: {type(err).__name__}: {err}")
    oci_skipped = "oci" in attest_config.for_kind(kind).storage and not outcome.oci
    return _mark_signed(kind, fresh, outcome, ctx, children=len(children), oci_skipped=oci_skipped)


def _children_ready(pipelinerun: dict[str, Any], ctx: Context, *, final: bool) -> list[Run]:
    found = children_of(pipelinerun, ctx)
    label = _label("PipelineRun", *_ns_name(pipelinerun))
    uid = str((pipelinerun.get("metadata") or {}).get("uid"))
    waited = ctx.waits.waited(uid) if found.pending else 0.0
    if found.pending and not final and waited < ctx.config.child_timeout:
        raise Retry(
            f"waiting for child TaskRun(s) {', '.join(found.pending[:5])} to complete and be attested",
            CHILD_POLL,
        )
    if ctx.config.spire.enforce_nonfalsifiability == "spire" and (found.missing or found.not_taskruns):
        gone = [*found.missing, *found.not_taskruns]
        raise ResultsNotVerified(
            f"{label} gets no provenance: child run(s) {', '.join(gone[:5])} cannot be verified "
            "(enforce-nonfalsifiability: spire)",
            [f"child {g} cannot be verified: it does not exist or is not a TaskRun" for g in gone],
        )
    ctx.waits.forget(uid)
    notes = []
    if found.missing:
        notes.append(f"child TaskRun(s) {', '.join(found.missing[:10])} do not exist")
    if found.not_taskruns:
        notes.append(f"child run(s) {', '.join(found.not_taskruns[:10])} are not TaskRuns")
    if found.pending:
        notes.append(
            f"child TaskRun(s) {', '.join(found.pending[:10])} were not complete and attested within "
            f"{ctx.config.child_timeout:g}s"
        )
    if notes:
        ctx.cluster.post_event(
            pipelinerun,
            "Warning",
            "ChildrenIncomplete",
            "attested without them: " + "; ".join(notes),
        )
    return [to_run(chains.for_provenance(c), source=_label("TaskRun", *_ns_name(c))) for c in found.runs]


def _ns_name(obj: Mapping[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace")), str(meta.get("name"))


def _with_credentials(run: Mapping[str, Any], config: AttestConfig, ctx: Context) -> AttestConfig:
    """The run's registry credentials, when it is stored in a registry."""
    if "oci" not in config.for_kind(str(run.get("kind"))).storage:
        return config
    found = ctx.credentials.lookup(ctx.cluster, run)
    storage = replace(config.storage, credentials=dict(found.by_registry), docker_config=ctx.docker_config)
    return replace(config, storage=storage)


def _error_type(err: ProvgateError) -> str:
    if isinstance(err, RegistryError):
        return "storage"
    if isinstance(err, KeyLoadError | TimestampUnavailable):
        return "signing"
    return "payload_creation"


def _record_failure(kind: str, error_type: str, ctx: Context) -> None:
    if ctx.metrics is not None:
        ctx.metrics.chains(kind, "signing_failures_total", error_type=error_type)


def _mark_signed(
    kind: str,
    fresh: dict[str, Any],
    outcome: AttestOutcome,
    ctx: Context,
    *,
    children: int,
    oci_skipped: bool,
) -> str:
    metrics = ctx.metrics
    if metrics is not None:
        metrics.chains(kind, "sign_created_total")
        for _backend in {s.backend for s in outcome.stored}:
            metrics.chains(kind, "payload_stored_total")
    try:
        ctx.cluster.apply_run(
            chains.apply_body(fresh, chains.signed(outcome.annotations), keep_finalizer=False)
        )
    except KubeApiError as err:
        if isinstance(err, TransientError):
            raise
        # e.g. the annotations do not fit next to the run's own: stored elsewhere, but not on the run
        return _fail(kind, fresh, ctx, "AttestationFailed", f"could not mark the run signed: {err}")
    if metrics is not None:
        metrics.signed(kind, chains.completion_time(fresh))
    where = "; ".join(str(s) for s in outcome.stored) or "nothing"
    if oci_skipped:
        where += "; oci: no image subject, nothing stored beside an image"
    extra = f", with {children} child TaskRuns" if kind == "PipelineRun" else ""
    subjects = len(outcome.statement.get("subject") or [])
    predicate = outcome.statement.get("predicateType", "")
    message = f"attested{extra}: {predicate}, {subjects} subject(s); stored in {where}"
    if outcome.warnings:
        message += f"; {len(outcome.warnings)} warning(s): {outcome.warnings[0]}"
    ctx.cluster.post_event(fresh, "Normal", "Attested", message)
    log.info("%s", message, extra=_ref(fresh))
    return "signed"


def _retry(kind: str, fresh: dict[str, Any], ctx: Context, reason: str, message: str) -> str:
    if not chains.retry_available(fresh):
        return _fail(
            kind,
            fresh,
            ctx,
            "AttestationFailed",
            f"gave up after {chains.MAX_RETRIES + 1} attempts: {message}",
        )
    delay = chains.retry_delay(fresh, ctx.config.retry_delay)
    count = chains.next_retry(fresh)
    ctx.cluster.apply_run(chains.apply_body(fresh, {chains.RETRIES: count}, keep_finalizer=True))
    ctx.cluster.post_event(fresh, "Warning", reason, f"retry {count} in {delay:g}s: {message}")
    if ctx.metrics is not None:
        ctx.metrics.outcomes.labels(kind.lower(), "retry").inc()
    log.warning("retry %s in %gs: %s", count, delay, message, extra=_ref(fresh))
    raise Retry(message, delay)


def _fail(
    kind: str,
    fresh: dict[str, Any],
    ctx: Context,
    reason: str,
    message: str,
    extra: Mapping[str, str] | None = None,
) -> str:
    ctx.cluster.apply_run(chains.apply_body(fresh, chains.failed(message, extra), keep_finalizer=False))
    ctx.cluster.post_event(fresh, "Warning", reason, message)
    if ctx.metrics is not None:
        ctx.metrics.outcomes.labels(kind.lower(), "failed").inc()
    log.warning("marked failed: %s", message, extra=_ref(fresh))
    raise Failed(message)
