"""Benchmark of ``signer run`` against Tekton Chains' own controller, in one run, on one API server.

    .venv/bin/python bench/signer_operator.py [--runs 500] [--rate 5] [--steady-seconds 60] [--systems ...]

Starts the test API server (kube-apiserver + etcd, Tekton's CRDs) and a distribution registry on
loopback, makes a cosign key, then for each system in turn (only one runs at a time, each on its own
namespace and its own images):

* **burst**: ``--runs`` completed TaskRuns (one image each, 4 steps, IMAGE_URL/IMAGE_DIGEST results)
  created as fast as 8 client threads can (create + status patch, as Tekton's controller completes a
  run) -> the time from the first create until every run is marked ``chains.tekton.dev/signed``, the
  per-run time from its completion to its mark, CPU seconds per run and the process' peak RSS (VmHWM);
* **steady**: ``--rate`` runs per second for ``--steady-seconds`` -> completion->signed p50/p99.

Both systems do the same work: format ``in-toto`` (slsa/v1), a cosign key, storage ``tekton,oci`` (the
``.att`` layer next to the image and the run annotations), no transparency log, no image signing
(Chains' ``artifacts.oci.storage: ""``). Chains (v0.26.0, built by tests/infra/build-components.sh
``peers``) runs out of cluster as in ../shared/reference/kubernetes-testenv.md §V: it reads its key from
the fixed path ``/etc/signing-secrets``, so it runs under ``unshare -m`` with a throwaway overlay on
``/etc`` (needs root); its hard-coded ``:8080``/``:8008`` listeners must be free. It is measured at its
defaults and at its best settings (``--threads-per-controller=8 --kube-api-qps=200
--kube-api-burst=400``). Times come from this process' clock (a run's ``completionTime`` has 1 s
resolution); marks are seen through a watch. Not a test: prints tables and the goals.
"""

from __future__ import annotations

import sys

# This file is named like the standard library's `operator`, which the imports below load: run as a
# script, its own directory must not come first on sys.path.
if sys.path and sys.path[0] and __file__.startswith(sys.path[0]):
    del sys.path[0]

import argparse
import asyncio
import base64
import concurrent.futures
import datetime
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from attestation.keys import generate_cosign_key_pair  # noqa: E402
from attestation.oci.registry import RegistryClient  # noqa: E402
from attestation.oci.writer import push_image  # noqa: E402
from tests.infra import build_components, free_port, stop  # noqa: E402
from tests.infra.kube import KubeCluster, running_cluster  # noqa: E402
from tests.infra.registry import start_distribution  # noqa: E402

SIGNED = "chains.tekton.dev/signed"
PASSWORD = "bench-password"
SYSTEMS = ("provgate", "chains-default", "chains-best")
CHAINS_BEST = ("--threads-per-controller=8", "--kube-api-qps=200", "--kube-api-burst=400")
CHAINS_CONFIG = {
    "artifacts.taskrun.format": "in-toto",
    "artifacts.taskrun.storage": "tekton,oci",
    "artifacts.taskrun.signer": "x509",
    "artifacts.pipelinerun.storage": "tekton",
    "artifacts.oci.storage": "",
    "transparency.enabled": "false",
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- runs ---------------------------------------------------------------------------------------------


def taskrun_status(name: str, repo: str, digest: str) -> dict[str, Any]:
    now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    steps = ["clone", "test", "build", "push"]
    step_image = "registry.example/tools/step@sha256:" + "5" * 64
    return {
        "podName": f"{name}-pod",
        "startTime": now,
        "completionTime": now,
        "conditions": [
            {"type": "Succeeded", "status": "True", "reason": "Succeeded", "lastTransitionTime": now}
        ],
        "taskSpec": {
            "steps": [
                {"name": s, "image": "registry.example/tools/step", "script": f"#!/bin/sh\n{s}\n"}
                for s in steps
            ]
        },
        "steps": [
            {
                "name": s,
                "container": f"step-{s}",
                "imageID": f"docker-pullable://{step_image}",
                "terminated": {"exitCode": 0, "reason": "Completed", "startedAt": now, "finishedAt": now},
            }
            for s in steps
        ],
        "results": [
            {"name": "IMAGE_URL", "type": "string", "value": repo},
            {"name": "IMAGE_DIGEST", "type": "string", "value": digest},
        ],
    }


class Cluster:
    """The benchmark's own API calls: a client per thread."""

    def __init__(self, kube: KubeCluster) -> None:
        self.kube = kube
        self.local = threading.local()

    def custom(self) -> Any:
        from kubernetes import client

        if not hasattr(self.local, "custom"):
            self.local.custom = client.CustomObjectsApi(self.kube.client())
        return self.local.custom

    def create_completed(self, namespace: str, name: str, repo: str, digest: str) -> float:
        """Create a TaskRun, then complete it through the status subresource; the time it completed."""
        body = {
            "apiVersion": "tekton.dev/v1",
            "kind": "TaskRun",
            "metadata": {"name": name},
            "spec": {"taskRef": {"name": "build"}},
        }
        custom = self.custom()
        custom.create_namespaced_custom_object("tekton.dev", "v1", namespace, "taskruns", body)
        custom.patch_namespaced_custom_object_status(
            "tekton.dev", "v1", namespace, "taskruns", name, {"status": taskrun_status(name, repo, digest)}
        )
        return time.monotonic()


class MarkWatcher(threading.Thread):
    """When each TaskRun of a namespace was first seen marked (and with what)."""

    def __init__(self, kube: KubeCluster, namespace: str) -> None:
        super().__init__(daemon=True)
        self.kube, self.namespace = kube, namespace
        self.marked: dict[str, tuple[float, str]] = {}
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def run(self) -> None:
        from kubernetes import client, watch

        custom = client.CustomObjectsApi(self.kube.client())
        version = None
        while not self.stopping.is_set():
            w = watch.Watch()
            try:
                for event in w.stream(
                    custom.list_namespaced_custom_object,
                    "tekton.dev",
                    "v1",
                    self.namespace,
                    "taskruns",
                    resource_version=version,
                    timeout_seconds=30,
                ):
                    obj = event["object"]
                    meta = obj.get("metadata") or {}
                    version = meta.get("resourceVersion", version)
                    mark = (meta.get("annotations") or {}).get(SIGNED)
                    if mark:
                        with self.lock:
                            self.marked.setdefault(meta["name"], (time.monotonic(), mark))
                    if self.stopping.is_set():
                        break
            except Exception:  # a watch that expired (410) starts over from a fresh list
                version = None
                time.sleep(0.2)

    def wait(self, names: list[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if all(n in self.marked for n in names):
                    return True
            time.sleep(0.05)
        return False


# -- images -------------------------------------------------------------------------------------------


def push_images(host: str, prefix: str, count: int) -> list[tuple[str, str]]:
    async def main() -> list[tuple[str, str]]:
        sem = asyncio.Semaphore(16)
        async with RegistryClient() as client:

            async def one(i: int) -> tuple[str, str]:
                async with sem:
                    repo = f"{host}/{prefix}/app-{i:04d}"
                    image = await push_image(
                        client, repo, [f"{prefix} {i}\n".encode()], deadline=time.monotonic() + 120
                    )
                    return repo, image.reference.digest or ""

            return list(await asyncio.gather(*(one(i) for i in range(count))))

    return asyncio.run(main())


# -- processes ----------------------------------------------------------------------------------------


def proc_stats(pid: int) -> tuple[float, float]:
    """(CPU seconds, peak RSS MiB) of a process so far."""
    with open(f"/proc/{pid}/stat") as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    peak = 0.0
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                peak = int(line.split()[1]) / 1024
    return cpu, peak


@dataclass
class Running:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


def create_namespace(kube: KubeCluster, name: str) -> None:
    from kubernetes import client

    client.CoreV1Api(kube.api).create_namespace({"metadata": {"name": name}})


def configmap(kube: KubeCluster, namespace: str, name: str, data: dict[str, str]) -> None:
    from kubernetes import client

    client.CoreV1Api(kube.api).create_namespaced_config_map(
        namespace, {"metadata": {"name": name}, "data": data}
    )


@contextmanager
def provgate(kube: KubeCluster, workdir: Path, runs_ns: str, key: bytes, workers: int) -> Iterator[Running]:
    from kubernetes import client

    namespace = f"provgate-{secrets.token_hex(3)}"
    create_namespace(kube, namespace)
    configmap(kube, namespace, "chains-config", CHAINS_CONFIG)
    client.CoreV1Api(kube.api).create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "signing-secrets"},
            "data": {
                "cosign.key": base64.b64encode(key).decode(),
                "cosign.password": base64.b64encode(PASSWORD.encode()).decode(),
            },
        },
    )
    log_file = workdir / "provgate.log"
    args = [
        sys.executable,
        "-m",
        "signer.cli",
        "run",
        f"--configmap={namespace}/chains-config",
        f"--namespace={namespace}",
        f"--watch-namespace={runs_ns}",
        f"--http-address=127.0.0.1:{free_port()}",
        f"--workers={workers}",
        "--no-leader-election",
    ]
    env = {**os.environ, "KUBECONFIG": str(kube.kubeconfig), "PYTHONUNBUFFERED": "1"}
    with open(log_file, "wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    try:
        yield Running("provgate", proc, log_file)
    finally:
        stop(proc)


@contextmanager
def chains(
    kube: KubeCluster, workdir: Path, runs_ns: str, key: bytes, binary: Path, flags: tuple[str, ...]
) -> Iterator[Running]:
    if os.geteuid() != 0:
        raise SystemExit(
            "bench/signer_operator.py: Chains needs root here (unshare -m for its /etc/signing-secrets)"
        )
    namespace = "tekton-chains"
    from kubernetes import client

    core = client.CoreV1Api(kube.api)
    if not any(n.metadata.name == namespace for n in core.list_namespace().items):
        create_namespace(kube, namespace)
        configmap(
            kube,
            namespace,
            "config-logging",
            {
                "zap-logger-config": json.dumps(
                    {
                        "level": "warn",
                        "encoding": "json",
                        "outputPaths": ["stdout"],
                        "errorOutputPaths": ["stderr"],
                    }
                ),
                "loglevel.controller": "warn",
            },
        )
        configmap(
            kube,
            namespace,
            "tekton-chains-config-observability",
            {"metrics.backend-destination": "prometheus"},
        )
        configmap(kube, namespace, "tekton-chains-config-leader-election", {})
        configmap(kube, namespace, "chains-config", CHAINS_CONFIG)
    overlay = Path(tempfile.mkdtemp(prefix="chains-etc-"))
    (overlay / "upper").mkdir()
    (overlay / "work").mkdir()
    keys = overlay / "keys"
    keys.mkdir()
    (keys / "cosign.key").write_bytes(key)
    (keys / "cosign.password").write_text(PASSWORD)
    script = (
        f"mount -t overlay overlay -o lowerdir=/etc,upperdir={overlay}/upper,workdir={overlay}/work /etc && "
        "mkdir -p /etc/signing-secrets && "
        f"cp {keys}/cosign.key {keys}/cosign.password /etc/signing-secrets/ && "
        f"exec {binary} --kubeconfig={kube.kubeconfig} --namespace={runs_ns} {' '.join(flags)}"
    )
    env = {
        **os.environ,
        "SYSTEM_NAMESPACE": namespace,
        "METRICS_DOMAIN": "tekton.dev/chains",
        "CONFIG_OBSERVABILITY_NAME": "tekton-chains-config-observability",
        "CONFIG_LEADERELECTION_NAME": "tekton-chains-config-leader-election",
        "KUBERNETES_MIN_VERSION": "v1.28.0",
        "METRICS_PROMETHEUS_HOST": "127.0.0.1",
        "METRICS_PROMETHEUS_PORT": str(_low_port()),
        "PROFILING_PORT": str(_low_port()),
    }
    log_file = workdir / f"chains{'-best' if flags else ''}.log"
    with open(log_file, "wb") as out:
        proc = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        yield Running("chains", proc, log_file)
    finally:
        proc.kill()  # knative drains for ~45 s on SIGTERM
        proc.wait()
        shutil.rmtree(overlay, ignore_errors=True)


def _low_port() -> int:
    """A free port below 32768 (knative refuses larger metrics ports)."""
    for _ in range(100):
        port = free_port()
        if port < 32768:
            return port
    import random
    import socket

    while True:
        port = random.randint(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue


# -- phases -------------------------------------------------------------------------------------------


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@dataclass
class Result:
    system: str
    settings: str
    burst_runs: int = 0
    burst_seconds: float = float("nan")
    burst_create_seconds: float = float("nan")
    burst_p50: float = float("nan")
    burst_p99: float = float("nan")
    cpu_per_run: float = float("nan")
    peak_rss: float = float("nan")
    steady_runs: int = 0
    steady_p50: float = float("nan")
    steady_p99: float = float("nan")
    steady_max: float = float("nan")
    failed: int = 0
    notes: list[str] = field(default_factory=list)


def run_system(
    name: str,
    start: Callable[[str], Any],
    kube: KubeCluster,
    cluster: Cluster,
    registry: str,
    args: argparse.Namespace,
    settings: str,
) -> Result:
    result = Result(name, settings)
    runs_ns = f"bench-{name}-{secrets.token_hex(3)}"
    create_namespace(kube, runs_ns)
    steady_count = int(args.rate * args.steady_seconds)
    log(f"{name}: pushing {1 + args.runs + steady_count} images")
    images = push_images(registry, runs_ns, 1 + args.runs + steady_count)
    watcher = MarkWatcher(kube, runs_ns)
    watcher.start()
    with start(runs_ns) as running:
        # warm-up: the system is up and has signed one run
        cluster.create_completed(runs_ns, "warmup", *images[0])
        if not watcher.wait(["warmup"], timeout=180):
            raise SystemExit(f"{name}: the warm-up run was not signed in 180 s; see {running.log}")
        cpu0, _ = proc_stats(running.proc.pid)
        log(f"{name}: burst of {args.runs} runs")
        names = [f"burst-{i:04d}" for i in range(args.runs)]
        completed: dict[str, float] = {}
        started = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            futures = {
                pool.submit(cluster.create_completed, runs_ns, n, *images[1 + i]): n
                for i, n in enumerate(names)
            }
            for future in concurrent.futures.as_completed(futures):
                completed[futures[future]] = future.result()
        result.burst_create_seconds = time.monotonic() - started
        done = watcher.wait(names, timeout=args.timeout)
        cpu1, peak = proc_stats(running.proc.pid)
        with watcher.lock:
            marks = {n: watcher.marked[n] for n in names if n in watcher.marked}
        result.burst_runs = len(marks)
        if done:
            result.burst_seconds = max(t for t, _ in marks.values()) - started
        else:
            result.notes.append(f"burst: {len(marks)} of {args.runs} marked within {args.timeout:g} s")
        latencies = [marks[n][0] - completed[n] for n in marks]
        result.burst_p50, result.burst_p99 = pct(latencies, 50), pct(latencies, 99)
        result.cpu_per_run = (cpu1 - cpu0) / max(1, len(marks))
        result.failed += sum(1 for _, m in marks.values() if m != "true")

        log(f"{name}: steady {args.rate:g} runs/s for {args.steady_seconds:g} s")
        steady = [f"steady-{i:04d}" for i in range(steady_count)]
        times: dict[str, float] = {}
        begin = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            pending = []
            for i, n in enumerate(steady):
                due = begin + i / args.rate
                time.sleep(max(0.0, due - time.monotonic()))
                pending.append(
                    (n, pool.submit(cluster.create_completed, runs_ns, n, *images[1 + args.runs + i]))
                )
            for n, future in pending:
                times[n] = future.result()
        watcher.wait(steady, timeout=args.timeout)
        _, peak = proc_stats(running.proc.pid)
        result.peak_rss = peak
        with watcher.lock:
            smarks = {n: watcher.marked[n] for n in steady if n in watcher.marked}
        result.steady_runs = len(smarks)
        if len(smarks) < len(steady):
            result.notes.append(f"steady: {len(smarks)} of {len(steady)} marked within {args.timeout:g} s")
        slat = [smarks[n][0] - times[n] for n in smarks]
        result.steady_p50, result.steady_p99 = pct(slat, 50), pct(slat, 99)
        result.steady_max = max(slat) if slat else float("nan")
        slowest = sorted(((smarks[n][0] - times[n], n) for n in smarks), reverse=True)[:5]
        result.notes.append("steady, slowest: " + ", ".join(f"{n} {t:.2f}s" for t, n in slowest))
        result.failed += sum(1 for _, m in smarks.values() if m != "true")
    watcher.stopping.set()
    return result


# -- output -------------------------------------------------------------------------------------------


def fmt(value: float, digits: int = 2) -> str:
    return "-" if value != value else f"{value:.{digits}f}"


def table(results: list[Result], args: argparse.Namespace) -> str:
    head = (
        f"| system | settings | {args.runs} runs: all signed (s) | per run p50 / p99 (s) | CPU s per run "
        f"| peak RSS (MiB) | {args.rate:g} runs/s: p50 (s) | p99 (s) | max (s) | failed |\n"
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|\n"
    )
    rows = [
        f"| {r.system} | {r.settings} | {fmt(r.burst_seconds, 1)} | {fmt(r.burst_p50)} / {fmt(r.burst_p99)} "
        f"| {fmt(r.cpu_per_run, 3)} | {fmt(r.peak_rss, 0)} | {fmt(r.steady_p50)} | {fmt(r.steady_p99)} "
        f"| {fmt(r.steady_max)} | {r.failed} |"
        for r in results
    ]
    return head + "\n".join(rows)


def goals(results: list[Result], args: argparse.Namespace) -> str:
    ours = next((r for r in results if r.system == "provgate"), None)
    best = next((r for r in results if r.settings.startswith("--threads")), None)
    lines = ["| goal | this run | status |", "|---|---|---|"]
    if ours is not None:
        lines.append(
            f"| {args.runs} completed runs all signed in <= 60 s | {fmt(ours.burst_seconds, 1)} s "
            f"| {'met' if ours.burst_seconds <= 60 else 'NOT met'} |"
        )
        lines.append(
            f"| operator peak RSS <= 200 MB | {fmt(ours.peak_rss, 0)} MiB "
            f"| {'met' if ours.peak_rss <= 200 else 'NOT met'} |"
        )
        lines.append(
            f"| completion->signed p99 <= 2 s at {args.rate:g} runs/s | {fmt(ours.steady_p99)} s "
            f"| {'met' if ours.steady_p99 <= 2 else 'NOT met'} |"
        )
        if best is not None:
            ahead = ours.burst_seconds < best.burst_seconds and ours.steady_p99 < best.steady_p99
            lines.append(
                f"| ahead of Chains at its best settings | burst {fmt(ours.burst_seconds, 1)} vs "
                f"{fmt(best.burst_seconds, 1)} s, p99 {fmt(ours.steady_p99)} vs {fmt(best.steady_p99)} s "
                f"| {'met' if ahead else 'NOT met'} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=500)
    parser.add_argument("--rate", type=float, default=5.0)
    parser.add_argument("--steady-seconds", type=float, default=60.0)
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--workers", type=int, default=8, help="provgate's --workers")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds to wait for a phase's marks")
    parser.add_argument("--keep-logs", metavar="DIR", help="copy the systems' logs here")
    args = parser.parse_args()
    systems = [s for s in args.systems.split(",") if s]
    cache = build_components("test", *(["peers"] if any(s.startswith("chains") for s in systems) else []))
    chains_bin = cache / "chains-controller"
    before = os.getloadavg()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="bench-operator-") as tmp:
        workdir = Path(tmp)
        proc, registry = start_distribution(workdir / "registry")
        try:
            with running_cluster(workdir / "kube") as kube:
                cluster = Cluster(kube)
                key, _ = generate_cosign_key_pair(PASSWORD.encode())
                for system in systems:
                    if system == "provgate":

                        def start(ns: str) -> Any:
                            return provgate(kube, workdir, ns, key, args.workers)

                        settings = (
                            f"--workers={args.workers} --kube-api-qps=50 --kube-api-burst=100 (defaults)"
                        )
                    elif system == "chains-default":

                        def start(ns: str) -> Any:
                            return chains(kube, workdir, ns, key, chains_bin, ())

                        settings = "defaults (2 threads, 5 qps, burst 10)"
                    elif system == "chains-best":

                        def start(ns: str) -> Any:
                            return chains(kube, workdir, ns, key, chains_bin, CHAINS_BEST)

                        settings = " ".join(CHAINS_BEST)
                    else:
                        raise SystemExit(f"unknown system {system!r} (known: {', '.join(SYSTEMS)})")
                    results.append(run_system(system, start, kube, cluster, registry.host, args, settings))
                    log(f"{system}: {results[-1]}")
        finally:
            stop(proc)
            if args.keep_logs:
                Path(args.keep_logs).mkdir(parents=True, exist_ok=True)
                for found in workdir.glob("*.log"):
                    shutil.copy(found, Path(args.keep_logs) / found.name)
    after = os.getloadavg()
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"bench/signer_operator.py, {when}")
    print(
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}; load average before "
        f"{'/'.join(f'{x:.2f}' for x in before)}, after {'/'.join(f'{x:.2f}' for x in after)}"
    )
    print(
        f"runs: {args.runs} at once, then {args.rate:g}/s for {args.steady_seconds:g} s; format in-toto, "
        "cosign key, storage tekton,oci (distribution registry on loopback)"
    )
    print()
    print(table(results, args))
    print()
    print(goals(results, args))
    for r in results:
        for note in r.notes:
            print(f"note: {r.system}: {note}")
    if statistics and any(r.failed for r in results):
        print("note: some runs were marked failed; see the logs")


if __name__ == "__main__":
    main()
