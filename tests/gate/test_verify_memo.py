"""A long-lived :class:`Gate` remembers attestations that verified (by their exact bytes and the image), and
the decisions stay exactly what a fresh gate would decide."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path

import pytest

from attestation.cosign import RawAttestation
from gate.checklist import NO_VERIFIED_ATTESTATION, check_attestation
from gate.memo import VerifiedMemo
from gate.verify import Gate, GateConfig
from tests.gate.conftest import DIGEST_HEX, IMAGE, OTHER_HEX, REPO, slsa02_statement, to_bytes

OTHER_IMAGE = f"{REPO}@sha256:{OTHER_HEX}"


@pytest.fixture
def gate(policy_dir: Path, data_file: Path, key_file: Path) -> Gate:
    g = Gate(GateConfig(policy_paths=(policy_dir,), data_paths=(data_file,), key_files=(key_file,)))
    yield g
    g.close()


def _comparable(decision) -> dict:
    doc = decision.to_dict()
    doc.pop("elapsed_ms")
    doc.pop("timings")
    return doc


def test_repeated_verification_decides_the_same(gate: Gate, sign, policy_dir, data_file, key_file) -> None:
    line = sign(slsa02_statement())
    config = GateConfig(
        policy_paths=(policy_dir,), data_paths=(data_file,), key_files=(key_file,), verified_memo_bytes=0
    )
    forgetful = Gate(config)  # verifies everything every time
    try:
        expected = _comparable(forgetful.verify_sync(IMAGE, attestations=[line]))
        for _ in range(3):
            assert _comparable(gate.verify_sync(IMAGE, attestations=[line])) == expected
            assert _comparable(forgetful.verify_sync(IMAGE, attestations=[line])) == expected
    finally:
        forgetful.close()
    assert expected["allowed"] is True


def test_remembered_bytes_are_named_where_they_are_found_now(gate: Gate, sign) -> None:
    line = sign(slsa02_statement())
    gate.verify_sync(IMAGE, attestations=[line])
    first = RawAttestation(data=line, source="referrer sha256:1")
    again = RawAttestation(data=line, source="app:sha256-x.att layer 3")
    prepared = gate.prepare_offline(IMAGE, [first, again])
    assert [c.report.source for c in prepared.checked] == ["referrer sha256:1", "app:sha256-x.att layer 3"]
    assert [c.statement.source for c in prepared.checked] == ["referrer sha256:1", "app:sha256-x.att layer 3"]


def test_what_verified_for_one_image_is_checked_again_for_another(gate: Gate, sign) -> None:
    # The statement names IMAGE; after it verified for IMAGE, the same bytes found for another image must
    # still fail the subject check there.
    line = sign(slsa02_statement(DIGEST_HEX))
    assert gate.verify_sync(IMAGE, attestations=[line]).allowed
    decision = gate.verify_sync(OTHER_IMAGE, attestations=[line])
    assert not decision.allowed and decision.violations[0].code == NO_VERIFIED_ATTESTATION
    assert "no subject of the statement has the image digest" in decision.attestations[0].error


def test_a_changed_byte_is_verified_afresh(gate: Gate, sign) -> None:
    line = sign(slsa02_statement())
    assert gate.verify_sync(IMAGE, attestations=[line]).allowed
    doc = json.loads(line)
    doc["payload"] = base64.b64encode(to_bytes(slsa02_statement(tasks=3))).decode()
    decision = gate.verify_sync(IMAGE, attestations=[json.dumps(doc).encode()])
    assert not decision.allowed
    assert "no signature" in decision.attestations[0].error


def test_memo_is_bounded_by_bytes(trust_for_memo, sign) -> None:
    from attestation.reference import parse

    image = parse(IMAGE)
    raws = [RawAttestation(data=sign(slsa02_statement(tasks=2 + i)), source=f"a{i}") for i in range(5)]
    memo = VerifiedMemo(max_bytes=sum(len(r.data) for r in raws[2:]))  # room for the last three
    for raw in raws:
        checked = check_attestation(raw, image, trust_for_memo)
        memo.put(VerifiedMemo.key(raw, image), checked, len(raw.data))
    kept = [memo.get(VerifiedMemo.key(raw, image), raw.source) is not None for raw in raws]
    assert kept == [False, False, True, True, True]  # least recently used out first


@pytest.fixture
def trust_for_memo(key_file: Path):
    from gate.trust import load_trust_policy

    return load_trust_policy([key_file])


def test_the_memo_keeps_the_encoding_and_gives_back_the_same_statement(trust_for_memo, sign) -> None:
    # Kept as bytes (a parsed statement is dozens of objects the garbage collector walks on every full
    # pass, docs/performance.md); what comes back is the same JSON value, named where it is found now.
    from attestation.reference import parse

    image = parse(IMAGE)
    raw = RawAttestation(data=sign(slsa02_statement(tasks=3)), source="a")
    checked = check_attestation(raw, image, trust_for_memo)
    assert checked.statement is not None
    memo = VerifiedMemo(max_bytes=1 << 20)
    memo.put(VerifiedMemo.key(raw, image), checked, len(raw.data))
    got = memo.get(VerifiedMemo.key(raw, image), "b")
    assert got is not None and got.statement is not None
    assert got.statement.statement == checked.statement.statement
    assert got.statement.statement is not checked.statement.statement  # parsed again from the encoding
    assert got.statement.encoded == checked.statement.encoded
    assert got.statement.signers == checked.statement.signers and got.statement.source == "b"
    assert got.report == replace(checked.report, source="b") and not got.unusable


def test_what_did_not_verify_is_never_remembered(trust_for_memo, sign) -> None:
    from attestation.reference import parse

    image = parse(OTHER_IMAGE)  # the statement names IMAGE: its subject check fails here
    raw = RawAttestation(data=sign(slsa02_statement(DIGEST_HEX)), source="a")
    checked = check_attestation(raw, image, trust_for_memo)
    assert checked.statement is None
    memo = VerifiedMemo(max_bytes=1 << 20)
    memo.put(VerifiedMemo.key(raw, image), checked, len(raw.data))
    assert memo.get(VerifiedMemo.key(raw, image), "a") is None
