"""Benchmark of ``gate serve``'s admission path under load, with a real load generator (vegeta).

    .venv/bin/python bench/admission.py [--duration 10] [--distinct 1000] [--rss-images 10000]

Starts a distribution registry on loopback, pushes images with the signer's SLSA provenance of the
bundled TEP-0084 PipelineRun (its 4 tasks: clone, scan, build, ...) signed with a cosign-format key,
starts ``gate serve`` (HTTPS, the bundled policy library) and drives ``POST /validate`` with vegeta at
fixed rates, AdmissionReviews for Deployments with 1 and 5 images:

* verdict-cache hits (the images decided once before), at 500 req/s and then higher until errors;
* first looks: every request a digest the gate has not seen, allowed and denied (the no-scan run: a
  policy denial, so the whole pipeline runs), and 1,000 distinct digests at a fixed rate;
* the gate's RSS after ``--rss-images`` distinct images, with the configured cache bounds.

Not a test: prints a table (``--markdown`` for docs/performance.md). Needs tests/infra/build-components.sh
``registry vegeta``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from attestation import dsse, intoto  # noqa: E402
from attestation.keys import PrivateKeySigner  # noqa: E402
from attestation.oci.registry import RegistryClient  # noqa: E402
from attestation.oci.writer import push_attestation_legacy, push_image  # noqa: E402
from tests.infra import build_components, require_binary, stop  # noqa: E402
from tests.infra.registry import start_distribution  # noqa: E402
from tests.infra.tls import make_ca, make_server_cert  # noqa: E402
from tests.serve.conftest import RULE_DATA, Tls, start_gate_process  # noqa: E402


def provenance(sample: str, name: str, digest: str) -> dict[str, Any]:
    from signer import samples
    from signer.provenance import Options, generate
    from signer.run import to_run

    pr, trs = samples.load(sample, image_url=name, image_digest=digest)
    statement = generate(
        to_run(pr, source=sample), [to_run(t, source=sample) for t in trs], Options()
    ).statement
    tasks = statement["predicate"]["buildConfig"]["tasks"]
    statement["predicate"]["buildConfig"]["tasks"] = [t for t in tasks if t["name"] != "lint"]
    return statement


async def push_many(
    host: str, signer: PrivateKeySigner | None, count: int, sample: str, prefix: str
) -> list[str]:
    """``count`` distinct images (pinned references), each with its provenance when ``signer`` is given."""
    out: list[str] = []
    sem = asyncio.Semaphore(8)
    async with RegistryClient() as client:

        async def one(i: int) -> str:
            async with sem:
                deadline = time.monotonic() + 120
                image = await push_image(
                    client, f"{host}/{prefix}", [f"{prefix} {i} {time.time_ns()}".encode()], deadline=deadline
                )
                if signer is not None:
                    env = dsse.sign(
                        intoto.serialize(provenance(sample, image.reference.name, image.digest)), signer
                    )
                    await push_attestation_legacy(client, image, env.to_json(), deadline=deadline)
                return image.pinned

        out = list(await asyncio.gather(*(one(i) for i in range(count))))
    return out


def review(images: list[str], uid: str) -> bytes:
    containers = [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
    obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "app", "namespace": "bench"},
        "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"spec": {"containers": containers}}},
    }
    return json.dumps(
        {
            "apiVersion": "admission.k8s.io/v1",
            "kind": "AdmissionReview",
            "request": {
                "uid": uid,
                "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
                "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
                "namespace": "bench",
                "name": "app",
                "operation": "CREATE",
                "object": obj,
                "dryRun": False,
            },
        }
    ).encode()


def attack(
    vegeta: Path, url: str, ca: Path, bodies: list[bytes], rate: int, duration: float, work: Path
) -> dict[str, Any]:
    """vegeta at ``rate`` req/s for ``duration`` s over ``bodies`` (round robin); its JSON report."""
    targets = work / "targets.jsonl"
    with targets.open("w") as f:
        for body in bodies:
            f.write(
                json.dumps(
                    {
                        "method": "POST",
                        "url": f"{url}/validate?timeout=10s",
                        "body": base64.b64encode(body).decode(),
                        "header": {"Content-Type": ["application/json"]},
                    }
                )
                + "\n"
            )
    attack_cmd = [
        str(vegeta),
        "attack",
        "-format=json",
        f"-targets={targets}",
        f"-rate={rate}/s",
        f"-duration={duration}s",
        f"-root-certs={ca}",
        "-timeout=15s",
        "-keepalive=true",
        "-max-workers=256",
    ]
    if len(bodies) > 1:
        attack_cmd.append("-lazy")
    results = subprocess.run(attack_cmd, capture_output=True, check=True, timeout=duration + 120).stdout
    report = subprocess.run(
        [str(vegeta), "report", "-type=json"], input=results, capture_output=True, check=True, timeout=120
    ).stdout
    doc = json.loads(report)
    return doc


def row(what: str, report: dict[str, Any], rate: int) -> dict[str, Any]:
    lat = report["latencies"]
    return {
        "what": what,
        "rate": rate,
        "n": report["requests"],
        "p50": lat["50th"] / 1e6,
        "p95": lat["95th"] / 1e6,
        "p99": lat["99th"] / 1e6,
        "ok": report["success"],
        "codes": report.get("status_codes", {}),
    }


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per vegeta attack")
    parser.add_argument("--distinct", type=int, default=1000, help="distinct digests for the first-look rows")
    parser.add_argument("--rss-images", type=int, default=10000, help="distinct images before RSS is read")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()

    build_components("registry", "vegeta")
    vegeta = require_binary("vegeta")
    started_at = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="provgate-bench-admission-"))
    reg_proc, registry = start_distribution(work / "registry")
    gate = None
    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    try:
        signer = PrivateKeySigner(ec.generate_private_key(ec.SECP256R1()))
        (work / "cosign.pub").write_bytes(signer.public_key.to_pem())
        (work / "rule_data.yaml").write_text(yaml.safe_dump(RULE_DATA))
        ca, ca_key, ca_cert = make_ca(work / "ca")
        cert, key = make_server_cert(work, ca_key, ca_cert)
        tls = Tls(ca, cert, key)
        config = {
            "listen": "127.0.0.1:0",
            "tls": {"certFile": str(cert), "keyFile": str(key)},
            "trust": {"keys": [str(work / "cosign.pub")]},
            "data": [str(work / "rule_data.yaml")],
            "cache": {"ttl": 3600, "maxBytes": "64Mi", "tagTtl": 10},
        }
        (work / "gate.yaml").write_text(yaml.safe_dump(config))
        t0 = time.monotonic()
        warm = asyncio.run(push_many(registry.host, signer, 5, "tep0084-pipelinerun", "warm"))
        allowed = asyncio.run(
            push_many(registry.host, signer, args.distinct, "tep0084-pipelinerun", "allowed")
        )
        denied = asyncio.run(push_many(registry.host, signer, args.distinct, "tep0084-no-scan", "denied"))
        notes.append(f"pushed {5 + 2 * args.distinct} signed images in {time.monotonic() - t0:.0f} s")
        gate = start_gate_process(work / "gate.yaml", tls)
        import httpx

        with httpx.Client(verify=tls.context(), timeout=60) as client:
            for image in warm:  # every warm image decided once: the rows below are cache hits
                answer = client.post(f"{gate.url}/validate", content=review([image], "w")).json()["response"]
                assert answer["allowed"], answer
            answer = client.post(f"{gate.url}/validate", content=review([allowed[0]], "a")).json()["response"]
            assert answer["allowed"], answer
            answer = client.post(f"{gate.url}/validate", content=review([denied[0]], "d")).json()["response"]
            assert not answer["allowed"] and "[tasks." in answer["status"]["message"], answer
        ca_path = tls.ca_file
        for images, label in (([warm[0]], "1 image"), (warm, "5 images")):
            bodies = [review(images, f"uid-{i}") for i in range(1)]
            report = attack(vegeta, gate.url, ca_path, bodies, 500, args.duration, work)
            rows.append(row(f"cache hits, {label}", report, 500))
        held = 500
        for rate in (1000, 1500, 2000, 3000):
            report = attack(vegeta, gate.url, ca_path, [review([warm[0]], "u")], rate, args.duration, work)
            r = row("cache hits, 1 image", report, rate)
            if r["ok"] < 1.0 or r["p99"] > 100:
                notes.append(f"cache hits at {rate} req/s: success {r['ok']:.3f}, p99 {r['p99']:.1f} ms")
                break
            held = rate
            rows.append(r)
        notes.append(f"highest cache-hit rate held without errors (p99 <= 100 ms): {held} req/s")
        # First looks: each request a digest never decided before (one body per image, lazily read).
        first_rate = 50
        n = min(args.distinct - 1, int(first_rate * args.duration))
        report = attack(
            vegeta,
            gate.url,
            ca_path,
            [review([i], "f") for i in allowed[1 : 1 + n]],
            first_rate,
            n / first_rate,
            work,
        )
        rows.append(row("first look, allowed, 1 image", report, first_rate))
        report = attack(
            vegeta,
            gate.url,
            ca_path,
            [review([i], "f") for i in denied[1 : 1 + n]],
            first_rate,
            n / first_rate,
            work,
        )
        rows.append(row("first look, denied (policy), 1 image", report, first_rate))
        rest = allowed[1 + n :]
        rate = 100
        t0 = time.monotonic()
        report = attack(
            vegeta, gate.url, ca_path, [review([i], "x") for i in rest], rate, len(rest) / rate, work
        )
        notes.append(
            f"{len(rest)} distinct digests at {rate} req/s decided in {time.monotonic() - t0:.1f} s "
            f"(success {report['success']:.3f})"
        )
        rows.append(row(f"first look, {len(rest)} distinct digests", report, rate))
        notes.append(f"gate RSS after {2 * n + len(rest) + 7} images: {rss_kb(gate.proc.pid) / 1024:.0f} MiB")
    finally:
        if gate is not None:
            gate.stop()
        stop(reg_proc)
    print(
        f"# bench/admission.py, {started_at}; {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load before {'/'.join(f'{x:.2f}' for x in load_before)}"
    )
    print("| what | rate req/s | n | p50 ms | p95 ms | p99 ms | success |")
    print("|---|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        print(
            f"| {r['what']} | {r['rate']} | {r['n']} | {r['p50']:.2f} | {r['p95']:.2f} | {r['p99']:.2f} | "
            f"{r['ok']:.3f} |"
        )
    for note in notes:
        print(f"# {note}")


if __name__ == "__main__":
    main()
