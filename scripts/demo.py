"""provgate end to end on embedded defaults (README command 1).

Starts a local OCI registry from the component cache, pushes three small images, signs the
provenance of the bundled TEP-0084 PipelineRun (and of two tampered variants) with a fresh cosign key,
pushes it to the registry, and asks the gate about each image with the bundled policy library. Then it
starts ``gate serve`` on loopback (HTTPS with a throwaway certificate) and asks it the same questions as
a release tool (``POST /v1/verify``) and as the API server (``POST /validate``, an AdmissionReview).
Every step prints the command a user would type. Exits non-zero if any verdict is not the expected one.
The registry and the server are stopped on every way out (an error, Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

# The demo starts the registry with the test infrastructure's launcher (tests/infra), so the repository
# root must be importable when this file is run as a script.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attestation.oci.registry import RegistryClient
from attestation.oci.writer import push_image
from signer import samples
from tests.infra import stop
from tests.infra.registry import start_distribution
from tests.infra.tls import make_ca, make_server_cert

VENV_BIN = Path(sys.executable).parent
BOLD, DIM, GREEN, RED, RESET = (
    ("\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[0m") if sys.stdout.isatty() else ("",) * 5
)

SOURCE_REPO = "https://github.com/example/demo-app"  # the git-clone source of the bundled samples
CASES = [
    # (sample, tag, what it shows, expected gate exit code)
    ("tep0084-pipelinerun", "v1", "the TEP-0084 pipeline as designed: clone, scan, build", 0),
    ("tep0084-injected-task", "injected", "someone added a task 'inject-miner' from an untrusted bundle", 1),
    ("tep0084-no-scan", "no-scan", "someone removed the vulnerability scan before the build", 1),
]


def step(text: str) -> None:
    print(f"\n{BOLD}== {text}{RESET}", flush=True)


def run(cmd: list[str], *, env: dict[str, str] | None = None, show_output: bool = True) -> int:
    shown = " ".join(shlex.quote(Path(c).name if i == 0 else c) for i, c in enumerate(cmd))
    print(f"{DIM}$ {shown}{RESET}", flush=True)
    proc = subprocess.run(cmd, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    if show_output:
        for stream in (proc.stdout, proc.stderr):
            if stream.strip():
                print("  " + stream.rstrip().replace("\n", "\n  "), flush=True)
    return proc.returncode


async def push_images(host: str) -> dict[str, str]:
    """Push one tiny image per case; distinct layers give distinct digests."""
    images = {}
    async with RegistryClient() as client:
        for sample, tag, _, _ in CASES:
            deadline = time.monotonic() + 30
            image = await push_image(
                client,
                f"{host}/demo/app",
                [f"provgate demo layer for {sample}\n".encode()],
                tag=tag,
                deadline=deadline,
            )
            images[tag] = image.reference.digest
    return images


SERVE_START_TIMEOUT = 60.0
WEBHOOK = "validate.gate.provgate.dev"  # its name in config/gate


class GateServer:
    """``gate serve`` in a child process, stopped by :meth:`stop` (and killed with this process: Linux's
    parent-death signal covers a demo killed with SIGKILL)."""

    def __init__(self, config: Path) -> None:
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "gate"), "serve", "--config", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent,
        )
        self._url: list[str] = []
        self._terminated = False
        self._listening = threading.Event()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            self.lines.append(line)
            found = re.search(r"listening on (https://\S+)", line)
            if found and not self._url:
                self._url.append(found.group(1))
                self._listening.set()
        self._listening.set()  # exited

    def url(self) -> str:
        if not self._listening.wait(SERVE_START_TIMEOUT) or not self._url:
            raise RuntimeError("gate serve did not start:\n  " + "\n  ".join(self.lines[-10:]))
        return self._url[0]

    def terminate(self) -> None:
        # Once: a second SIGTERM would make it exit at once instead of finishing requests in flight.
        if self.proc.poll() is None and not self._terminated:
            self._terminated = True
            self.proc.send_signal(signal.SIGTERM)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: stop() on every exit path still applies
        pass


def post(url: str, body: Any, ca_file: Path) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    context = ssl.create_default_context(cafile=str(ca_file))
    try:
        with urllib.request.urlopen(request, context=context, timeout=30) as answer:
            return json.loads(answer.read())
    except urllib.error.HTTPError as err:
        raise RuntimeError(f"POST {url}: HTTP {err.code}: {err.read()[:300]!r}") from None


def show_decision(decision: dict[str, Any]) -> str:
    """One decision of POST /v1/verify, as ``gate verify`` would summarise it."""
    if decision["allowed"]:
        return f"  {GREEN}ALLOWED{RESET} {decision['image']}"
    lines = [f"  {RED}DENIED{RESET}  {decision['image']}"]
    lines += [f"    ✗ [{v['code']}] {v['msg']}" for v in decision["violations"]]
    lines += [f"    ✗ {e}" for e in decision["errors"]]
    return "\n".join(lines)


def admission_review(deployment: str, images: list[str]) -> dict[str, Any]:
    """What the API server sends the validating webhook for ``kubectl create deployment``."""
    containers = [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "d3m0d3m0-0000-4000-8000-000000000001",
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "name": deployment,
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {"username": "developer"},
            "object": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": deployment, "namespace": "shop"},
                "spec": {
                    "selector": {"matchLabels": {"app": deployment}},
                    "template": {
                        "metadata": {"labels": {"app": deployment}},
                        "spec": {"containers": containers},
                    },
                },
            },
            "dryRun": False,
        },
    }


def start_gate_serve(work: Path, public_key: Path, rule_data: Path) -> tuple[GateServer, Path, Path]:
    """``gate serve`` on loopback with a throwaway CA's certificate, the demo key and rule data; started
    early so that it loads while the command-line steps run. Returns it, its config and the CA file."""
    ca_file, ca_key, ca_cert = make_ca(work / "serve-ca", "provgate demo CA")
    cert, key = make_server_cert(work, ca_key, ca_cert)
    config = work / "gate.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "listen": "127.0.0.1:0",
                "tls": {"certFile": str(cert), "keyFile": str(key)},
                "trust": {"keys": [str(public_key)]},
                "data": [str(rule_data)],
            },
            sort_keys=False,
        )
    )
    return GateServer(config), config, ca_file


def serve_steps(server: GateServer, config: Path, ca_file: Path, work: Path, host: str, first: int) -> int:
    """Ask gate serve as a release tool and as the API server; returns the number of wrong answers."""
    step(f"{first}. The admission server: gate serve on loopback, HTTPS with a throwaway certificate")
    print("  " + config.read_text().rstrip().replace(str(work) + "/", "").replace("\n", "\n  "))
    print(f"{DIM}$ gate serve --config {config.name}{RESET}  {DIM}(started with step 4){RESET}", flush=True)
    failures = 0
    try:
        url = server.url()
    except RuntimeError as err:
        print(f"  {RED}{err}{RESET}")
        return 1
    print(f"  listening on {url}")
    good, bad, no_scan = (f"{host}/demo/app:{tag}" for _, tag, _, _ in CASES)

    step(f"{first + 1}. A release tool asks: POST /v1/verify")
    body = {"images": [good, bad]}
    print(f"{DIM}$ curl --cacert ca.pem -d '{json.dumps(body)}' {url}/v1/verify{RESET}", flush=True)
    decisions = post(f"{url}/v1/verify", body, ca_file)["decisions"]
    for decision in decisions:
        print(show_decision(decision))
    if [d["allowed"] for d in decisions] != [True, False]:
        failures += 1
        print("  (expected the first allowed and the second denied)")

    step(f"{first + 2}. The API server asks: POST /validate with the AdmissionReview of a Deployment")
    print(f"  Deployment shop/shop: container c0 {good}, container c1 {no_scan}")
    answer = post(f"{url}/validate?timeout=10s", admission_review("shop", [good, no_scan]), ca_file)
    response = answer["response"]
    if response["allowed"]:
        print(f"  => {GREEN}ADMITTED{RESET}")
    else:
        message = response["status"]["message"].replace("\n", "\n  ")
        print(f"  => {RED}DENIED{RESET}; kubectl apply shows:")
        print(f'  Error from server: admission webhook "{WEBHOOK}" denied the request: {message}')
    if response["allowed"] or no_scan not in response["status"]["message"]:
        failures += 1
        print("  (expected a denial naming the image without the scan)")
    return failures


def main() -> int:
    # SIGTERM ends the demo through the finally blocks below, so nothing it started outlives it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    work = Path(tempfile.mkdtemp(prefix="provgate-demo-"))
    step("1. Start a local OCI registry (distribution v3, from the component cache)")
    proc, server = start_distribution(work / "registry")
    gate_server: GateServer | None = None
    failures = 0
    try:
        host = server.host
        print(f"  registry listening on {host}")

        step("2. Push the images our pretend pipelines built")
        digests = asyncio.run(push_images(host))
        for tag, digest in digests.items():
            print(f"  {host}/demo/app:{tag} -> {digest}")

        step("3. Make a signing key (cosign-compatible), and say where builds may take their source from")
        env = {"COSIGN_PASSWORD": "demo-password"}
        prefix = work / "demo"
        if run([str(VENV_BIN / "signer"), "generate-key-pair", "--output-key-prefix", str(prefix)], env=env):
            return 2
        # The bundled rule data leaves allowed_source_repos empty (every gate then warns that sources
        # are not checked); this file adds the sample pipeline's repository to the bundled defaults.
        rule_data = work / "rule-data.yaml"
        rule_data.write_text(yaml.safe_dump({"rule_data": {"allowed_source_repos": [SOURCE_REPO]}}))
        print(f"  {rule_data.name}: allowed_source_repos: [{SOURCE_REPO}]")
        gate_server, gate_config, ca_file = start_gate_serve(work, Path(f"{prefix}.pub"), rule_data)

        for n, (sample, tag, story, expected) in enumerate(CASES, start=4):
            image = f"{host}/demo/app:{tag}"
            step(f"{n}. {story}")
            pipelinerun, taskruns = samples.load(
                sample, image_url=f"{host}/demo/app", image_digest=digests[tag]
            )
            run_file = work / f"{sample}.yaml"
            run_file.write_text(yaml.safe_dump_all([pipelinerun, *taskruns], sort_keys=False))
            print("  sign the PipelineRun's provenance and push it next to the image:")
            if run(
                [
                    str(VENV_BIN / "signer"),
                    "sign",
                    str(run_file),
                    "--key",
                    f"{prefix}.key",
                    "--storage",
                    "oci",
                ],
                env=env,
            ):
                return 2
            print("  ask the gate whether the image may run:")
            code = run(
                [str(VENV_BIN / "gate"), "verify", image, "--key", f"{prefix}.pub", "--data", str(rule_data)]
            )
            verdict = {0: f"{GREEN}ALLOWED{RESET}", 1: f"{RED}DENIED{RESET}"}.get(code, f"ERROR ({code})")
            ok = code == expected
            failures += not ok
            print(f"  => {verdict}{'' if ok else f'  (expected exit {expected}, got {code})'}")

        failures += serve_steps(gate_server, gate_config, ca_file, work, host, first=4 + len(CASES))
        gate_server.terminate()  # it finishes while the summary prints; stop() below waits for it

        step("Done")
        print(
            "  Provenance was built from the PipelineRun, signed, pushed to the registry as a cosign\n"
            "  attestation, and verified by the gate against the bundled Rego policy library, from the\n"
            "  command line and through gate serve's HTTPS API, as release tools and Kubernetes ask it.\n"
            f"  Work files are in {work}."
        )
    finally:
        if gate_server is not None:
            gate_server.stop()
        stop(proc)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
