"""Decisions end to end on the offline path: real keys, real envelopes, the real embedded Rego engine."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path

import pytest

from attestation.errors import InputError, KeyLoadError
from gate.checklist import NO_VERIFIED_ATTESTATION
from gate.decision import NO_RULES_EVALUATED, Decision
from gate.verify import Gate, GateConfig
from tests.gate.conftest import (
    BUILDER_ID,
    DIGEST_HEX,
    IMAGE,
    OTHER_HEX,
    REPO,
    envelope_json,
    slsa02_statement,
    slsa1_statement,
    to_bytes,
)


@pytest.fixture(scope="module")
def gate(policy_dir: Path, data_file: Path, key_file: Path) -> Gate:
    g = Gate(GateConfig(policy_paths=(policy_dir,), data_paths=(data_file,), key_files=(key_file,)))
    yield g
    g.close()


def codes(decision: Decision) -> list[str]:
    return [v.code for v in decision.violations]


def test_allowed(gate: Gate, sign) -> None:
    decision = gate.verify_sync(IMAGE, attestations=[sign(slsa02_statement())])
    assert decision.allowed, decision.to_dict()
    assert decision.exit_code == 0
    assert decision.image == IMAGE
    assert decision.violations == () and decision.warnings == () and decision.errors == ()
    assert decision.rules_evaluated == 2
    [att] = decision.attestations
    assert att.verified and att.predicate_type == "https://slsa.dev/provenance/v0.2"


def test_allowed_with_slsa_v1(gate: Gate, sign) -> None:
    decision = gate.verify_sync(IMAGE, attestations=[sign(slsa1_statement())])
    assert decision.allowed, decision.to_dict()


def test_warning_does_not_deny(gate: Gate, sign) -> None:
    decision = gate.verify_sync(IMAGE, attestations=[sign(slsa02_statement(tasks=1))])
    assert decision.allowed
    [warning] = decision.warnings
    assert warning.code == "provenance.several_tasks"
    assert warning.msg == "pipeline has 1 task(s)"
    assert warning.solution == "Check the pipeline definition."


def test_policy_violation_denies_with_the_rule_text(gate: Gate, sign) -> None:
    statement = slsa02_statement()
    statement["predicate"]["builder"]["id"] = "https://ci.example/other"
    decision = gate.verify_sync(IMAGE, attestations=[sign(statement)])
    assert not decision.allowed and decision.decided and decision.exit_code == 1
    [violation] = decision.violations
    assert violation.code == "provenance.trusted_builder"
    assert violation.msg == f"no provenance from builder {BUILDER_ID}"
    assert violation.title == "Provenance from the trusted builder"
    assert violation.solution == "Build the image in the Tekton pipeline watched by Chains."


def test_unverified_statement_never_reaches_the_policy(gate: Gate, sign, trusted_signer) -> None:
    # A genuine statement from the wrong builder, plus a forged one claiming the right builder: if the
    # forgery reached the policy, the image would be allowed.
    genuine = slsa02_statement()
    genuine["predicate"]["builder"]["id"] = "https://ci.example/other"
    doc = json.loads(sign(genuine))
    doc["payload"] = base64.b64encode(to_bytes(slsa02_statement())).decode()
    forged = json.dumps(doc).encode()
    decision = gate.verify_sync(IMAGE, attestations=[sign(genuine), forged])
    assert not decision.allowed
    assert codes(decision) == ["provenance.trusted_builder"]
    assert [a.verified for a in decision.attestations] == [True, False]
    assert "no signature" in decision.attestations[1].error
    prepared = gate.prepare_offline(IMAGE, [sign(genuine), forged])
    assert [a["statement"] for a in prepared.policy_input()["attestations"]] == [genuine]


@pytest.mark.parametrize(
    "make_line",
    [
        pytest.param(lambda s, u: envelope_json(to_bytes(slsa02_statement()), u), id="untrusted-signer"),
        pytest.param(lambda s, u: envelope_json(to_bytes(slsa02_statement(OTHER_HEX)), s), id="other-image"),
        pytest.param(
            lambda s, u: envelope_json(to_bytes(slsa02_statement()), s, payload_type="text/plain"),
            id="payload-type",
        ),
        pytest.param(
            lambda s, u: b'{"payload": "e30=", "payloadType": "x", "signatures": [{"sig": "*"}]}', id="b64"
        ),
        pytest.param(lambda s, u: b"{", id="json"),
    ],
)
def test_only_bad_attestations_deny(gate: Gate, trusted_signer, untrusted_signer, make_line) -> None:
    decision = gate.verify_sync(IMAGE, attestations=[make_line(trusted_signer, untrusted_signer)])
    assert not decision.allowed and decision.decided and decision.exit_code == 1
    assert codes(decision)[0] == NO_VERIFIED_ATTESTATION
    assert "none of the 1 attestation(s)" in decision.violations[0].msg
    [att] = decision.attestations
    assert not att.verified
    assert decision.errors == (att.error,)


def test_zero_attestations_deny(gate: Gate) -> None:
    decision = gate.verify_sync(IMAGE, attestations=[])
    assert not decision.allowed and decision.exit_code == 1
    assert codes(decision)[0] == NO_VERIFIED_ATTESTATION
    assert decision.violations[0].msg == f"no attestations were found for {IMAGE}"


def test_tag_without_digest_on_offline_path_is_undecided(gate: Gate, sign) -> None:
    decision = gate.verify_sync(f"{REPO}:v1", attestations=[sign(slsa02_statement())])
    assert not decision.allowed and not decision.decided and decision.exit_code == 2
    assert "has no digest" in decision.errors[0]


def test_deadline_passed_is_undecided(gate: Gate, sign) -> None:
    decision = gate.verify_sync(IMAGE, attestations=[sign(slsa02_statement())], deadline=time.monotonic() - 1)
    assert not decision.allowed and decision.exit_code == 2
    assert "deadline" in decision.errors[-1]


def test_engine_error_is_undecided(tmp_path: Path, key_file: Path, sign) -> None:
    # Two complete definitions of `val` conflict only when the input has an image ref: the policy loads
    # and compiles, then fails at evaluation time.
    (tmp_path / "release").mkdir()
    (tmp_path / "release" / "broken.rego").write_text(
        'package policy.release.broken\n\nimport rego.v1\n\nval := input.image.ref\n\nval := "other"\n\n'
        "# METADATA\n# title: Broken\n# description: d\n# custom:\n#   short_name: broken\n"
        "#   failure_msg: broken %s\n#   solution: s\n"
        'deny contains result if {\n\tval == "x"\n\tresult := {"code": "broken.broken", "params": [val]}\n}\n'
    )
    gate = Gate(GateConfig(policy_paths=(tmp_path,), key_files=(key_file,)))
    decision = gate.verify_sync(IMAGE, attestations=[sign(slsa02_statement())])
    assert not decision.allowed and not decision.decided and decision.exit_code == 2
    assert decision.errors[-1].startswith("policy evaluation failed")


def test_no_rules_evaluated_denies(tmp_path: Path, key_file: Path, sign) -> None:
    (tmp_path / "release").mkdir()
    (tmp_path / "release" / "empty.rego").write_text("package policy.release.empty\n\nhelper := 1\n")
    gate = Gate(GateConfig(policy_paths=(tmp_path,), key_files=(key_file,)))
    decision = gate.verify_sync(IMAGE, attestations=[sign(slsa02_statement())])
    assert not decision.allowed and decision.exit_code == 1
    assert codes(decision) == [NO_RULES_EVALUATED]


def test_default_policy_is_the_bundled_library(key_file: Path, sign) -> None:
    import policies

    gate = Gate(GateConfig(key_files=(key_file,)))
    assert [Path(p).resolve() for p in gate.policy_set.roots] == [Path(policies.ROOT).resolve()]
    decision = gate.verify_sync(IMAGE, attestations=[sign(slsa02_statement())])
    # The hand-made statement lacks what the library requires (tasks, results): denied by its rules.
    assert decision.decided and not decision.allowed
    assert decision.rules_evaluated > 0
    assert all(not c.startswith("builtin.") for c in codes(decision))


def test_configuration_errors_raise_at_construction(tmp_path: Path, policy_dir: Path, key_file: Path) -> None:
    with pytest.raises(InputError, match="no trust configured"):
        Gate(GateConfig(policy_paths=(policy_dir,)))
    bad = tmp_path / "bad.pub"
    bad.write_text("not a key")
    with pytest.raises(KeyLoadError, match=str(bad)):
        Gate(GateConfig(policy_paths=(policy_dir,), key_files=(bad,)))


def test_policy_input_shape(gate: Gate, sign, trusted_signer) -> None:
    prepared = gate.prepare_offline(IMAGE, [sign(slsa02_statement())])
    doc = prepared.policy_input()
    assert doc["image"] == {"ref": IMAGE, "digest": f"sha256:{DIGEST_HEX}"}
    [att] = doc["attestations"]
    assert att["statement"] == slsa02_statement()
    [sig] = att["signatures"]
    assert sig["keyid"] == trusted_signer.keyid
    raw = json.loads(sign(slsa02_statement()))
    assert base64.b64decode(sig["sig"]) and set(sig) == {"keyid", "sig"}
    assert raw["payloadType"] == "application/vnd.in-toto+json"


# -- what a gate opened, it closes ----------------------------------------------------------------------


@pytest.fixture
def config(policy_dir: Path, data_file: Path, key_file: Path) -> GateConfig:
    return GateConfig(policy_paths=(policy_dir,), data_paths=(data_file,), key_files=(key_file,))


def _closed_engine(gate: Gate) -> None:
    from attestation.errors import PolicyError

    with pytest.raises(PolicyError, match="closed"):
        gate.engine.evaluate({"image": {}, "attestations": []})


def test_async_with_closes_the_registry_client_and_the_engine(config: GateConfig, sign) -> None:
    line = sign(slsa02_statement())

    async def go() -> tuple[Gate, object, Decision]:
        async with Gate(config) as gate:
            client = gate._client
            decision = await gate.verify(IMAGE, attestations=[line])
        return gate, client, decision

    gate, client, decision = asyncio.run(go())
    assert decision.allowed
    assert client is not None and client._http.is_closed
    _closed_engine(gate)
    # A decision after the block is never an allow: the engine is gone.
    after = gate.verify_sync(IMAGE, attestations=[line])
    assert not after.decided and "policy engine is closed" in after.errors[-1]


def test_async_with_closes_everything_when_the_block_raises(config: GateConfig) -> None:
    opened: list[tuple[Gate, object]] = []

    async def go() -> None:
        async with Gate(config) as gate:
            opened.append((gate, gate._client))
            raise RuntimeError("the caller failed")

    with pytest.raises(RuntimeError, match="the caller failed"):
        asyncio.run(go())
    [(gate, client)] = opened
    assert client._http.is_closed
    _closed_engine(gate)


def test_with_closes_the_engine_and_closing_twice_is_harmless(config: GateConfig, sign) -> None:
    with Gate(config) as gate:
        assert gate.verify_sync(IMAGE, attestations=[sign(slsa02_statement())]).allowed
    _closed_engine(gate)
    gate.close()
    asyncio.run(gate.aclose())
    _closed_engine(gate)
