"""``gate serve`` with ``workers: 2``: two processes on one listening socket, as a user who raised
``workers`` relies on them — both answer, a reload reaches both, SIGTERM drains both, ``/metrics`` and
``/readyz`` speak for the whole server whichever worker answers them."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.infra import REPO
from tests.infra.kube import wait_until
from tests.infra.registry import RegistryServer
from tests.serve.conftest import (
    RULE_DATA,
    GateProcess,
    Signing,
    gate_config,
    pod,
    push_signed,
    review,
    write_config,
)

# Fresh connections tried before concluding that the second worker never accepts one.
MAX_CONNECTIONS = 200


def worker_of(client: httpx.Client) -> int:
    """The worker that owns the client's (one, kept-alive) connection."""
    answer = client.get("/readyz")
    assert answer.status_code == 200, answer.text
    return int(answer.json()["worker"])


@pytest.fixture
def connect() -> Iterator[Callable[[GateProcess], dict[int, httpx.Client]]]:
    opened: list[httpx.Client] = []

    def connect(gate: GateProcess) -> dict[int, httpx.Client]:
        """One kept-alive connection to each worker: new connections until every worker has taken one."""
        found: dict[int, httpx.Client] = {}
        for _ in range(MAX_CONNECTIONS):
            client = httpx.Client(
                base_url=gate.url,
                verify=gate.tls.context(),
                timeout=60,
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
            )
            opened.append(client)
            number = worker_of(client)
            if number in found:
                client.close()
                continue
            found[number] = client
            if len(found) == 2:
                return found
        raise AssertionError(f"{MAX_CONNECTIONS} connections, all taken by worker(s) {sorted(found)}")

    yield connect
    for client in opened:
        client.close()


def validate(client: httpx.Client, image: str, uid: str = "uid-1") -> dict:
    answer = client.post("/validate?timeout=10s", json=review(pod(image), uid=uid))
    assert answer.status_code == 200, answer.text
    return answer.json()["response"]


def test_both_workers_answer_each_with_its_own_cache_and_metrics_add_up(
    start_gate, tmp_path: Path, connect, registry_plain: RegistryServer, signing: Signing, rule_data_file
) -> None:
    gate = start_gate(tmp_path, workers=2, data=[str(rule_data_file)], cache={"ttl": 3600})
    assert any("(2 workers)" in line for line in gate.lines)
    workers = connect(gate)
    assert sorted(workers) == [1, 2]
    good, _ = push_signed(registry_plain, signing.trusted)
    bad, _ = push_signed(registry_plain, signing.untrusted)
    for client in workers.values():
        assert validate(client, good)["allowed"] is True
        answer = validate(client, bad)
        assert answer["allowed"] is False and bad in answer["status"]["message"]
    assert validate(workers[1], good)["allowed"] is True  # from worker 1's cache
    # Each worker verified each image once (the caches are per process); whichever worker answers
    # /metrics counts the admissions of both.
    for client in workers.values():
        text = client.get("/metrics").text
        gate_metric = _metric_reader(text)
        assert gate_metric("provgate_admission_requests_total", endpoint="validate") == 5
        assert gate_metric("provgate_request_duration_seconds_count", endpoint="validate") == 5
        assert gate_metric("provgate_verifications_total") == 4
        assert gate_metric("provgate_verdict_cache_misses_total") == 4
        assert gate_metric("provgate_verdict_cache_hits_total") == 1
        assert gate_metric("provgate_ready") == 1
        assert gate_metric("provgate_verdict_cache_bytes") > 0


def _metric_reader(text: str) -> Callable[..., float]:
    def value(name: str, **labels: str) -> float:
        total = 0.0
        for line in text.splitlines():
            if not (line.startswith(name + "{") or line.startswith(name + " ")):
                continue
            if all(f'{k}="{v}"' in line for k, v in labels.items()):
                total += float(line.rsplit(" ", 1)[1])
        return total

    return value


def test_a_policy_reload_flips_the_cached_allow_in_both_workers(
    start_gate, tmp_path: Path, connect, registry_plain: RegistryServer, signing: Signing
) -> None:
    data = tmp_path / "data" / "rule_data.yaml"
    data.parent.mkdir()
    data.write_text(yaml.safe_dump(RULE_DATA))
    gate = start_gate(tmp_path, workers=2, data=[str(data)], cache={"ttl": 3600})
    workers = connect(gate)
    image, _ = push_signed(registry_plain, signing.trusted)
    for client in workers.values():
        assert validate(client, image)["allowed"] and validate(client, image)["allowed"]  # now cached
    policy_before = workers[1].get("/readyz").json()["policy"]
    data.write_text(yaml.safe_dump({"rule_data": {"allowed_source_repos": ["https://git.example/other"]}}))
    for number, client in workers.items():
        wait_until(
            lambda c=client: c.get("/readyz").json()["policy"] != policy_before,
            what=f"worker {number} to reload",
        )
        answer = validate(client, image)
        assert answer["allowed"] is False and "source" in answer["status"]["message"], number


def test_a_broken_reload_turns_readyz_red_whichever_worker_answers(
    start_gate, tmp_path: Path, connect
) -> None:
    data = tmp_path / "data" / "rule_data.yaml"
    data.parent.mkdir()
    data.write_text(yaml.safe_dump(RULE_DATA))
    gate = start_gate(tmp_path, workers=2, data=[str(data)])
    workers = connect(gate)
    data.write_text("rule_data: [unclosed")
    _wait_readyz(gate, workers, 503)
    data.write_text(yaml.safe_dump(RULE_DATA))
    _wait_readyz(gate, workers, 200)


def _wait_readyz(gate: GateProcess, workers: dict[int, httpx.Client], status: int) -> None:
    """Until every worker's /readyz answers ``status``; the gate's log if one does not in time."""
    for number, client in workers.items():
        try:
            wait_until(
                lambda c=client: c.get("/readyz").status_code == status, what=f"worker {number}'s /readyz"
            )
        except TimeoutError:
            raise AssertionError(gate.log()) from None


@pytest.mark.parametrize(
    "stop",
    [
        pytest.param(lambda proc: proc.send_signal(signal.SIGTERM), id="SIGTERM to the server"),
        # A terminal's Ctrl-C goes to the whole foreground process group (the gate runs in a session of
        # its own, so this reaches the gate's group and not pytest).
        pytest.param(lambda proc: os.killpg(proc.pid, signal.SIGINT), id="Ctrl-C to its process group"),
    ],
)
def test_a_stop_drains_both_workers_then_exits_cleanly(
    start_gate, tmp_path: Path, connect, stop: Callable[[subprocess.Popen[bytes]], None]
) -> None:
    silent = socket.socket()  # a registry that accepts and never answers: requests stay in flight
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        gate = start_gate(tmp_path, workers=2)
        workers = connect(gate)
        image = f"127.0.0.1:{silent.getsockname()[1]}/app:v1"
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            pending = [
                pool.submit(c.post, "/validate?timeout=3s", json=review(pod(image))) for c in workers.values()
            ]
            time.sleep(0.5)  # both requests are in flight, waiting for the silent registry
            stop(gate.proc)
            answers = [p.result(timeout=30) for p in pending]
        for answer in answers:  # answered (could not decide: denied), not cut off
            assert answer.status_code == 200 and answer.json()["response"]["allowed"] is False
        assert gate.proc.wait(timeout=30) == 0
        assert any("worker 1 (pid" in line and "stopped" in line for line in gate.lines)
        assert any("worker 2 (pid" in line and "stopped" in line for line in gate.lines)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{gate.url}/healthz", verify=gate.tls.context(), timeout=5)
    finally:
        silent.close()


def test_a_worker_that_dies_is_replaced(start_gate, tmp_path: Path) -> None:
    gate = start_gate(tmp_path, workers=2)
    children = _children(gate.proc.pid)
    assert len(children) == 2
    victim = children[0]
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: any(f"(pid {victim}) exited" in line for line in gate.lines), what="the exit logged")
    wait_until(lambda: len(set(_children(gate.proc.pid)) - {victim}) == 2, what="a new worker")
    for number in (1, 2):
        wait_until(lambda n=number: workers_seen(gate, n), what=f"worker {number} answering again")
    assert gate.proc.poll() is None


def test_a_worker_whose_event_loop_stops_is_killed_and_replaced(start_gate, tmp_path: Path) -> None:
    # A stuck worker still takes connections from the shared sockets; SIGSTOP makes one stuck for good.
    gate = start_gate(tmp_path, workers=2, workerStallSeconds=3)
    children = _children(gate.proc.pid)
    assert len(children) == 2
    stuck = children[0]
    os.kill(stuck, signal.SIGSTOP)
    try:
        wait_until(
            lambda: any(f"(pid {stuck}): its event loop has not run" in line for line in gate.lines),
            what="the stall logged",
        )
        wait_until(lambda: stuck not in _children(gate.proc.pid), what="the stuck worker gone")
        wait_until(lambda: len(_children(gate.proc.pid)) == 2, what="a new worker")
        for number in (1, 2):
            wait_until(lambda n=number: workers_seen(gate, n), what=f"worker {number} answering")
        assert gate.proc.poll() is None
        assert not any("Traceback" in line for line in gate.lines)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(stuck, signal.SIGKILL)


def workers_seen(gate: GateProcess, number: int) -> bool:
    with httpx.Client(base_url=gate.url, verify=gate.tls.context(), timeout=10) as client:
        answer = client.get("/readyz")
        return answer.status_code == 200 and answer.json()["worker"] == number


def _children(pid: int) -> list[int]:
    """The live child processes of ``pid`` (from /proc: the workers the supervisor forked)."""
    found: list[int] = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # exited meanwhile
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


@pytest.mark.parametrize("value", [0, 1.5, True, "2", 65])
def test_a_bad_workers_value_stops_the_start_with_one_line(tmp_path: Path, tls, signing, value) -> None:
    path = write_config(tmp_path, gate_config(tls, signing.public_key, workers=value))
    done = subprocess.run(
        [sys.executable, "-m", "gate", "serve", "--config", str(path)],
        capture_output=True,
        cwd=REPO,
        timeout=60,
    )
    err = done.stderr.decode()
    assert done.returncode == 2 and err.strip().count("\n") == 0 and "workers:" in err, err


def test_workers_that_cannot_load_the_policy_stop_the_server(tmp_path: Path, tls, signing) -> None:
    policy = tmp_path / "policy"
    policy.mkdir()
    (policy / "broken.rego").write_text("package policy.release.broken\n\ndeny contains {")
    path = write_config(tmp_path, gate_config(tls, signing.public_key, workers=2, policy=[str(policy)]))
    done = subprocess.run(
        [sys.executable, "-m", "gate", "serve", "--config", str(path)],
        capture_output=True,
        cwd=REPO,
        timeout=120,
    )
    err = done.stderr.decode()
    assert done.returncode == 2, err
    assert "broken.rego" in err and "failed to start" in err and "listening on" not in err
    assert "Traceback" not in err


def test_a_file_rewritten_while_a_reload_failed_is_read_again(tmp_path: Path, tls, signing) -> None:
    """A reload that failed on a half-written file must not take the finished file for what it read:
    otherwise the gate (each worker) stays not ready until the file changes once more."""
    import asyncio

    from gate.serve.config import load_config
    from gate.serve.decider import Decider
    from gate.serve.metrics import Metrics

    data = tmp_path / "rule_data.yaml"
    data.write_text(yaml.safe_dump(RULE_DATA))
    path = write_config(tmp_path, gate_config(tls, signing.public_key, data=[str(data)]))

    async def scenario() -> None:
        decider = Decider(load_config(path), Metrics())
        await decider.start()
        try:
            data.write_text("rule_data: [unclosed")  # the writer's first half, as the reload reads it
            build = decider._build

            async def racing(config):
                try:
                    return await build(config)
                finally:
                    data.write_text(yaml.safe_dump(RULE_DATA))  # the writer finishes meanwhile

            decider._build = racing
            assert await decider.reload() is False and not decider.ready
            decider._build = build
            assert decider.changed()  # the finished file is seen as a change
            assert await decider.reload() is True and decider.ready
        finally:
            await decider.aclose()

    asyncio.run(scenario())
