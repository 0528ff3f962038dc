"""Where one ``gate eval`` / ``gate verify --attestations`` process spends its time, phase by phase.

    .venv/bin/python bench/cli_phases.py [--runs 20] [--markdown]

Each run is a fresh process running the real command (``gate.cli.run``, with the garbage collector off
and httpx's command-line client kept out, as the ``gate`` script runs its one-shot commands), with timers
around the functions that make up each phase. A phase's time excludes the phases nested in it, so the
phases of a run add up to its time inside Python; "interpreter start and exit" is the process's wall time
measured from outside minus that. The imports a command makes are done up front, in groups, so they are
measured once and apart from the work.

Cases, run round-robin (one run of each in turn) so load from elsewhere on the machine lands on all alike:

* ``gate eval``, every cache warm (parsed policy set, compiled module, its native code, ``opa version``);
* ``gate eval`` after a rule-data change: a ``--data`` file with new content on every run, so each run is
  the first call after an edit;
* ``gate verify --attestations`` (offline, one ``--key``), every cache warm.

The input is the TEP-0084 sample PipelineRun's provenance (4 tasks) made by the signer, against the bundled
policy library. The caches live in a temporary directory (filled by one run of each case first), so the
user's own cache is neither used nor touched. Not a test: prints one table of p50 milliseconds per phase.
Needs the ``opa`` binary (tests/infra/build-components.sh).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.infra import require_binary  # noqa: E402

# Runs inside each measured process: argv[1] is where to write the phases (JSON), argv[2] the case,
# argv[3:] the gate command line.
CHILD = r"""
import time
T0 = time.perf_counter()
import gc, os, sys  # json (and the re it imports) is left to gate.cli, which needs it too
gc.disable()
out_path, case, args = sys.argv[1], sys.argv[2], sys.argv[3:]
phases = {}
stack = []

def add(name, ms):
    phases[name] = phases.get(name, 0.0) + ms

def timed_import(name, modules):
    t = time.perf_counter()
    for m in modules:
        __import__(m)
    add(name, (time.perf_counter() - t) * 1000)

def wrap(owner, attr, label):
    original = getattr(owner, attr)
    def wrapper(*a, **kw):
        name = label(a) if callable(label) else label
        stack.append([name, 0.0])
        t = time.perf_counter()
        try:
            return original(*a, **kw)
        finally:
            ms = (time.perf_counter() - t) * 1000
            _, nested = stack.pop()
            add(name, ms - nested)
            if stack:
                stack[-1][1] += ms
    setattr(owner, attr, wrapper)

timed_import("imports: gate.cli (click)", ["gate.cli"])
if case == "verify":
    timed_import("imports: pipeline, trust, keys", ["gate.verify", "gate.offline", "attestation.keys"])
else:
    timed_import("imports: policy loader", ["gate.offline", "gate.policy", "attestation.limits"])
timed_import("imports: wasm engine (wasmtime, opapywasm)", ["gate.policy.wasm"])

import gate.cli, gate.policy, gate.policy.wasm as W
in_init = []
def evaluation_label(a):
    return "engine: first evaluation (at build)" if in_init else "policy evaluation"
wrap(gate.policy, "load_policy_set", "policy set (loader cache)")
wrap(W, "cached_wasm", "compiled module (cache or opa build)")
wrap(W._NativeCachedFactory, "__init__", "engine: native code (cache or compile)")
wrap(W._Policy, "_build_instance", "engine: instantiate (store, memory, data)")
wrap(W.WasmEngine, "evaluate", evaluation_label)
wrap(W.WasmEngine, "evaluate_json", evaluation_label)
original_init = W.WasmEngine.__init__
def init(self, *a, **kw):
    in_init.append(1)
    try:
        original_init(self, *a, **kw)
    finally:
        in_init.pop()
W.WasmEngine.__init__ = init
wrap(W.WasmEngine, "__init__", "engine: the rest of the build")
if case == "verify":
    import gate.verify, gate.offline
    wrap(gate.verify, "load_trust_policy", "trust (the --key)")
    wrap(gate.offline, "read_attestations_file", "attestations: read the file")
    wrap(gate.verify, "check_attestation", "attestations: signature, statement, subject")

gate.cli._skip_httpx_cli()
code = gate.cli.run(args)
inside = (time.perf_counter() - T0) * 1000
add("CLI, decision and output (the rest)", inside - sum(phases.values()))
import json
with open(out_path, "w") as f:
    json.dump({"phases": phases, "inside": inside, "code": code}, f)
sys.stdout.flush()
os._exit(0)
"""

CASES = {
    "eval": "gate eval, caches warm",
    "eval-new-data": "gate eval, rule data just changed",
    "verify": "gate verify --attestations, caches warm",
}
STARTUP = "interpreter start and exit"
TOTAL = "whole process (wall)"


def make_inputs(work: Path) -> dict[str, Any]:
    """The policy input, a signed attestation file, its key and image for the cases."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from attestation import dsse, intoto
    from attestation.keys import PrivateKeySigner
    from signer import samples
    from signer.provenance import Options, generate
    from signer.run import to_run

    digest = "sha256:" + "ab" * 32
    image = "registry.example/bench/app"
    pr, trs = samples.load("tep0084-pipelinerun", image_url=image, image_digest=digest)
    statement = generate(to_run(pr, source="sample"), [to_run(t, source="sample") for t in trs], Options())
    doc = statement.statement
    pinned = f"{image}@{digest}"
    policy_input = {"image": {"ref": pinned, "digest": digest}, "attestations": [{"statement": doc}]}
    (work / "input.json").write_text(json.dumps(policy_input))
    signer = PrivateKeySigner(ec.generate_private_key(ec.SECP256R1()))
    (work / "key.pub").write_bytes(signer.public_key.to_pem())
    envelope = dsse.sign(intoto.serialize(doc), signer).to_json()
    (work / "attestations.jsonl").write_bytes(envelope + b"\n")
    return {"pinned": pinned}


def command(case: str, work: Path, pinned: str, n: int) -> list[str]:
    policies = str(REPO / "policies")
    if case == "verify":
        return [
            "verify",
            pinned,
            "--key",
            str(work / "key.pub"),
            "--attestations",
            str(work / "attestations.jsonl"),
            "--policy",
            policies,
        ]
    argv = ["eval", "--input", str(work / "input.json"), "--policy", policies]
    if case == "eval-new-data":
        data = work / f"data-{n}.yaml"
        data.write_text(f"bench_run: {n}\n")
        argv += ["--data", str(data)]
    return argv


def run_once(case: str, work: Path, pinned: str, n: int, env: dict[str, str]) -> dict[str, float]:
    out = work / "phases.json"
    argv = [sys.executable, "-c", CHILD, str(out), case, *command(case, work, pinned, n)]
    t0 = time.perf_counter()
    # In the work directory: `python -c` puts the current directory first on sys.path.
    proc = subprocess.run(argv, capture_output=True, env=env, cwd=work, timeout=300)
    wall = (time.perf_counter() - t0) * 1000
    if proc.returncode != 0 or not out.exists():
        raise RuntimeError(f"{case}: exit {proc.returncode}: {proc.stderr.decode()[-800:]}")
    result = json.loads(out.read_text())
    out.unlink()
    if result["code"] not in (0, 1):  # allowed or denied; 2 would be a broken set-up
        raise RuntimeError(f"{case}: gate exited {result['code']}: {proc.stderr.decode()[-800:]}")
    phases = dict(result["phases"])
    phases[STARTUP] = wall - result["inside"]
    phases[TOTAL] = wall
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=20, help="measured runs of each case")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = parser.parse_args()

    opa = require_binary("opa")
    with tempfile.TemporaryDirectory(prefix="provgate-phases-") as tmp:
        work = Path(tmp)
        env = {
            **os.environ,
            "XDG_CACHE_HOME": str(work / "cache"),
            "PROVGATE_OPA": str(opa),
            "PYTHONPATH": str(REPO),
            "PYTHONPYCACHEPREFIX": str(work / "pycache"),  # bytecode cached, as an installed gate has it
        }
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        pinned = make_inputs(work)["pinned"]
        runs: dict[str, list[dict[str, float]]] = {case: [] for case in CASES}
        load_before = os.getloadavg()
        for case in CASES:  # fill the caches (and the bytecode cache)
            run_once(case, work, pinned, -1, env)
        for n in range(args.runs):
            for case in CASES:
                runs[case].append(run_once(case, work, pinned, n, env))
        load_after = os.getloadavg()

    names: list[str] = []
    for case in CASES:
        for sample in runs[case]:
            names.extend(name for name in sample if name not in names and name not in (STARTUP, TOTAL))
    names = [STARTUP, *names, TOTAL]

    def p50(case: str, name: str) -> str:
        values = [sample.get(name, 0.0) for sample in runs[case]]
        return f"{statistics.median(values):.1f}" if any(values) else "-"

    print(f"bench/cli_phases.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(
        f"machine: {os.cpu_count()} CPUs, Python {platform.python_version()}; load average before "
        f"{'/'.join(f'{x:.2f}' for x in load_before)}, after {'/'.join(f'{x:.2f}' for x in load_after)}"
    )
    print(f"p50 ms of {args.runs} runs per case; the total is the p50 of whole runs, not the sum of the rows")
    header = ["phase", *CASES.values()]
    table = [[name, *(p50(case, name) for case in CASES)] for name in names]
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|---|" + "--:|" * len(CASES))
        for row in table:
            print("| " + " | ".join(row) + " |")
    else:
        print(f"{header[0]:48}" + "".join(f"{h[:30]:>32}" for h in header[1:]))
        for row in table:
            print(f"{row[0]:48}" + "".join(f"{c:>32}" for c in row[1:]))


if __name__ == "__main__":
    main()
