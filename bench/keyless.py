"""Benchmark of keyless signing and verification against the private Sigstore on loopback, side by side
with ``cosign verify-attestation`` on the same bundle in the same run.

    .venv/bin/python bench/keyless.py [--sign-runs N] [--verify-runs M] [--cosign-runs K] [--markdown]

Starts what the keyless tests start (SPIRE server + agent, a second SPIRE server, the OIDC discovery
providers, Fulcio, TesseraCT, rekor-tiles, the TSA: tests/infra/sigstore.py) and a referrers registry,
pushes an image, and measures:

* keyless signing as the operator does it, token to stored bundle: ``attest()`` with the keyless backend
  (a JWT-SVID from the Workload API, the Fulcio certificate, the timestamp, the Rekor v2 entry, the
  referrer push), one new certificate per run;
* keyless verification in a warm gate (trusted root parsed once, policy compiled once) on one of those
  bundles: from memory (the same bytes verified before: ``VerifiedMemo``), verified every time (memo
  off: bundle parse, timestamp, chain, SCT, inclusion proof and checkpoint, signature, identity), and
  the full registry path (resolve, fetch, verify, policy);
* ``cosign verify-attestation`` of the same image with the same trusted root and identity, one process
  per run.

Ratios are cosign's p50 over the row's p50. Not a test: prints a table and the goal (warm keyless
verification >= 10x faster than the cosign process). Needs the components of
tests/infra/build-components.sh.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
warnings.filterwarnings("ignore", module="spiffe")

from tests.infra import require_binary  # noqa: E402
from tests.infra.registry import start_ggcr  # noqa: E402
from tests.infra.sigstore import run_sigstore  # noqa: E402
from tests.infra.spire import run_spire, run_spire_server  # noqa: E402
from tests.infra.tsa import run_tsa  # noqa: E402

SIGNER_ID = "spiffe://example.org/ns/tekton-chains/sa/tekton-chains-controller"
GOAL_RATIO = 10.0


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def timed(fn: Callable[[], object], runs: int, warmup: int = 2) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sign-runs", type=int, default=15)
    parser.add_argument("--verify-runs", type=int, default=300)
    parser.add_argument("--cosign-runs", type=int, default=15)
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    from gate.config import GateConfig
    from gate.trust_keyless import KeylessEntry
    from gate.verify import Gate
    from signer.attest import ArtifactConfig, AttestConfig, attest
    from signer.run import to_run
    from signer.signing.keyless import KeylessConfig, KeylessSigning
    from signer.storage import StorageConfig
    from tests.gate.conftest import BUILDER_ID, TEST_DATA, TEST_POLICY
    from tests.oci.helpers import push_small_image
    from tests.spire.tekton import taskrun

    work = Path(tempfile.mkdtemp(prefix="kbench"))
    rows: list[tuple[str, list[float]]] = []
    notes: list[str] = []
    with (
        run_spire() as spire,
        run_spire_server("other.org") as (other, _),
        run_tsa() as tsa,
        run_sigstore(spire, other, tsa) as stack,
    ):
        spire.issue(SIGNER_ID)
        registry_proc, registry = start_ggcr(work)
        try:
            repo, digest = push_small_image(registry, "bench")
            image = f"{repo}@{digest}"
            run_obj = to_run(
                taskrun(
                    "bench",
                    "ci",
                    [
                        {"name": "IMAGE_URL", "type": "string", "value": repo},
                        {"name": "IMAGE_DIGEST", "type": "string", "value": digest},
                    ],
                ),
                source="bench",
            )
            backend = KeylessSigning(
                KeylessConfig(
                    trust_config=str(stack.trust_config_file),
                    spiffe_socket=spire.workload_socket,
                    spiffe_id=SIGNER_ID,
                )
            )
            artifact = ArtifactConfig(storage=("oci",), signer="keyless")
            config = AttestConfig(
                signers={"keyless": backend},
                taskrun=artifact,
                pipelinerun=artifact,
                builder_id=BUILDER_ID,
                storage=StorageConfig(),
            )
            bundles: list[bytes] = []

            def sign() -> None:
                outcome = attest(run_obj, [], config)
                assert outcome.signed.sigstore_bundle is not None
                bundles.append(outcome.signed.sigstore_bundle)

            rows.append(
                ("keyless signing, token -> stored referrer (attest())", timed(sign, args.sign_runs, 1))
            )
            bundle = bundles[-1]

            policy = work / "policy" / "release"
            policy.mkdir(parents=True)
            (policy / "provenance.rego").write_text(TEST_POLICY)
            (work / "data.json").write_text(json.dumps(TEST_DATA))
            entry = KeylessEntry(
                certificate_identity=SIGNER_ID,
                certificate_oidc_issuer=stack.issuer,
                trusted_root=str(stack.trusted_root_file),
            )

            def gate_config(memo: bool) -> GateConfig:
                return GateConfig(
                    policy_paths=(work / "policy",),
                    data_paths=(work / "data.json",),
                    keyless=(entry,),
                    verified_memo_bytes=32 * 1024 * 1024 if memo else 0,
                    evaluation_memo_bytes=16 * 1024 * 1024 if memo else 0,
                )

            with Gate(gate_config(memo=True)) as warm, Gate(gate_config(memo=False)) as cold_each:
                for g in (warm, cold_each):
                    assert g.verify_sync(image, attestations=[bundle]).allowed
                rows.append(
                    (
                        "warm gate, the same bundle again (remembered)",
                        timed(lambda: warm.verify_sync(image, attestations=[bundle]), args.verify_runs),
                    )
                )
                rows.append(
                    (
                        "warm gate, keyless verification every time (memo off)",
                        timed(lambda: cold_each.verify_sync(image, attestations=[bundle]), args.verify_runs),
                    )
                )
                prepared = [0.0]

                def verify_only() -> None:
                    p = cold_each.prepare_offline(image, [bundle])
                    prepared[0] = p.timings.verify_ms  # type: ignore[union-attr]

                rows.append(
                    (
                        "  of which: bundle checks only (prepare, no policy)",
                        timed(verify_only, args.verify_runs),
                    )
                )

            async def registry_rows() -> list[tuple[str, list[float]]]:
                out = []
                async with Gate(gate_config(memo=True)) as g:
                    d = await g.verify(image)
                    assert d.allowed, d.to_dict()
                    samples = []
                    for _ in range(max(20, args.verify_runs // 3)):
                        t0 = time.perf_counter()
                        d = await g.verify(image)
                        samples.append((time.perf_counter() - t0) * 1000)
                    out.append((f"warm gate from the registry ({len(bundles)} referrers)", samples))
                return out

            rows.extend(asyncio.run(registry_rows()))
            notes.append(f"the image carries {len(bundles)} keyless referrers; each is checked on every call")

            cosign = require_binary("cosign")
            home = work / "cosign-home"
            home.mkdir()
            env = {**os.environ, "HOME": str(home), "TUF_ROOT": str(home / "tuf")}
            payload = json.loads(base64.b64decode(json.loads(bundle)["dsseEnvelope"]["payload"]))
            cmd = [
                str(cosign),
                "verify-attestation",
                "--trusted-root",
                str(stack.trusted_root_file),
                "--certificate-identity",
                SIGNER_ID,
                "--certificate-oidc-issuer",
                stack.issuer,
                "--use-signed-timestamps",
                "--type",
                payload["predicateType"],
                "--allow-http-registry",
                image,
            ]

            def run_cosign() -> None:
                done = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
                if done.returncode != 0:
                    raise RuntimeError(done.stderr.decode()[-500:])

            rows.append(
                (
                    "cosign verify-attestation (process, same image and root)",
                    timed(run_cosign, args.cosign_runs, 1),
                )
            )
            version = subprocess.run([str(cosign), "version"], capture_output=True, text=True).stdout
        finally:
            registry_proc.terminate()
            registry_proc.wait(timeout=10)

    cosign_p50 = percentile(rows[-1][1], 0.5)
    print(f"# keyless bench, {platform.machine()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    print(
        "# cosign "
        + " ".join(line.split(":", 1)[1].strip() for line in version.splitlines() if "GitVersion" in line)
    )
    header = ["what", "n", "p50 ms", "p95 ms", "p99 ms", "cosign p50 / p50"]
    table = []
    for what, samples in rows:
        p50 = percentile(samples, 0.5)
        ratio = f"{cosign_p50 / p50:.1f}x" if p50 > 0 else ""
        table.append(
            [
                what,
                str(len(samples)),
                f"{p50:.2f}",
                f"{percentile(samples, 0.95):.2f}",
                f"{percentile(samples, 0.99):.2f}",
                ratio,
            ]
        )
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for line in table:
            print("| " + " | ".join(line) + " |")
    else:
        widths = [max(len(r[i]) for r in [header, *table]) for i in range(len(header))]
        for line in [header, *table]:
            print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)))
    for note in notes:
        print(f"# {note}")
    every = percentile(rows[2][1], 0.5)
    ok = "met" if cosign_p50 / every >= GOAL_RATIO else "NOT met"
    print(
        f"# goal: warm keyless verification (every time) vs cosign process: {cosign_p50 / every:.1f}x "
        f"(>= {GOAL_RATIO:g}x): {ok}"
    )


if __name__ == "__main__":
    main()
