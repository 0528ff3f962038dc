"""The operator's suites: ``signer run`` as a real process against the real API server (Tekton's CRDs),
real registries and real SPIRE; runs completed by writing their status as Tekton's controller does."""

from __future__ import annotations

import base64
import json
import os
import signal
import ssl
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client

from attestation.keys import generate_cosign_key_pair
from tests.gate.conftest import data_file, policy_dir  # noqa: F401
from tests.infra import free_port
from tests.infra.kube import KubeCluster, wait_until
from tests.infra.registry import (  # noqa: F401
    RegistryServer,
    registry_plain,
    registry_referrers,
    registry_tls_auth,
)
from tests.infra.tekton import PIPELINERUNS, TASKRUNS

REPO = Path(__file__).resolve().parents[2]
KEY_PASSWORD = b"operator-test-password"
SIGNED = "chains.tekton.dev/signed"


@dataclass
class SigningKey:
    private_pem: bytes
    public_pem: bytes
    password: bytes
    public_file: Path


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    private, public = generate_cosign_key_pair(KEY_PASSWORD)
    path = tmp_path_factory.mktemp("key") / "cosign.pub"
    path.write_bytes(public)
    return SigningKey(private, public, KEY_PASSWORD, path)


def b64(data: bytes | str) -> str:
    return base64.b64encode(data.encode() if isinstance(data, str) else data).decode()


@dataclass
class OperatorProcess:
    """One ``signer run`` process; its log goes to a file, shown when a test fails."""

    proc: subprocess.Popen[bytes]
    log: Path
    http: str  # 127.0.0.1:PORT of /metrics, /readyz

    def ready(self) -> bool:
        try:
            return httpx.get(f"http://{self.http}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def wait_ready(self, timeout: float = 60.0) -> None:
        def check() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"signer run exited with {self.proc.returncode}:\n{self.tail()}")
            return self.ready()

        wait_until(check, what="signer run to be ready", timeout=timeout, retry_on=())

    def metrics(self) -> str:
        return httpx.get(f"http://{self.http}/metrics", timeout=5).text

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample of /metrics (0 when absent)."""
        want = name + (
            "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else ""
        )
        for line in self.metrics().splitlines():
            if line.startswith(want + " "):
                return float(line.split()[-1])
        return 0.0

    def tail(self, size: int = 6000) -> str:
        try:
            return self.log.read_bytes()[-size:].decode("utf-8", "replace")
        except OSError:
            return "(no log)"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@dataclass
class Setup:
    """An operator namespace with Chains' ConfigMap and signing secrets, watching one run namespace."""

    kube: KubeCluster
    namespace: str  # the operator's
    runs: str  # where the test's runs are
    workdir: Path
    key: SigningKey
    processes: list[OperatorProcess] = field(default_factory=list)

    @property
    def core(self) -> Any:
        return client.CoreV1Api(self.kube.api)

    def configure(self, data: Mapping[str, str]) -> None:
        body = {"metadata": {"name": "chains-config", "namespace": self.namespace}, "data": dict(data)}
        try:
            self.core.replace_namespaced_config_map("chains-config", self.namespace, body)
        except client.exceptions.ApiException as err:
            if err.status != 404:
                raise
            self.core.create_namespaced_config_map(self.namespace, body)

    def start(
        self,
        *extra: str,
        token: str | None = None,
        env: Mapping[str, str] | None = None,
        wait: bool = True,
        leader_election: bool = False,
    ) -> OperatorProcess:
        port = free_port()
        kubeconfig = self.kube.kubeconfig if token is None else self.kube.write_kubeconfig(token)
        log = self.workdir / f"operator-{len(self.processes)}.log"
        args = [
            sys.executable,
            "-m",
            "signer.cli",
            "run",
            "--configmap",
            f"{self.namespace}/chains-config",
            "--namespace",
            self.namespace,
            "--watch-namespace",
            self.runs,
            "--http-address",
            f"127.0.0.1:{port}",
            "--config-poll",
            "0.5",
            "--leader-election" if leader_election else "--no-leader-election",
            *extra,
        ]
        environment = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "PYTHONUNBUFFERED": "1",
            "NO_PROXY": "127.0.0.1,localhost",
            **(env or {}),
        }
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=environment,
                cwd=REPO,
            )
        process = OperatorProcess(proc, log, f"127.0.0.1:{port}")
        self.processes.append(process)
        if wait:
            process.wait_ready()
        return process

    def logs(self) -> str:
        return "\n".join(f"--- {p.log.name} ---\n{p.tail()}" for p in self.processes)

    # -- runs ------------------------------------------------------------------------------------

    def taskrun(self, name: str) -> dict[str, Any]:
        return TASKRUNS.get(self.kube.api, self.runs, name)

    def pipelinerun(self, name: str) -> dict[str, Any]:
        return PIPELINERUNS.get(self.kube.api, self.runs, name)

    def wait_marked(self, name: str, *, kind: str = "TaskRun", timeout: float = 60.0) -> dict[str, Any]:
        """The run once ``chains.tekton.dev/signed`` is set (to anything)."""
        get = self.taskrun if kind == "TaskRun" else self.pipelinerun

        def check() -> dict[str, Any] | None:
            obj = get(name)
            return obj if (obj["metadata"].get("annotations") or {}).get(SIGNED) else None

        try:
            return wait_until(check, what=f"{kind} {name} to be marked", timeout=timeout)
        except TimeoutError as err:
            raise AssertionError(f"{err}\n{self.logs()}") from None

    def events(self, name: str) -> list[dict[str, Any]]:
        found = self.core.list_namespaced_event(self.runs, field_selector=f"involvedObject.name={name}")
        return [{"reason": e.reason, "type": e.type, "message": e.message} for e in found.items]

    def wait_event(self, name: str, reason: str, timeout: float = 60.0) -> dict[str, Any]:
        def check() -> dict[str, Any] | None:
            return next((e for e in self.events(name) if e["reason"] == reason), None)

        try:
            return wait_until(check, what=f"Event {reason} on {name}", timeout=timeout, interval=0.3)
        except TimeoutError as err:
            raise AssertionError(f"{err}\n{self.logs()}") from None


@pytest.fixture
def setup(kube: KubeCluster, tmp_path: Path, signing_key: SigningKey) -> Iterator[Setup]:
    """A fresh operator namespace (ConfigMap ``chains-config``, Secret ``signing-secrets`` with a cosign
    key) and a fresh namespace for runs; every operator started is stopped afterwards."""
    namespace = kube.create_namespace("chains")
    runs = kube.create_namespace("runs")
    core = client.CoreV1Api(kube.api)
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "signing-secrets"},
            "data": {
                "cosign.key": b64(signing_key.private_pem),
                "cosign.password": b64(signing_key.password),
            },
        },
    )
    result = Setup(kube, namespace, runs, tmp_path, signing_key)
    try:
        yield result
    finally:
        for process in result.processes:
            process.stop()


# -- registries ---------------------------------------------------------------------------------------


def push_image(server: RegistryServer, name: str = "app") -> tuple[str, str]:
    """(repository, digest) of a fresh one-layer image pushed to ``server``."""
    from tests.oci.helpers import push_small_image

    return push_small_image(server, name)


def att_layers(server: RegistryServer, repository: str, digest: str) -> list[dict[str, Any]]:
    """The layers of the image's ``.att`` tag, read straight from the registry (none: no tag)."""
    host, _, path = repository.partition("/")
    tag = digest.replace(":", "-") + ".att"
    scheme = "https" if server.tls else "http"
    auth = (server.username, server.password) if server.username else None
    response = httpx.get(
        f"{scheme}://{host}/v2/{path}/manifests/{tag}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        verify=ssl.create_default_context(cafile=server.ca_file) if server.ca_file else True,
        auth=auth,
        timeout=10,
    )
    if response.status_code == 404:
        return []
    response.raise_for_status()
    layers: list[dict[str, Any]] = json.loads(response.content)["layers"]
    return layers


def referrers(server: RegistryServer, repository: str, digest: str) -> list[dict[str, Any]]:
    host, _, path = repository.partition("/")
    response = httpx.get(f"http://{host}/v2/{path}/referrers/{digest}", timeout=10)
    response.raise_for_status()
    manifests: list[dict[str, Any]] = json.loads(response.content).get("manifests") or []
    return manifests


def image_results(repository: str, digest: str) -> dict[str, str]:
    return {"IMAGE_URL": repository, "IMAGE_DIGEST": digest}
