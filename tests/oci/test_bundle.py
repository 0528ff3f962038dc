"""Sigstore bundle v0.3 <-> DSSE envelope: round trips that still verify, and every malformed input
rejected with an error naming the source."""

from __future__ import annotations

import base64
import datetime
import hashlib
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from attestation import dsse
from attestation.bundle import envelope_to_bundle, parse_bundle
from attestation.errors import InputError, LimitExceeded
from attestation.keys import PrivateKeySigner

STATEMENT = json.dumps(
    {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "x", "digest": {"sha256": "1" * 64}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {},
    }
).encode()


@pytest.fixture(scope="module")
def signer() -> PrivateKeySigner:
    return PrivateKeySigner(ec.generate_private_key(ec.SECP256R1()))


def _cert(name: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def test_public_key_bundle_round_trip_verifies(signer: PrivateKeySigner) -> None:
    envelope = dsse.sign(STATEMENT, signer)
    data = envelope_to_bundle(envelope, public_key=signer.public_key)
    doc = json.loads(data)
    spki = signer.public_key.crypto_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert doc["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert (
        doc["verificationMaterial"]["publicKey"]["hint"]
        == base64.b64encode(hashlib.sha256(spki).digest()).decode()
    )
    assert base64.b64decode(doc["dsseEnvelope"]["payload"]) == STATEMENT

    parsed = parse_bundle(data, source="test bundle")
    assert parsed.envelope == envelope
    assert parsed.certificate is None and parsed.chain == ()
    assert parsed.public_key_hint == doc["verificationMaterial"]["publicKey"]["hint"]
    assert dsse.verify(parsed.envelope, [signer.public_key])


def test_certificate_chain_and_timestamps_round_trip(signer: PrivateKeySigner) -> None:
    leaf, intermediate = _cert("leaf"), _cert("intermediate")
    envelope = dsse.sign(STATEMENT, signer)
    one = parse_bundle(envelope_to_bundle(envelope, certificate_chain=[leaf]), source="b1")
    assert (one.certificate, one.chain) == (leaf, ())
    two = parse_bundle(
        envelope_to_bundle(
            envelope, certificate_chain=[leaf, intermediate], rfc3161_timestamps=[b"\x30\x03tsa"]
        ),
        source="b2",
    )
    assert (two.certificate, two.chain, two.rfc3161_timestamps) == (leaf, (intermediate,), (b"\x30\x03tsa",))


def _bundle(**changes: object) -> bytes:
    doc = {
        "mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json",
        "verificationMaterial": {"publicKey": {"hint": "abc"}},
        "dsseEnvelope": {
            "payload": base64.b64encode(b"{}").decode(),
            "payloadType": "application/vnd.in-toto+json",
            "signatures": [{"sig": base64.b64encode(b"s").decode()}],
        },
    }
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return json.dumps(doc).encode()


def test_cosign_style_bundle_without_keyid_parses() -> None:
    parsed = parse_bundle(_bundle(), source="cosign bundle")
    assert parsed.envelope.signatures[0].keyid == ""
    assert parsed.public_key_hint == "abc"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "must be an object"),
        (_bundle(mediaType="application/json"), "unsupported bundle mediaType"),
        (_bundle(dsseEnvelope=None, messageSignature={"signature": "AA=="}), "not an attestation"),
        (_bundle(dsseEnvelope=None), "no dsseEnvelope"),
        (_bundle(extra=1), "unknown bundle field"),
        (_bundle(verificationMaterial={}), "exactly one of"),
        (
            _bundle(verificationMaterial={"publicKey": {"hint": "a"}, "certificate": {"rawBytes": "AA=="}}),
            "exactly one of",
        ),
        (_bundle(verificationMaterial={"certificate": {"rawBytes": "AAAA"}}), "not a DER X.509 certificate"),
        (_bundle(verificationMaterial={"certificate": {"rawBytes": "***"}}), "not valid base64"),
        (_bundle(dsseEnvelope={"payload": "e30=", "payloadType": "x", "signatures": []}), "unsigned"),
    ],
)
def test_malformed_bundles_are_rejected_naming_the_source(data: bytes, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        parse_bundle(data, source="registry/app referrer sha256:ab")
    assert "registry/app referrer sha256:ab" in str(info.value)


def test_oversized_bundle_and_too_many_certificates() -> None:
    with pytest.raises(LimitExceeded):
        parse_bundle(b" " * (17 * 1024 * 1024 + 1), source="big")
    many = {"x509CertificateChain": {"certificates": [{"rawBytes": "AA=="}] * 11}}
    with pytest.raises(LimitExceeded, match="more than 10 certificates"):
        parse_bundle(_bundle(verificationMaterial=many), source="chain")


def test_bundle_needs_exactly_one_signature(signer: PrivateKeySigner) -> None:
    envelope = dsse.sign(STATEMENT, signer)
    doubled = dsse.Envelope(envelope.payload, envelope.payload_type, envelope.signatures * 2)
    with pytest.raises(InputError, match="exactly one signature"):
        envelope_to_bundle(doubled, public_key=signer.public_key)
    with pytest.raises(InputError, match="certificate or a public key"):
        envelope_to_bundle(envelope)
