"""``gate serve`` side by side with sigstore policy-controller v0.14.0's webhook, in one run.

    .venv/bin/python bench/policy_controller.py [--rate 50] [--requests 200] [--pods 150] [--workers auto]

Same images, same signatures, the same question on both sides. A distribution registry on loopback gets
images with the signer's SLSA v0.2 provenance of the bundled TEP-0084 PipelineRun (4 tasks) signed with
one cosign-format key in cosign's legacy ``.att`` layout (which policy-controller v0.14 reads); "denied"
images carry the provenance of the ``tep0084-no-scan`` run, whose pipeline lost its source-scan task:
its only scan runs after the build, so the bundled library denies it by ``tasks.task_order`` (scan
before build).

* provgate: ``gate serve`` with the bundled policy library, the key as trust, its default cache.
* policy-controller: ``cmd/webhook`` built from the Go module proxy (``tests/infra/build-components.sh
  policy-controller-webhook``), out of cluster against the same API server as
  ../shared/reference/kubernetes-testenv.md §V "Peers" describes, with one ClusterImagePolicy: the key
  as its authority, no transparency log, and an attestation policy in Rego (:data:`PEER_POLICY`) that
  asks what the library's core asks of these images: builder id, every required task present (by task
  definition name, with the library's alternatives: git-clone; a scanner; a builder), every task
  succeeded, and a scan task among the predecessors of every build task. ``no-match-policy: deny``, as
  the gate's ``images.noMatch``.

Rows, each measured for both, one system at a time (a row's two runs back to back):

* AdmissionReviews (a Deployment with 1 or 5 images) POSTed straight to each webhook (provgate
  ``/validate``, policy-controller ``/validations``) with vegeta at ``--rate`` req/s, keep-alive, TLS
  verified; every answer is decoded and counted as allowed/denied. "first look": every request images
  the gate has not decided before (policy-controller keeps no verdicts, so for it every request is a
  first look); "repeated": one image again and again (verdict-cache hits for the gate).
* Pod creates through the real kube-apiserver (raw HTTPS, one keep-alive connection, sequential,
  distinct names), in three namespaces: no webhook, provgate's validating + mutating webhooks,
  policy-controller's; the rounds interleave the three so load from elsewhere lands on all alike. The
  added latency is a row's p50 (p99) minus the no-webhook p50 (p99).
* ``cosign verify-attestation --policy`` (a process per request) with the same Rego in cosign's form.

Not a test: prints markdown tables (``--markdown`` changes nothing). policy-controller v0.14.0 listens
on ``*:8443``, ``*:8080``, ``*:9090`` and ``*:8008`` whatever its flags say: the run stops at once if
one is taken (e.g. by Tekton Chains from bench/signer_operator.py).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime
import json
import os
import platform
import random
import re
import secrets
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import yaml  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402

from attestation import dsse  # noqa: E402
from attestation.keys import PrivateKeySigner  # noqa: E402
from attestation.oci.registry import RegistryClient  # noqa: E402
from attestation.oci.writer import push_attestation_legacy, push_image  # noqa: E402
from bench.admission import cpu_probe, cpu_times, memory, provenance, review, steal_share  # noqa: E402
from bench.gate import version_of  # noqa: E402
from gate.serve.config import auto_workers  # noqa: E402
from tests.infra import build_components, require_binary, stop  # noqa: E402
from tests.infra.kube import (  # noqa: E402
    KubeCluster,
    running_cluster,
    wait_until,
    webhook_configuration,
)
from tests.infra.registry import start_distribution  # noqa: E402
from tests.infra.tls import make_ca, make_server_cert  # noqa: E402
from tests.serve.conftest import RULE_DATA, Tls, start_gate_process  # noqa: E402

PEER_VERSION = "v0.14.0"
PEER_MODULE = "github.com/sigstore/policy-controller"
PEER_NAMESPACE = "cosign-system"
PEER_PORT = 8443
JSON = {"Content-Type": "application/json"}  # knative refuses a body without it
SLSA02 = "https://slsa.dev/provenance/v0.2"

# What both sides decide on these images, in policy-controller's form (cosign's Rego entry point
# data.sigstore.isCompliant, Rego v0, over the in-toto statement). The bundled library's rules this
# mirrors: builder.builder_id_accepted, tasks.required_tasks_found (the same alternatives as
# policies/rule_data.yml, matched by task definition name: the tekton.dev/task label or the bundle
# reference's name), tasks.successful_pipeline_tasks and tasks.task_order (scan before build, over the
# runAfter edges only: the library also follows result references, which these samples do not add).
# The library checks more (subject, materials, trusted task bundles, ...); those pass for both image
# sets here, so the outcome is the same on both sides and a denial comes from the same check.
_REGO_BODY = """
tasks := input.predicate.buildConfig.tasks

required := [["git-clone"], ["trivy-scanner", "source-scan", "sast-scan"], ["buildah", "kaniko", "build"]]
scanners := {"trivy-scanner", "source-scan", "sast-scan"}
builders := {"buildah", "kaniko", "build"}

# [pipeline task name, task definition name]
defines[[name, def]] {
  t := tasks[_]
  name := t.name
  def := t.invocation.environment.labels["tekton.dev/task"]
}

defines[[name, def]] {
  t := tasks[_]
  name := t.name
  p := t.ref.params[_]
  p.name == "name"
  def := p.value
}

missing[i] {
  alternatives := required[i]
  count({a | a := alternatives[_]; defines[[_, a]]}) == 0
}

failed[name] {
  t := tasks[_]
  t.status != "Succeeded"
  name := t.name
}

successors[name] = {s | t := tasks[_]; t.after[_] == name; s := t.name} {
  name := tasks[_].name
}

# a build task with no scan task among its predecessors (runAfter edges)
unordered[name] {
  defines[[name, def]]
  builders[def]
  before := {n | defines[[n, d]]; scanners[d]} - {name}
  not graph.reachable(successors, before)[name]
}

compliant {
  input.predicate.builder.id == "https://tekton.dev/chains/v2"
  count(missing) == 0
  count(failed) == 0
  count(unordered) == 0
}
"""
PEER_POLICY = (
    "package sigstore\n\ndefault isCompliant = false\n" + _REGO_BODY + "\nisCompliant { compliant }\n"
)
COSIGN_POLICY = "package signature\n\ndefault allow = false\n" + _REGO_BODY + "\nallow { compliant }\n"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- policy-controller --------------------------------------------------------------------------------


def peer_module_dir() -> Path:
    """The policy-controller module (its config/ has the CRDs) from the Go module cache."""
    done = subprocess.run(
        ["go", "mod", "download", "-json", f"{PEER_MODULE}@{PEER_VERSION}"],
        capture_output=True,
        text=True,
        check=True,
        cwd=tempfile.gettempdir(),
        env={**os.environ, "GOFLAGS": "-mod=mod", "GOTOOLCHAIN": "local"},
    )
    return Path(json.loads(done.stdout)["Dir"])


def peer_crds(module: Path, url: str, ca_pem: bytes) -> list[dict[str, Any]]:
    """Its CRDs as released, with the ClusterImagePolicy conversion webhook called at ``url``."""
    crds = []
    for name in ("300-clusterimagepolicy.yaml", "300-trustroot.yaml"):
        for doc in yaml.safe_load_all((module / "config" / name).read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            conversion = doc["spec"].get("conversion") or {}
            if conversion.get("strategy") == "Webhook":
                conversion["webhook"]["clientConfig"] = {
                    "url": f"{url}/resource-conversion",
                    "caBundle": base64.b64encode(ca_pem).decode(),
                }
            crds.append(doc)
    return crds


def install_cluster_crds(kube: KubeCluster, crds: list[dict[str, Any]]) -> None:
    """Create cluster-scoped CRDs and wait until each is listed at every served version (a fresh CRD
    can answer 404 for a couple of seconds after it is Established)."""
    from kubernetes import client

    custom = client.CustomObjectsApi(kube.api)
    for crd in crds:
        custom.create_cluster_custom_object(
            "apiextensions.k8s.io", "v1", "customresourcedefinitions", body=crd
        )
    for crd in crds:
        group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
        for version in (v["name"] for v in crd["spec"]["versions"] if v.get("served")):
            wait_until(
                lambda g=group, v=version, p=plural: custom.list_cluster_custom_object(g, v, p) is not None,
                what=f"{plural}.{group}/{version} served",
                timeout=60,
            )


def cluster_image_policy(public_key_pem: str) -> dict[str, Any]:
    return {
        "apiVersion": "policy.sigstore.dev/v1alpha1",
        "kind": "ClusterImagePolicy",
        "metadata": {"name": "provenance"},
        "spec": {
            "images": [{"glob": "**"}],
            "authorities": [
                {
                    "name": "signer-key",
                    "key": {"data": public_key_pem},
                    # no ctlog: the signatures are not in a transparency log (neither side asks for one)
                    "attestations": [
                        {
                            "name": "tekton-provenance",
                            "predicateType": SLSA02,
                            "policy": {"type": "rego", "data": PEER_POLICY},
                        }
                    ],
                }
            ],
        },
    }


@dataclass
class Peer:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path


@contextlib.contextmanager
def policy_controller(kube: KubeCluster, work: Path, tls: Tls, public_key_pem: str) -> Iterator[Peer]:
    """policy-controller's webhook out of cluster, its CRDs, ConfigMaps, serving Secret and one
    ClusterImagePolicy; ready once the policy is compiled into ``config-image-policies``."""
    from kubernetes import client

    binary = require_binary("policy-controller-webhook")
    module = peer_module_dir()
    core = client.CoreV1Api(kube.api)
    # v0.14.0 puts its options into the context before it parses --secure-port, so the flag changes
    # nothing: it serves on *:8443, and its probe, metrics and profiling listeners on *:8080, *:9090,
    # *:8008.
    port = PEER_PORT
    for taken in (PEER_PORT, 8080, 9090, 8008):
        with socket.socket() as probe:
            try:
                probe.bind(("0.0.0.0", taken))
            except OSError:
                raise SystemExit(f"policy-controller needs port {taken}, which is in use") from None
    url = f"https://127.0.0.1:{port}"
    install_cluster_crds(kube, peer_crds(module, url, tls.ca_pem))
    core.create_namespace({"metadata": {"name": PEER_NAMESPACE}})
    configmaps = {
        "config-policy-controller": {"no-match-policy": "deny"},
        "config-image-policies": {},
        "config-sigstore-keys": {},
        "config-leader-election": {},
        "config-logging": {},
        "config-observability": {},
    }
    for name, data in configmaps.items():
        core.create_namespaced_config_map(PEER_NAMESPACE, {"metadata": {"name": name}, "data": data})
    # knative keeps a serving certificate valid for more than a day; ours has the loopback address the
    # API server and vegeta call.
    core.create_namespaced_secret(
        PEER_NAMESPACE,
        {
            "metadata": {"name": "webhook-certs"},
            "data": {
                "server-cert.pem": base64.b64encode(tls.cert.read_bytes()).decode(),
                "server-key.pem": base64.b64encode(tls.key.read_bytes()).decode(),
                "ca-cert.pem": base64.b64encode(tls.ca_pem).decode(),
            },
        },
    )
    log_file = work / "policy-controller.log"
    env = {
        **os.environ,
        "KUBECONFIG": str(kube.kubeconfig),  # its --kubeconfig flag is parsed too late
        "SYSTEM_NAMESPACE": PEER_NAMESPACE,
        "CONFIG_LOGGING_NAME": "config-logging",
        "CONFIG_OBSERVABILITY_NAME": "config-observability",
        "METRICS_DOMAIN": "sigstore.dev/policy",
        "WEBHOOK_NAME": "webhook",
    }
    with open(log_file, "wb") as out:
        proc = subprocess.Popen(
            [str(binary), "--disable-tuf"],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=work,
        )
    try:
        ctx = tls.context()

        def serving() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"policy-controller exited {proc.returncode}:\n{tail(log_file)}")
            try:
                httpx.get(f"{url}/", verify=ctx, timeout=2)
                return True
            except httpx.HTTPError:
                return False

        wait_until(serving, what="policy-controller serving HTTPS", timeout=120, retry_on=())
        # Its own webhook configurations, one URL entry each, named so its reconcilers leave them alone.
        admission = client.AdmissionregistrationV1Api(kube.api)
        cip_rules = [
            {
                "apiGroups": ["policy.sigstore.dev"],
                "apiVersions": ["*"],
                "operations": ["CREATE", "UPDATE"],
                "resources": ["clusterimagepolicies", "trustroots"],
                "scope": "*",
            }
        ]
        admission.create_mutating_webhook_configuration(
            webhook_configuration(
                "mutating",
                "url.defaulting.clusterimagepolicy",
                f"{url}/defaulting",
                tls.ca_pem,
                rules=cip_rules,
            )
        )
        admission.create_validating_webhook_configuration(
            webhook_configuration(
                "validating",
                "url.validating.clusterimagepolicy",
                f"{url}/validating",
                tls.ca_pem,
                rules=cip_rules,
            )
        )
        custom = client.CustomObjectsApi(kube.api)

        def created() -> bool:
            custom.create_cluster_custom_object(
                "policy.sigstore.dev",
                "v1alpha1",
                "clusterimagepolicies",
                cluster_image_policy(public_key_pem),
            )
            return True

        wait_until(created, what="the ClusterImagePolicy created", timeout=60)

        def compiled() -> bool:
            data = core.read_namespaced_config_map("config-image-policies", PEER_NAMESPACE).data or {}
            return "provenance" in data

        wait_until(compiled, what="policy-controller compiling the ClusterImagePolicy", timeout=60)
        yield Peer(proc, url, log_file)
    finally:
        proc.kill()  # SIGTERM takes ~45 s (knative's drain); nothing of it is kept
        proc.wait()


def tail(path: Path, size: int = 3000) -> str:
    try:
        return path.read_bytes()[-size:].decode("utf-8", "replace")
    except OSError:
        return "(no log)"


def long_lived_server_cert(directory: Path, ca_key: Any, ca_cert: Any) -> tuple[Path, Path]:
    """A loopback serving certificate valid for a week: knative replaces one that expires within a day."""
    return make_server_cert(directory, ca_key, ca_cert, days=7)


# -- images --------------------------------------------------------------------------------------------

_NAME, _DIGEST = "127.0.0.1:1/provgate-bench-placeholder", "sha256:" + "0" * 64


def push_many(host: str, signer: PrivateKeySigner, count: int, sample: str, prefix: str) -> list[str]:
    """``count`` distinct images (pinned references) in ``host/prefix``, each with its own provenance
    signed by ``signer`` in cosign's ``.att`` layout. The statement is the signer's for the sample, made
    once with a placeholder image and the image's name and digest put in (the signer parses the whole
    sample for each statement: 0.2 s of CPU, minutes for thousands of images)."""
    template = json.dumps(provenance(sample, _NAME, _DIGEST), separators=(",", ":"))
    if _NAME not in template or _DIGEST[7:] not in template:
        raise RuntimeError(f"the {sample} statement does not name its image")

    async def push() -> list[str]:
        sem = asyncio.Semaphore(16)
        async with RegistryClient() as client:

            async def one(i: int) -> str:
                async with sem:
                    deadline = time.monotonic() + 120
                    layer = f"{prefix} {i} {time.time_ns()}".encode()
                    image = await push_image(client, f"{host}/{prefix}", [layer], deadline=deadline)
                    statement = template.replace(_NAME, image.reference.name).replace(
                        _DIGEST[7:], image.digest[7:]
                    )
                    envelope = dsse.sign(statement.encode(), signer)
                    await push_attestation_legacy(client, image, envelope.to_json(), deadline=deadline)
                    return image.pinned

            return list(await asyncio.gather(*(one(i) for i in range(count))))

    return asyncio.run(push())


# -- load -----------------------------------------------------------------------------------------------


@dataclass
class Row:
    what: str
    system: str
    rate: int
    n: int
    p50: float
    p95: float
    p99: float
    success: float
    answers: str
    extra: dict[str, Any] = field(default_factory=dict)
    # The share of the CPUs' time the hypervisor gave to other machines during the row (None: not known).
    steal: float | None = None


def attack(
    vegeta: Path, url: str, ca: Path, bodies: list[bytes], rate: int, work: Path
) -> tuple[dict[str, Any], dict[str, int]]:
    """Each body once, in order, at ``rate`` req/s; vegeta's JSON report and the decoded answers."""
    targets = work / "targets.jsonl"
    with targets.open("w") as f:
        for body in bodies:
            target = {
                "method": "POST",
                "url": url,
                "body": base64.b64encode(body).decode(),
                "header": {"Content-Type": ["application/json"]},
            }
            f.write(json.dumps(target) + "\n")
    duration = len(bodies) / rate
    results = subprocess.run(
        [
            str(vegeta),
            "attack",
            "-format=json",
            f"-targets={targets}",
            f"-rate={rate}/s",
            f"-duration={duration:.3f}s",
            f"-root-certs={ca}",
            "-timeout=30s",
            "-keepalive=true",
            "-max-workers=256",
            "-lazy",
        ],
        capture_output=True,
        check=True,
        timeout=duration + 180,
    ).stdout
    report = json.loads(
        subprocess.run(
            [str(vegeta), "report", "-type=json"], input=results, capture_output=True, check=True
        ).stdout
    )
    encoded = subprocess.run(
        [str(vegeta), "encode", "-to=json"], input=results, capture_output=True, check=True
    ).stdout
    answers: dict[str, int] = {}
    for line in encoded.splitlines():
        result = json.loads(line)
        try:
            response = json.loads(base64.b64decode(result.get("body") or b""))["response"]
            key = "allowed" if response["allowed"] else "denied"
        except (ValueError, KeyError, TypeError):
            key = f"HTTP {result.get('code')}"
        answers[key] = answers.get(key, 0) + 1
    return report, answers


def row_from(what: str, system: str, rate: int, report: dict[str, Any], answers: dict[str, int]) -> Row:
    lat = report["latencies"]
    return Row(
        what=what,
        system=system,
        rate=rate,
        n=report["requests"],
        p50=lat["50th"] / 1e6,
        p95=lat["95th"] / 1e6,
        p99=lat["99th"] / 1e6,
        success=report["success"],
        answers=", ".join(f"{v} {k}" for k, v in sorted(answers.items())),
    )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))]


def pod_body(name: str, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": image}]},
    }


def pod_creates(
    kube: KubeCluster, namespaces: dict[str, str], images: list[str], expect_allowed: bool
) -> dict[str, list[float]]:
    """For each image in turn, one Pod create in every namespace (system -> namespace), in a shuffled
    order per round; the wall time of each create (ms). A create that does not end as expected stops
    the run."""
    times: dict[str, list[float]] = {s: [] for s in namespaces}
    context = ssl.create_default_context(cafile=str(kube.ca_file))
    headers = {"Authorization": f"Bearer {kube.admin_token}"}
    with httpx.Client(base_url=kube.url, verify=context, headers=headers, timeout=60) as client:
        client.get("/readyz")
        systems = list(namespaces)
        for image in images:
            random.shuffle(systems)
            for system in systems:
                ns = namespaces[system]
                body = json.dumps(pod_body(f"p-{secrets.token_hex(6)}", image)).encode()
                t0 = time.perf_counter()
                response = client.post(
                    f"/api/v1/namespaces/{ns}/pods",
                    content=body,
                    headers={"Content-Type": "application/json"},
                )
                elapsed = (time.perf_counter() - t0) * 1000
                allowed = response.status_code == 201
                if system != "none" and allowed != expect_allowed:
                    raise RuntimeError(
                        f"{system}: Pod create of {image}: {response.status_code} {response.text}"
                    )
                if system == "none" and not allowed:
                    raise RuntimeError(
                        f"no webhook: Pod create failed: {response.status_code} {response.text}"
                    )
                times[system].append(elapsed)
    return times


def cosign_runs(cosign: Path, pub: Path, policy: Path, image: str, runs: int) -> tuple[list[float], int, str]:
    cmd = [
        str(cosign),
        "verify-attestation",
        "--key",
        str(pub),
        "--insecure-ignore-tlog=true",
        "--type",
        "slsaprovenance02",
        "--policy",
        str(policy),
        "--new-bundle-format=false",
        "--allow-http-registry",
        image,
    ]
    times: list[float] = []
    code, said = 0, ""
    for _ in range(runs + 1):  # the first: warm-up
        t0 = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, timeout=120)
        times.append((time.perf_counter() - t0) * 1000)
        code = done.returncode
        said = (done.stderr.decode("utf-8", "replace").strip().splitlines() or [""])[-1]
    return times[1:], code, said


def pinned(component: str) -> str:
    """The version tests/infra/build-components.sh builds of ``component`` (vegeta reports none)."""
    script = (REPO / "tests" / "infra" / "build-components.sh").read_text()
    found = re.search(rf"^\s*\[{re.escape(component)}\]=(\S+)", script, re.MULTILINE)
    return found.group(1) if found else "?"


# -- main -----------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=int, default=50, help="req/s for the AdmissionReview rows")
    parser.add_argument("--requests", type=int, default=200, help="AdmissionReviews per row")
    parser.add_argument("--pods", type=int, default=150, help="Pod creates per system per row")
    parser.add_argument("--cosign-runs", type=int, default=20)
    parser.add_argument(
        "--workers",
        type=lambda v: v if v == "auto" else int(v),
        default="auto",
        help="gate serve's workers: (processes); auto, its default, is one per usable CPU, as "
        "policy-controller's GOMAXPROCS is",
    )
    parser.add_argument(
        "--markdown", action="store_true", help="accepted like the other benches; always markdown"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args()

    build_components(
        "opa", "registry", "cosign", "etcd", "kube-apiserver", "vegeta", "policy-controller-webhook"
    )
    vegeta, cosign = require_binary("vegeta"), require_binary("cosign")
    started_at = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="provgate-bench-peer-"))
    rows: list[Row] = []
    notes: list[str] = [f"before the run: {cpu_probe()}"]
    reg_proc, registry = start_distribution(work / "registry")
    gate = None
    kube_version = "?"
    try:
        key = ec.generate_private_key(ec.SECP256R1())
        signer = PrivateKeySigner(key)
        pub_pem = signer.public_key.to_pem()
        (work / "cosign.pub").write_bytes(pub_pem)
        (work / "rule_data.yaml").write_text(yaml.safe_dump(RULE_DATA))
        (work / "cosign-policy.rego").write_text(COSIGN_POLICY)
        ca, ca_key, ca_cert = make_ca(work / "ca", "provgate bench webhooks CA")
        cert, cert_key = long_lived_server_cert(work, ca_key, ca_cert)
        tls = Tls(ca, cert, cert_key)

        n, p = args.requests, args.pods
        t0 = time.monotonic()
        good, bad = "tep0084-pipelinerun", "tep0084-no-scan"
        host = registry.host
        repeated_allowed = push_many(host, signer, 5, good, "repeated")
        repeated_denied = push_many(host, signer, 1, bad, "repeated-denied")
        first_allowed = push_many(host, signer, n, good, "first")
        first_denied = push_many(host, signer, n, bad, "first-denied")
        first_five = push_many(host, signer, 5 * 2 * n, good, "first-five")
        pod_allowed = push_many(host, signer, p, good, "pod")
        pod_denied = push_many(host, signer, p, bad, "pod-denied")
        total = 6 + 2 * n + 5 * 2 * n + 2 * p
        notes.append(f"pushed {total} signed images in {time.monotonic() - t0:.0f} s")
        log(notes[-1])

        config = {
            "listen": "127.0.0.1:0",
            "tls": {"certFile": str(cert), "keyFile": str(cert_key)},
            "trust": {"keys": [str(work / "cosign.pub")]},
            "data": [str(work / "rule_data.yaml")],
            "workers": args.workers,
        }
        (work / "gate.yaml").write_text(yaml.safe_dump(config))

        with running_cluster(work / "kube", crds=False) as kube, contextlib.ExitStack() as stack:
            from kubernetes import client
            from kubernetes.client.exceptions import ApiException

            core = client.CoreV1Api(kube.api)
            namespaces = {"none": "pods-none", "provgate": "pods-provgate", "policy-controller": "pods-peer"}
            for ns in [*namespaces.values(), "bench"]:
                core.create_namespace({"metadata": {"name": ns}})
                # As a controller-manager would make it: policy-controller reads the Pod's
                # ServiceAccount for pull secrets on every admission.
                core.create_namespaced_service_account(ns, {"metadata": {"name": "default"}})
            gate = start_gate_process(work / "gate.yaml", tls)
            log(f"gate serve at {gate.url}")
            peer = stack.enter_context(policy_controller(kube, work, tls, pub_pem.decode()))
            log(f"policy-controller at {peer.url}")
            admission = client.AdmissionregistrationV1Api(kube.api)
            endpoints = {
                "provgate": (gate.url, "/mutate", "/validate"),
                "policy-controller": (peer.url, "/mutations", "/validations"),
            }
            for system, (url, mutate, validate) in endpoints.items():
                ns = namespaces[system]
                admission.create_mutating_webhook_configuration(
                    webhook_configuration(
                        "mutating", f"url.m.{system}", url + mutate, tls.ca_pem, namespaces=[ns]
                    )
                )
                admission.create_validating_webhook_configuration(
                    webhook_configuration(
                        "validating", f"url.v.{system}", url + validate, tls.ca_pem, namespaces=[ns]
                    )
                )

            # Both answer both kinds of image as expected, straight and through the API server.
            direct = {
                "provgate": f"{gate.url}/validate?timeout=10s",
                "policy-controller": f"{peer.url}/validations",
            }
            with httpx.Client(verify=tls.context(), timeout=60) as http:
                for system, url in direct.items():
                    for image, allowed in ((repeated_allowed[0], True), (repeated_denied[0], False)):
                        reply = http.post(url, content=review([image], "probe"), headers=JSON)
                        if reply.status_code != 200:
                            raise RuntimeError(f"{system}: HTTP {reply.status_code}: {reply.text[:500]}")
                        answer = reply.json()["response"]
                        if answer["allowed"] != allowed:
                            raise RuntimeError(f"{system} answered {answer} for {image}")
                        if not allowed:
                            notes.append(f"{system} denial: {answer['status']['message'][:400]!r}")

            def probe(system: str) -> bool:
                ns = namespaces[system]
                try:
                    core.create_namespaced_pod(ns, pod_body("probe", repeated_denied[0]), dry_run="All")
                except ApiException as err:
                    return "denied" in str(err.body)
                return False

            for system in endpoints:
                wait_until(lambda s=system: probe(s), what=f"{system}'s webhooks through the API server")

            # -- AdmissionReviews straight to each webhook --
            rate, slow = args.rate, max(1, args.rate // 5)
            n_slow = n
            # (what, req/s, bodies): the 5-image first look also at a fifth of the rate, the same number
            # of images per second as the 1-image rows; as many requests as every other row, so its p99
            # is not merely its slowest answer
            cases: list[tuple[str, int, list[bytes]]] = [
                ("first look, allowed, 1 image", rate, [review([i], "f") for i in first_allowed]),
                ("first look, denied, 1 image", rate, [review([i], "f") for i in first_denied]),
                (
                    "first look, allowed, 5 images",
                    slow,
                    [review(first_five[5 * k : 5 * k + 5], "f") for k in range(n_slow)],
                ),
                (
                    "first look, allowed, 5 images",
                    rate,
                    [review(first_five[5 * k : 5 * k + 5], "f") for k in range(n_slow, n_slow + n)],
                ),
                ("repeated, allowed, 1 image", rate, [review([repeated_allowed[0]], "r")] * n),
                ("repeated, denied, 1 image", rate, [review([repeated_denied[0]], "r")] * n),
                ("repeated, allowed, 5 images", rate, [review(repeated_allowed, "r")] * n),
            ]
            notes.append(f"before the AdmissionReview rows: {cpu_probe()}")
            for what, at, bodies in cases:
                for system in ("policy-controller", "provgate"):
                    log(f"{what} at {at}/s: {system}")
                    before = cpu_times()
                    report, answers = attack(vegeta, direct[system], tls.ca_file, bodies, at, work)
                    got = row_from(f"{what}, {at} req/s", system, at, report, answers)
                    got.steal = steal_share(before, cpu_times())
                    rows.append(got)
                    time.sleep(1)

            # -- Pod creates through the API server --
            pod_rows = [
                ("Pod create, first look, allowed", pod_allowed, True),
                ("Pod create, repeated image, allowed", [repeated_allowed[1]] * p, True),
                ("Pod create, first look, denied", pod_denied, False),
            ]
            for what, images, expect in pod_rows:
                log(what)
                before = cpu_times()
                times = pod_creates(kube, namespaces, images, expect)
                steal = steal_share(before, cpu_times())  # the three namespaces' creates are interleaved
                for system, values in times.items():
                    rows.append(
                        Row(
                            what=what,
                            system=system if system != "none" else "no webhook",
                            rate=0,
                            n=len(values),
                            p50=statistics.median(values),
                            p95=pct(values, 0.95),
                            p99=pct(values, 0.99),
                            success=1.0,
                            answers="201 Created" if expect or system == "none" else "denied",
                            steal=steal,
                        )
                    )
            kube_version = version_of(require_binary("kube-apiserver"), "--version")

        # -- cosign, a process per request --
        for what, image, expect in (
            ("cosign verify-attestation --policy, allowed", repeated_allowed[2], 0),
            ("cosign verify-attestation --policy, denied", repeated_denied[0], 1),
        ):
            times, code, said = cosign_runs(
                cosign, work / "cosign.pub", work / "cosign-policy.rego", image, args.cosign_runs
            )
            if (code == 0) != (expect == 0):
                raise RuntimeError(f"{what}: cosign exited {code}: {said}")
            if code:
                notes.append(f"cosign denial: {said[:300]!r}")
            rows.append(
                Row(
                    what,
                    "cosign",
                    0,
                    len(times),
                    statistics.median(times),
                    pct(times, 0.95),
                    pct(times, 0.99),
                    1.0,
                    f"exit {code}",
                )
            )
        notes.append(f"gate at the end: {memory(gate.proc.pid, serving_workers(args.workers))}")
    except BaseException:
        log(f"failed; the logs of policy-controller and the API server are kept in {work}")
        raise
    finally:
        if gate is not None:
            gate.stop()
        stop(reg_proc)
    load_after = os.getloadavg()
    print_report(rows, notes, args, started_at, load_before, load_after, kube_version, cosign, work)
    if not args.keep:
        import shutil

        shutil.rmtree(work, ignore_errors=True)


def serving_workers(workers: int | str) -> int:
    """The processes ``gate serve`` runs for ``--workers`` (auto as the server resolves it)."""
    return auto_workers() if workers == "auto" else int(workers)


def print_report(
    rows: list[Row],
    notes: list[str],
    args: argparse.Namespace,
    started_at: str,
    before: tuple[float, float, float],
    after: tuple[float, float, float],
    kube_version: str,
    cosign: Path,
    work: Path,
) -> None:
    def loads(values: tuple[float, float, float]) -> str:
        return "/".join(f"{x:.2f}" for x in values)

    print(
        f"# bench/policy_controller.py, {started_at}; {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; load average before {loads(before)}, after {loads(after)}"
    )
    print(
        f"# policy-controller {PEER_VERSION} (cmd/webhook), kube-apiserver {kube_version}, "
        f"cosign {version_of(cosign, 'version')}, vegeta {pinned('vegeta')}"
    )
    print(
        f"# --rate {args.rate} --requests {args.requests} --pods {args.pods} --cosign-runs {args.cosign_runs}"
        f" --workers {args.workers}"
        + (f" (one per usable CPU: {auto_workers()} here)" if args.workers == "auto" else "")
    )
    print()
    # steal: the share of the CPUs' time the hypervisor gave to other machines during the row.
    print(
        "| what | system | n | p50 ms | p95 ms | p99 ms | answers | steal "
        "| policy-controller p50 / provgate p50 |"
    )
    print("|---|---|--:|--:|--:|--:|---|--:|--:|")
    by = {(r.what, r.system): r for r in rows}
    baseline = {r.what: r for r in rows if r.system == "no webhook"}
    for r in rows:
        ratio = ""
        if r.system == "provgate" and (r.what, "policy-controller") in by:
            peer = by[(r.what, "policy-controller")]
            if r.what in baseline:  # through the API server: the added latency
                base = baseline[r.what].p50
                added_pg, added_pc = r.p50 - base, peer.p50 - base
                ratio = f"{added_pc / added_pg:.1f}x (added)" if added_pg > 0 else "n/a"
            else:
                ratio = f"{peer.p50 / r.p50:.1f}x"
        steal = "" if r.steal is None else f"{100 * r.steal:.1f}%"
        print(
            f"| {r.what} | {r.system} | {r.n} | {r.p50:.2f} | {r.p95:.2f} | {r.p99:.2f} | {r.answers} "
            f"| {steal} | {ratio} |"
        )
    print()
    print("Added by the webhooks (Pod create p50 / p99 minus the no-webhook namespace's):")
    print()
    print("| what | provgate added p50 / p99 ms | policy-controller added p50 / p99 ms |")
    print("|---|--:|--:|")
    for what, base in baseline.items():
        pg, pc = by[(what, "provgate")], by[(what, "policy-controller")]
        print(
            f"| {what} | {pg.p50 - base.p50:.2f} / {pg.p99 - base.p99:.2f} | "
            f"{pc.p50 - base.p50:.2f} / {pc.p99 - base.p99:.2f} |"
        )
    print()
    for note in notes:
        print(f"# {note}")
    if args.keep:
        print(f"# logs in {work}")


if __name__ == "__main__":
    main()
