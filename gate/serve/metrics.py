"""What ``GET /metrics`` shows (Prometheus text format), one registry per server.

With several workers (``workers: N``) every process writes its samples to files in a directory they share
(prometheus-client's multiprocess mode, chosen by :func:`multiprocess` in each worker before its
:class:`Metrics` exist) and ``GET /metrics``, whichever worker answers it, reads them all: counters and
histograms are the sums over the workers, including those that have exited and been replaced (a counter
never goes back); gauges count only the live ones.
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import values as _values

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess(directory: Path) -> None:
    """Make this process's metrics (those created from now on) files in ``directory``, which the other
    workers share. Called in a worker after the fork: the parent chose the in-process values at import."""
    os.environ[MULTIPROC_ENV] = str(directory)
    _values.ValueClass = _values.get_value_class()


# From a cache hit (well under a millisecond) to a slow registry near the webhook's timeout.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Metrics:
    def __init__(self) -> None:
        self.shared: bool = getattr(_values.ValueClass, "_multiprocess", False)
        r = self.registry = CollectorRegistry(auto_describe=False)
        self.admissions = Counter(
            "provgate_admission_requests",
            "Admission requests answered, by endpoint, kind, operation, outcome and namespace.",
            ["endpoint", "kind", "operation", "decision", "namespace"],
            registry=r,
        )
        self.latency = Histogram(
            "provgate_request_duration_seconds",
            "Time to answer a request, by endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.cache_hits = Counter("provgate_verdict_cache_hits", "Verdicts served from memory.", registry=r)
        self.cache_misses = Counter(
            "provgate_verdict_cache_misses", "Verdicts not in memory: a verification started.", registry=r
        )
        self.cache_joined = Counter(
            "provgate_verdict_cache_joined",
            "Requests that waited for a verification another request had started (singleflight).",
            registry=r,
        )
        self.cache_evictions = Counter(
            "provgate_verdict_cache_evictions", "Verdicts dropped to stay within cache.maxBytes.", registry=r
        )
        self.cache_bytes = Gauge(
            "provgate_verdict_cache_bytes",
            "Estimated memory held by cached verdicts (the sum over the workers, each has its own cache).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.verifications = Counter(
            "provgate_verifications", "Verifications run, by outcome.", ["outcome"], registry=r
        )
        self.registry_requests = Counter(
            "provgate_registry_requests",
            "Requests sent to registries, by registry and HTTP status (error: no answer).",
            ["registry", "status"],
            registry=r,
        )
        self.registry_errors = Counter(
            "provgate_registry_errors",
            "Registry requests that got no answer or a 5xx/429, by registry.",
            ["registry"],
            registry=r,
        )
        self.policy_seconds = Histogram(
            "provgate_policy_evaluation_seconds",
            "Time the policy engine took for one verification.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.peer_requests = Counter(
            "provgate_peer_requests",
            "Images this worker asked another worker to decide (workers: N), by outcome: answered, or "
            "refused/failed (then decided here).",
            ["outcome"],
            registry=r,
        )
        self.reloads = Counter(
            "provgate_reloads",
            "Reloads of the configuration, policies, data and trust.",
            ["result"],
            registry=r,
        )
        self.ready = Gauge(
            "provgate_ready",
            "1 while the gate (every worker) serves its current configuration.",
            registry=r,
            multiprocess_mode="livemin",
        )

    def registry_request(self, registry: str, outcome: str) -> None:
        self.registry_requests.labels(registry, outcome).inc()
        if outcome == "error" or outcome == "429" or outcome.startswith("5"):
            self.registry_errors.labels(registry).inc()

    def render(self) -> bytes:
        if not self.shared:
            return generate_latest(self.registry)
        from prometheus_client.multiprocess import MultiProcessCollector

        merged = CollectorRegistry(auto_describe=False)
        MultiProcessCollector(merged)
        return generate_latest(merged)
