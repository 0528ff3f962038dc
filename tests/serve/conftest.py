"""``gate serve`` under test: the real command in its own process over HTTPS, real registries, the signer's
real provenance for the bundled TEP-0084 runs signed with a cosign-format key, and the real API server.

* ``signing``: a trusted and an untrusted key (the public one written as ``cosign.pub``).
* ``tls``: a CA and a loopback serving certificate for the gate.
* ``start_gate(tmp_path, **config)``: ``gate serve`` with a configuration written from ``config`` (the
  keys of config/samples/gate.yaml); a :class:`GateProcess`, stopped by the fixture that made it.
* ``push_signed(server, sample=..., signer=..., tamper=...)``: an image and its provenance in the
  registry, as the signer stores it (cosign's ``.att`` layout).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography.hazmat.primitives.asymmetric import ec

from attestation import dsse, intoto
from attestation.keys import PrivateKeySigner
from attestation.oci.writer import push_attestation_legacy, push_image
from tests.infra import REPO
from tests.infra.registry import RegistryServer, registry_plain, registry_tls_auth  # noqa: F401
from tests.infra.tls import make_ca, make_server_cert

SOURCE_REPO = "https://github.com/example/demo-app"  # the git-clone source of the bundled samples
RULE_DATA = {"rule_data": {"allowed_source_repos": [SOURCE_REPO]}}
START_TIMEOUT = 60.0


@dataclass
class Signing:
    trusted: PrivateKeySigner
    untrusted: PrivateKeySigner
    public_key: Path


@pytest.fixture(scope="session")
def signing(tmp_path_factory: pytest.TempPathFactory) -> Signing:
    trusted = PrivateKeySigner(ec.generate_private_key(ec.SECP256R1()), source="trusted")
    untrusted = PrivateKeySigner(ec.generate_private_key(ec.SECP256R1()), source="untrusted")
    path = tmp_path_factory.mktemp("keys") / "cosign.pub"
    path.write_bytes(trusted.public_key.to_pem())
    return Signing(trusted, untrusted, path)


@dataclass
class Tls:
    ca_file: Path
    cert: Path
    key: Path

    @property
    def ca_pem(self) -> bytes:
        return self.ca_file.read_bytes()

    def context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    directory = tmp_path_factory.mktemp("gate-tls")
    ca_file, ca_key, ca_cert = make_ca(directory / "ca", "provgate test gate CA")
    cert, key = make_server_cert(directory, ca_key, ca_cert)
    return Tls(ca_file, cert, key)


@dataclass
class GateProcess:
    proc: subprocess.Popen[bytes]
    url: str
    tls: Tls
    config_file: Path
    lines: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)  # every listener, ``listen`` first
    _client: httpx.Client | None = None

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(base_url=self.url, verify=self.tls.context(), timeout=60)
        return self._client

    def post(self, path: str, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return self.client.post(
            path, content=content, headers={"Content-Type": "application/json", **(headers or {})}
        )

    def metric(self, name: str, **labels: str) -> float:
        """The value of one sample of ``GET /metrics`` (0 when absent)."""
        text = self.client.get("/metrics").text
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name + "{") and not line.startswith(name + " "):
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def log(self) -> str:
        return "\n".join(self.lines)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self._client is not None:
            self._client.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def gate_config(tls: Tls, public_key: Path, /, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "listen": "127.0.0.1:0",
        "tls": {"certFile": str(tls.cert), "keyFile": str(tls.key)},
        "trust": {"keys": [str(public_key)]},
        "mode": "enforce",
        "reloadInterval": 0.2,
        # One worker unless a test says otherwise: the tests count verifications, and each worker has
        # its own verdict cache (the default, workers: auto, is one per CPU).
        "workers": 1,
    }
    config.update(overrides)
    return config


def write_config(directory: Path, config: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "gate.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def start_gate_process(
    config_file: Path, tls: Tls, env: dict[str, str] | None = None, *, listeners: int = 1
) -> GateProcess:
    proc = subprocess.Popen(
        [sys.executable, "-m", "gate", "serve", "--config", str(config_file)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})},
        start_new_session=True,  # its own process group, for the tests that signal it as a terminal would
    )
    lines: list[str] = []
    listening = threading.Event()
    found: list[str] = []

    def drain() -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            lines.append(line)
            m = re.search(r"listening on (https://\S+)", line)
            if m:
                found.append(m.group(1))
                if len(found) == listeners:
                    listening.set()
        listening.set()

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT
    while not listening.wait(0.1):
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError("gate serve did not start:\n" + "\n".join(lines[-30:]))
    if len(found) < listeners:
        proc.wait(timeout=10)
        raise RuntimeError(f"gate serve exited {proc.returncode}:\n" + "\n".join(lines[-30:]))
    return GateProcess(
        proc=proc, url=found[0], tls=tls, config_file=config_file, lines=lines, urls=list(found)
    )


@pytest.fixture
def start_gate(tls: Tls, signing: Signing) -> Iterator[Callable[..., GateProcess]]:
    """Start ``gate serve`` in ``directory`` with the default test configuration updated by keywords."""
    started: list[GateProcess] = []

    def start(directory: Path, /, env: dict[str, str] | None = None, **overrides: Any) -> GateProcess:
        config = gate_config(tls, signing.public_key, **overrides)
        config_file = write_config(directory, config)
        listeners = 2 if (config.get("verifyApi") or {}).get("listen") else 1
        process = start_gate_process(config_file, tls, env, listeners=listeners)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop(signal.SIGKILL)


@pytest.fixture(scope="session")
def rule_data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rule-data") / "rule_data.yaml"
    path.write_text(yaml.safe_dump(RULE_DATA))
    return path


# -- images and their provenance ------------------------------------------------------------------------


def provenance(sample: str, name: str, digest: str) -> dict[str, Any]:
    """The signer's SLSA provenance for a bundled TEP-0084 PipelineRun that built ``name@digest``."""
    from signer import samples
    from signer.provenance import Options, generate
    from signer.run import to_run

    pr, trs = samples.load(sample, image_url=name, image_digest=digest)
    return generate(to_run(pr, source=sample), [to_run(t, source=sample) for t in trs], Options()).statement


def envelope(statement: dict[str, Any], signer: PrivateKeySigner, *, tamper: bool = False) -> bytes:
    env = dsse.sign(intoto.serialize(statement), signer)
    if tamper:  # the payload changed after it was signed: the signature no longer covers it
        changed = dict(statement, predicate={**statement["predicate"], "buildType": "tampered"})
        env = dsse.Envelope(
            payload_type=env.payload_type, payload=intoto.serialize(changed), signatures=env.signatures
        )
    return env.to_json()


async def _push(
    server: RegistryServer,
    repo: str,
    *,
    tag: str,
    sample: str | None,
    signer: PrivateKeySigner | None,
    tamper: bool,
    layer: bytes,
    unusable: bool,
) -> tuple[str, str]:
    deadline = time.monotonic() + 60
    async with server.client() as client:
        image = await push_image(client, repo, [layer], tag=tag, deadline=deadline)
        if sample is not None and signer is not None:
            statement = provenance(sample, image.reference.name, image.digest)
            await push_attestation_legacy(
                client, image, envelope(statement, signer, tamper=tamper), deadline=deadline
            )
        if unusable and signer is not None:
            bad = dsse.sign(b'{"not": "a statement"}', signer).to_json()
            await push_attestation_legacy(client, image, bad, deadline=deadline)
    return f"{image.reference.name}:{tag}", image.digest


def push_signed(
    server: RegistryServer,
    signer: PrivateKeySigner | None,
    *,
    sample: str | None = "tep0084-pipelinerun",
    tamper: bool = False,
    repo: str | None = None,
    tag: str = "v1",
) -> tuple[str, str]:
    """Push a fresh image (tagged ``tag``) with its provenance signed by ``signer`` (None: unsigned);
    returns ``(name:tag, digest)``."""
    layer = f"provgate serve test {time.monotonic_ns()} {os.getpid()}".encode()
    return asyncio.run(
        _push(
            server,
            repo or server.repo(),
            tag=tag,
            sample=sample if signer else None,
            signer=signer,
            tamper=tamper,
            layer=layer,
            unusable=False,
        )
    )


def add_unusable_attestation(server: RegistryServer, image: str, signer: PrivateKeySigner) -> None:
    """Attach a payload the trusted signer signed that is not an in-toto statement: a denial."""

    async def attach() -> None:
        from attestation.oci.reader import resolve

        async with server.client() as client:
            resolved = await resolve(client, image, deadline=time.monotonic() + 30)
            bad = dsse.sign(b'{"not": "a statement"}', signer).to_json()
            await push_attestation_legacy(client, resolved, bad, deadline=time.monotonic() + 30)

    asyncio.run(attach())


def review(
    obj: dict[str, Any] | None,
    *,
    kind: tuple[str, str, str] = ("", "v1", "Pod"),
    operation: str = "CREATE",
    namespace: str = "team",
    old: dict[str, Any] | None = None,
    uid: str = "0f6c8f0e-0000-4000-8000-000000000001",
    sub_resource: str | None = None,
) -> dict[str, Any]:
    """An AdmissionReview v1 request as the API server sends it."""
    request: dict[str, Any] = {
        "uid": uid,
        "kind": {"group": kind[0], "version": kind[1], "kind": kind[2]},
        "resource": {"group": kind[0], "version": kind[1], "resource": kind[2].lower() + "s"},
        "name": "app",
        "namespace": namespace,
        "operation": operation,
        "userInfo": {"username": "tester"},
        "object": obj,
        "oldObject": old,
        "dryRun": False,
    }
    if sub_resource:
        request["subResource"] = sub_resource
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def pod(*images: str, init: tuple[str, ...] = ()) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "app"},
        "spec": {
            "containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)],
            **(
                {"initContainers": [{"name": f"i{i}", "image": im} for i, im in enumerate(init)]}
                if init
                else {}
            ),
        },
    }


def deployment(*images: str, name: str = "app") -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": f"c{i}", "image": im} for i, im in enumerate(images)]},
            },
        },
    }
