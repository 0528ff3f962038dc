"""Security review findings, each pinned by a test: trusted-but-unusable statements deny, hostile text cannot
drive the terminal, and every decision keeps the DESIGN.md §3 shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from attestation import dsse
from gate.checklist import NO_VERIFIED_ATTESTATION, UNUSABLE_STATEMENT
from gate.cli import run
from gate.decision import printable, render_text
from gate.verify import Gate, GateConfig
from tests.gate.conftest import (
    DIGEST_HEX,
    IMAGE,
    OTHER_HEX,
    envelope_json,
    slsa02_statement,
    to_bytes,
)

ESC = "\x1b"


@pytest.fixture(scope="module")
def gate(policy_dir: Path, data_file: Path, key_file: Path) -> Gate:
    g = Gate(GateConfig(policy_paths=(policy_dir,), data_paths=(data_file,), key_files=(key_file,)))
    yield g
    g.close()


def _not_a_statement(trusted_signer) -> bytes:
    future = slsa02_statement()
    future["_type"] = "https://in-toto.io/Statement/v9"
    return envelope_json(to_bytes(future), trusted_signer)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(b"[1, 2, 3]", id="not-an-object"),
        pytest.param(b"{not json", id="not-json"),
        pytest.param(None, id="unknown-statement-type"),
    ],
)
def test_trusted_but_unusable_statement_denies_next_to_a_good_one(
    gate: Gate, sign, trusted_signer, payload
) -> None:
    # A trusted signer signed something the gate cannot read; it may have been the attestation that
    # should deny the image, so the good provenance next to it does not carry the decision.
    bad = _not_a_statement(trusted_signer) if payload is None else envelope_json(payload, trusted_signer)
    decision = gate.verify_sync(IMAGE, attestations=[sign(slsa02_statement()), bad])
    assert not decision.allowed and decision.decided and decision.exit_code == 1
    assert [v.code for v in decision.violations] == [UNUSABLE_STATEMENT]
    [finding] = decision.violations
    assert "attestation 2: statement" in finding.msg
    assert [a.verified for a in decision.attestations] == [True, False]
    assert decision.attestations[1].signer["keyid"] == trusted_signer.keyid


@pytest.mark.parametrize(
    ("rename", "spelled"),
    [
        pytest.param({"_type": "type"}, "type", id="type"),
        pytest.param({"predicateType": "predicate_type"}, "predicate_type", id="predicate_type"),
        pytest.param({"_type": "type", "predicateType": "predicate_type"}, "type", id="both"),
    ],
)
def test_a_trusted_statement_spelled_with_other_field_names_denies(
    gate: Gate, sign, trusted_signer, rename: dict[str, str], spelled: str
) -> None:
    # The same provenance with a field under another name is not read as the same statement: the
    # trusted signer signed something unusable, which denies the image next to good provenance.
    statement = slsa02_statement()
    for wire, other in rename.items():
        statement[other] = statement.pop(wire)
    odd = envelope_json(to_bytes(statement), trusted_signer)
    decision = gate.verify_sync(IMAGE, attestations=[sign(slsa02_statement()), odd])
    assert not decision.allowed and decision.decided and decision.exit_code == 1
    assert [v.code for v in decision.violations] == [UNUSABLE_STATEMENT]
    assert f"field {spelled}: not an in-toto statement field" in decision.attestations[1].error
    assert [a.verified for a in decision.attestations] == [True, False]


@pytest.mark.parametrize(
    "make_line",
    [
        pytest.param(lambda s, u: envelope_json(to_bytes(slsa02_statement(OTHER_HEX)), s), id="other-image"),
        pytest.param(lambda s, u: envelope_json(b"{not json", u), id="untrusted-garbage"),
        pytest.param(lambda s, u: b"{", id="unsigned-garbage"),
    ],
)
def test_attestations_that_are_not_ours_to_judge_are_skipped(
    gate: Gate, sign, trusted_signer, untrusted_signer, make_line
) -> None:
    # The controls: provenance about another image, or anything no trusted key signed, says nothing
    # about this image and does not block the good attestation.
    decision = gate.verify_sync(
        IMAGE, attestations=[sign(slsa02_statement()), make_line(trusted_signer, untrusted_signer)]
    )
    assert decision.allowed, decision.to_dict()
    assert [a.verified for a in decision.attestations] == [True, False]
    assert decision.errors == (decision.attestations[1].error,)


def test_unusable_statement_alone_reports_both_reasons(gate: Gate, trusted_signer) -> None:
    decision = gate.verify_sync(IMAGE, attestations=[_not_a_statement(trusted_signer)])
    assert not decision.allowed and decision.exit_code == 1
    codes = [v.code for v in decision.violations]
    assert codes[0] == NO_VERIFIED_ATTESTATION and codes[-1] == UNUSABLE_STATEMENT


def test_text_output_cannot_drive_the_terminal(
    capsys, tmp_path: Path, trusted_signer, key_file: Path, policy_dir: Path, data_file: Path
) -> None:
    # A trusted statement about another image, whose subject name carries escape sequences: the name
    # is quoted in the reason, which the text output prints.
    hostile = slsa02_statement(OTHER_HEX, name=f"evil{ESC}]0;owned\a{ESC}[2J\nFAKE: ALLOWED")
    lines = tmp_path / "a.jsonl"
    lines.write_bytes(envelope_json(to_bytes(hostile), trusted_signer) + b"\n")
    args = ["--key", str(key_file), "--policy", str(policy_dir), "--data", str(data_file)]
    code = run(["verify", IMAGE, *args, "--attestations", str(lines)])
    out, _ = capsys.readouterr()
    assert code == 1
    assert ESC not in out and "\a" not in out
    assert not any(line.startswith("FAKE") for line in out.splitlines())
    assert "evil\\x1b]0;owned\\x07\\x1b[2J\\x0aFAKE" in out  # shown, escaped, on one line
    # JSON keeps the exact text, escaped by the encoder.
    run(["verify", IMAGE, *args, "--attestations", str(lines), "--output", "json"])
    doc = json.loads(capsys.readouterr().out)
    assert f"evil{ESC}]0;owned" in doc["attestations"][0]["error"]


def test_error_line_cannot_drive_the_terminal(capsys, key_file: Path) -> None:
    code = run(["verify", f"localhost:5000/app{ESC}[31m@sha256:{DIGEST_HEX}", "--key", str(key_file)])
    _, err = capsys.readouterr()
    assert code == 2
    [line] = err.splitlines()
    assert line.startswith("gate: error: ") and ESC not in line


def test_printable_keeps_ordinary_text() -> None:
    assert printable("Required task 'buildah' is missing — ünïcode ✓") == (
        "Required task 'buildah' is missing — ünïcode ✓"
    )
    assert printable("a\tb\nc\x7fd\x9be") == "a\\x09b\\x0ac\\x7fd\\x9be"


def _contract(doc: dict[str, Any]) -> None:
    """DESIGN.md §3: the fields every surface promises, with their types."""
    assert isinstance(doc["allowed"], bool)
    assert isinstance(doc["image"], str)
    assert isinstance(doc["errors"], list) and all(isinstance(e, str) for e in doc["errors"])
    assert isinstance(doc["elapsed_ms"], float | int)
    for finding in doc["violations"] + doc["warnings"]:
        assert {"code", "msg", "title", "description", "solution"} <= set(finding)
        assert set(finding) <= {"code", "msg", "title", "description", "solution", "term"}
        assert all(isinstance(v, str) for v in finding.values())
    for att in doc["attestations"]:
        assert {"predicateType", "buildType", "signer", "verified"} <= set(att)
        assert isinstance(att["verified"], bool) and isinstance(att["signer"], dict)


def test_every_kind_of_decision_keeps_the_contract(gate: Gate, sign, trusted_signer) -> None:
    other_builder = slsa02_statement(tasks=1)  # also draws a warning
    other_builder["predicate"]["builder"]["id"] = "https://ci.example/other"
    decisions = {
        "allowed": gate.verify_sync(IMAGE, attestations=[sign(slsa02_statement())]),
        "denied by policy": gate.verify_sync(IMAGE, attestations=[sign(other_builder)]),
        "unusable": gate.verify_sync(IMAGE, attestations=[_not_a_statement(trusted_signer)]),
        "no attestations": gate.verify_sync(IMAGE, attestations=[]),
        "bad reference": gate.verify_sync("not a reference", attestations=[]),
        "tag on the offline path": gate.verify_sync(IMAGE.split("@")[0] + ":v1", attestations=[]),
    }
    for name, decision in decisions.items():
        doc = json.loads(json.dumps(decision.to_dict()))
        _contract(doc)
        assert doc["allowed"] is (name == "allowed"), name
        text = render_text(decision)
        assert text.splitlines()[0].split(":")[0] in {"ALLOWED", "DENIED", "COULD NOT DECIDE"}


def test_envelope_signed_twice_by_the_same_key_counts_once_in_the_policy_input(
    gate: Gate, trusted_signer
) -> None:
    payload = to_bytes(slsa02_statement())
    sig = trusted_signer.sign(dsse.pae("application/vnd.in-toto+json", payload))
    env = dsse.Envelope(payload, "application/vnd.in-toto+json", (dsse.Signature(sig), dsse.Signature(sig)))
    prepared = gate.prepare_offline(IMAGE, [env.to_json()])
    [att] = prepared.policy_input()["attestations"]
    assert len(att["signatures"]) == 1
