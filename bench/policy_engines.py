"""Benchmark: one policy decision over the bundled library on every engine, same inputs.

Not a test. Inputs: the TEP-0084 sample PipelineRun (4 tasks) and a synthetic 200-task PipelineRun as
SLSA v0.2 and as SLSA v1.0 slsa-tekton provenance (signer.provenance over bench/provenance.py's run).
Engines: wasm (OPA-compiled, opapywasm: what `embedded` runs) and a real OPA server over REST (started here
on loopback). Prints start-up time, wall-clock p50/p95 and the calling thread's CPU
p50 per evaluation (steadier than wall time on a busy machine; in-process engines only) and checks that
all engines decided the same. The "sample x<N>" inputs repeat the sample's tasks so every rule does its
full work (the synthetic run's tasks match no rule data).

    .venv/bin/python bench/policy_engines.py [--repeat 30] [--tasks 200] [--engines wasm,opa]
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def statement_input(statement: dict[str, Any]) -> dict[str, Any]:
    digest = "sha256:" + statement["subject"][0]["digest"]["sha256"]
    return {
        "image": {"ref": f"{statement['subject'][0]['name']}@{digest}", "digest": digest},
        "attestations": [{"statement": statement, "signatures": [{"keyid": "k", "sig": "c2ln"}]}],
    }


def _renamed_taskrun(dep: dict[str, Any], suffix: str) -> dict[str, Any]:
    taskrun = json.loads(base64.b64decode(dep["content"]))
    labels = taskrun["metadata"]["labels"]
    labels["tekton.dev/pipelineTask"] += suffix
    content = base64.b64encode(json.dumps(taskrun, separators=(",", ":")).encode()).decode()
    return {**dep, "content": content}


def scaled_sample(doc: dict[str, Any], n_tasks: int) -> dict[str, Any]:
    """The TEP-0084 sample's tasks repeated (names suffixed) up to ``n_tasks``, each copy running after the
    previous one: catalog tasks, trusted bundles, a scan before every build, git sources and image results,
    so every rule does its full work (the synthetic run's tasks match no rule data) and the v0.2 task graph
    is one long chain (the worst case for the transitive ``after`` closure). Allowed, like the sample."""
    doc = copy.deepcopy(doc)
    predicate = doc["attestations"][0]["statement"]["predicate"]
    if "buildConfig" in predicate:
        tasks = predicate["buildConfig"]["tasks"]
        copies, previous = [], None
        for k in range(-(-n_tasks // len(tasks))):
            for task in tasks:
                t = copy.deepcopy(task)
                t["name"] += f"-{k}"
                after = [f"{a}-{k}" for a in t.get("after") or []]
                t["after"] = after or ([previous] if previous else [])
                copies.append(t)
            previous = copies[-1]["name"]
        predicate["buildConfig"]["tasks"] = copies[:n_tasks]
    else:
        deps = predicate["buildDefinition"]["resolvedDependencies"]
        pipeline_tasks = [d for d in deps if d.get("name") == "pipelineTask"]
        others = [d for d in deps if d.get("name") != "pipelineTask"]
        rounds = -(-n_tasks // len(pipeline_tasks))
        copies = [_renamed_taskrun(d, f"-{k}") for k in range(rounds) for d in pipeline_tasks]
        predicate["buildDefinition"]["resolvedDependencies"] = copies[:n_tasks] + others
    return doc


def inputs(n_tasks: int) -> dict[str, dict[str, Any]]:
    from bench.provenance import synthetic
    from signer import samples
    from signer.provenance import Options, generate
    from signer.run import child_taskruns, to_run

    def make(pr_obj: dict, tr_objs: list[dict], fmt: str, build_type: str | None) -> dict[str, Any]:
        pr = to_run(pr_obj, source="bench")
        children = child_taskruns(pr, [to_run(t, source="bench") for t in tr_objs])
        opts = Options(format=fmt, deep_inspection=True, build_type=build_type)
        return statement_input(generate(pr, children, opts).statement)

    tekton = "https://tekton.dev/chains/v2/slsa-tekton"
    sample = samples.load("tep0084-pipelinerun")
    big = synthetic(n_tasks)
    small_v02 = make(*sample, "slsa/v1", None)
    small_v1 = make(*sample, "slsa/v2alpha4", tekton)
    return {
        "sample 4 tasks v0.2": small_v02,
        "sample 4 tasks v1.0": small_v1,
        f"{n_tasks} tasks v0.2": make(*big, "slsa/v1", None),
        f"{n_tasks} tasks v1.0 slsa-tekton": make(*big, "slsa/v2alpha4", tekton),
        f"sample x{n_tasks} tasks v0.2": scaled_sample(small_v02, n_tasks),
        f"sample x{n_tasks} tasks v1.0": scaled_sample(small_v1, n_tasks),
    }


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def start_opa() -> tuple[subprocess.Popen, str]:
    from tests.infra import free_port, require_binary, wait_for_port

    port = free_port()
    workdir = tempfile.mkdtemp(prefix="bench-opa-")
    proc = subprocess.Popen(
        [str(require_binary("opa")), "run", "--server", "--addr", f"127.0.0.1:{port}", "--log-level=error"],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, proc)
    return proc, f"http://127.0.0.1:{port}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--engines", default="wasm,opa")
    args = parser.parse_args()

    from attestation.errors import PolicyError
    from gate.policy import load_policy_set, make_engine
    from tests.infra import stop

    policy_set = load_policy_set([])
    docs = inputs(args.tasks)
    opa_proc = None
    rows: list[tuple[str, str, str]] = []
    decisions: dict[str, dict[str, Any]] = {}
    try:
        for name in args.engines.split(","):
            t0 = time.perf_counter()
            if name == "opa":
                opa_proc, url = start_opa()
                t0 = time.perf_counter()  # the server's own start is not the engine's
                engine = make_engine(policy_set, engine="opa", opa_url=url)
            else:
                engine = make_engine(policy_set, engine=name)
            startup = (time.perf_counter() - t0) * 1000
            rows.append((name, "start-up", f"{startup:9.1f}"))
            for label, doc in docs.items():
                size = len(json.dumps(doc))
                times, cpu = [], []
                evaluation = None
                try:
                    for _ in range(args.repeat + 2):
                        c0, t0 = time.thread_time(), time.perf_counter()
                        evaluation = engine.evaluate(doc)
                        times.append((time.perf_counter() - t0) * 1000)
                        cpu.append((time.thread_time() - c0) * 1000)
                except PolicyError as err:  # a denial: shown, not timed
                    rows.append((name, f"{label} ({size // 1024} KiB)", f"refused: {str(err)[:60]}"))
                    continue
                times, cpu = times[2:], cpu[2:]  # first calls warm caches
                assert evaluation is not None
                decisions.setdefault(label, {})[name] = (
                    sorted(r.code for r in evaluation.violations),
                    sorted(r.code for r in evaluation.warnings),
                )
                rows.append(
                    (
                        name,
                        f"{label} ({size // 1024} KiB)",
                        f"{statistics.median(times):9.2f} {percentile(times, 95):9.2f}"
                        # CPU of the calling thread: what an in-process engine costs even when other
                        # processes compete for the cores (the OPA server's work is not in it).
                        + (f" {statistics.median(cpu):9.2f}" if name != "opa" else f" {'-':>9}"),
                    )
                )
            engine.close()
    finally:
        if opa_proc is not None:
            stop(opa_proc)
    print(f"policy evaluation, {args.repeat} runs each (ms; start-up is one run)")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"machine load (1/5/15 min): {load}, {os.cpu_count()} CPUs")
    print(f"{'engine':10} {'input':40} {'p50':>9} {'p95':>9} {'cpu p50':>9}")
    for engine_name, label, figures in rows:
        print(f"{engine_name:10} {label:40} {figures}")
    for label, by_engine in decisions.items():
        distinct = {json.dumps(v) for v in by_engine.values()}
        verdict = "same decision on every engine" if len(distinct) == 1 else f"ENGINES DISAGREE: {by_engine}"
        print(f"{label}: {verdict}")


if __name__ == "__main__":
    main()
