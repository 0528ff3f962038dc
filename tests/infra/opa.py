"""A real OPA server for the tests (DESIGN.md §4): ``opa run --server`` on a free loopback port, empty.

Tests load policies over REST (``make_engine(..., engine="opa", opa_url=...)``). Import the fixture into a
test module with ``from tests.infra.opa import opa_server, opa_url  # noqa: F401``.

An OPA engine owns its server's policies and data (one server serves one policy set), so the fixture is
per test module: a module's engines can never be evaluated against a policy set another module uploaded,
whatever order xdist runs the modules in on one worker.
"""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.infra import free_port, require_binary, stop, wait_for_port


def opa_binary() -> Path:
    return require_binary("opa")


@contextlib.contextmanager
def running_opa(workdir: Path) -> Iterator[str]:
    """URL of a fresh, empty OPA server working in ``workdir``; stopped on exit."""
    binary = opa_binary()
    port = free_port()
    with (workdir / "opa.log").open("wb") as log:
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


@pytest.fixture(scope="module")
def opa_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of an OPA server with no policies, for one test module."""
    with running_opa(tmp_path_factory.mktemp("opa")) as url:
        yield url


@pytest.fixture
def opa_url(opa_server: str) -> str:
    return opa_server
