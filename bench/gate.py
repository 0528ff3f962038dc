"""Benchmark of the gate against what a user would pick instead, in one run on the same attestations.

    .venv/bin/python bench/gate.py [--runs N] [--process-runs M] [--engines a,b] [--markdown]

Starts a local registry (distribution) and an OPA server on loopback, pushes one image per size (4-task
and 200-task Tekton PipelineRun provenance, SLSA v0.2, made by the signer from the bundled TEP-0084
sample, the 200-task one by repeating its ``lint`` task) with its attestation in cosign's ``.att``
layout, then measures on exactly those attestations:

* policy evaluation only, for every engine of ``gate.policy.ENGINES`` (the OPA one over REST), as the
  gate calls it (the wasm engine gets JSON assembled from statements encoded once, when verified), the
  wasm engine encoding the whole input every call, and ``opa eval`` (one process per run) over the
  same policy input;
* a full verify in a warm process (``Gate.verify``: resolve, fetch, signature, subject, policy) for
  every engine, and the same minus the policy time. The registry is asked for what can change (the
  ``.att`` tag, the referrers) every time; content fetched by digest is not fetched again, nor is the
  image's existence or the registry's lack of a referrers API within a minute (``attestation.oci.cache``),
  bytes that already verified for the image are not verified and parsed again (``VerifiedMemo``), and the
  policy is not evaluated again over the same attestations (``EvaluationMemo``; the wasm engine only). So
  there are also rows for the default engine evaluating the policy every time (as for an image whose
  attestations changed since its last admission) and with nothing remembered (every request, every
  check, as for an image seen for the first time);
* the ``gate verify`` command as a whole process (default engine), with its start-up (the process time
  minus the decision's own ``elapsed_ms``) shown separately, ``gate --help`` alone, and the floor under
  any Python gate: ``python -c pass`` and a bare interpreter importing wasmtime, cryptography and httpx;
* ``cosign verify-attestation --policy`` with an equivalent Rego v0 policy (one process per run).

Every row's ratio is cosign's p50 for the same attestation divided by the row's p50. Not a test: prints
a table and the goals. Needs the components from tests/infra/build-components.sh.
"""

# The closures below run inside the loop iteration that defines them, so late binding cannot bite.
# ruff: noqa: B023

from __future__ import annotations

import argparse
import asyncio
import copy
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from attestation import dsse, intoto  # noqa: E402
from attestation.keys import PrivateKeySigner  # noqa: E402
from attestation.oci.writer import push_attestation_legacy, push_image  # noqa: E402
from tests.infra import free_port, require_binary, stop, wait_for_port  # noqa: E402
from tests.infra.registry import start_distribution  # noqa: E402

# cosign evaluates Rego v0 at data.signature.allow over the whole statement; the same checks as the
# bundled library's core: builder, required tasks present, every task succeeded.
COSIGN_POLICY = """package signature

default allow = false

required := {"git-clone", "image-build"}

task_names[name] { name := input.predicate.buildConfig.tasks[_].name }

failed[name] {
  t := input.predicate.buildConfig.tasks[_]
  t.status != "Succeeded"
  name := t.name
}

allow {
  input.predicate.builder.id == "https://tekton.dev/chains/v2"
  count(required - task_names) == 0
  count(failed) == 0
}
"""
# What a verification from the registry cannot do without, imported by a bare interpreter: the start-up
# floor of any Python gate on this machine, whatever provgate itself does.
FLOOR_IMPORTS = (
    # httpx without its command-line client, as the gate imports it (gate.cli._skip_httpx_cli)
    "import sys; sys.modules['httpx._main'] = None\n"
    "import asyncio, json, wasmtime, httpx\n"
    "from cryptography.hazmat.primitives.asymmetric import ec\n"
    "from cryptography.hazmat.primitives import hashes, serialization"
)
GOAL_POLICY_MS = 10.0
GOAL_WARM_RATIO = 10.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[k]


# In-process rows stop early once this much time was spent, so a slow engine does not stretch the run;
# the table shows each row's n.
ROW_BUDGET_S = 20.0
MIN_RUNS = 10


def timed(fn: Callable[[], object], runs: int, warmup: int = 2, budget_s: float | None = None) -> list[float]:
    for _ in range(warmup):
        fn()
    out: list[float] = []
    deadline = time.monotonic() + budget_s if budget_s else None
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
        if deadline is not None and len(out) >= MIN_RUNS and time.monotonic() > deadline:
            break
    return out


def interleaved(
    fns: dict[str, Callable[[], object]], runs: int, warmup: int = 2, budget_s: float | None = ROW_BUDGET_S
) -> dict[str, list[float]]:
    """Time each function ``runs`` times, one call of each in turn. A function whose runs together took
    longer than ``budget_s`` drops out once it has ``MIN_RUNS`` samples."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    out: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            values = out[name]
            if budget_s is not None and len(values) >= MIN_RUNS and sum(values) / 1000 > budget_s:
                continue
            t0 = time.perf_counter()
            fn()
            values.append((time.perf_counter() - t0) * 1000)
    return out


async def warm_verify(gates: dict[str, Any], pinned: str, runs: int) -> tuple[dict, dict]:
    """Full verifications of ``pinned`` by each gate in turn, each with its own warm registry client (as
    a server keeps one); returns the total and the total minus policy time, per gate, in ms."""
    total: dict[str, list[float]] = {name: [] for name in gates}
    non_policy: dict[str, list[float]] = {name: [] for name in gates}
    for g in gates.values():
        await g.__aenter__()
    try:
        for i in range(runs + 3):
            for name, g in gates.items():
                if len(total[name]) >= MIN_RUNS and sum(total[name]) / 1000 > ROW_BUDGET_S:
                    continue
                t0 = time.perf_counter()
                d = await g.verify(pinned)
                elapsed = (time.perf_counter() - t0) * 1000
                if not d.decided:
                    raise RuntimeError(f"gate could not decide: {d.errors}")
                if i >= 3:  # the first calls open connections
                    total[name].append(elapsed)
                    non_policy[name].append(elapsed - d.timings.policy_ms)
    finally:
        for g in gates.values():
            await g.aclose()
    return total, non_policy


def run_process(argv: list[str], env: dict[str, str] | None = None, ok: tuple[int, ...] = (0,)) -> bytes:
    proc = subprocess.run(argv, capture_output=True, env=env, timeout=300)
    if proc.returncode not in ok:
        raise RuntimeError(f"{argv[0]} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    return proc.stdout


def statement_for(image_name: str, digest: str, tasks: int) -> dict:
    from signer import samples
    from signer.provenance import Options, generate
    from signer.run import to_run

    pr, trs = samples.load("tep0084-pipelinerun", image_url=image_name, image_digest=digest)
    statement = generate(
        to_run(pr, source="sample"), [to_run(t, source="sample") for t in trs], Options()
    ).statement
    listed = statement["predicate"]["buildConfig"]["tasks"]
    lint = next(t for t in listed if t["name"] == "lint")
    others = [t for t in listed if t["name"] != "lint"]  # the 4-task pipeline
    extra = []
    for i in range(tasks - len(others)):
        clone = copy.deepcopy(lint)
        clone["name"] = f"lint-{i}"
        extra.append(clone)
    statement["predicate"]["buildConfig"]["tasks"] = others[:-1] + extra + others[-1:]
    return statement


async def setup_image(host: str, signer: PrivateKeySigner, tasks: int) -> tuple[str, dict]:
    from attestation.oci.registry import RegistryClient

    deadline = time.monotonic() + 60
    async with RegistryClient() as client:
        image = await push_image(
            client, f"{host}/bench-{tasks}", [f"layer {tasks}".encode()], deadline=deadline
        )
        statement = statement_for(image.reference.name, image.digest, tasks)
        envelope = dsse.sign(intoto.serialize(statement), signer).to_json()
        await push_attestation_legacy(client, image, envelope, deadline=deadline)
    return image.pinned, statement


@dataclass
class Row:
    what: str
    size: str
    values: list[float]
    note: str = ""

    @property
    def p50(self) -> float:
        return percentile(self.values, 0.5)

    @property
    def p95(self) -> float:
        return percentile(self.values, 0.95)


def engines_to_run(requested: str | None) -> tuple[list[str], str]:
    """The engines to measure and the one ``embedded`` (the default) stands for."""
    import gate.policy as gp

    default = getattr(gp, "DEFAULT_EMBEDDED", "embedded")
    names = [e for e in gp.ENGINES if e != "embedded" or default == "embedded"]
    if requested:
        names = [e for e in requested.split(",") if e]
    return names, default


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "?"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), cpu)
    except OSError:
        pass
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "load": os.getloadavg()}


def version_of(binary: Path, *args: str) -> str:
    """What ``binary args`` prints of its version (Go tools print it in several shapes), or "?"."""
    try:
        out = subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    for line in out.splitlines():
        if "ersion" in line:
            return line.split(":", 1)[-1].strip()
    return out.strip().splitlines()[0] if out.strip() else "?"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=100, help="in-process repetitions")
    parser.add_argument("--process-runs", type=int, default=10, help="repetitions of whole processes")
    parser.add_argument("--engines", help="comma-separated engines (default: every engine of gate.policy)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument(
        "--import-breakdown", action="store_true", help="also show what `gate verify` spends its imports on"
    )
    args = parser.parse_args()

    from cryptography.hazmat.primitives.asymmetric import ec

    import policies
    from attestation.cosign_key import encrypt_private_key
    from gate.verify import Gate, GateConfig, evaluate_prepared

    before = machine()
    started_at = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    engines, default_engine = engines_to_run(args.engines)
    work = Path(tempfile.mkdtemp(prefix="provgate-bench-"))
    procs = []
    opened: list[Any] = []
    try:
        reg_proc, server = start_distribution(work / "registry")
        procs.append(reg_proc)
        opa = require_binary("opa")
        cosign = require_binary("cosign")
        opa_port = free_port()
        opa_proc = subprocess.Popen(
            [str(opa), "run", "--server", "--addr", f"127.0.0.1:{opa_port}", "--log-level", "error"],
            cwd=work,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(opa_proc)
        wait_for_port(opa_port, opa_proc)
        opa_url = f"http://127.0.0.1:{opa_port}"

        key = ec.generate_private_key(ec.SECP256R1())
        signer = PrivateKeySigner(key)
        pub = work / "cosign.pub"
        pub.write_bytes(signer.public_key.to_pem())
        (work / "cosign.key").write_bytes(encrypt_private_key(key, b"", scrypt_n=32768))
        (work / "policy.rego").write_text(COSIGN_POLICY)

        policy_engines: dict[str, Any] = {}
        gates: dict[str, Gate] = {}
        for name in engines:
            url = opa_url if name == "opa" else None
            # One engine per name, shared by the policy-only rows and the gate (an OPA server holds one
            # policy set at a time).
            gates[name] = Gate(GateConfig(key_files=(pub,), engine=name, opa_url=url))
            policy_engines[name] = gates[name].engine
            opened.append(gates[name])
        # The same default gate without the memo of verified attestations: every call verifies and parses
        # the attestation again, as for an image seen for the first time.
        forgetful = Gate(
            GateConfig(
                key_files=(pub,), verified_memo_bytes=0, registry_cache_bytes=0, evaluation_memo_bytes=0
            )
        )
        opened.append(forgetful)
        # The default gate evaluating the policy on every call, as for an image whose attestations changed.
        evaluating = Gate(GateConfig(key_files=(pub,), evaluation_memo_bytes=0))
        opened.append(evaluating)

        rows: list[Row] = []
        notes: list[str] = []
        gate_bin = Path(sys.executable).with_name("gate")
        gate_cmd = [str(gate_bin)] if gate_bin.exists() else [sys.executable, "-m", "gate"]
        env = {**os.environ, "COSIGN_PASSWORD": "", "PYTHONPATH": str(REPO)}
        # Processes run with their bytecode cached, as an installed gate has it (pip compiles it), even
        # where the environment says not to write it (PYTHONDONTWRITEBYTECODE): compiling the project's
        # own modules at every start would be measured too (docs/performance.md). The cache lives in this
        # run's temporary directory, never in the checkout; the warm-up runs fill it.
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
        help_times = timed(lambda: run_process([*gate_cmd, "--help"], env=env), args.process_runs, 1)
        rows.append(Row("gate --help (interpreter + CLI import)", "-", help_times))
        # The floor under any Python `gate verify`: the interpreter, and the interpreter importing only the
        # third-party stacks a registry verification cannot do without (no provgate code, no work).
        floors = interleaved(
            {
                "interpreter": lambda: run_process([sys.executable, "-c", "pass"], env=env),
                "stacks": lambda: run_process([sys.executable, "-c", FLOOR_IMPORTS], env=env),
            },
            args.process_runs,
            warmup=1,
            budget_s=None,
        )
        rows.append(Row("python -c pass (interpreter floor)", "-", floors["interpreter"]))
        rows.append(Row("python importing wasmtime, cryptography, httpx", "-", floors["stacks"]))

        first_pinned = ""
        for tasks in (4, 200):
            pinned, statement = asyncio.run(setup_image(server.host, signer, tasks))
            first_pinned = first_pinned or pinned
            size = f"{tasks} tasks ({len(intoto.serialize(statement)) // 1024} KiB)"
            reference = gates[engines[0]]
            prepared = asyncio.run(reference.prepare(pinned))
            policy_input = prepared.policy_input()
            input_file = work / f"input-{tasks}.json"
            input_file.write_text(json.dumps(policy_input))
            verdicts = {}
            for name in engines:
                d = gates[name].decide(prepared)
                verdicts[name] = (d.verdict, sorted(v.code for v in d.violations), d.rules_evaluated)
            notes.append(f"{size}: gate verdicts {json.dumps(verdicts)}")

            # Alternatives are measured round-robin (one run of each in turn), so a burst of load from
            # elsewhere on the machine lands on all of them alike and the ratios stay meaningful.
            labels = {n: f"{n} (default)" if n == default_engine else n for n in engines}
            # What the gate does for one evaluation (gate.verify.evaluate_prepared): every engine is handed
            # JSON assembled from statements encoded once, at verification. The last row is the wasm
            # engine encoding the whole input on every call.
            evals = interleaved(
                {
                    **{n: (lambda e=policy_engines[n]: evaluate_prepared(e, prepared)) for n in engines},
                    "encoding": lambda: policy_engines[default_engine].evaluate(policy_input),
                },
                args.runs,
            )
            for name in engines:
                rows.append(Row(f"policy eval: {labels[name]}", size, evals[name]))
            encoding_row = f"policy eval: {default_engine}, input encoded every call"
            rows.append(Row(encoding_row, size, evals["encoding"]))

            total, non_policy = asyncio.run(
                warm_verify({**gates, "forgetful": forgetful, "evaluating": evaluating}, pinned, args.runs)
            )
            for name in engines:
                rows.append(Row(f"warm Gate.verify: {labels[name]}", size, total[name]))
                if name == default_engine:
                    every = "warm Gate.verify, policy evaluated every time"
                    rows.append(Row(every, size, total["evaluating"]))
                    rows.append(Row("  the same minus policy", size, non_policy["evaluating"]))
                    rows.append(Row("warm Gate.verify, nothing remembered", size, total["forgetful"]))

            in_process: list[float] = []

            def gate_verify() -> None:
                out = run_process(
                    [*gate_cmd, "verify", pinned, "--key", str(pub), "--output", "json"], env=env, ok=(0, 1)
                )
                in_process.append(json.loads(out)["elapsed_ms"])

            opa_eval = [
                str(opa),
                "eval",
                "-d",
                str(policies.ROOT),
                "-i",
                str(input_file),
                "data.policy.release",
            ]
            cosign_cmd = [
                str(cosign),
                "verify-attestation",
                "--key",
                str(pub),
                "--insecure-ignore-tlog=true",
                "--type",
                "slsaprovenance02",
                "--policy",
                str(work / "policy.rego"),
                "--new-bundle-format=false",
                "--allow-http-registry",
                pinned,
            ]
            processes = interleaved(
                {
                    "gate": gate_verify,
                    "cosign": lambda: run_process(cosign_cmd, env=env),
                    "opa eval": lambda: run_process(opa_eval),
                },
                args.process_runs,
                warmup=1,
                budget_s=None,
            )
            in_process = in_process[1:]  # the warm-up run's
            rows.append(Row("policy eval: opa eval (process)", size, processes["opa eval"]))
            rows.append(Row("gate verify (whole process)", size, processes["gate"]))
            rows.append(
                Row(
                    "  of which start-up (process - elapsed_ms)",
                    size,
                    [w - e for w, e in zip(processes["gate"], in_process, strict=True)],
                )
            )
            rows.append(Row("cosign verify-attestation --policy", size, processes["cosign"]))
            notes.append(f"{size}: cosign verify-attestation --policy exits 0 (policy passed)")

        after = machine()
        cosign_p50 = {r.size: r.p50 for r in rows if r.what.startswith("cosign")}
        header = ["what", "attestation", "n", "p50 ms", "p95 ms", "cosign p50 / p50"]
        table = []
        for r in rows:
            ratio = f"{cosign_p50[r.size] / r.p50:.1f}x" if r.size in cosign_p50 and r.p50 > 0 else ""
            table.append([r.what, r.size, str(len(r.values)), f"{r.p50:.2f}", f"{r.p95:.2f}", ratio])
        print(f"# bench/gate.py, {started_at}")
        print(
            f"# machine: {before['cpus']} CPUs ({before['cpu']}), Python {before['python']}; "
            f"load average (1/5/15 min) before {fmt_load(before['load'])}, after {fmt_load(after['load'])}"
        )
        print(f"# cosign {version_of(cosign, 'version')}, opa {version_of(opa, 'version')}")
        print(
            f"# runs: up to {args.runs} in process (at most {ROW_BUDGET_S:g} s a row), "
            f"{args.process_runs} per process row; processes with their bytecode cached"
        )
        if args.markdown:
            print("| " + " | ".join(header) + " |")
            print("|" + "|".join(["---", "---", "--:", "--:", "--:", "--:"]) + "|")
            for cells in table:
                print("| " + " | ".join(cells) + " |")
        else:
            print(
                f"{header[0]:44} {header[1]:20} {header[2]:>4} {header[3]:>9} {header[4]:>9} {header[5]:>17}"
            )
            for c in table:
                print(f"{c[0]:44} {c[1]:20} {c[2]:>4} {c[3]:>9} {c[4]:>9} {c[5]:>17}")
        for note in notes:
            print(f"# {note}")
        print_goals(rows, default_engine, cosign_p50)
        if args.import_breakdown:
            argv = ["-m", "gate", "verify", first_pinned, "--key", str(pub), "--output", "json"]
            print(
                f"# imports of `gate verify` (4 tasks), min of {args.process_runs} runs "
                "of python -X importtime"
            )
            for name, label, ms in import_breakdown(argv, args.process_runs, env):
                print(f"#   {ms:8.1f} ms  {name:26} {label}")
    finally:
        for obj in opened:
            obj.close()
        for proc in procs:
            stop(proc)


def fmt_load(load: tuple[float, float, float]) -> str:
    return "/".join(f"{x:.2f}" for x in load)


# What a `gate verify` process spends its imports on, by the modules that pull in each third-party stack.
EDITABLE_FINDER = "(editable finder)"
IMPORT_GROUPS = (
    ("attestation.intoto", "in-toto statement checks (stdlib only)"),
    ("attestation.keys", "key loading (cryptography, nacl)"),
    ("attestation.oci.registry", "registry client (httpx, anyio, h11)"),
    ("gate.policy.wasm", "wasm engine (wasmtime, opapywasm)"),
    ("gate.policy", "policy loader (yaml only on a cache miss)"),
    ("gate.cli", "CLI (click)"),
    ("asyncio", "asyncio"),
    # pip's editable install: its import hook, named after the project version (absent when installed)
    (EDITABLE_FINDER, "editable-install import hook"),
)


def import_breakdown(argv: list[str], runs: int, env: dict[str, str]) -> list[tuple[str, str, float]]:
    """Cumulative import time of each group's first import in ``python -X importtime`` runs of
    ``argv`` (a ``-m gate ...`` command line), the minimum over ``runs``: the least a start can cost on
    this machine, whatever else it was doing."""
    best: dict[str, float] = {}
    for _ in range(runs):
        proc = subprocess.run(
            [sys.executable, "-X", "importtime", *argv], capture_output=True, text=True, env=env, timeout=300
        )
        seen: dict[str, float] = {}
        total = 0.0
        for line in proc.stderr.splitlines():
            if not line.startswith("import time:") or "cumulative" in line:
                continue
            self_us, cumulative, name = (part.strip() for part in line[len("import time:") :].split("|"))
            if name.startswith("__editable__") and name.endswith("_finder"):
                name = EDITABLE_FINDER
            total += int(self_us) / 1000
            if name in dict(IMPORT_GROUPS) and name not in seen:
                seen[name] = int(cumulative) / 1000
        seen["(every import)"] = total
        for name, ms in seen.items():
            best[name] = min(best.get(name, ms), ms)
    labels = {**dict(IMPORT_GROUPS), "(every import)": "all imports of the process"}
    return [
        (name, labels[name], best[name]) for name in [*dict(IMPORT_GROUPS), "(every import)"] if name in best
    ]


def print_goals(rows: list[Row], default_engine: str, cosign_p50: dict[str, float]) -> None:
    def find(prefix: str, size_prefix: str) -> Row:
        return next(r for r in rows if r.what.startswith(prefix) and r.size.startswith(size_prefix))

    policy = find(f"policy eval: {default_engine} (default)", "200 tasks")
    ok = "met" if policy.p50 <= GOAL_POLICY_MS else "NOT met"
    print(
        f"# goal: default-engine policy eval, 200 tasks, p50 {policy.p50:.2f} ms "
        f"<= {GOAL_POLICY_MS:g} ms: {ok}"
    )
    for size_prefix in ("4 tasks", "200 tasks"):
        warm = find(f"warm Gate.verify: {default_engine} (default)", size_prefix)
        whole = find("gate verify (whole process)", size_prefix)
        cosign = cosign_p50[warm.size]
        ratio = cosign / warm.p50
        ok = "met" if ratio >= GOAL_WARM_RATIO else "NOT met"
        print(
            f"# goal: warm verify vs cosign, {warm.size}: {ratio:.1f}x faster (>= {GOAL_WARM_RATIO:g}x): {ok}"
        )
        for label in (
            "warm Gate.verify, policy evaluated every time",
            "warm Gate.verify, nothing remembered",
        ):
            row = find(label, size_prefix)
            print(f"#   {label[len('warm Gate.verify, ') :]}: {cosign / row.p50:.1f}x faster")
        ok = "met" if whole.p50 <= cosign else "NOT met"
        print(
            f"# goal: gate verify command vs cosign, {whole.size}: {whole.p50:.0f} ms vs {cosign:.0f} ms "
            f"(no slower): {ok}"
        )


if __name__ == "__main__":
    main()
