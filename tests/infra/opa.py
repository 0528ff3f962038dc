"""A real OPA server for the tests (DESIGN.md §4): ``opa run --server`` on a free loopback port, empty.

Tests load policies over REST (``make_engine(..., engine="opa", opa_url=...)``). Import the fixture into a
test module with ``from tests.infra.opa import opa_server, opa_url  # noqa: F401``.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.infra import free_port, require_binary, stop, wait_for_port


def opa_binary() -> Path:
    return require_binary("opa")


@pytest.fixture(scope="session")
def opa_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of an OPA server with no policies, for the whole test session (one per xdist worker)."""
    binary = opa_binary()
    workdir = tmp_path_factory.mktemp("opa")
    port = free_port()
    log = (workdir / "opa.log").open("wb")
    proc = subprocess.Popen(
        [str(binary), "run", "--server", "--addr", f"127.0.0.1:{port}", "--log-level", "error"],
        cwd=workdir,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_port(port, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)
        log.close()


@pytest.fixture
def opa_url(opa_server: str) -> str:
    return opa_server
