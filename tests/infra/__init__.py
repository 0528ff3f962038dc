"""Helpers that find and start the real servers the tests use (DESIGN.md §4).

Binaries come from the cache filled by ``tests/infra/build-components.sh``. When one is missing the
test is skipped locally with the reason, and fails under CI (``CI=true``): CI never skips silently.
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "tests" / "infra" / "build-components.sh"


def bin_cache() -> Path:
    override = os.environ.get("PROVGATE_BIN_CACHE")
    if override:
        return Path(override)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "provgate" / "bin"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def missing(what: str, component: str = "") -> None:
    """Fail in CI, skip with the reason elsewhere."""
    msg = f"{what} (run {f'{BUILD_SCRIPT.relative_to(REPO)} {component}'.rstrip()})"
    if in_ci():
        pytest.fail(f"required component missing in CI: {msg}", pytrace=False)
    pytest.skip(msg)


def require_binary(name: str) -> Path:
    """Path of a component built by build-components.sh (or on PATH)."""
    candidate = bin_cache() / name
    if candidate.exists() and os.access(candidate, os.X_OK):
        return candidate.resolve()
    found = shutil.which(name)
    if found:
        return Path(found)
    missing(f"{name} not found in {bin_cache()}", name)
    raise AssertionError("unreachable")


def require_data(name: str) -> Path:
    """Directory of data fetched by build-components.sh (e.g. ``tekton-crds``)."""
    candidate = bin_cache() / name
    if candidate.is_dir():
        return candidate.resolve()
    missing(f"{name} not found in {bin_cache()}", name)
    raise AssertionError("unreachable")


def build_components(*names: str) -> Path:
    """Build the groups or components ``names`` with build-components.sh (a no-op for what is built) and
    return the cache. For benchmarks, which build their peers on first use (``build_components("bench")``);
    tests never build: a missing component skips them, or fails them in CI."""
    done = subprocess.run(
        ["bash", str(BUILD_SCRIPT), *names], stdout=subprocess.PIPE, text=True, check=True
    )  # its progress lines go to our stderr
    return Path(done.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class LoopbackHTTPServer(ThreadingHTTPServer):
    """A loopback HTTP(S) server for a test's stand-in peer. A client that hangs up mid-request (a test's
    timeout, the API server dropping a connection, a TLS handshake cut short) is expected here, not a
    failure of the server: it is not printed into the test run's output. Anything else is, as usual."""

    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError | ssl.SSLError):
            return
        super().handle_error(request, client_address)
