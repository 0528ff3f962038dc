"""DSSE: PAE, envelope JSON, sign and verify (attestation.dsse)."""

from __future__ import annotations

import base64
import json

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from attestation import dsse
from attestation.dsse import Envelope, Signature
from attestation.errors import InputError, LimitExceeded, VerificationError
from attestation.keys import PrivateKeySigner
from attestation.limits import MAX_ENVELOPE_BYTES, MAX_SIGNATURES_PER_ENVELOPE

STATEMENT = b'{"_type":"https://in-toto.io/Statement/v1","predicateType":"https://slsa.dev/provenance/v1"}'


# --- PAE -------------------------------------------------------------------------------------------------


def test_pae_matches_the_dsse_spec_example() -> None:
    # protocol.md: PAE("http://example.com/HelloWorld", "hello world")
    assert dsse.pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_of_in_toto_type_and_empty_body() -> None:
    assert dsse.pae("application/vnd.in-toto+json", b"") == b"DSSEv1 28 application/vnd.in-toto+json 0 "


def test_pae_lengths_count_bytes_not_characters() -> None:
    # "é" is two bytes in UTF-8; the body holds a space and a newline, which must not be escaped.
    assert dsse.pae("é", b"a b\nc\xff") == b"DSSEv1 2 \xc3\xa9 6 a b\nc\xff"


def test_pae_of_a_long_body_uses_decimal_length_without_padding() -> None:
    body = b"x" * 1234
    assert dsse.pae("t", body) == b"DSSEv1 1 t 1234 " + body


# --- sign / verify ---------------------------------------------------------------------------------------


def test_round_trip_for_every_key_type(signer: PrivateKeySigner) -> None:
    envelope = dsse.sign(STATEMENT, signer)
    parsed = Envelope.from_json(envelope.to_json(), source="rt")
    assert parsed == envelope
    assert parsed.payload == STATEMENT and parsed.payload_type == dsse.PAYLOAD_TYPE_INTOTO
    verified = dsse.verify(parsed, [signer.public_key])
    assert [v.key for v in verified] == [signer.public_key]
    assert verified[0].signature.keyid == signer.keyid


def test_signature_is_over_pae_so_raw_payload_signature_does_not_verify(
    p256_signer: PrivateKeySigner,
) -> None:
    raw = Envelope(STATEMENT, dsse.PAYLOAD_TYPE_INTOTO, (Signature(p256_signer.sign(STATEMENT)),))
    with pytest.raises(VerificationError):
        dsse.verify(raw, [p256_signer.public_key])
    # and the same key signing the PAE does verify: the failure above is about what was signed
    good = Envelope(
        STATEMENT,
        dsse.PAYLOAD_TYPE_INTOTO,
        (Signature(p256_signer.sign(dsse.pae(dsse.PAYLOAD_TYPE_INTOTO, STATEMENT))),),
    )
    assert dsse.verify(good, [p256_signer.public_key])


def test_every_flipped_payload_byte_breaks_verification(p256_signer: PrivateKeySigner) -> None:
    payload = b'{"subject":[{"digest":{"sha256":"ab"}}]}'
    envelope = dsse.sign(payload, p256_signer)
    for i in range(len(payload)):
        tampered = bytearray(payload)
        tampered[i] ^= 0x01
        forged = Envelope(bytes(tampered), envelope.payload_type, envelope.signatures)
        with pytest.raises(VerificationError):
            dsse.verify(forged, [p256_signer.public_key])


def test_flipped_signature_bit_breaks_verification(signer: PrivateKeySigner) -> None:
    envelope = dsse.sign(STATEMENT, signer)
    sig = bytearray(envelope.signatures[0].sig)
    sig[len(sig) // 2] ^= 0x10
    forged = Envelope(envelope.payload, envelope.payload_type, (Signature(bytes(sig), signer.keyid),))
    with pytest.raises(VerificationError):
        dsse.verify(forged, [signer.public_key])


def test_changed_payload_type_breaks_verification(p256_signer: PrivateKeySigner) -> None:
    envelope = dsse.sign(STATEMENT, p256_signer)
    forged = Envelope(envelope.payload, "application/json", envelope.signatures)
    with pytest.raises(VerificationError):
        dsse.verify(forged, [p256_signer.public_key])


def test_wrong_key_fails_with_message_naming_source_and_key_count(
    p256_signer: PrivateKeySigner, other_p256_signer: PrivateKeySigner
) -> None:
    envelope = Envelope.from_json(dsse.sign(STATEMENT, p256_signer).to_json(), source="layer sha256:abc")
    with pytest.raises(VerificationError) as err:
        dsse.verify(envelope, [other_p256_signer.public_key])
    assert str(err.value) == "no signature on layer sha256:abc verifies with the 1 configured keys"


def test_no_configured_keys_fails_closed(p256_signer: PrivateKeySigner) -> None:
    with pytest.raises(VerificationError, match="no keys configured"):
        dsse.verify(dsse.sign(STATEMENT, p256_signer), [])


def test_keyid_hint_naming_the_wrong_key_still_verifies_with_the_right_one(
    p256_signer: PrivateKeySigner, other_p256_signer: PrivateKeySigner
) -> None:
    sig = p256_signer.sign(dsse.pae(dsse.PAYLOAD_TYPE_INTOTO, STATEMENT))
    envelope = Envelope(STATEMENT, dsse.PAYLOAD_TYPE_INTOTO, (Signature(sig, keyid=other_p256_signer.keyid),))
    verified = dsse.verify(envelope, [other_p256_signer.public_key, p256_signer.public_key])
    assert [v.key for v in verified] == [p256_signer.public_key]


def test_keyid_hint_matching_a_key_does_not_make_a_bad_signature_pass(
    p256_signer: PrivateKeySigner, other_p256_signer: PrivateKeySigner
) -> None:
    # signed by the other key, but claims to be by the configured one
    sig = other_p256_signer.sign(dsse.pae(dsse.PAYLOAD_TYPE_INTOTO, STATEMENT))
    envelope = Envelope(STATEMENT, dsse.PAYLOAD_TYPE_INTOTO, (Signature(sig, keyid=p256_signer.keyid),))
    with pytest.raises(VerificationError):
        dsse.verify(envelope, [p256_signer.public_key])


def test_duplicate_signatures_count_once(p256_signer: PrivateKeySigner) -> None:
    one = dsse.sign(STATEMENT, p256_signer)
    doubled = Envelope(
        one.payload, one.payload_type, one.signatures * 2 + (Signature(one.signatures[0].sig),)
    )
    assert len(dsse.verify(doubled, [p256_signer.public_key, p256_signer.public_key])) == 1


def test_two_signers_both_reported_and_bad_signature_ignored(
    p256_signer: PrivateKeySigner, other_p256_signer: PrivateKeySigner
) -> None:
    a = dsse.sign(STATEMENT, p256_signer).signatures[0]
    b = dsse.sign(STATEMENT, other_p256_signer).signatures[0]
    junk = Signature(b"\x30\x06\x02\x01\x01\x02\x01\x01", keyid=p256_signer.keyid)
    envelope = Envelope(STATEMENT, dsse.PAYLOAD_TYPE_INTOTO, (junk, a, b))
    verified = dsse.verify(envelope, [p256_signer.public_key, other_p256_signer.public_key])
    assert [v.signature for v in verified] == [a, b]
    assert [v.key for v in verified] == [p256_signer.public_key, other_p256_signer.public_key]
    # with one key configured, only that key's signature counts
    only_b = dsse.verify(envelope, [other_p256_signer.public_key])
    assert [v.signature for v in only_b] == [b]


def test_envelope_signed_by_one_key_type_does_not_verify_with_another(private_keys: dict) -> None:
    signers = {name: PrivateKeySigner(key) for name, key in private_keys.items()}
    for name, signer in signers.items():
        envelope = dsse.sign(STATEMENT, signer)
        others = [s.public_key for n, s in signers.items() if n != name]
        with pytest.raises(VerificationError):
            dsse.verify(envelope, others)


# --- JSON form -------------------------------------------------------------------------------------------


def test_to_json_uses_standard_padded_base64_and_wire_field_names() -> None:
    envelope = Envelope(b"\xfb\xff", "t", (Signature(b"\xfb\xef", keyid="k"),))
    assert json.loads(envelope.to_json()) == {
        "payloadType": "t",
        "payload": "+/8=",
        "signatures": [{"keyid": "k", "sig": "++8="}],
    }


def test_url_safe_base64_is_accepted_on_input() -> None:
    doc = {"payloadType": "t", "payload": "-_8=", "signatures": [{"sig": "--8="}]}
    envelope = Envelope.from_dict(doc)
    assert envelope.payload == b"\xfb\xff" and envelope.signatures == (Signature(b"\xfb\xef", ""),)


def test_cosign_v3_envelope_without_keyid_and_with_unknown_fields() -> None:
    data = (
        b'{"payload":"e30=","payloadType":"application/vnd.in-toto+json","signatures":[{"sig":"AQ=="}],"x":1}'
    )
    envelope = Envelope.from_json(data)
    assert envelope == Envelope(b"{}", dsse.PAYLOAD_TYPE_INTOTO, (Signature(b"\x01", ""),))


def _doc(**overrides: object) -> dict:
    doc: dict = {
        "payloadType": "application/vnd.in-toto+json",
        "payload": "e30=",
        "signatures": [{"sig": "AQ=="}],
    }
    for key, value in overrides.items():
        if value is ...:
            del doc[key]
        else:
            doc[key] = value
    return doc


BAD_ENVELOPES = [
    (b"not json", "layer: x (DSSE envelope) is not valid JSON"),
    (b"[]", "layer: x: DSSE envelope must be a JSON object, not an array"),
    (b'{"a":1,"a":2}', "duplicate key 'a'"),
    (b"\xff\xfe{}", "not valid UTF-8"),
    (_doc(payloadType=...), "layer: x: field payloadType is missing"),
    (_doc(payloadType=""), "layer: x: field payloadType must be a non-empty string"),
    (_doc(payloadType=7), "layer: x: field payloadType must be a non-empty string"),
    (_doc(payload=...), "layer: x: field payload is missing"),
    (_doc(payload=None), "layer: x: field payload is missing"),
    (_doc(payload=12), "layer: x: field payload must be a base64 string, not a number"),
    (_doc(payload="e30"), "layer: x: field payload is not valid base64 (length 3"),
    (_doc(payload="e3!="), "layer: x: field payload is not valid base64"),
    (_doc(payload="e3 0"), "layer: x: field payload is not valid base64"),
    (_doc(payload="+_8="), "layer: x: field payload is not valid base64"),  # mixed alphabets
    (_doc(payload="e30=\n"), "layer: x: field payload is not valid base64"),
    (_doc(payload="===="), "layer: x: field payload is not valid base64"),
    (_doc(signatures=...), "layer: x: field signatures is missing"),
    (_doc(signatures={}), "layer: x: field signatures must be an array, not an object"),
    (_doc(signatures=[]), "layer: x: field signatures is empty (the envelope is unsigned)"),
    (_doc(signatures=["AQ=="]), "layer: x: signatures[0] must be an object, not a string"),
    (_doc(signatures=[{"keyid": "k"}]), "layer: x: signatures[0]: field sig is missing"),
    (_doc(signatures=[{"sig": ""}]), "layer: x: signatures[0]: field sig is empty"),
    (_doc(signatures=[{"sig": "AQ==="}]), "layer: x: signatures[0]: field sig is not valid base64"),
    (
        _doc(signatures=[{"sig": "AQ=="}, {"sig": 5}]),
        "layer: x: signatures[1]: field sig must be a base64 string",
    ),
    (_doc(signatures=[{"sig": "AQ==", "keyid": 3}]), "layer: x: signatures[0]: field keyid must be a string"),
]


@pytest.mark.parametrize(("data", "message"), BAD_ENVELOPES)
def test_malformed_envelopes_are_rejected_naming_the_field(data: object, message: str) -> None:
    raw = data if isinstance(data, bytes) else json.dumps(data).encode()
    with pytest.raises(InputError) as err:
        Envelope.from_json(raw, source="layer: x")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_too_many_signatures_is_a_limit_error() -> None:
    sigs = [{"sig": base64.b64encode(bytes([i])).decode()} for i in range(MAX_SIGNATURES_PER_ENVELOPE + 1)]
    with pytest.raises(
        LimitExceeded, match=f"field signatures has {MAX_SIGNATURES_PER_ENVELOPE + 1} entries"
    ):
        Envelope.from_json(json.dumps(_doc(signatures=sigs)))
    # the limit itself is accepted
    assert (
        len(Envelope.from_json(json.dumps(_doc(signatures=sigs[:-1]))).signatures)
        == MAX_SIGNATURES_PER_ENVELOPE
    )


def test_oversized_envelope_is_rejected_before_parsing() -> None:
    data = b" " * (MAX_ENVELOPE_BYTES + 1)
    with pytest.raises(LimitExceeded, match="too large"):
        Envelope.from_json(data, source="big")


def test_oversized_signature_is_rejected() -> None:
    sig = base64.b64encode(b"\x01" * 5000).decode()
    with pytest.raises(LimitExceeded, match="field sig is longer"):
        Envelope.from_json(json.dumps(_doc(signatures=[{"sig": sig}])))


def test_deeply_nested_envelope_is_rejected() -> None:
    data = (
        b'{"payloadType":"t","payload":"","signatures":[{"sig":"AQ==","x":' + b"[" * 50 + b"]" * 50 + b"}]}"
    )
    with pytest.raises(LimitExceeded, match="nests deeper"):
        Envelope.from_json(data)


def test_p384_signature_made_with_sha256_verifies_like_chains_and_cosign_produce() -> None:
    # Chains' x509 signer and cosign hash with SHA-256 whatever the curve.
    key = ec.generate_private_key(ec.SECP384R1())
    from cryptography.hazmat.primitives import hashes

    sig = key.sign(dsse.pae("t", b"x"), ec.ECDSA(hashes.SHA256()))
    signer = PrivateKeySigner(key)
    assert dsse.verify(Envelope(b"x", "t", (Signature(sig),)), [signer.public_key])


def test_one_key_counts_once_even_with_a_malleated_ecdsa_signature(p256_signer: PrivateKeySigner) -> None:
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # P-256 group order n
    original = dsse.sign(STATEMENT, p256_signer).signatures[0]
    r, s = decode_dss_signature(original.sig)
    twin = Signature(encode_dss_signature(r, order - s))
    message = dsse.pae(dsse.PAYLOAD_TYPE_INTOTO, STATEMENT)
    assert twin.sig != original.sig and p256_signer.public_key.verify(twin.sig, message)
    envelope = Envelope(STATEMENT, dsse.PAYLOAD_TYPE_INTOTO, (original, twin))
    assert [v.signature for v in dsse.verify(envelope, [p256_signer.public_key])] == [original]
