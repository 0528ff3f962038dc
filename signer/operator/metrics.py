"""Prometheus metrics, under Tekton Chains' names where Chains has one (its controller exports them as
``watcher_<kind>_...``), and the operator's HTTP endpoint: ``/metrics``, ``/healthz``, ``/readyz``.

Chains' counters per run kind (``taskrun``, ``pipelinerun``): ``sign_created_total`` (statements signed),
``payload_stored_total`` (stores into a backend), ``payload_uploaded_total`` (transparency-log uploads:
provgate makes none, the counter stays at 0), ``marked_signed_total`` (runs marked signed),
``signing_failures_total{error_type}``. provgate adds the time from a run's completion to it being
marked signed, the failures by outcome, and the work queue's depth.
"""

from __future__ import annotations

import datetime as dt
import http.server
import logging
import threading
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

log = logging.getLogger(__name__)

KINDS = {"TaskRun": "taskrun", "PipelineRun": "pipelinerun"}
LATENCY_BUCKETS = (0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 30, 60, 120, 300, 900, 3600)


class Metrics:
    """One set of metrics on its own registry (several operators in one test process do not clash)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._chains: dict[tuple[str, str], Any] = {}
        for kind in KINDS.values():
            for name, doc in (
                ("sign_created_total", f"Total number of signed messages for {kind}s"),
                ("payload_uploaded_total", f"Total number of uploaded payloads for {kind}s"),
                ("payload_stored_total", f"Total number of stored payloads for {kind}s"),
                ("marked_signed_total", f"Total number of objects marked as signed for {kind}s"),
            ):
                full = f"watcher_{kind}_{name}"
                self._chains[(kind, name)] = Counter(full.removesuffix("_total"), doc, registry=self.registry)
            full = f"watcher_{kind}_signing_failures"
            self._chains[(kind, "signing_failures_total")] = Counter(
                full, f"Total number of {kind} signing failures", ["error_type"], registry=self.registry
            )
        self.latency = Histogram(
            "provgate_signer_completion_to_signed_seconds",
            "Seconds from a run's completionTime to the operator marking it signed",
            ["kind"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.outcomes = Counter(
            "provgate_signer_runs",
            "Runs marked signed or failed, and retries, by outcome (signed, failed, retry)",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.queue_depth = Gauge(
            "provgate_signer_queue_depth",
            "Runs waiting for a worker, by queue",
            ["queue"],
            registry=self.registry,
        )
        self.config_info = Gauge(
            "provgate_signer_config_info",
            "The configuration in use (value 1), by the digest of its keys",
            ["digest"],
            registry=self.registry,
        )
        self.leader = Gauge(
            "provgate_signer_leader", "1 while this replica holds the lease", registry=self.registry
        )

    def chains(self, kind: str, name: str, **labels: str) -> None:
        counter = self._chains[(KINDS[kind], name)]
        (counter.labels(**labels) if labels else counter).inc()

    def signed(self, kind: str, completed: dt.datetime | None) -> None:
        self.chains(kind, "marked_signed_total")
        self.outcomes.labels(KINDS[kind], "signed").inc()
        if completed is not None:
            seconds = (dt.datetime.now(dt.UTC) - completed).total_seconds()
            self.latency.labels(KINDS[kind]).observe(max(seconds, 0.0))

    def depth(self, depths: dict[str, int]) -> None:
        for queue, value in depths.items():
            self.queue_depth.labels(queue).set(value)

    def config(self, digest: str) -> None:
        self.config_info.clear()
        self.config_info.labels(digest).set(1)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class HttpEndpoint:
    """``/metrics``, ``/healthz`` (the process serves) and ``/readyz`` (a configuration is loaded and
    this replica can work) on one loopback-or-pod port, in a daemon thread."""

    def __init__(self, metrics: Metrics, address: str, ready: Callable[[], bool]) -> None:
        host, _, port = address.rpartition(":")
        endpoint = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, metrics.render(), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    self._send(200, b"ok\n")
                elif path == "/readyz":
                    ok = endpoint.ready()
                    self._send(200 if ok else 503, b"ok\n" if ok else b"not ready\n")
                else:
                    self._send(404, b"not found\n")

            def _send(
                self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8"
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.ready = ready
        self.server = http.server.ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
        self.server.daemon_threads = True
        self.address = f"{host or '127.0.0.1'}:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, name="http", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
