"""Real SPIRE servers and an agent on loopback for the tests.

* ``spire``: trust domain ``example.org``, server + agent. Server: sqlite datastore, in-memory key
  manager, join_token node attestor. Agent: join_token attestation (its token also makes the node
  alias ``spiffe://example.org/tekton-node/test-node``, the parent of workload entries), ``unix``
  workload attestor. Workload entries use the ``unix:uid`` selector of the test process, so every entry
  is issued to it; tests pick their SVID by SPIFFE ID.
* ``spire_other_domain``: a second server for trust domain ``other.org`` (no agent: ``x509 mint``); its
  key manager keeps the CA key on disk, so a test can play the partner who holds that key
  (:meth:`SpireServer.x509_ca_key`).
* ``spire_rogue``: a second server that also calls itself ``example.org``, with its own CA.

Sockets live under a short ``/tmp/spt*`` directory (the unix socket path limit is 108 bytes); ports are
free loopback ports, so the fixtures are safe per xdist worker. Propagation is tuned down
(``cache_reload_interval``/``sync_interval`` 1s), so a new entry is served within about a second.
Tests using them carry ``pytest.mark.xdist_group("spire")`` (the TSA fixture needs that group anyway),
so ``--dist loadgroup`` starts one set per test session.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from attestation.spiffe import TrustBundle, parse_trust_bundle
from tests.infra import free_port, require_binary, stop

TRUST_DOMAIN = "example.org"
NODE_ALIAS_PREFIX = "/tekton-node/"
NODE_NAME = "test-node"

_SERVER_CONF = """
server {{
  bind_address = "127.0.0.1"
  bind_port = "{port}"
  socket_path = "{dir}/s/api.sock"
  trust_domain = "{td}"
  jwt_issuer = "{jwt_issuer}"
  jwt_key_type = "ec-p256"
  data_dir = "{dir}/sdata"
  log_level = "INFO"
  ca_key_type = "ec-p256"
  ca_ttl = "24h"
  default_x509_svid_ttl = "1h"
  experimental {{
    cache_reload_interval = "1s"
  }}
}}
plugins {{
  DataStore "sql" {{
    plugin_data {{
      database_type = "sqlite3"
      connection_string = "{dir}/sdata/datastore.sqlite3"
    }}
  }}
  NodeAttestor "join_token" {{
    plugin_data {{}}
  }}
  {key_manager}
}}
"""
_MEMORY_KEYS = 'KeyManager "memory" {\n    plugin_data {}\n  }'
_DISK_KEYS = (
    'KeyManager "disk" {{\n    plugin_data {{\n      keys_path = "{dir}/sdata/keys.json"\n    }}\n  }}'
)

_AGENT_CONF = """
agent {{
  data_dir = "{dir}/adata"
  log_level = "INFO"
  server_address = "127.0.0.1"
  server_port = "{port}"
  socket_path = "{dir}/a/api.sock"
  trust_domain = "{td}"
  trust_bundle_path = "{dir}/bootstrap.pem"
  experimental {{
    sync_interval = "1s"
  }}
}}
plugins {{
  NodeAttestor "join_token" {{
    plugin_data {{}}
  }}
  KeyManager "disk" {{
    plugin_data {{
      directory = "{dir}/adata"
    }}
  }}
  WorkloadAttestor "unix" {{
    plugin_data {{}}
  }}
}}
"""


@dataclass
class SpireServer:
    dir: Path
    binary: Path
    trust_domain: str
    socket: str  # the server's admin API socket (the CLI's -socketPath)
    # The ``iss`` of its JWT-SVIDs: where an OIDC discovery provider for this server is to listen
    # (tests.infra.sigstore starts one there; nothing listens until then).
    jwt_issuer: str = ""

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.binary), *args, "-socketPath", self.socket],
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )

    def bundle_pem(self) -> bytes:
        return self.cli("bundle", "show", "-format", "pem").stdout.encode()

    def bundle(self) -> TrustBundle:
        """This server's CAs, bound to its trust domain."""
        found = parse_trust_bundle(self.bundle_pem(), source=f"{self.trust_domain} bundle")
        return replace(found, trust_domain=self.trust_domain)

    def write_bundle(self, path: Path) -> Path:
        path.write_bytes(self.bundle_pem())
        return path

    def show(self, spiffe_id: str) -> list[dict]:
        """``entry show -spiffeID`` as the SPIRE CLI reports it (independent of provgate's parser)."""
        out = self.cli("entry", "show", "-spiffeID", spiffe_id, "-output", "json").stdout
        return json.loads(out).get("entries") or []

    def x509_ca_key(self) -> Any:
        """The private key of the server's current X.509 CA (only with the disk key manager): what a
        partner trust domain's operator holds, and so could sign any certificate with."""
        from cryptography.hazmat.primitives.serialization import load_der_private_key

        keys = json.loads((self.dir / "sdata" / "keys.json").read_text())["keys"]
        ca = x509.load_pem_x509_certificates(self.bundle_pem())[-1]
        for key_id, der in sorted(keys.items()):
            if key_id.startswith("x509-CA"):
                key = load_der_private_key(base64.b64decode(der), password=None)
                if key.public_key() == ca.public_key():
                    return key
        raise RuntimeError(f"{self.trust_domain}: no CA key on disk matches the bundle's CA")

    def mint(self, spiffe_id: str, directory: Path, ttl: str = "1h") -> tuple[bytes, bytes]:
        """(leaf PEM, private key PEM) of an X509-SVID minted by this server without any agent."""
        directory.mkdir(parents=True, exist_ok=True)
        self.cli("x509", "mint", "-spiffeID", spiffe_id, "-ttl", ttl, "-write", str(directory))
        return (directory / "svid.pem").read_bytes(), (directory / "key.pem").read_bytes()

    def mint_jwt(self, spiffe_id: str, audience: str = "sigstore", ttl: str = "5m") -> str:
        """A JWT-SVID minted by this server without any agent (``iss`` is :attr:`jwt_issuer`)."""
        out = self.cli("jwt", "mint", "-spiffeID", spiffe_id, "-audience", audience, "-ttl", ttl).stdout
        return out.strip()


@dataclass
class Spire:
    server: SpireServer
    agent_bin: Path
    agent_socket_path: str  # path of the Workload API socket
    node_id: str  # alias of the agent's node, parent of workload entries
    agent: subprocess.Popen  # for tests that take the agent down (only on a private pair)

    @property
    def trust_domain(self) -> str:
        return self.server.trust_domain

    @property
    def workload_socket(self) -> str:
        """The Workload API address as py-spiffe and ``SPIFFE_ENDPOINT_SOCKET`` want it."""
        return f"unix://{self.agent_socket_path}"

    def create_entry(self, spiffe_id: str, *, x509_ttl: int | None = None) -> str:
        """A workload entry for this test process (``unix:uid``); returns the entry ID."""
        args = ["entry", "create", "-parentID", self.node_id, "-spiffeID", spiffe_id]
        args += ["-selector", f"unix:uid:{os.getuid()}", "-output", "json"]
        if x509_ttl is not None:
            args += ["-x509SVIDTTL", str(x509_ttl)]
        result = json.loads(self.server.cli(*args).stdout)["results"][0]
        if result.get("status", {}).get("code", 0) != 0:
            raise RuntimeError(f"entry create {spiffe_id} failed: {result['status']}")
        return result["entry"]["id"]

    def issue(self, spiffe_id: str, *, x509_ttl: int | None = None, timeout: float = 30.0) -> None:
        """Register ``spiffe_id`` for this process and wait until the agent serves it."""
        self.create_entry(spiffe_id, x509_ttl=x509_ttl)
        self.wait_for_svid(spiffe_id, timeout=timeout)

    def wait_for_svid(self, spiffe_id: str, timeout: float = 30.0) -> None:
        """Block until the agent serves ``spiffe_id`` (entry propagation takes a second or so)."""
        from spiffe import WorkloadApiClient

        deadline = time.monotonic() + timeout
        last: BaseException | None = None
        with WorkloadApiClient(socket_path=self.workload_socket) as client:
            while time.monotonic() < deadline:
                try:
                    if any(str(s.spiffe_id) == spiffe_id for s in client.fetch_x509_svids(timeout=5)):
                        return
                except Exception as err:  # PermissionDenied until the first entry arrives
                    last = err
                time.sleep(0.1)
        raise TimeoutError(f"SPIRE agent did not serve {spiffe_id} within {timeout}s (last error: {last})")


def _wait_healthy(
    binary: Path, socket: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{binary.name} exited with {proc.returncode}: {_tail(log)}")
        if os.path.exists(socket):
            done = subprocess.run(
                [str(binary), "healthcheck", "-socketPath", socket], capture_output=True, timeout=30
            )
            if done.returncode == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{binary.name} not healthy after {timeout}s: {_tail(log)}")


def _tail(log: Path) -> str:
    try:
        return log.read_bytes()[-800:].decode("utf-8", "replace")
    except OSError:
        return "(no log)"


def _start(args: list[str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:  # the child keeps its own descriptor
        return subprocess.Popen(args, stdout=out, stderr=out)


@contextlib.contextmanager
def run_spire_server(
    trust_domain: str = TRUST_DOMAIN, *, disk_keys: bool = False
) -> Iterator[tuple[SpireServer, int]]:
    """A SPIRE server in a fresh short directory; yields it and its (loopback) agent port. With
    ``disk_keys`` its key manager writes the keys to ``sdata/keys.json``."""
    binary = require_binary("spire-server")
    base = Path(tempfile.mkdtemp(prefix="spt", dir="/tmp"))
    proc: subprocess.Popen | None = None
    try:
        port = free_port()
        jwt_issuer = f"http://127.0.0.1:{free_port()}"
        (base / "sdata").mkdir()
        keys = _DISK_KEYS.format(dir=base) if disk_keys else _MEMORY_KEYS
        conf = _SERVER_CONF.format(
            dir=base, port=port, td=trust_domain, jwt_issuer=jwt_issuer, key_manager=keys
        )
        (base / "server.conf").write_text(conf)
        proc = _start([str(binary), "run", "-config", str(base / "server.conf")], base / "server.log")
        socket = str(base / "s" / "api.sock")
        server = SpireServer(
            dir=base, binary=binary, trust_domain=trust_domain, socket=socket, jwt_issuer=jwt_issuer
        )
        _wait_healthy(binary, server.socket, proc, base / "server.log")
        yield server, port
    finally:
        if proc is not None:
            stop(proc)
        shutil.rmtree(base, ignore_errors=True)


@contextlib.contextmanager
def run_spire() -> Iterator[Spire]:
    """Server + agent for ``example.org``; the agent's node alias is ``/tekton-node/test-node``."""
    agent_bin = require_binary("spire-agent")
    with run_spire_server() as (server, port):
        base = server.dir
        node_id = f"spiffe://{TRUST_DOMAIN}{NODE_ALIAS_PREFIX}{NODE_NAME}"
        (base / "adata").mkdir()
        (base / "agent.conf").write_text(_AGENT_CONF.format(dir=base, port=port, td=TRUST_DOMAIN))
        (base / "bootstrap.pem").write_bytes(server.bundle_pem())
        token_out = server.cli("token", "generate", "-spiffeID", node_id, "-ttl", "600").stdout
        token = token_out.split("Token:", 1)[1].strip()
        agent_socket = str(base / "a" / "api.sock")
        args = [str(agent_bin), "run", "-config", str(base / "agent.conf"), "-joinToken", token]
        proc = _start(args, base / "agent.log")
        try:
            _wait_healthy(agent_bin, agent_socket, proc, base / "agent.log")
            yield Spire(
                server=server,
                agent_bin=agent_bin,
                agent_socket_path=agent_socket,
                node_id=node_id,
                agent=proc,
            )
        finally:
            stop(proc)


@pytest.fixture(scope="session")
def spire() -> Iterator[Spire]:
    with run_spire() as running:
        yield running


@pytest.fixture(scope="session")
def spire_other_domain() -> Iterator[SpireServer]:
    with run_spire_server("other.org", disk_keys=True) as (server, _):
        yield server


@pytest.fixture(scope="session")
def spire_rogue() -> Iterator[SpireServer]:
    with run_spire_server(TRUST_DOMAIN) as (server, _):
        yield server
