"""The ``signer run`` process: configuration, metrics and probes, leader election, then kopf.

Order of start: read the configuration (``--config FILE``: unusable -> one line and exit 2; a ConfigMap:
unusable -> logged, an Event on it, not ready, and read again until it is usable), serve ``/metrics``,
``/healthz``, ``/readyz``, wait for the Lease (unless leader election is off), start the configuration
watcher and the workers, and run kopf until SIGTERM/SIGINT. A replica that loses the Lease exits at once
(code 3), so it never attests next to the new holder.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from attestation.errors import InputError, ProvgateError

log = logging.getLogger(__name__)

DEFAULT_NAMESPACE = "tekton-chains"
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
EXIT_LOST_LEASE = 3


@dataclass(frozen=True)
class Options:
    config_file: str | None = None
    configmap: str | None = None  # NAMESPACE/NAME
    namespace: str | None = None  # the operator's own (signing secrets, Lease)
    watch_namespaces: tuple[str, ...] = ()  # empty: all
    workers: int = 8
    kube_api_qps: float = 50.0
    kube_api_burst: int = 100
    http_address: str = "0.0.0.0:9090"
    leader_election: bool = True
    lease_name: str = "provgate-signer"
    lease_duration: float = 15.0
    lease_renew: float = 2.0
    signing_secret: str = "signing-secrets"
    signing_secrets_dir: str | None = None
    config_poll: float = 5.0
    log_format: str = "text"
    verbose: bool = False
    identity: str | None = None


def operator_namespace(explicit: str | None) -> str:
    """``--namespace``, else ``POD_NAMESPACE``, else the in-cluster ServiceAccount's, else
    ``tekton-chains``."""
    if explicit:
        return explicit
    if os.environ.get("POD_NAMESPACE"):
        return os.environ["POD_NAMESPACE"]
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or DEFAULT_NAMESPACE
    except OSError:
        return DEFAULT_NAMESPACE


def _configmap(value: str) -> tuple[str, str]:
    namespace, sep, name = value.partition("/")
    if not sep or not namespace or not name:
        raise InputError(f"--configmap {value!r}: give NAMESPACE/NAME")
    return namespace, name


def _configure_logging(options: Options) -> None:
    import kopf

    kopf.configure(
        verbose=options.verbose,
        log_format=kopf.LogFormat.JSON if options.log_format == "json" else kopf.LogFormat.FULL,
        # text lines start with [namespace/name] of the run; JSON lines carry it as "object"
        log_prefix=None,
    )
    # kopf reports every handled change at INFO; the operator's own lines say what matters.
    logging.getLogger("kopf.objects").setLevel(logging.DEBUG if options.verbose else logging.WARNING)
    for name in ("signer", "attestation"):
        logger = logging.getLogger(name)
        logger.handlers.clear()  # the CLI's stderr lines: the operator logs through kopf's formatter
        logger.setLevel(logging.DEBUG if options.verbose else logging.INFO)
    for noisy in ("httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run(options: Options) -> int:
    """Run the operator until it is stopped; the exit code."""
    import kopf

    from signer.operator.config import describe
    from signer.operator.handlers import Operator, register, settings_for
    from signer.operator.kube import KubeApi, load_api_client
    from signer.operator.lease import LeaderElection
    from signer.operator.metrics import HttpEndpoint, Metrics
    from signer.operator.queue import TokenBucket, WorkQueue
    from signer.operator.source import ConfigHolder, ConfigSource

    if (options.config_file is None) == (options.configmap is None):
        raise InputError("give exactly one of --config FILE or --configmap NAMESPACE/NAME")
    if options.workers < 1 or options.workers > 256:
        raise InputError(f"--workers {options.workers}: give 1..256")
    _configure_logging(options)
    namespace = operator_namespace(options.namespace)
    identity = options.identity or f"{socket.gethostname()}-{os.getpid()}"
    try:
        api_client = load_api_client(pool_size=options.workers + 8)
    except Exception as err:
        raise InputError(f"cannot configure the Kubernetes client: {' '.join(str(err).split())}") from None
    cluster = KubeApi(
        api_client, TokenBucket(options.kube_api_qps, options.kube_api_burst), identity=identity
    )
    metrics = Metrics()
    source = ConfigSource(
        cluster,
        file=options.config_file,
        configmap=_configmap(options.configmap) if options.configmap else None,
        secret=None if options.signing_secrets_dir else (namespace, options.signing_secret),
        secrets_dir=options.signing_secrets_dir,
    )

    def changed(config: object) -> None:
        from signer.operator.config import OperatorConfig

        assert isinstance(config, OperatorConfig)
        metrics.config(config.digest)
        log.info("configuration %s from %s", config.digest, source.describe())
        for line in describe(config):
            log.info("  %s", line)

    holder = ConfigHolder(source, on_change=changed)
    stopping = threading.Event()
    _stop_on_signals(stopping)
    leading = threading.Event()
    if not options.leader_election:
        leading.set()

    def ready() -> bool:
        return holder.config is not None and leading.is_set() and not stopping.is_set()

    if options.config_file is not None:
        holder.refresh()  # a file given on the command line: unusable -> one line and exit 2, first
    try:
        endpoint = HttpEndpoint(metrics, options.http_address, ready)
    except (OSError, ValueError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise InputError(f"--http-address {options.http_address}: cannot listen: {reason}") from None
    log.info("serving /metrics, /healthz and /readyz on %s", endpoint.address)
    try:
        _first_config(holder, options, stopping)
        if holder.config is None:
            return 0
        election = None
        if options.leader_election:
            election = LeaderElection(
                cluster,
                namespace,
                options.lease_name,
                identity,
                duration=options.lease_duration,
                renew=options.lease_renew,
            )
            if not election.wait_for_lease(stopping):
                return 0
            leading.set()
            metrics.leader.set(1)
            threading.Thread(target=_keep_lease, args=(election, stopping), name="lease", daemon=True).start()
        threading.Thread(
            target=holder.watch, args=(stopping, options.config_poll), name="config", daemon=True
        ).start()
        queue = WorkQueue(options.workers, on_depth=metrics.depth)
        operator = Operator(cluster, holder, queue, metrics)
        registry = kopf.OperatorRegistry()
        register(registry, operator)
        settings = settings_for(kopf.OperatorSettings())
        log.info(
            "attesting runs in %s with %d workers (API: %g qps, burst %d) as %s",
            ", ".join(options.watch_namespaces) or "all namespaces",
            options.workers,
            options.kube_api_qps,
            options.kube_api_burst,
            identity,
        )
        try:
            asyncio.run(
                kopf.operator(
                    registry=registry,
                    settings=settings,
                    standalone=True,
                    clusterwide=not options.watch_namespaces,
                    namespaces=list(options.watch_namespaces),
                    memo=kopf.Memo(),
                )
            )
        finally:
            stopping.set()
            queue.close()
            if election is not None:
                try:
                    election.release()
                except Exception as err:
                    log.warning("could not release the lease: %s", err)
        return 0
    finally:
        stopping.set()
        endpoint.close()


def _stop_on_signals(stopping: threading.Event) -> None:
    """SIGTERM/SIGINT while waiting for a configuration or the Lease (kopf installs its own later)."""
    import signal

    if threading.current_thread() is not threading.main_thread():
        return

    def stop(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def _first_config(holder: object, options: Options, stopping: threading.Event) -> None:
    from signer.operator.source import ConfigHolder

    assert isinstance(holder, ConfigHolder)
    while not stopping.is_set() and holder.config is None:
        try:
            holder.refresh()
            return
        except ProvgateError as err:
            if options.config_file is not None:
                raise  # a file given on the command line: one line, exit 2
            log.error("not attesting until the configuration is usable: %s", err)
        stopping.wait(options.config_poll)


def _keep_lease(election: object, stopping: threading.Event) -> None:
    from signer.operator.lease import LeaderElection

    assert isinstance(election, LeaderElection)
    election.keep(stopping)
    if not stopping.is_set():
        log.error("lost the lease: exiting so that only the new holder attests")
        logging.shutdown()
        sys.stderr.flush()
        os._exit(EXIT_LOST_LEASE)
