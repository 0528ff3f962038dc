"""Benchmark of the gate against what a user would pick instead, in one run on the same attestations.

    .venv/bin/python bench/gate.py [--runs N] [--process-runs M]

Starts a local registry (distribution) and an OPA server on loopback, pushes one image per size
(4-task and 200-task Tekton PipelineRun provenance, SLSA v0.2, built by the signer from the bundled
TEP-0084 sample) with its attestation in cosign's ``.att`` layout, then measures:

* policy evaluation only: embedded engine, OPA server (REST), ``opa eval`` (one process per run);
* a full verify in a warm process (``Gate.verify``: resolve, fetch, signature, subject, policy);
* the ``gate verify`` command as a whole process, and its start-up alone (``gate --help``);
* ``cosign verify-attestation --policy`` with an equivalent Rego v0 policy (one process per run).

Not a test: prints a table. Needs the components from tests/infra/build-components.sh.
"""

# The closures below run inside the loop iteration that defines them, so late binding cannot bite.
# ruff: noqa: B023

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from attestation import dsse, intoto  # noqa: E402
from attestation.keys import PrivateKeySigner, encrypt_cosign_private_key  # noqa: E402
from attestation.oci.reader import resolve  # noqa: E402
from attestation.oci.writer import push_attestation_legacy, push_image  # noqa: E402
from tests.infra import free_port, require_binary, stop, wait_for_port  # noqa: E402
from tests.infra.registry import start_distribution  # noqa: E402

# cosign evaluates Rego v0 at data.signature.allow over the whole statement; the same checks as the
# bundled library's core: builder, build type, required tasks present, every task succeeded.
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


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[k]


def timed(fn: Callable[[], object], runs: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def run_process(argv: list[str], env: dict[str, str] | None = None, ok: tuple[int, ...] = (0,)) -> None:
    proc = subprocess.run(argv, capture_output=True, env=env, timeout=120)
    if proc.returncode not in ok:
        raise RuntimeError(f"{argv[0]} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")


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


async def setup_image(host: str, signer: PrivateKeySigner, tasks: int) -> tuple[str, str, dict]:
    from attestation.oci.registry import RegistryClient

    deadline = time.monotonic() + 60
    async with RegistryClient() as client:
        image = await push_image(
            client, f"{host}/bench-{tasks}", [f"layer {tasks}".encode()], deadline=deadline
        )
        statement = statement_for(image.reference.name, image.digest, tasks)
        envelope = dsse.sign(intoto.serialize(statement), signer).to_json()
        await push_attestation_legacy(client, image, envelope, deadline=deadline)
        await resolve(client, image.pinned, deadline=deadline)
    return image.pinned, f"{image.reference.name}:latest", statement


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=200, help="in-process repetitions")
    parser.add_argument("--process-runs", type=int, default=10, help="repetitions of whole processes")
    args = parser.parse_args()

    from cryptography.hazmat.primitives.asymmetric import ec

    import policies
    from gate.policy import load_policy_set, make_engine
    from gate.verify import Gate, GateConfig

    work = Path(tempfile.mkdtemp(prefix="provgate-bench-"))
    procs = []
    try:
        reg_proc, server = start_distribution(work / "registry")
        procs.append(reg_proc)
        opa = require_binary("opa")
        cosign = require_binary("cosign")
        opa_port = free_port()
        opa_proc = subprocess.Popen(
            [str(opa), "run", "--server", "--addr", f"127.0.0.1:{opa_port}", "--log-level", "error"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        procs.append(opa_proc)
        wait_for_port(opa_port, opa_proc)

        key = ec.generate_private_key(ec.SECP256R1())
        signer = PrivateKeySigner(key)
        pub = work / "cosign.pub"
        pub.write_bytes(signer.public_key.to_pem())
        (work / "cosign.key").write_bytes(encrypt_cosign_private_key(key, b"", scrypt_n=32768))
        (work / "policy.rego").write_text(COSIGN_POLICY)

        policy_set = load_policy_set([Path(policies.ROOT)])
        embedded = make_engine(policy_set)
        opa_engine = make_engine(policy_set, engine="opa", opa_url=f"http://127.0.0.1:{opa_port}")
        gate = Gate(GateConfig(key_files=(pub,)))

        rows: list[tuple[str, str, list[float]]] = []
        startup = timed(lambda: run_process([sys.executable, "-m", "gate", "--help"]), args.process_runs, 1)
        rows.append(("gate start-up (gate --help)", "-", startup))
        env = {**os.environ, "COSIGN_PASSWORD": "", "PYTHONPATH": str(REPO)}

        for tasks in (4, 200):
            pinned, _tag, statement = asyncio.run(setup_image(server.host, signer, tasks))
            size = len(intoto.serialize(statement))
            label = f"{tasks} tasks ({size // 1024} KiB)"
            prepared = asyncio.run(gate.prepare(pinned))
            policy_input = prepared.policy_input()
            decision = gate.decide(prepared)
            print(
                f"# {label}: gate says {decision.verdict}, {decision.rules_evaluated} rules, "
                f"{len(decision.violations)} violations, {len(decision.warnings)} warnings",
                file=sys.stderr,
            )
            input_file = work / f"input-{tasks}.json"
            input_file.write_text(json.dumps(policy_input))

            rows.append(
                (
                    "policy eval: embedded (regopy)",
                    label,
                    timed(lambda: embedded.evaluate(policy_input), args.runs),
                )
            )
            rows.append(
                (
                    "policy eval: OPA server (REST)",
                    label,
                    timed(lambda: opa_engine.evaluate(policy_input), args.runs),
                )
            )
            rows.append(
                (
                    "policy eval: opa eval (process)",
                    label,
                    timed(
                        lambda: run_process(
                            [
                                str(opa),
                                "eval",
                                "-d",
                                str(policies.ROOT),
                                "-i",
                                str(input_file),
                                "data.policy.release",
                            ]
                        ),
                        args.process_runs,
                        1,
                    ),
                )
            )

            async def warm(n: int) -> list[float]:
                out = []
                async with gate:
                    for i in range(n + 3):
                        t0 = time.perf_counter()
                        d = await gate.verify(pinned)
                        if i >= 3:
                            out.append((time.perf_counter() - t0) * 1000)
                        assert d.decided, d.errors
                return out

            rows.append(("warm verify: Gate.verify (in process)", label, asyncio.run(warm(args.runs))))
            rows.append(
                (
                    "gate verify (whole process)",
                    label,
                    timed(
                        lambda: run_process(
                            [
                                sys.executable,
                                "-m",
                                "gate",
                                "verify",
                                pinned,
                                "--key",
                                str(pub),
                                "--output",
                                "json",
                            ],
                            env=env,
                            ok=(0, 1),
                        ),
                        args.process_runs,
                        1,
                    ),
                )
            )
            rows.append(
                (
                    "cosign verify-attestation --policy",
                    label,
                    timed(
                        lambda: run_process(
                            [
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
                            ],
                            env=env,
                        ),
                        args.process_runs,
                        1,
                    ),
                )
            )

        print(f"{'what':42} {'attestation':22} {'n':>4} {'p50 ms':>9} {'p95 ms':>9} {'mean ms':>9}")
        for what, label, values in rows:
            print(
                f"{what:42} {label:22} {len(values):>4} {percentile(values, 0.5):9.2f} "
                f"{percentile(values, 0.95):9.2f} {statistics.fmean(values):9.2f}"
            )
        gate.close()
        embedded.close()
        opa_engine.close()
    finally:
        for proc in procs:
            stop(proc)


if __name__ == "__main__":
    main()
