"""The policy input the wasm engine is handed, assembled from statements encoded once where they were
verified, is the document the policies see through every other path (build_policy_input), and decides
the same."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import policies
from gate.policy import load_policy_set
from gate.policy.model import encode_json
from gate.policy.wasm import WasmEngine
from gate.policy_input import VerifiedStatement, build_policy_input, build_policy_input_json
from gate.verify import Gate, GateConfig
from tests.gate.conftest import DIGEST_HEX, IMAGE, REPO, envelope_json, slsa02_statement, to_bytes

INPUTS = Path(__file__).parent / "policy_inputs"

# JSON values as a parsed statement can hold them: no lone surrogates (those cannot be encoded as UTF-8;
# see the test below), no NaN.
_text = st.text(st.characters(exclude_categories=("Cs",)), max_size=12)
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=25,
)


@pytest.fixture(scope="module")
def gate(key_file: Path) -> Gate:
    g = Gate(GateConfig(key_files=(key_file,)))  # the bundled library, default engine
    yield g
    g.close()


def _prepared(gate: Gate, sign, statements: list[dict[str, Any]]):
    prepared = gate.prepare_offline(IMAGE, [sign(s) for s in statements])
    assert len(prepared.verified) == len(statements), [c.report.error for c in prepared.checked]
    return prepared


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(extra=st.dictionaries(_text, _json, max_size=5), second=st.booleans())
def test_assembled_json_is_the_same_document(gate: Gate, sign, extra: dict, second: bool) -> None:
    first = slsa02_statement()
    first["predicate"]["extra"] = extra
    statements = [first, slsa02_statement(tasks=1)] if second else [first]
    prepared = _prepared(gate, sign, statements)
    raw = build_policy_input_json(prepared.image, prepared.verified)
    assert raw is not None
    assert json.loads(raw) == build_policy_input(prepared.image, prepared.verified)


def test_the_bundled_sample_decides_the_same_both_ways(gate: Gate, sign) -> None:
    sample = json.loads((INPUTS / "tep0084-statement.json").read_text())
    sample["subject"] = [{"name": REPO, "digest": {"sha256": DIGEST_HEX}}]
    allowed = _prepared(gate, sign, [sample])
    tampered = json.loads(json.dumps(sample))
    tampered["predicate"]["builder"]["id"] = "https://evil.example/builder"
    denied = _prepared(gate, sign, [tampered])
    engine = WasmEngine(load_policy_set([Path(policies.ROOT)]))
    try:
        for prepared in (allowed, denied):
            doc = build_policy_input(prepared.image, prepared.verified)
            raw = build_policy_input_json(prepared.image, prepared.verified)
            assert raw is not None
            by_json, by_doc = engine.evaluate_json(raw), engine.evaluate(doc)
            assert (by_json.violations, by_json.warnings, by_json.rules_evaluated) == (
                by_doc.violations,
                by_doc.warnings,
                by_doc.rules_evaluated,
            )
    finally:
        engine.close()
    # the two inputs do decide differently, so agreeing on both means something
    assert "builder.builder_id_accepted" not in _codes(allowed, gate)
    assert "builder.builder_id_accepted" in _codes(denied, gate)


def _codes(prepared, gate: Gate) -> set[str]:
    return {v.code for v in gate.decide(prepared).violations}


def test_a_signed_statement_with_a_lone_surrogate_is_unusable(gate: Gate, trusted_signer) -> None:
    # "\ud800" is JSON for a lone surrogate, which Python keeps and Go (OPA) reads as U+FFFD: a statement
    # holding one would read differently to the policy than it was signed, so it never reaches it; its
    # signer is trusted, so the image is denied (not skipped, not undecided).
    payload = json.dumps(slsa02_statement()).replace('"buildConfig"', '"note": "\\ud800", "buildConfig"', 1)
    prepared = gate.prepare_offline(IMAGE, [envelope_json(payload.encode(), trusted_signer)])
    assert prepared.verified == []
    decision = gate.decide(prepared)
    assert decision.decided and not decision.allowed and decision.exit_code == 1
    assert "unpaired surrogate \\ud800" in decision.attestations[0].error


def test_a_statement_that_cannot_be_encoded_is_still_refused_with_the_reason(
    gate: Gate, trusted_signer
) -> None:
    # A statement no JSON reader of the gate would return (the lone surrogate above), handed over as
    # verified: no encoding is remembered, the document path is taken, and the engine refuses it
    # (undecided, never allowed).
    prepared = gate.prepare_offline(IMAGE, [envelope_json(to_bytes(slsa02_statement()), trusted_signer)])
    [verified] = prepared.verified
    statement = {**verified.statement, "note": "\ud800"}
    spoilt = VerifiedStatement(statement, verified.signers, verified.source).with_encoding()
    assert spoilt.encoded is None
    prepared.checked[0] = replace(prepared.checked[0], statement=spoilt, key=None)
    assert build_policy_input_json(prepared.image, prepared.verified) is None
    decision = gate.decide(prepared)
    assert not decision.allowed and decision.exit_code == 2
    assert any("not plain JSON" in e for e in decision.errors), decision.errors
    with pytest.raises(ValueError):
        encode_json(statement)
