"""kopf wiring: which runs the handlers see, and how :func:`signer.operator.reconcile.reconcile`'s outcomes
become kopf's retries.

One change handler per kind (``on.create`` with a diff base that is never stored, so kopf calls it for
every change of a run that is not marked yet, level-triggered like a Chains reconcile), and one event
handler for runs being deleted while they still carry Chains' finalizer (kopf's change handlers do not
see those: kopf only tracks deletions it holds a finalizer of its own for).

kopf keeps its retry bookkeeping in annotations under ``signer.provgate.dev/`` while a run is retried
(none is left on a run that succeeded at once); those never reach a run's provenance.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import tempfile
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kopf

from signer.operator import chains
from signer.operator.config import OperatorConfig, RegistrationConfig
from signer.operator.kube import KubeApi, KubeApiError
from signer.operator.metrics import Metrics
from signer.operator.queue import BACKLOG, FRESH, RUNNING, WorkQueue
from signer.operator.reconcile import Context, CredentialsCache, Failed, Retry, WaitClock, reconcile
from signer.operator.registration import Registrar
from signer.operator.source import ConfigHolder

log = logging.getLogger(__name__)

GROUP = "tekton.dev"
PLURALS = {"TaskRun": "taskruns", "PipelineRun": "pipelineruns"}
HANDLER_ID = "attest"
API_RETRY_DELAY = 5.0
MAX_FINAL_ATTEMPTS = 6  # Chains' five attempts, and one to mark the run failed


class NoDiffBase(kopf.DiffBaseStorage):
    """Never remember a run's last-handled state: every change is a new "creation", so the handler runs
    for any change of an unmarked run, and kopf writes nothing to a run that succeeded at once."""

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None


class ProgressAnnotations(kopf.AnnotationsProgressStorage):
    """kopf's retry bookkeeping in ``signer.provgate.dev/`` annotations, without the ``kopf-managed``
    marker kopf would leave on every run it ever stored progress for."""

    def __init__(self) -> None:
        super().__init__(prefix=chains.OPERATOR_PREFIX.rstrip("/"))

    def _store_marker(self, prefix: str, patch: kopf.Patch, body: kopf.Body) -> None:
        return None


def settings_for(settings: kopf.OperatorSettings) -> kopf.OperatorSettings:
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.persistence.progress_storage = ProgressAnnotations()
    settings.persistence.finalizer = f"{chains.OPERATOR_PREFIX}kopf"  # never added: no delete handlers
    settings.scanning.disabled = True  # no cluster-wide list/watch of CRDs and namespaces needed
    settings.posting.enabled = False  # Events are posted explicitly, on the run
    settings.peering.standalone = True  # one replica works at a time: the Lease decides
    settings.watching.server_timeout = 600  # re-establish watches now and then
    settings.networking.error_backoffs = (0.5, 1, 2, 3, 5, 8)
    return settings


class Operator:
    """The state the handlers share: the API, the configuration in force, the workers, the metrics."""

    def __init__(self, cluster: KubeApi, holder: ConfigHolder, queue: WorkQueue, metrics: Metrics) -> None:
        self.cluster = cluster
        self.holder = holder
        self.queue = queue
        self.metrics = metrics
        self.started = dt.datetime.now(dt.UTC)
        self.credentials = CredentialsCache()
        self.waits = WaitClock()
        self._registrar: tuple[RegistrationConfig, Registrar] | None = None
        self._lock = threading.Lock()
        directory = Path(tempfile.mkdtemp(prefix="provgate-signer-"))
        (directory / "config.json").write_text("{}")
        self.docker_config = str(directory)

    @property
    def config(self) -> OperatorConfig:
        config = self.holder.config
        assert config is not None, "the operator starts only with a configuration"
        return config

    def _registrar_for(self, config: RegistrationConfig | None) -> Registrar | None:
        if config is None:
            return None
        with self._lock:
            if self._registrar is None or self._registrar[0] != config:
                self._registrar = (config, Registrar(config))
            return self._registrar[1]

    def context(self) -> Context:
        config = self.config
        return Context(
            cluster=self.cluster,
            config=config,
            metrics=self.metrics,
            registrar=self._registrar_for(config.registration),
            credentials=self.credentials,
            docker_config=self.docker_config,
            waits=self.waits,
        )

    def wanted(self, kind: str, body: Mapping[str, Any]) -> bool:
        """Runs the change handler is called for (checked by kopf on every event, before any work)."""
        config = self.holder.config
        return (
            config is not None
            and config.for_kind(kind) is not None
            and not chains.deleting(body)
            and not chains.opted_out(body)
            and chains.managed(body, config.managed_by)
        )

    def finalizing(self, kind: str, body: Mapping[str, Any]) -> bool:
        return chains.deleting(body) and chains.has_finalizer(body, kind) and not chains.reconciled(body)

    def priority(self, body: Mapping[str, Any]) -> tuple[int, float]:
        if not chains.is_done(body):
            return RUNNING, 0.0
        completed = chains.completion_time(body)
        stamp = completed.timestamp() if completed is not None else 0.0
        fresh = completed is None or completed >= self.started - dt.timedelta(seconds=1)
        return (FRESH if fresh else BACKLOG), stamp

    def needs_work(self, kind: str, body: Mapping[str, Any]) -> bool:
        """A running run that already has the finalizer needs nothing (unless a SPIRE entry is due):
        its many status updates then cost no API call at all."""
        if chains.is_done(body):
            return True
        if not chains.has_finalizer(body, kind):
            return True
        return kind == "TaskRun" and self.config.registration is not None

    async def handle(self, kind: str, body: Mapping[str, Any]) -> None:
        if not self.needs_work(kind, body):
            return
        meta = body.get("metadata") or {}
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        klass, stamp = self.priority(body)
        started = time.monotonic()
        try:
            outcome = await self.queue.submit(
                lambda: reconcile(kind, namespace, name, self.context()), klass=klass, newest=stamp
            )
        except Retry as retry:
            raise kopf.TemporaryError(str(retry), delay=retry.delay) from None
        except Failed as failed:
            raise kopf.PermanentError(str(failed)) from None
        except KubeApiError as err:
            log.warning("%s %s/%s: %s", kind, namespace, name, err)
            raise kopf.TemporaryError(str(err), delay=API_RETRY_DELAY) from None
        log.debug("%s %s/%s: %s in %.3fs", kind, namespace, name, outcome, time.monotonic() - started)

    async def finalize(self, kind: str, body: Mapping[str, Any]) -> None:
        """A run being deleted that still carries Chains' finalizer: attest it if it is done (nothing is
        waited for), then release it. kopf does not retry event handlers, so the retries are here."""
        meta = body.get("metadata") or {}
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        for _attempt in range(MAX_FINAL_ATTEMPTS):
            try:
                await self.queue.submit(
                    lambda: reconcile(kind, namespace, name, self.context(), final=True), klass=RUNNING
                )
                return
            except Retry as retry:
                await asyncio.sleep(retry.delay)
            except Failed:
                return
            except KubeApiError as err:
                log.warning("%s %s/%s (being deleted): %s", kind, namespace, name, err)
                await asyncio.sleep(API_RETRY_DELAY)


def register(registry: kopf.OperatorRegistry, operator: Operator) -> None:
    """The handlers for both kinds, on ``registry``."""

    @kopf.on.login(registry=registry)
    def login(**kwargs: Any) -> kopf.ConnectionInfo | None:
        return kopf.login_with_service_account(**kwargs) or kopf.login_with_kubeconfig(**kwargs)

    for kind, plural in PLURALS.items():

        def wanted(body: kopf.Body, kind: str = kind, **_: Any) -> bool:
            return operator.wanted(kind, body)

        def finalizing(body: kopf.Body, kind: str = kind, **_: Any) -> bool:
            return operator.finalizing(kind, body)

        async def on_change(body: kopf.Body, kind: str = kind, **_: Any) -> None:
            await operator.handle(kind, body)

        async def on_delete(body: kopf.Body, kind: str = kind, **_: Any) -> None:
            await operator.finalize(kind, body)

        kopf.on.create(
            GROUP,
            "v1",
            plural,
            id=HANDLER_ID,
            registry=registry,
            annotations={chains.SIGNED: kopf.ABSENT},
            when=wanted,
        )(on_change)
        kopf.on.event(GROUP, "v1", plural, id=f"{HANDLER_ID}-deleted", registry=registry, when=finalizing)(
            on_delete
        )
