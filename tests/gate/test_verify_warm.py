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


def test_remembered_results_are_bounded_by_the_results_they_hold() -> None:
    from gate.memo import EvaluationMemo
    from gate.policy.model import Evaluation, Result

    def evaluation(violations: int) -> Evaluation:
        found = [Result(code=f"x.r{i}", msg="m") for i in range(violations)]
        return Evaluation(violations=found, warnings=[], rules_evaluated=3, elapsed_ms=1.0)

    memo = EvaluationMemo(max_results=10)
    memo.put(("a",), evaluation(4))  # holds 5
    memo.put(("b",), evaluation(3))  # 9
    assert memo.get(("a",)) is not None  # a is now the most recently used
    memo.put(("c",), evaluation(1))  # 11 > 10: b goes
    assert memo.get(("b",)) is None and memo.get(("a",)) is not None and memo.get(("c",)) is not None
    memo.put(("huge",), evaluation(10))  # 11 results: more than the whole memo, not kept, nothing dropped
    assert memo.get(("huge",)) is None and len(memo) == 2
    memo.put(("a",), evaluation(0))  # replacing an entry frees what it held: a 1 + c 2
    memo.put(("d",), evaluation(6))  # 10 in all: nothing dropped
    assert len(memo) == 3
    hit = memo.get(("d",))
    assert hit is not None and len(hit.violations) == 6 and hit.elapsed_ms == 0.0
