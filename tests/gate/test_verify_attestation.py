"""One attestation at a time: what reaches the policy and what is turned away, with the reason."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from attestation.cosign import RawAttestation
from attestation.dsse import pae
from attestation.keys import PrivateKeySigner
from attestation.limits import MAX_ENVELOPE_BYTES
from attestation.reference import parse
from gate.checklist import check_attestation
from gate.offline import read_attestations_file
from gate.trust import TrustPolicy, load_trust_policy
from tests.gate.conftest import (
    DIGEST_HEX,
    IMAGE,
    OTHER_HEX,
    PAYLOAD_TYPE,
    envelope_json,
    raw_envelope,
    slsa02_statement,
    slsa1_statement,
    to_bytes,
)

REF = parse(IMAGE)


@pytest.fixture(scope="module")
def trust(key_file) -> TrustPolicy:
    return load_trust_policy([key_file])


def check(data: bytes, trust: TrustPolicy, **kw: Any):
    return check_attestation(RawAttestation(data=data, source="att.jsonl:1", **kw), REF, trust)


@pytest.mark.parametrize(
    ("statement", "predicate_type", "build_type"),
    [
        (slsa02_statement(), "https://slsa.dev/provenance/v0.2", "tekton.dev/v1beta1/PipelineRun"),
        (slsa1_statement(), "https://slsa.dev/provenance/v1", "https://tekton.dev/chains/v2/slsa"),
    ],
    ids=["intoto-v0.1-slsa-v0.2", "intoto-v1-slsa-v1.0"],
)
def test_valid_attestation_reaches_policy_unchanged(
    statement: dict, predicate_type: str, build_type: str, trust, trusted_signer: PrivateKeySigner
) -> None:
    checked = check(envelope_json(to_bytes(statement), trusted_signer), trust)
    assert checked.report.verified, checked.report.error
    assert checked.report.error is None
    assert checked.report.predicate_type == predicate_type
    assert checked.report.build_type == build_type
    assert checked.report.signer == {
        "kind": "key",
        "keyid": trusted_signer.keyid,
        "algorithm": "ecdsa-p256-sha256",
    }
    assert checked.statement is not None
    assert checked.statement.statement == statement  # exactly what was signed
    [identity] = checked.statement.signers
    assert identity.keyid == trusted_signer.keyid


def rejected(checked, *needles: str) -> None:
    assert not checked.report.verified
    assert checked.statement is None, "a rejected attestation must never reach the policy"
    assert checked.report.error
    for needle in needles:
        assert needle in checked.report.error, checked.report.error
    assert "\n" not in checked.report.error


def test_tampered_payload(trust, trusted_signer) -> None:
    doc = json.loads(envelope_json(to_bytes(slsa02_statement()), trusted_signer))
    forged = slsa02_statement()
    forged["predicate"]["builder"]["id"] = "https://evil.example/builder"
    doc["payload"] = base64.b64encode(to_bytes(forged)).decode()
    rejected(check(json.dumps(doc).encode(), trust), "att.jsonl:1", "no signature", "verifies")


def test_untrusted_signer(trust, untrusted_signer) -> None:
    rejected(check(envelope_json(to_bytes(slsa02_statement()), untrusted_signer), trust), "no signature")


def test_keyid_hint_is_not_trusted(trust, trusted_signer, untrusted_signer) -> None:
    # An untrusted signer naming the trusted key's keyid gains nothing.
    line = envelope_json(to_bytes(slsa02_statement()), untrusted_signer, keyid=trusted_signer.keyid)
    rejected(check(line, trust), "no signature")
    # A trusted signature under a wrong hint still verifies, and reports the real key, not the hint.
    line = envelope_json(to_bytes(slsa02_statement()), trusted_signer, keyid=untrusted_signer.keyid)
    checked = check(line, trust)
    assert checked.report.verified
    assert checked.report.signer["keyid"] == trusted_signer.keyid


def test_subject_of_another_image(trust, trusted_signer) -> None:
    line = envelope_json(to_bytes(slsa02_statement(OTHER_HEX)), trusted_signer)
    checked = check(line, trust)
    rejected(checked, f"sha256:{DIGEST_HEX}", OTHER_HEX, "no subject")
    # The signature was fine, so the report can say what it was about and who signed it.
    assert checked.report.predicate_type == "https://slsa.dev/provenance/v0.2"
    assert checked.report.signer["keyid"] == trusted_signer.keyid


def test_subject_digest_must_match_exactly(trust, trusted_signer) -> None:
    line = envelope_json(to_bytes(slsa02_statement(DIGEST_HEX.upper())), trusted_signer)
    rejected(check(line, trust), "no subject")


def test_statement_without_subject(trust, trusted_signer) -> None:
    statement = slsa1_statement()
    statement["subject"] = []
    rejected(check(envelope_json(to_bytes(statement), trusted_signer), trust), "no subject", "none")


def test_signature_over_raw_payload_instead_of_pae(trust, trusted_signer) -> None:
    payload = to_bytes(slsa02_statement())
    rejected(check(raw_envelope(payload, [trusted_signer.sign(payload)]), trust), "no signature")


def test_signature_over_pae_verifies_when_assembled_by_hand(trust, trusted_signer) -> None:
    # Control for the test above: the same hand-built envelope with the PAE signed is accepted.
    payload = to_bytes(slsa02_statement())
    checked = check(raw_envelope(payload, [trusted_signer.sign(pae(PAYLOAD_TYPE, payload))]), trust)
    assert checked.report.verified


def test_duplicate_signatures_count_once(trust, trusted_signer) -> None:
    payload = to_bytes(slsa02_statement())
    sig = trusted_signer.sign(pae(PAYLOAD_TYPE, payload))
    checked = check(raw_envelope(payload, [sig, sig, sig]), trust)
    assert checked.report.verified
    assert checked.statement is not None
    assert len(checked.statement.signers) == 1


def test_duplicate_bad_signatures(trust, untrusted_signer) -> None:
    payload = to_bytes(slsa02_statement())
    sig = untrusted_signer.sign(pae(PAYLOAD_TYPE, payload))
    rejected(check(raw_envelope(payload, [sig, sig]), trust), "no signature")


def test_one_good_signature_among_bad_ones(trust, trusted_signer, untrusted_signer) -> None:
    payload = to_bytes(slsa02_statement())
    good = trusted_signer.sign(pae(PAYLOAD_TYPE, payload))
    bad = untrusted_signer.sign(pae(PAYLOAD_TYPE, payload))
    checked = check(raw_envelope(payload, [bad, b"\x30\x00", good]), trust)
    assert checked.report.verified
    assert len(checked.statement.signers) == 1


def test_no_signatures(trust) -> None:
    rejected(check(raw_envelope(to_bytes(slsa02_statement()), []), trust), "signatures is empty")


def test_empty_signature(trust) -> None:
    rejected(check(raw_envelope(to_bytes(slsa02_statement()), [b""]), trust), "sig is empty")


@pytest.mark.parametrize(
    ("line", "needle"),
    [
        (b'{"payloadType": "application/vnd.in-toto+json", "payload": "e30=", "signa', "not valid JSON"),
        (b"not json at all", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"payloadType":"t","payload":"%%%=","signatures":[{"sig":"AA=="}]}', "base64"),
        (b'{"payloadType":"t","payload":"e30=","signatures":[{"sig":"A"}]}', "base64"),
        (b'{"payload":"e30=","signatures":[{"sig":"AAAA"}]}', "payloadType is missing"),
        (b"\xff\xfe{}", "UTF-8"),
    ],
    ids=["truncated", "text", "array", "payload-b64", "sig-b64", "no-type", "utf16"],
)
def test_malformed_envelope(trust, line: bytes, needle: str) -> None:
    rejected(check(line, trust), "att.jsonl:1", needle)


def test_wrong_payload_type(trust, trusted_signer) -> None:
    # Signed correctly, but as something other than an in-toto statement.
    line = envelope_json(to_bytes(slsa02_statement()), trusted_signer, payload_type="application/json")
    rejected(check(line, trust), "payload type", "application/vnd.in-toto+json")


def test_signed_payload_that_is_not_a_statement(trust, trusted_signer) -> None:
    rejected(check(envelope_json(b"[1,2,3]", trusted_signer), trust), "statement")
    rejected(check(envelope_json(b"{not json", trusted_signer), trust), "statement", "not valid JSON")
    unknown = slsa02_statement()
    unknown["_type"] = "https://in-toto.io/Statement/v9"
    rejected(check(envelope_json(to_bytes(unknown), trusted_signer), trust), "_type")


def test_oversized_attestation_is_refused_before_parsing(trust) -> None:
    # Not even valid JSON: the size bound must answer before any parser looks at it.
    line = b"{" + b" " * MAX_ENVELOPE_BYTES + b"}"
    rejected(check(line, trust), "too large", str(MAX_ENVELOPE_BYTES))


def test_deeply_nested_statement_is_bounded(trust, trusted_signer) -> None:
    statement = slsa02_statement()
    nested: Any = {}
    for _ in range(200):
        nested = {"x": nested}
    statement["predicate"]["deep"] = nested
    rejected(check(envelope_json(to_bytes(statement), trusted_signer), trust), "deeper")


def test_unknown_media_type_is_refused(trust, trusted_signer) -> None:
    line = envelope_json(to_bytes(slsa02_statement()), trusted_signer)
    rejected(check(line, trust, media_type="application/vnd.oci.image.layer.v1.tar"), "media type")


def test_no_keys_configured(trusted_signer) -> None:
    line = envelope_json(to_bytes(slsa02_statement()), trusted_signer)
    rejected(check(line, TrustPolicy()), "no trusted keys")


def test_attestations_file_lines_are_named(tmp_path, sign: Callable[[dict], bytes]) -> None:
    path = tmp_path / "atts.jsonl"
    path.write_bytes(sign(slsa02_statement()) + b"\n\n" + sign(slsa1_statement()) + b"\r\n")
    raws = read_attestations_file(path)
    assert [r.source for r in raws] == [f"{path}:1", f"{path}:3"]
    assert json.loads(raws[1].data)["payloadType"] == PAYLOAD_TYPE


def test_attestations_file_unreadable(tmp_path) -> None:
    from attestation.errors import InputError

    with pytest.raises(InputError, match=r"cannot read attestations file .*missing\.jsonl"):
        read_attestations_file(tmp_path / "missing.jsonl")
