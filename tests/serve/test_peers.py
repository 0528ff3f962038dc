"""``workers: 2``: a request's first looks shared out among the workers (gate.serve.peers), and every way
the sharing can fail ends in the asker deciding itself, never in another decision."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from gate.decision import AttestationReport, Decision, Finding, Timings, undecided
from gate.serve.peers import Peers
from gate.serve.workers import READY, STARTING, Board
from tests.infra.registry import RegistryServer
from tests.serve.conftest import Signing, deployment, push_signed, review


def _metric(text: str, name: str, **labels: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items())
    )


def test_a_deployment_of_new_images_is_decided_by_both_workers_as_one_would(
    start_gate, tmp_path: Path, registry_plain: RegistryServer, signing: Signing, rule_data_file
) -> None:
    gate = start_gate(tmp_path, workers=2, data=[str(rule_data_file)], cache={"ttl": 3600})
    good = [push_signed(registry_plain, signing.trusted) for _ in range(4)]
    no_scan, no_scan_digest = push_signed(registry_plain, signing.trusted, sample="tep0084-no-scan")
    images = [f"{name.rsplit(':', 1)[0]}@{digest}" for name, digest in good]
    bad = f"{no_scan.rsplit(':', 1)[0]}@{no_scan_digest}"
    body = review(deployment(*images, bad), kind=("apps", "v1", "Deployment"))
    with httpx.Client(base_url=gate.url, verify=gate.tls.context(), timeout=60) as client:
        first = client.post("/validate?timeout=10s", json=body).json()["response"]
        metrics = client.get("/metrics").text
        again = client.post("/validate?timeout=10s", json=body).json()["response"]
        alone = [client.post("/v1/verify", json={"image": image}).json() for image in images]
    # The same answer as one worker gives: the no-scan image denied by its rule, named, the others not.
    assert first["allowed"] is False
    message = first["status"]["message"]
    assert bad in message and "tasks.task_order" in message
    assert not any(image in message for image in images)
    assert again == {**first, "uid": again["uid"]}
    assert all(d["allowed"] for d in alone)
    # Shared out: five first looks, one request, some answered by the other worker; each verified once.
    assert _metric(metrics, "provgate_peer_requests_total", outcome="answered") >= 1
    assert _metric(metrics, "provgate_peer_requests_total", outcome="failed") == 0
    assert _metric(metrics, "provgate_verifications_total") == 5


# -- the pieces, in one process ---------------------------------------------------------------------------


def _decision() -> Decision:
    return Decision(
        allowed=False,
        image="registry.example/app@sha256:" + "a" * 64,
        violations=(Finding(code="tasks.required_tasks_found", msg="no scan", title="t", term="scan"),),
        warnings=(Finding(code="w.x", msg="soon"),),
        attestations=(
            AttestationReport(source="att 1", verified=True, predicate_type="p", signer={"kind": "key"}),
            AttestationReport(source="att 2", verified=False, error="bad signature"),
        ),
        errors=("att 2: bad signature",),
        rules_evaluated=42,
        elapsed_ms=3.5,
        timings=Timings(resolve_ms=1.0, fetch_ms=2.0, verify_ms=0.5, policy_ms=1.5),
    )


@pytest.mark.parametrize(
    "decision",
    [_decision(), undecided("registry.example/app@sha256:" + "b" * 64, ["registry down"])],
    ids=["denied", "undecided"],
)
def test_a_decision_survives_the_trip_between_workers(decision: Decision) -> None:
    assert Decision.from_dict(json.loads(json.dumps(decision.to_dict()))) == decision


@pytest.mark.parametrize(
    "change",
    [
        {"allowed": "yes"},
        {"decided": None},
        {"violations": [{"code": 1}]},
        {"errors": "one"},
        {"timings": []},
        {"rules_evaluated": True},
        {"allowed": True},  # with violations: no allowed decision can carry them
    ],
)
def test_a_malformed_decision_is_refused(change: dict[str, Any]) -> None:
    doc = {**_decision().to_dict(), **change}
    with pytest.raises(ValueError):
        Decision.from_dict(doc)


def _peers(tmp_path: Path) -> tuple[Peers, Peers]:
    board = Board(2)
    for i in (0, 1):
        board.set(i, READY)
    return Peers(tmp_path, 0, board), Peers(tmp_path, 1, board)


IMAGE = "registry.example/app@sha256:" + "a" * 64
OTHER = "other@sha256:" + "c" * 64


@pytest.mark.parametrize(
    "answer, why",
    [
        ({"refused": "a reload under way"}, "refused: a reload under way"),
        ({"decision": {"allowed": True}, "ttl": 5}, "ValueError"),
        ({"decision": _decision().to_dict()}, "no decision"),  # no ttl
        (
            {"decision": {**_decision().to_dict(), "image": "other@sha256:" + "c" * 64}, "ttl": 5},
            "about other",
        ),
        ("hang", "no answer in time"),
    ],
    ids=["refused", "malformed", "no-ttl", "another-image", "silent"],
)
def test_every_failed_question_is_a_reason_never_a_decision(tmp_path: Path, answer: Any, why: str) -> None:
    asker, other = _peers(tmp_path)

    async def answerer(image: str, key: tuple[str, ...], seconds: float) -> dict[str, Any]:
        if answer == "hang":
            await asyncio.sleep(30)
        return answer  # type: ignore[no-any-return]

    async def scenario() -> Any:
        await other.serve(answerer)
        try:
            assert asker.pick() is None  # nobody is busy: this worker decides (and counts it)
            assert asker.pick() == 1  # now it is busier than the other
            return await asker.ask(1, IMAGE, ("k",), seconds=0.4)
        finally:
            await other.close()

    got = asyncio.run(scenario())
    assert isinstance(got, str) and why in got, got
    assert asker._asked == [0, 0]  # nothing left counted against the other worker


def test_no_worker_listening_is_a_reason(tmp_path: Path) -> None:
    asker, _ = _peers(tmp_path)
    got = asyncio.run(asker.ask(1, IMAGE, ("k",), seconds=1.0))
    assert isinstance(got, str) and "Error" in got


def test_the_answer_and_how_long_to_keep_it(tmp_path: Path) -> None:
    asker, other = _peers(tmp_path)
    seen: list[tuple[str, tuple[str, ...]]] = []

    async def answerer(image: str, key: tuple[str, ...], seconds: float) -> dict[str, Any]:
        seen.append((image, key))
        return {"decision": {**_decision().to_dict(), "image": image}, "ttl": 12.5}

    async def scenario() -> Any:
        await other.serve(answerer)
        try:
            return await asker.ask(1, IMAGE, ("policy", "trust"), seconds=5)
        finally:
            await other.close()

    got = asyncio.run(scenario())
    assert got == (_decision(), 12.5)
    assert seen == [(IMAGE, ("policy", "trust"))]


def test_a_replaced_worker_starts_with_nothing_counted_against_it(tmp_path: Path) -> None:
    asker, other = _peers(tmp_path)
    for _ in range(3):
        other.start()  # three verifications in flight when the worker was killed (never finished)
    assert asker.pick() is None  # the other looks busier: this one decides, and counts it
    asker.board.starting(1)  # the supervisor spawns the replacement
    assert asker.board.states()[1] == STARTING
    asker.board.set(1, READY)  # the replacement has loaded
    assert asker.board.busy() == [1, 0]
    assert asker.pick() == 1  # the replacement gets the next first look, as any idle worker would
