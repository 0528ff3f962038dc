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
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from attestation import dsse, intoto  # noqa: E402
from attestation.keys import PrivateKeySigner  # noqa: E402
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


PLACEHOLDER = "0" * 64  # the digest in the provenance template, replaced by each image's


async def push_many(
    host: str,
    signer: PrivateKeySigner | None,
    count: int,
    sample: str,
    prefix: str,
    *,
    concurrency: int = 32,
) -> list[str]:
    """``count`` distinct images (pinned references) in one repository, each with its own provenance
    signed by ``signer`` (when given), stored as the signer stores it (cosign's ``.att`` layout).

    Made for thousands: the images share their one layer and differ in a small config blob (so each has
    its own digest); the provenance is generated once and only its subject changes per image (each
    envelope is still signed on its own); each blob is one POST and one PUT, nothing is read back: 8
    requests per signed image over kept-alive connections. Only this process writes the repository, so
    none of the signer's concurrent-writer checks is needed.
    """
    import httpx

    from attestation import cosign
    from attestation.oci import layout

    repo = f"{prefix}-{time.time_ns() % 10**9}"
    base = f"http://{host}/v2/{repo}"
    layer = f"provgate bench layer {prefix}\n".encode()
    layer_desc = layout.Descriptor.of(layer, layout.OCI_LAYER)
    statement = provenance(sample, f"{host}/{repo}", f"sha256:{PLACEHOLDER}") if signer is not None else None
    template = json.dumps(statement) if statement is not None else None
    predicate_type = statement["predicateType"] if statement is not None else None
    notes = cosign.layer_annotations(signature="", predicate_type=predicate_type)
    sem = asyncio.Semaphore(concurrency)

    async with httpx.AsyncClient(
        timeout=60, limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    ) as client:

        async def blob(data: bytes) -> None:
            digest = layout.sha256_digest(data)
            start = await client.post(f"{base}/blobs/uploads/")
            if start.status_code != 202:
                raise RuntimeError(f"start upload of {digest}: HTTP {start.status_code} {start.text}")
            location = urllib.parse.urljoin(str(start.url), start.headers["location"])
            sep = "&" if "?" in location else "?"
            answer = await client.put(
                f"{location}{sep}digest={urllib.parse.quote(digest)}",
                content=data,
                headers={"Content-Type": "application/octet-stream"},
            )
            if answer.status_code != 201:
                raise RuntimeError(f"upload of {digest}: HTTP {answer.status_code} {answer.text}")

        async def manifest(reference: str, body: bytes) -> None:
            answer = await client.put(
                f"{base}/manifests/{reference}", content=body, headers={"Content-Type": layout.OCI_MANIFEST}
            )
            if answer.status_code != 201:
                raise RuntimeError(f"manifest {reference}: HTTP {answer.status_code} {answer.text}")

        await blob(layer)

        async def one(i: int) -> str:
            async with sem:
                config = layout.encode_json(
                    {
                        "architecture": "amd64",
                        "os": "linux",
                        "config": {"Labels": {"bench": f"{prefix} {i}"}},
                        "rootfs": {"type": "layers", "diff_ids": [layer_desc.digest]},
                    }
                )
                await blob(config)
                body = layout.encode_json(
                    {
                        "schemaVersion": 2,
                        "mediaType": layout.OCI_MANIFEST,
                        "config": layout.Descriptor.of(config, layout.OCI_CONFIG).to_dict(),
                        "layers": [layer_desc.to_dict()],
                    }
                )
                digest = layout.sha256_digest(body)
                await manifest(digest, body)
                if signer is not None and template is not None:
                    # The digest is in the subject and in the build task's IMAGE_DIGEST result.
                    statement = json.loads(template.replace(PLACEHOLDER, digest[7:]))
                    envelope = dsse.sign(intoto.serialize(statement), signer).to_json()
                    await blob(envelope)
                    att, att_config = layout.cosign_image(
                        [layout.Descriptor.of(envelope, dsse.MEDIA_TYPE, notes)]
                    )
                    await blob(att_config)
                    await manifest(layout.attachment_tag(digest, "att"), att)
                return f"{host}/{repo}@{digest}"

        return list(await asyncio.gather(*(one(i) for i in range(count))))


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
    vegeta: Path,
    url: str,
    ca: Path,
    bodies: list[bytes],
    rate: int,
    duration: float,
    work: Path,
    *,
    concurrency: int | None = None,
) -> dict[str, Any]:
    """vegeta at ``rate`` req/s for ``duration`` s over ``bodies`` (round robin; each once when there are
    several); its JSON report. ``rate`` 0: as fast as ``concurrency`` connections are answered, until the
    bodies run out."""
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
        f"-rate={rate}/s" if rate else "-rate=0",
        f"-duration={duration}s",
        f"-root-certs={ca}",
        "-timeout=15s",
        "-keepalive=true",
    ]
    if rate:
        attack_cmd.append("-max-workers=256")
    else:
        attack_cmd += [f"-workers={concurrency or 16}", f"-max-workers={concurrency or 16}"]
    if len(bodies) > 1:
        attack_cmd.append("-lazy")
    cpu_before = cpu_times()
    results = subprocess.run(attack_cmd, capture_output=True, check=True, timeout=duration + 600).stdout
    report = subprocess.run(
        [str(vegeta), "report", "-type=json"], input=results, capture_output=True, check=True, timeout=120
    ).stdout
    doc: dict[str, Any] = json.loads(report)
    doc["steal"] = steal_share(cpu_before, cpu_times())
    codes = doc.get("status_codes") or {}
    if len(bodies) > 1 and doc.get("errors") == ["no targets to attack"] and codes.get("0"):
        # Each vegeta worker that finds the targets used up records one empty result: not a request.
        extra = codes.pop("0")
        doc["requests"] -= extra
        doc["success"] = sum(n for code, n in codes.items() if code.startswith("2")) / max(1, doc["requests"])
    return doc


def cpu_times() -> list[int]:
    """The machine's CPU time so far, in ticks: the ``cpu`` line of /proc/stat (empty elsewhere)."""
    try:
        with open("/proc/stat") as f:
            return [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return []


def steal_share(before: list[int], after: list[int]) -> float | None:
    """The share of all CPUs' time the hypervisor gave to others between two :func:`cpu_times` (steal,
    the eighth field): time this virtual machine wanted to run and could not. None where not known."""
    if len(before) < 8 or len(after) < 8:
        return None
    total = sum(after[:8]) - sum(before[:8])
    return (after[7] - before[7]) / total if total > 0 else None


def row(what: str, report: dict[str, Any], rate: int | str, workers: int = 1) -> dict[str, Any]:
    lat = report["latencies"]
    return {
        "what": what,
        "workers": workers,
        "rate": rate,
        "n": report["requests"],
        "p50": lat["50th"] / 1e6,
        "p95": lat["95th"] / 1e6,
        "p99": lat["99th"] / 1e6,
        "ok": report["success"],
        "codes": report.get("status_codes", {}),
        "wall": report.get("duration", 0) / 1e9 + report.get("wait", 0) / 1e9,
        "steal": report.get("steal"),
    }


def _proc_kib(pid: int, field: str) -> int:
    path = Path(f"/proc/{pid}/status") if field == "VmRSS" else Path(f"/proc/{pid}/smaps_rollup")
    for line in path.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return -1


def rss_kb(pid: int) -> int:
    return _proc_kib(pid, "VmRSS")


def children(pid: int) -> list[int]:
    """The live child processes of ``pid``: the gate's workers when it runs more than one."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return sorted(found)


def memory(pid: int, workers: int) -> str:
    """RSS of each process that serves (the one process, or each worker), and the sum of their PSS (the
    pages the workers share with the parent counted once)."""
    serving = [pid] if workers == 1 else children(pid)
    rss = [rss_kb(p) / 1024 for p in serving]
    pss = sum(_proc_kib(p, "Pss") for p in ([pid, *serving] if workers > 1 else serving)) / 1024
    each = " + ".join(f"{r:.0f}" for r in rss)
    return f"RSS {each} MiB (PSS of all processes {pss:.0f} MiB)"


def metric(client: Any, url: str, name: str) -> float:
    text = client.get(f"{url}/metrics").text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + " ") or line.startswith(name + "{")
    )


def cpu_probe(repeat: int = 7) -> str:
    """How fast this machine runs the gate's kind of work right now: milliseconds of a fixed
    single-threaded workload (JSON encoded, hashed and parsed 20 times), best and median of ``repeat``.
    The same code gives different latencies on a busier or slower host; this tells such runs apart.
    The collector is off meanwhile, so what this process holds (10,000 images' names) does not count."""
    import gc
    import hashlib
    import statistics

    task = {"params": [{"name": "p", "value": "x" * 64}] * 8}
    doc = {"tasks": [{"name": f"task-{i}", **task} for i in range(50)]}
    times = []
    gc.disable()
    try:
        for _ in range(repeat):
            started = time.perf_counter()
            for _ in range(20):
                data = json.dumps(doc).encode()
                hashlib.sha256(data).digest()
                json.loads(data)
            times.append((time.perf_counter() - started) * 1000)
    finally:
        gc.enable()
    return f"CPU probe {min(times):.2f} ms best, {statistics.median(times):.2f} ms median (lower is faster)"


def settle(url: str, tls: Tls, *, quiet_ms: float = 5.0, timeout: float = 60.0) -> float:
    """Seconds until five ``GET /healthz`` in a row answer within ``quiet_ms`` (after a 2 s pause)."""
    import httpx

    t0 = time.monotonic()
    time.sleep(2.0)
    quiet = 0
    with httpx.Client(verify=tls.context(), timeout=30) as client:
        while quiet < 5 and time.monotonic() - t0 < timeout:
            started = time.perf_counter()
            client.get(f"{url}/healthz")
            quiet = quiet + 1 if (time.perf_counter() - started) * 1000 < quiet_ms else 0
            time.sleep(0.05)
    return time.monotonic() - t0


def bench_gate(
    args: argparse.Namespace,
    vegeta: Path,
    work: Path,
    tls: Tls,
    config: dict[str, Any],
    workers: int,
    images: dict[str, list[str]],
) -> tuple[list[dict[str, Any]], list[str]]:
    """Every row for one ``workers`` setting, against a fresh gate (empty caches)."""
    import httpx

    rows: list[dict[str, Any]] = []
    notes: list[str] = []
    directory = work / f"workers-{workers}"
    directory.mkdir()
    (directory / "gate.yaml").write_text(yaml.safe_dump({**config, "workers": workers}))
    gate = start_gate_process(directory / "gate.yaml", tls)
    w = f"[workers {workers}] "
    try:
        ca_path = tls.ca_file
        warm = images["warm"]
        with httpx.Client(verify=tls.context(), timeout=60) as client:
            for image in warm:  # every warm image decided once per worker: the rows below are cache hits
                for _ in range(4 * workers):
                    answer = client.post(f"{gate.url}/validate", content=review([image], "w"))
                    assert answer.json()["response"]["allowed"], answer.text
                    client.close()  # a new connection: another worker, likely
                    client = httpx.Client(verify=tls.context(), timeout=60)
            answer = client.post(f"{gate.url}/validate", content=review([images["check_allowed"][0]], "a"))
            assert answer.json()["response"]["allowed"], answer.text
            answer = client.post(f"{gate.url}/validate", content=review([images["check_denied"][0]], "d"))
            response = answer.json()["response"]
            assert not response["allowed"] and "[tasks." in response["status"]["message"], response
            client.close()
        for bodies, label in (([review([warm[0]], "u")], "1 image"), ([review(warm, "u")], "5 images")):
            report = attack(vegeta, gate.url, ca_path, bodies, 500, args.duration, directory)
            rows.append(row(f"cache hits, {label}", report, 500, workers))
        held = 500
        for rate in (1000, 1500, 2000, 3000, 4000):
            report = attack(
                vegeta, gate.url, ca_path, [review([warm[0]], "u")], rate, args.duration, directory
            )
            r = row("cache hits, 1 image", report, rate, workers)
            rows.append(r)
            if r["ok"] < 1.0 or r["p99"] > 100:
                notes.append(f"{w}cache hits at {rate} req/s: success {r['ok']:.3f}, p99 {r['p99']:.1f} ms")
                break
            held = rate
        notes.append(f"{w}highest cache-hit rate held without errors and p99 <= 100 ms: {held} req/s")
        # The ramp ends past saturation: the first looks are timed once what it left queued has drained.
        notes.append(f"{w}settled after the ramp in {settle(gate.url, tls):.1f} s; {cpu_probe()}")
        # First looks: each request a digest this gate has not seen (one body per image, read lazily).
        for kind in ("allowed", "denied"):
            chosen = images[f"first_{kind}"]
            label = "allowed" if kind == "allowed" else "denied (policy)"
            report = attack(
                vegeta,
                gate.url,
                ca_path,
                [review([i], "f") for i in chosen],
                args.first_rate,
                len(chosen) / args.first_rate,
                directory,
            )
            rows.append(row(f"first look, {label}, 1 image", report, args.first_rate, workers))
        distinct = images["distinct"]
        t0 = time.monotonic()
        report = attack(
            vegeta,
            gate.url,
            ca_path,
            [review([i], "x") for i in distinct],
            0,
            600,
            directory,
            concurrency=args.concurrency,
        )
        took = time.monotonic() - t0
        r = row(
            f"first look, {len(distinct)} distinct digests",
            report,
            f"max ({args.concurrency} conns)",
            workers,
        )
        rows.append(r)
        notes.append(
            f"{w}{len(distinct)} distinct digests, {args.concurrency} at a time, all decided in "
            f"{r['wall']:.1f} s (vegeta; {took:.1f} s with its start), success {report['success']:.3f}"
        )
        seen = 5 + 2 + 2 * len(images["first_allowed"]) + len(distinct)
        notes.append(f"{w}after {seen} distinct images: {memory(gate.proc.pid, workers)}")
        rest = images["rest"]
        if rest:
            report = attack(
                vegeta,
                gate.url,
                ca_path,
                [review([i], "r") for i in rest],
                0,
                3600,
                directory,
                concurrency=args.concurrency,
            )
            seen += len(rest)
            r = row(
                f"first look, {len(rest)} more distinct digests",
                report,
                f"max ({args.concurrency} conns)",
                workers,
            )
            rows.append(r)
            with httpx.Client(verify=tls.context(), timeout=60) as client:
                evictions = metric(client, gate.url, "provgate_verdict_cache_evictions_total")
                held_bytes = metric(client, gate.url, "provgate_verdict_cache_bytes")
            notes.append(
                f"{w}after {seen} distinct images ({r['wall']:.0f} s for the last {len(rest)}, success "
                f"{report['success']:.3f}): {memory(gate.proc.pid, workers)}; verdict cache "
                f"{held_bytes / 2**20:.1f} MiB held (all workers), {evictions:.0f} evictions"
            )
    finally:
        gate.stop()
    return rows, notes


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per fixed-rate vegeta attack")
    parser.add_argument("--first-rate", type=int, default=50, help="req/s of the first-look rows")
    parser.add_argument("--distinct", type=int, default=1000, help="digests of the time-to-decide-all row")
    parser.add_argument("--rss-images", type=int, default=10000, help="distinct images before RSS is read")
    parser.add_argument(
        "--concurrency", type=int, default=16, help="connections of the as-fast-as-answered rows"
    )
    parser.add_argument(
        "--workers", default="1,2", help="the gate's workers: settings to run, comma-separated"
    )
    parser.add_argument("--cache-max-bytes", default="64Mi", help="the gate's cache.maxBytes")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    settings = [int(w) for w in args.workers.split(",")]

    build_components("registry", "vegeta")
    vegeta = require_binary("vegeta")
    started_at = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_before = os.getloadavg()
    probe_before = cpu_probe()
    work = Path(tempfile.mkdtemp(prefix="provgate-bench-admission-"))
    reg_proc, registry = start_distribution(work / "registry")
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
            "cache": {"ttl": 3600, "maxBytes": args.cache_max_bytes, "tagTtl": 10},
        }
        first = int(args.first_rate * args.duration)
        rest = max(0, args.rss_images - 7 - 2 * first - args.distinct)
        t0 = time.monotonic()
        allowed = asyncio.run(
            push_many(
                registry.host, signer, 6 + first + args.distinct + rest, "tep0084-pipelinerun", "allowed"
            )
        )
        denied = asyncio.run(push_many(registry.host, signer, 1 + first, "tep0084-no-scan", "denied"))
        pushed = len(allowed) + len(denied)
        notes.append(f"pushed {pushed} signed images in {time.monotonic() - t0:.0f} s")
        images = {
            "warm": allowed[:5],
            "check_allowed": allowed[5:6],
            "check_denied": denied[:1],
            "first_allowed": allowed[6 : 6 + first],
            "first_denied": denied[1 : 1 + first],
            "distinct": allowed[6 + first : 6 + first + args.distinct],
            "rest": allowed[6 + first + args.distinct :],
        }
        for workers in settings:
            got_rows, got_notes = bench_gate(args, vegeta, work, tls, config, workers, images)
            rows += got_rows
            notes += got_notes
    finally:
        stop(reg_proc)
        shutil.rmtree(work, ignore_errors=True)  # 10,000 images are ~1.2 GB of registry storage
    load_after = os.getloadavg()
    print(
        f"# bench/admission.py, {started_at}; {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"load average before {'/'.join(f'{x:.2f}' for x in load_before)}, "
        f"after {'/'.join(f'{x:.2f}' for x in load_after)}"
    )
    print(f"# {' '.join(sys.argv)}")
    print(f"# before the run: {probe_before}")
    # steal: the share of the CPUs' time the hypervisor gave to other machines during the row.
    print("| workers | what | rate req/s | n | p50 ms | p95 ms | p99 ms | success | steal |")
    print("|--:|---|--:|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        steal = "?" if r["steal"] is None else f"{100 * r['steal']:.1f}%"
        print(
            f"| {r['workers']} | {r['what']} | {r['rate']} | {r['n']} | {r['p50']:.2f} | {r['p95']:.2f} | "
            f"{r['p99']:.2f} | {r['ok']:.3f} | {steal} |"
        )
    for note in notes:
        print(f"# {note}")


if __name__ == "__main__":
    main()
