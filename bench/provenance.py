"""Benchmark: provenance generation + ECDSA P-256 signing for PipelineRuns of 10, 100 and 500 tasks.

Not a test. Each (tasks, format) case runs in a fresh subprocess so peak RSS (getrusage maxrss) and
the tracemalloc peak belong to that case alone. Times are taken with tracemalloc off (it multiplies the
cost of allocation-heavy code); the tracemalloc peak comes from one extra, untimed run. Prints a table.

    .venv/bin/python bench/provenance.py [--tasks 10,100,500] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STEPS = 5


def _hex(i: int, salt: str) -> str:
    import hashlib

    return hashlib.sha256(f"{salt}{i}".encode()).hexdigest()


def _image_id(k: int) -> str:
    return f"docker.io/library/img{k}@sha256:{_hex(k, 'i')}"


def synthetic(n_tasks: int) -> tuple[dict, list[dict]]:
    """A completed PipelineRun with n tasks in a chain (each uses its predecessor's result), 5 steps each."""
    tasks, children, refs = [], [], []
    for i in range(n_tasks):
        name = f"task-{i}"
        task: dict = {
            "name": name,
            "taskRef": {
                "resolver": "bundles",
                "params": [
                    {"name": "bundle", "value": f"gcr.io/catalog/t{i % 7}@sha256:{_hex(i % 7, 'b')}"},
                    {"name": "name", "value": f"t{i % 7}"},
                    {"name": "kind", "value": "task"},
                ],
            },
            "params": [{"name": "in", "value": f"$(tasks.task-{i - 1}.results.out)" if i else "start"}],
        }
        if i > 1:
            task["runAfter"] = [f"task-{i - 2}"]
        tasks.append(task)
        tr = f"pr-{name}"
        refs.append({"apiVersion": "tekton.dev/v1", "kind": "TaskRun", "name": tr, "pipelineTaskName": name})
        children.append(
            {
                "apiVersion": "tekton.dev/v1",
                "kind": "TaskRun",
                "metadata": {
                    "name": tr,
                    "namespace": "bench",
                    "uid": _hex(i, "uid")[:32],
                    "labels": {"tekton.dev/pipelineTask": name, "tekton.dev/pipelineRun": "pr"},
                },
                "spec": {"params": [{"name": "in", "value": "x" * 40}]},
                "status": {
                    "startTime": "2024-01-01T00:00:00Z",
                    "completionTime": "2024-01-01T00:10:00Z",
                    "conditions": [{"type": "Succeeded", "status": "True"}],
                    "provenance": {
                        "refSource": {
                            "uri": f"gcr.io/catalog/t{i % 7}",
                            "digest": {"sha256": _hex(i % 7, "b")},
                            "entryPoint": f"t{i % 7}",
                        }
                    },
                    "taskSpec": {
                        "params": [{"name": "in", "type": "string"}, {"name": "opt", "default": "-v"}],
                        "steps": [
                            {"name": f"s{j}", "image": f"img{j}", "script": "echo step\n" * 5}
                            for j in range(STEPS)
                        ],
                    },
                    "steps": [
                        {
                            "name": f"s{j}",
                            "container": f"step-s{j}",
                            "imageID": _image_id((i + j) % 20),
                        }
                        for j in range(STEPS)
                    ],
                    "results": [{"name": "out", "type": "string", "value": _hex(i, "o")}],
                },
            }
        )
    pr = {
        "apiVersion": "tekton.dev/v1",
        "kind": "PipelineRun",
        "metadata": {"name": "pr", "namespace": "bench", "uid": "0" * 32},
        "spec": {"taskRunTemplate": {"serviceAccountName": "sa"}},
        "status": {
            "startTime": "2024-01-01T00:00:00Z",
            "completionTime": "2024-01-01T01:00:00Z",
            "conditions": [{"type": "Succeeded", "status": "True"}],
            "pipelineSpec": {"tasks": tasks},
            "childReferences": refs,
            "results": [
                {"name": "IMAGE_URL", "value": "gcr.io/bench/app"},
                {"name": "IMAGE_DIGEST", "value": "sha256:" + _hex(0, "img")},
            ],
        },
    }
    return pr, children


def one(n_tasks: int, fmt: str, repeat: int, build_type: str | None = None) -> dict:
    from cryptography.hazmat.primitives.asymmetric import ec

    from attestation.keys import PrivateKeySigner
    from signer.provenance import Options, generate
    from signer.run import child_taskruns, to_run
    from signer.signing.key import sign_statement

    signer = PrivateKeySigner(ec.generate_private_key(ec.SECP256R1()), source="bench")
    pr_obj, tr_objs = synthetic(n_tasks)
    options = Options(format=fmt, deep_inspection=True, build_type=build_type)

    def run_once() -> bytes:
        pr = to_run(pr_obj, source="bench")
        children = child_taskruns(pr, [to_run(t, source="bench") for t in tr_objs])
        statement = generate(pr, children, options).statement
        return sign_statement(statement, signer).to_json()

    run_once()  # warm-up: imports, the Go type table, key setup
    # Timed runs without tracemalloc: it slows allocation-heavy Python code several times over.
    times, cpu = [], []
    size = 0
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        size = len(run_once())
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    # Memory in a separate, untimed run.
    tracemalloc.start()
    run_once()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "tasks": n_tasks,
        "format": fmt,
        "median_s": statistics.median(times),
        "max_s": max(times),
        "median_cpu_s": statistics.median(cpu),
        "tracemalloc_peak_mb": peak / 2**20,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "envelope_kb": size / 1024,
    }


# slsa-tekton embeds every child TaskRun in the PipelineRun's provenance: the heaviest case.
CASES = [
    ("slsa/v1", None),
    ("slsa/v2alpha3", None),
    ("slsa/v2alpha4", None),
    ("slsa/v2alpha4", "https://tekton.dev/chains/v2/slsa-tekton"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default="10,100,500")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--one", nargs="+", metavar="TASKS FORMAT [BUILD_TYPE]", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        bt = args.one[2] if len(args.one) > 2 else None
        print(json.dumps(one(int(args.one[0]), args.one[1], args.repeat, bt)))
        return

    print("per statement: to_run + children, statement, serialize, DSSE sign (ECDSA P-256); deep inspection")
    print("cpu s = process CPU time (median), steadier than wall time on a shared machine")
    print(
        f"{'tasks':>6} {'format':<26} {'median s':>9} {'max s':>7} {'cpu s':>6} {'tracemalloc MB':>15} "
        f"{'maxrss MB':>10} "
        f"{'envelope KB':>12}"
    )
    for n in [int(x) for x in args.tasks.split(",")]:
        for fmt, bt in CASES:
            label = fmt + (" +slsa-tekton" if bt else "")
            cmd = [sys.executable, __file__, "--repeat", str(args.repeat), "--one", str(n), fmt]
            proc = subprocess.run(cmd + ([bt] if bt else []), capture_output=True, text=True)
            if proc.returncode != 0:
                last = (proc.stderr.strip().splitlines() or ["?"])[-1]
                print(f"{n:>6} {label:<26} unavailable: {last}")
                continue
            r = json.loads(proc.stdout)
            print(
                f"{n:>6} {label:<26} {r['median_s']:>9.3f} {r['max_s']:>7.3f} {r['median_cpu_s']:>6.3f} "
                f"{r['tracemalloc_peak_mb']:>15.1f} {r['maxrss_mb']:>10.1f} {r['envelope_kb']:>12.1f}"
            )


if __name__ == "__main__":
    main()
