"""SVID-signed DSSE envelopes: signing backend pieces and attestation.x509.verify_envelope_x509, with
certificates made in the test (the real SPIRE agent and TSA are exercised in test_spire_real.py)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import socket

import pytest

from attestation.dsse import Envelope
from attestation.errors import InputError, KeyLoadError, VerificationError
from attestation.spiffe import TrustBundles, parse_trust_bundle
from attestation.x509 import verify_envelope_x509
from signer.signing.spire import SvidSigner, fetch_svid_signer, sign_payload, sign_statement
from tests.spire.certs import NOW, make_ca, make_svid

ID = "spiffe://example.org/ns/provgate/sa/signer"
PAYLOAD = json.dumps({"_type": "https://in-toto.io/Statement/v1", "subject": []}).encode()


@pytest.fixture(scope="module")
def pki():
    root = make_ca(not_before=NOW - dt.timedelta(days=1))
    inter = make_ca(issuer=root, not_before=NOW - dt.timedelta(days=1))
    bundle = parse_trust_bundle(root.pem, source="bundle.pem")
    return root, inter, TrustBundles.bind([bundle], default_trust_domain="example.org")


def signed(inter, uris=(ID,), **kw):
    svid = make_svid(inter, list(uris), **kw)
    signer = SvidSigner(uris[0] if uris else "", [svid.cert, inter.cert], svid.key)
    return sign_payload(PAYLOAD, signer)


def verify(sig, bundle, allowed=(ID,), envelope=None, **kw):
    return verify_envelope_x509(
        envelope or sig.envelope,
        certificate=sig.certificate_pem.encode(),
        chain=[c.encode() for c in _split(sig.chain_pem)],
        timestamps=[],
        bundles=bundle,
        allowed_ids=set(allowed),
        **kw,
    )


def _split(pem: str) -> list[str]:
    end = "-----END CERTIFICATE-----"
    return [p.strip() + "\n" + end + "\n" for p in pem.split(end) if p.strip()]


def test_svid_signed_envelope_verifies_and_names_the_signer(pki):
    _, inter, bundle = pki
    sig = signed(inter)
    got = verify(sig, bundle)
    assert [g.spiffe_id for g in got] == [ID]
    assert got[0].signed_at is None
    assert got[0].sig == sig.envelope.signatures[0].sig
    assert sig.envelope.signatures[0].keyid == ID


def test_annotations_and_bundle_material_carry_leaf_and_intermediates(pki):
    _, inter, _ = pki
    sig = signed(inter)
    ann = sig.cosign_annotations()
    assert ann["dev.sigstore.cosign/certificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert ann["dev.sigstore.cosign/chain"].count("BEGIN CERTIFICATE") == 1
    assert "dev.sigstore.cosign/rfc3161timestamp" not in ann
    # The bundle as the signer writes it (--out, the file storage): the production path.
    svid = make_svid(inter, [ID])
    bundle = sign_statement(json.loads(PAYLOAD), SvidSigner(ID, [svid.cert, inter.cert], svid.key)).portable()
    certs = json.loads(bundle)["verificationMaterial"]["x509CertificateChain"]["certificates"]
    assert len(certs) == 2
    assert base64.b64decode(certs[1]["rawBytes"]) == inter.cert.public_bytes(_der())


def _der():
    from cryptography.hazmat.primitives.serialization import Encoding

    return Encoding.DER


def test_wrong_spiffe_id_is_denied(pki):
    _, inter, bundle = pki
    sig = signed(inter, uris=("spiffe://example.org/ns/other/sa/x",))
    with pytest.raises(VerificationError, match="not an allowed SPIFFE ID"):
        verify(sig, bundle)


def test_other_trust_domain_is_denied(pki):
    _, inter, bundle = pki
    sig = signed(inter, uris=("spiffe://evil.org/ns/provgate/sa/signer",))
    with pytest.raises(VerificationError, match="not an allowed SPIFFE ID"):
        verify(sig, bundle)


def test_rogue_ca_is_denied(pki):
    _, _, bundle = pki
    rogue_root = make_ca()
    sig = signed(make_ca(issuer=rogue_root))
    with pytest.raises(VerificationError, match="chain does not verify"):
        verify(sig, bundle)


def test_tampered_payload_is_denied(pki):
    _, inter, bundle = pki
    sig = signed(inter)
    forged = Envelope(
        payload=PAYLOAD.replace(b"[]", b'[{"name":"x"}]'),
        payload_type=sig.envelope.payload_type,
        signatures=sig.envelope.signatures,
    )
    with pytest.raises(VerificationError, match="no signature verifies"):
        verify(sig, bundle, envelope=forged)


def test_two_uri_sans_are_denied(pki):
    _, inter, bundle = pki
    sig = signed(inter, uris=(ID, "spiffe://example.org/ns/other/sa/x"))
    with pytest.raises(VerificationError, match="exactly one URI SAN"):
        verify(sig, bundle)


def test_expired_certificate_without_timestamp_is_denied_with_that_reason(pki):
    _, inter, bundle = pki
    sig = signed(inter, not_before=NOW - dt.timedelta(hours=2), not_after=NOW - dt.timedelta(hours=1))
    with pytest.raises(VerificationError, match=r"not valid at .*no trusted timestamp"):
        verify(sig, bundle)


def test_no_allowed_ids_is_denied(pki):
    _, inter, bundle = pki
    with pytest.raises(VerificationError, match="configure --spiffe-id"):
        verify(signed(inter), bundle, allowed=())


def test_garbage_certificate_is_denied_not_crashing(pki):
    _, _, bundle = pki
    sig = signed(pki[1])
    with pytest.raises(VerificationError, match="certificate"):
        verify_envelope_x509(
            sig.envelope, certificate=b"junk", chain=[], timestamps=[], bundles=bundle, allowed_ids={ID}
        )


# --- Workload API failures: a clear error, nothing signed ------------------------------------------


def test_missing_socket_is_a_clear_error(tmp_path):
    with pytest.raises(KeyLoadError, match=r"does not exist \(is the SPIRE agent running\?\)"):
        fetch_svid_signer(f"unix://{tmp_path}/agent.sock")


def test_agent_down_behind_a_stale_socket_is_a_clear_error():
    import tempfile

    path = tempfile.mktemp(prefix="pg-stale-", suffix=".sock", dir="/tmp")
    s = socket.socket(socket.AF_UNIX)
    s.bind(path)
    s.close()  # the file stays, nothing listens: what a crashed agent leaves behind
    try:
        with pytest.raises(KeyLoadError, match="cannot fetch an X509-SVID from unix://"):
            fetch_svid_signer(f"unix://{path}", timeout=2)
    finally:
        import os

        os.unlink(path)


def test_no_socket_configured_is_an_input_error(monkeypatch):
    monkeypatch.delenv("SPIFFE_ENDPOINT_SOCKET", raising=False)
    with pytest.raises(InputError, match="SPIFFE_ENDPOINT_SOCKET"):
        fetch_svid_signer(None)
    with pytest.raises(InputError, match="must be a unix: URI"):
        fetch_svid_signer("tcp://127.0.0.1:1")
