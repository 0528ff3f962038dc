"""A long-lived gate (one registry client, as the webhook and the HTTP API keep it) against real registries:
what it remembers never hides an attestation added after its first look, and a warm verification does no
per-request module lookups."""

from __future__ import annotations

import asyncio
import importlib.abc
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from attestation.oci.writer import push_attestation_legacy, push_image
from gate.checklist import UNUSABLE_STATEMENT
from gate.policy.model import Evaluation
from gate.verify import Gate, GateConfig
from tests.gate.conftest import envelope_json, slsa02_statement, to_bytes
from tests.infra.opa import opa_server, opa_url  # noqa: F401
from tests.infra.registry import RegistryServer, registry_plain, registry_referrers  # noqa: F401


@pytest.fixture(params=["registry_plain", "registry_referrers"])
def server(request: pytest.FixtureRequest) -> RegistryServer:
    return request.getfixturevalue(request.param)


@pytest.fixture
def config(policy_dir: Path, data_file: Path, key_file: Path) -> GateConfig:
    return GateConfig(policy_paths=(policy_dir,), data_paths=(data_file,), key_files=(key_file,))


async def _image(server: RegistryServer) -> tuple[str, str]:
    async with server.client() as client:
        image = await push_image(
            client, server.repo(), [str(time.monotonic_ns()).encode()], deadline=time.monotonic() + 30
        )
    return image.pinned, image.digest


async def _attach(server: RegistryServer, pinned: str, envelope: bytes) -> None:
    from attestation.oci.reader import resolve

    async with server.client() as client:
        image = await resolve(client, pinned, deadline=time.monotonic() + 30)
        await push_attestation_legacy(client, image, envelope, deadline=time.monotonic() + 30)


def test_an_attestation_added_later_changes_the_warm_gates_decision(
    config: GateConfig, server: RegistryServer, trusted_signer
) -> None:
    async def go():
        pinned, digest = await _image(server)
        name = pinned.split("@")[0]
        good = slsa02_statement(digest.split(":")[1], name=name)
        await _attach(server, pinned, envelope_json(to_bytes(good), trusted_signer))
        gate = Gate(config)
        try:
            async with gate:
                first = await gate.verify(pinned)
                again = await gate.verify(pinned)
                # a pipeline that ran one task: the library warns
                one_task = slsa02_statement(digest.split(":")[1], name=name, tasks=1)
                await _attach(server, pinned, envelope_json(to_bytes(one_task), trusted_signer))
                warned = await gate.verify(pinned)
                # the trusted key signed something that is not a statement: the image is denied
                await _attach(server, pinned, envelope_json(b'{"not": "a statement"}', trusted_signer))
                denied = await gate.verify(pinned)
        finally:
            gate.close()
        return first, again, warned, denied

    first, again, warned, denied = asyncio.run(go())
    assert first.allowed and again.allowed and not first.warnings
    assert len(again.attestations) == 1
    assert warned.allowed and [w.code for w in warned.warnings] == ["provenance.several_tasks"]
    assert len(warned.attestations) == 2
    assert not denied.allowed and len(denied.attestations) == 3
    assert [v.code for v in denied.violations] == [UNUSABLE_STATEMENT]


class _Recorder(importlib.abc.MetaPathFinder):
    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(self, fullname: str, path: Sequence[str] | None, target: object = None) -> None:
        self.names.append(fullname)
        return None


def test_a_warm_verification_imports_nothing(
    config: GateConfig,
    registry_plain: RegistryServer,  # noqa: F811
    trusted_signer,
) -> None:
    # Every import attempt of a module that is not loaded scans sys.path: httpcore asked for the
    # (missing) sniffio on each request, a fifth of a warm verification. A server must not pay that.
    async def go() -> list[str]:
        pinned, digest = await _image(registry_plain)
        statement = slsa02_statement(digest.split(":")[1], name=pinned.split("@")[0])
        await _attach(registry_plain, pinned, envelope_json(to_bytes(statement), trusted_signer))
        gate = Gate(config)
        recorder = _Recorder()
        try:
            async with gate:
                for _ in range(2):
                    assert (await gate.verify(pinned)).allowed
                sys.meta_path.insert(0, recorder)
                try:
                    decision = await gate.verify(pinned)
                finally:
                    sys.meta_path.remove(recorder)
        finally:
            gate.close()
        assert decision.allowed
        return recorder.names

    assert asyncio.run(go()) == []


# -- remembered policy results -----------------------------------------------------------------------------

NOW_POLICY = """\
package policy.release.clock

import rego.v1

# METADATA
# title: Built today
# description: Depends on the time of evaluation.
# custom:
#   short_name: today
#   failure_msg: evaluated at %d
#   solution: None.
deny contains result if {
\tnow := time.now_ns()
\tnow < 0
\tresult := {"code": "clock.today", "params": [now]}
}
"""


def test_the_default_engine_refuses_a_policy_whose_result_depends_on_more_than_its_input(
    tmp_path: Path, key_file: Path
) -> None:
    # The remembered policy results rely on this: a result can be reused only if nothing but the input,
    # the policies and the data decide it.
    from attestation.errors import PolicyError

    (tmp_path / "clock.rego").write_text(NOW_POLICY)
    with pytest.raises(PolicyError, match=r"time\.now_ns.*--engine opa"):
        Gate(GateConfig(policy_paths=(tmp_path,), key_files=(key_file,)))


@pytest.mark.parametrize(("engine", "evaluations"), [("embedded", 1), ("opa", 3)])
def test_the_policy_is_evaluated_again_only_for_other_input(
    request: pytest.FixtureRequest,
    policy_dir: Path,
    data_file: Path,
    key_file: Path,
    sign,
    engine: str,
    evaluations: int,
) -> None:
    from tests.gate.conftest import IMAGE

    # An OPA server is not pure (its policies and data can change under us): asked every time.
    url = request.getfixturevalue("opa_url") if engine == "opa" else None
    config = GateConfig(
        policy_paths=(policy_dir,),
        data_paths=(data_file,),
        key_files=(key_file,),
        engine=engine,
        opa_url=url,
    )
    gate = Gate(config)
    calls: list[object] = []

    def counting(method):
        def wrapper(policy_input):
            calls.append(policy_input)
            return method(policy_input)

        return wrapper

    # the gate hands the engine JSON (evaluate_json), or the document (evaluate) when it has no encoding
    for name in ("evaluate", "evaluate_json"):
        if hasattr(gate.engine, name):
            setattr(gate.engine, name, counting(getattr(gate.engine, name)))
    try:
        line = sign(slsa02_statement())
        decisions = [gate.verify_sync(IMAGE, attestations=[line]) for _ in range(3)]
        assert len(calls) == evaluations
        # another attestation set for the same image is evaluated, and decides differently
        one_task = sign(slsa02_statement(tasks=1))
        other = gate.verify_sync(IMAGE, attestations=[line, one_task])
        assert len(calls) == evaluations + 1
    finally:
        gate.close()
    assert all(d.allowed and not d.warnings for d in decisions)
    assert [w.code for w in other.warnings] == ["provenance.several_tasks"]


def _evaluation(violations: int, msg: str = "m") -> Evaluation:
    """An evaluation with ``violations`` results, each with its own message (as rules format them)."""
    from gate.policy.model import Result

    found = [
        Result(code=f"x.r{n}", msg=f"{n}: {msg}", title="T", description="D", solution="S")
        for n in range(violations)
    ]
    return Evaluation(violations=found, warnings=[], rules_evaluated=3, elapsed_ms=1.0)


def test_remembered_results_are_bounded_by_the_memory_they_hold() -> None:
    from gate.memo import EvaluationMemo, evaluation_cost

    def cost(name: str, violations: int) -> int:
        return evaluation_cost((name,), _evaluation(violations))

    assert cost("a", 4) > cost("a", 3) > cost("a", 0)
    memo = EvaluationMemo(max_bytes=cost("a", 4) + cost("b", 3) + cost("c", 1) - 1)
    memo.put(("a",), _evaluation(4))
    memo.put(("b",), _evaluation(3))
    assert memo.get(("a",)) is not None  # a is now the most recently used
    memo.put(("c",), _evaluation(1))  # one byte over: b, the least recently used, goes
    assert memo.get(("b",)) is None and memo.get(("a",)) is not None and memo.get(("c",)) is not None
    # A rule may echo the statement into its message: what it holds counts, and more than the whole
    # memo is not kept (and drops nothing).
    memo.put(("long",), _evaluation(1, msg="x" * 100_000))
    assert memo.get(("long",)) is None and len(memo) == 2
    memo.put(("a",), _evaluation(0))  # replacing an entry frees what it held
    memo.put(("d",), _evaluation(4))
    assert len(memo) == 3
    hit = memo.get(("d",))
    assert hit is not None and len(hit.violations) == 4 and hit.elapsed_ms == 0.0


@pytest.mark.parametrize(("violations", "msg_chars"), [(0, 0), (3, 80), (20, 80), (5, 4000)])
def test_the_memory_a_remembered_result_counts_is_close_to_what_it_takes(
    violations: int, msg_chars: int
) -> None:
    # The bound is only as good as the estimate: compare it with what the interpreter allocates.
    import hashlib
    import tracemalloc

    from gate.memo import EvaluationMemo, evaluation_cost

    def key(i: int) -> tuple[object, ...]:
        digest = hashlib.sha256(str(i).encode()).hexdigest()
        stored = (digest, "application/vnd.dsse.envelope.v1+json", digest[::-1], f"sha256:{digest}")
        return (f"registry.example:5000/team/app@sha256:{digest}", stored)

    memo = EvaluationMemo(max_bytes=2**40)
    entries = [(key(i), _evaluation(violations, msg=f"{i:06d}" + "m" * msg_chars)) for i in range(500)]
    counted = sum(evaluation_cost(k, e) for k, e in entries)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        # Built inside the trace, as the gate builds them: keys, results and the memo's own entries.
        for i in range(500):
            memo.put(key(i), _evaluation(violations, msg=f"{i:06d}" + "m" * msg_chars))
        taken = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert 0.75 * taken <= counted <= 1.5 * taken, (counted, taken)
