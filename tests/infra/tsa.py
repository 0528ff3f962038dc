"""A real RFC 3161 timestamp authority (sigstore/timestamp-authority, in-memory signer) on loopback.

``timestamp-server`` also starts a Prometheus listener on the fixed port 2112 and exits if it is taken,
so only one may run per machine: mark tests that use it ``pytest.mark.xdist_group("spire")`` (the SPIRE
tests' group) so ``--dist loadgroup`` runs them all on one worker with one TSA, and a machine-wide file
lock makes a second test session wait for the first one's TSA instead of failing.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from attestation.timestamp import TsaTrust, parse_tsa_certs
from tests.infra import free_port, require_binary, stop, wait_for_port


@dataclass
class Tsa:
    url: str  # POST application/timestamp-query here
    chain_pem: bytes  # the TSA's certificate chain as it serves it
    chain_file: Path

    @property
    def trust(self) -> TsaTrust:
        return parse_tsa_certs(self.chain_pem, source=str(self.chain_file))


LOCK_FILE = Path(tempfile.gettempdir()) / "provgate-tsa-metrics-2112.lock"
LOCK_WAIT_SECONDS = 600


@contextlib.contextmanager
def _metrics_port_lock() -> Iterator[None]:
    """Hold the machine-wide lock on the TSA's fixed metrics port for as long as a TSA runs."""
    with open(LOCK_FILE, "a+b") as handle:
        deadline = time.monotonic() + LOCK_WAIT_SECONDS
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"another test session held {LOCK_FILE} for {LOCK_WAIT_SECONDS}s"
                    ) from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def run_tsa(attempts: int = 5) -> Iterator[Tsa]:
    with _metrics_port_lock():
        yield from _run_tsa_retrying(attempts)


def _run_tsa_retrying(attempts: int) -> Iterator[Tsa]:
    # Something outside our lock may hold the fixed metrics port 2112 for a moment; retry.
    for attempt in range(attempts):
        try:
            cm = _run_tsa_once()
            tsa = cm.__enter__()
        except RuntimeError:
            if attempt == attempts - 1:
                raise
            time.sleep(2)
            continue
        try:
            yield tsa
        finally:
            cm.__exit__(None, None, None)
        return


@contextlib.contextmanager
def _run_tsa_once() -> Iterator[Tsa]:
    binary = require_binary("timestamp-server")
    base = Path(tempfile.mkdtemp(prefix="tsa", dir="/tmp"))
    port = free_port()
    log = open(base / "tsa.log", "wb")  # noqa: SIM115 - closed in finally, after the process
    proc = subprocess.Popen(
        [
            str(binary),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--timestamp-signer",
            "memory",
            "--disable-ntp-monitoring",
        ],
        stdout=log,
        stderr=log,
        cwd=base,
    )
    try:
        try:
            wait_for_port(port, proc, timeout=30)
        except (RuntimeError, TimeoutError) as err:
            tail = (base / "tsa.log").read_bytes()[-500:].decode("utf-8", "replace")
            raise RuntimeError(f"timestamp-server did not start: {err}; log: {tail}") from None
        base_url = f"http://127.0.0.1:{port}"
        chain = httpx.get(base_url + "/api/v1/timestamp/certchain", timeout=10).content
        chain_file = base / "tsa-chain.pem"
        chain_file.write_bytes(chain)
        yield Tsa(url=base_url + "/api/v1/timestamp", chain_pem=chain, chain_file=chain_file)
    finally:
        stop(proc)
        log.close()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def tsa() -> Iterator[Tsa]:
    with run_tsa() as running:
        yield running
