"""Real OCI registries for the tests, on free loopback ports, one per pytest(-xdist) worker session.

* ``registry_plain``     distribution v3.1.1, plain HTTP, no auth, no referrers API (tag-schema fallback)
* ``registry_referrers`` go-containerregistry's registry with the referrers API (plain HTTP only: the
                         binary has no TLS or auth options)
* ``registry_tls_auth``  distribution v3.1.1 with TLS (a CA made here) and htpasswd (bcrypt) auth

Import the fixtures into a suite's conftest: ``from tests.infra.registry import registry_plain, ...``.
Each yields a :class:`RegistryServer`; ``server.client()`` makes a ready :class:`RegistryClient`.
"""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from attestation.oci.registry import RegistryClient
from tests.infra import free_port, require_binary, stop, wait_for_port
from tests.infra.tls import make_ca, make_server_cert

USERNAME = "provgate"
PASSWORD = "s3cret-registry-password"


@dataclass
class RegistryServer:
    host: str  # "127.0.0.1:PORT", the registry part of image references
    kind: str  # "distribution" or "ggcr"
    referrers_api: bool
    tls: bool = False
    ca_file: str | None = None
    username: str | None = None
    password: str | None = None
    docker_config: str | None = None  # a directory whose config.json holds the credentials
    log_file: Path | None = None
    _counter: list[int] = field(default_factory=lambda: [0])

    def client(self, **options: Any) -> RegistryClient:
        """A client configured for this registry (CA, credentials); ``options`` override."""
        defaults: dict[str, Any] = {"ca_file": self.ca_file, "docker_config": self.docker_config}
        return RegistryClient(**{**defaults, **options})

    def repo(self, name: str = "app") -> str:
        """A fresh repository name on this registry, so tests never see each other's tags."""
        self._counter[0] += 1
        return f"{self.host}/{name}-{self._counter[0]}-{time.monotonic_ns() % 10**9}"


def write_docker_config(directory: Path, host: str, username: str, password: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    (directory / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return directory


# -- servers ---------------------------------------------------------------------------------------


def _wait_ready(url: str, proc: subprocess.Popen, verify: Any = True, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"registry exited with {proc.returncode}")
        try:
            if httpx.get(url, verify=verify, timeout=1.0).status_code in (200, 401):
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"registry at {url} not ready after {timeout}s")


def start_distribution(
    workdir: Path, *, tls: bool = False, auth: bool = False
) -> tuple[subprocess.Popen, RegistryServer]:
    binary = require_binary("registry")
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    host = f"127.0.0.1:{port}"
    config: dict[str, Any] = {
        "version": 0.1,
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(workdir / "data")}, "delete": {"enabled": True}},
        "http": {"addr": host, "secret": "provgate-test-secret"},
    }
    server = RegistryServer(host=host, kind="distribution", referrers_api=False, tls=tls)
    verify: Any = True
    if tls:
        ca_path, ca_key, ca_cert = make_ca(workdir / "ca")
        cert, key = make_server_cert(workdir, ca_key, ca_cert)
        config["http"]["tls"] = {"certificate": str(cert), "key": str(key)}
        server.ca_file = str(ca_path)
        verify = ssl.create_default_context(cafile=str(ca_path))
    if auth:
        import bcrypt

        hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=5)).decode()
        (workdir / "htpasswd").write_text(f"{USERNAME}:{hashed}\n")
        config["auth"] = {"htpasswd": {"realm": "provgate-test", "path": str(workdir / "htpasswd")}}
        server.username, server.password = USERNAME, PASSWORD
        server.docker_config = str(write_docker_config(workdir / "docker", host, USERNAME, PASSWORD))
    (workdir / "config.json").write_text(json.dumps(config))  # YAML is a superset of JSON
    log = workdir / "registry.log"
    server.log_file = log
    proc = subprocess.Popen(
        [str(binary), "serve", str(workdir / "config.json")],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=workdir,
    )
    try:
        wait_for_port(port, proc)
        _wait_ready(f"{'https' if tls else 'http'}://{host}/v2/", proc, verify)
    except Exception:
        stop(proc)
        raise RuntimeError(f"distribution registry did not start: {log.read_text()[-2000:]}") from None
    return proc, server


def start_ggcr(workdir: Path) -> tuple[subprocess.Popen, RegistryServer]:
    binary = require_binary("ggcr-registry")
    workdir.mkdir(parents=True, exist_ok=True)
    log = workdir / "ggcr.log"
    proc = subprocess.Popen(
        [str(binary), "-address", "127.0.0.1:0"], stdout=subprocess.DEVNULL, stderr=log.open("wb")
    )
    deadline = time.monotonic() + 30
    host = None
    while time.monotonic() < deadline and host is None:
        if proc.poll() is not None:
            raise RuntimeError(f"ggcr-registry exited: {log.read_text()[-2000:]}")
        for line in log.read_text(errors="replace").splitlines():
            if "listening on " in line:
                host = line.rsplit("listening on ", 1)[1].strip()
                break
        else:
            time.sleep(0.05)
    if host is None:
        stop(proc)
        raise RuntimeError("ggcr-registry did not report its address")
    _wait_ready(f"http://{host}/v2/", proc)
    return proc, RegistryServer(host=host, kind="ggcr", referrers_api=True, log_file=log)


@pytest.fixture(scope="session")
def registry_plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    proc, server = start_distribution(tmp_path_factory.mktemp("registry-plain"))
    yield server
    stop(proc)


@pytest.fixture(scope="session")
def registry_referrers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    proc, server = start_ggcr(tmp_path_factory.mktemp("registry-referrers"))
    yield server
    stop(proc)


@pytest.fixture(scope="session")
def registry_tls_auth(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RegistryServer]:
    proc, server = start_distribution(tmp_path_factory.mktemp("registry-tls-auth"), tls=True, auth=True)
    yield server
    stop(proc)


@pytest.fixture(scope="session", params=["distribution", "ggcr"])
def any_registry(request: pytest.FixtureRequest) -> RegistryServer:
    """Both plain registries: without (distribution) and with (ggcr) the referrers API."""
    return request.getfixturevalue(
        "registry_plain" if request.param == "distribution" else "registry_referrers"
    )
