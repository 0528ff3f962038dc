"""Every way a keyless attestation must be refused, each with its reason and nothing admitted: the wrong
identity, trust domain or issuer, a CA outside the trusted root, a missing or forged SCT, a log entry for
other bytes, a checkpoint signed by another key, no signing time, a signature after the certificate
expired, and a signature in no log unless the trust entry says so.

The bundles are real ones from the private Sigstore, taken apart and put together again; where a
certificate is needed that Fulcio would never issue (no SCT, a forged SCT, already expired), the test
makes it with the stack's own Fulcio CA key, so everything else about it is genuine.
"""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gate.verify import Gate
from tests.infra.sigstore import SigstoreStack, make_fulcio_ca, trusted_root_doc
from tests.keyless.conftest import OTHER_ID, SIGNER_ID, Built, build_run
from tests.keyless.helpers import decide, entry, gate, sign_to_file, with_material

pytestmark = [pytest.mark.xdist_group("spire"), pytest.mark.slow]

SCT_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")


@pytest.fixture(scope="module")
def made(keyless, registry_referrers, tmp_path_factory) -> tuple[Built, bytes, Built, bytes]:
    """Two images, each with a keyless bundle signed for it."""
    d = tmp_path_factory.mktemp("denials")
    a = build_run(registry_referrers, d, name="denial-a")
    b = build_run(registry_referrers, d, name="denial-b")
    return a, sign_to_file(keyless, a, d / "a.json"), b, sign_to_file(keyless, b, d / "b.json")


@pytest.fixture(scope="module")
def trusting(keyless, policy_dir, data_file):
    gates: list[Gate] = []

    def make(**kw) -> Gate:
        g = gate(policy_dir, data_file, entry(keyless, **kw))
        gates.append(g)
        return g

    yield make
    for g in gates:
        g.close()


def denied(g: Gate, image: str, bundle: bytes, *reason: str) -> None:
    decision = decide(g, image, bundle)
    assert not decision.allowed
    [report] = decision.attestations
    assert not report.verified, report
    for fragment in reason:
        assert fragment in (report.error or ""), report.error


def test_the_genuine_bundle_is_admitted(trusting, made):
    a, bundle, _, _ = made
    decision = decide(trusting(), a.image, bundle)
    assert decision.allowed, decision.to_dict()


def test_wrong_identity(trusting, made):
    a, bundle, _, _ = made
    denied(trusting(certificate_identity=OTHER_ID), a.image, bundle, f"signed by {SIGNER_ID}", "not trusted")


def test_identity_regexp_matches_the_whole_identity(trusting, made):
    a, bundle, _, _ = made
    # A prefix of the real identity: cosign's unanchored match would take it; ours must not.
    denied(
        trusting(certificate_identity_regexp="spiffe://example.org/ns/tekton-chains/sa/tekton"),
        a.image,
        bundle,
        "not trusted",
    )


def test_identity_from_another_trust_domain(keyless, trusting, registry_referrers, tmp_path):
    """A certificate Fulcio issued for other.org's workload (its own SPIRE server and issuer) is not
    an example.org identity, whatever its path."""
    built = build_run(registry_referrers, tmp_path, name="other-domain")
    other_id = "spiffe://other.org/ns/tekton-chains/sa/tekton-chains-controller"
    (tmp_path / "token").write_text(keyless.other.mint_jwt(other_id))
    bundle = sign_to_file(
        keyless, built, tmp_path / "b.json", "--identity-token-file", str(tmp_path / "token")
    )
    g = trusting(
        certificate_identity_regexp=r"spiffe://example\.org/.*",
        certificate_oidc_issuer_regexp=r"http://127\.0\.0\.1:[0-9]+",
    )
    denied(g, built.image, bundle, f"signed by {other_id}", "not trusted")
    # The same bundle is admitted once its identity is trusted: it was refused for its identity only.
    ok = decide(
        trusting(certificate_identity=other_id, certificate_oidc_issuer=keyless.other.jwt_issuer),
        built.image,
        bundle,
    )
    assert ok.allowed, ok.to_dict()


def test_wrong_issuer(trusting, made):
    a, bundle, _, _ = made
    denied(
        trusting(certificate_oidc_issuer="https://token.actions.githubusercontent.com"),
        a.image,
        bundle,
        "from issuer",
        "not trusted",
    )


def test_ca_not_in_the_trusted_root(keyless, trusting, made, tmp_path):
    a, bundle, _, _ = made
    other_ca, _ = make_fulcio_ca("another fulcio")
    root = trusted_root_doc(
        fulcio_url=keyless.fulcio_url,
        fulcio_certs=[other_ca],
        rekor_url=keyless.rekor_url,
        rekor_key=keyless.rekor_key,
        ct_url=keyless.ct_url,
        ct_key=keyless.ct_key,
        tsa_url=keyless.tsa.url,
        tsa_chain=keyless.tsa_chain,
    )
    path = tmp_path / "other-root.json"
    path.write_text(json.dumps(root))
    denied(trusting(trusted_root=str(path)), a.image, bundle, "certificate chain")


def _leaf(bundle: bytes) -> x509.Certificate:
    raw = json.loads(bundle)["verificationMaterial"]["certificate"]["rawBytes"]
    return x509.load_der_x509_certificate(base64.b64decode(raw))


def _reissue(stack: SigstoreStack, leaf: x509.Certificate, *, sct: bytes | None, **validity) -> bytes:
    """The leaf again, signed by the stack's Fulcio CA, with the SCT extension replaced (``sct`` is its
    DER value; None drops it) and optionally another validity; everything else as Fulcio made it."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(leaf.subject)
        .issuer_name(leaf.issuer)
        .public_key(leaf.public_key())
        .serial_number(leaf.serial_number)
        .not_valid_before(validity.get("not_before", leaf.not_valid_before_utc))
        .not_valid_after(validity.get("not_after", leaf.not_valid_after_utc))
    )
    for ext in leaf.extensions:
        if ext.oid == SCT_OID:
            continue
        builder = builder.add_extension(ext.value, ext.critical)
    if sct is not None:
        builder = builder.add_extension(x509.UnrecognizedExtension(SCT_OID, sct), critical=False)
    cert = builder.sign(stack.fulcio_key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.DER)


def _with_cert(bundle: bytes, der: bytes) -> bytes:
    return with_material(bundle, certificate={"rawBytes": base64.b64encode(der).decode()})


def _sct_der(leaf: x509.Certificate) -> bytes:
    return leaf.extensions.get_extension_for_oid(SCT_OID).value.public_bytes()


def test_missing_sct(keyless, trusting, made):
    a, bundle, _, _ = made
    forged = _with_cert(bundle, _reissue(keyless, _leaf(bundle), sct=None))
    denied(trusting(), a.image, forged, "SCT")


def test_forged_sct(keyless, trusting, made):
    a, bundle, _, _ = made
    leaf = _leaf(bundle)
    sct = bytearray(_sct_der(leaf))
    sct[-5] ^= 0x01  # inside the SCT's signature, the last field
    forged = _with_cert(bundle, _reissue(keyless, leaf, sct=bytes(sct)))
    denied(trusting(), a.image, forged, "SCT")
    # Control: the same re-issue with the genuine SCT bytes passes the SCT check (it then fails on the
    # log entry, which names the original certificate): the forgery above failed for its SCT.
    control = _with_cert(bundle, _reissue(keyless, leaf, sct=_sct_der(leaf)))
    decision = decide(trusting(), a.image, control)
    assert "SCT" not in (decision.attestations[0].error or "")


def test_log_entry_for_other_bytes(trusting, made):
    a, bundle_a, _, bundle_b = made
    entries_b = json.loads(bundle_b)["verificationMaterial"]["tlogEntries"]
    denied(trusting(), a.image, with_material(bundle_a, tlogEntries=entries_b), "inconsistent")


def _checkpoint_signed_by(bundle: bytes, key: ec.EllipticCurvePrivateKey) -> bytes:
    """The bundle with its checkpoint note's signature made anew by ``key`` (same origin, same key hint)."""
    doc = json.loads(bundle)
    entry = doc["verificationMaterial"]["tlogEntries"][0]
    note = entry["inclusionProof"]["checkpoint"]["envelope"]
    text, _, signatures = note.partition("\n\n")
    line = signatures.strip().splitlines()[0]
    origin, blob = line.removeprefix("\u2014 ").rsplit(" ", 1)
    hint = base64.b64decode(blob)[:4]
    sig = key.sign((text + "\n").encode(), ec.ECDSA(hashes.SHA256()))
    entry["inclusionProof"]["checkpoint"]["envelope"] = (
        f"{text}\n\n\u2014 {origin} {base64.b64encode(hint + sig).decode()}\n"
    )
    return json.dumps(doc).encode()


def test_checkpoint_signed_by_another_key(keyless, trusting, made):
    a, bundle, _, _ = made
    forged = _checkpoint_signed_by(bundle, ec.generate_private_key(ec.SECP256R1()))
    denied(trusting(), a.image, forged, "invalid log entry")
    # Control: re-signed the same way with the log's own key, it verifies, so the note was rebuilt right.
    genuine = _checkpoint_signed_by(bundle, keyless.rekor_key)
    assert decide(trusting(), a.image, genuine).allowed


def test_no_timestamp_and_no_log_time(trusting, made):
    a, bundle, _, _ = made
    denied(trusting(), a.image, with_material(bundle, timestampVerificationData=None), "signed timestamp")


def test_signature_after_the_certificate_expired(keyless, trusting, made):
    """A certificate (otherwise Fulcio's) that had expired a minute before the TSA stamped the signature."""
    a, bundle, _, _ = made
    leaf = _leaf(bundle)
    stamped = leaf.not_valid_before_utc + dt.timedelta(seconds=1)  # about when the TSA stamped it
    expired = _reissue(
        keyless,
        leaf,
        sct=_sct_der(leaf),
        not_before=stamped - dt.timedelta(minutes=11),
        not_after=stamped - dt.timedelta(minutes=1),
    )
    denied(trusting(), a.image, _with_cert(bundle, expired), "cert is not valid at validation time")


def test_no_log_entry_counts_only_when_the_entry_allows_it(keyless, trusting, made):
    a, bundle, _, _ = made
    no_log = with_material(bundle, tlogEntries=[])
    denied(trusting(), a.image, no_log, "in no transparency log")
    decision = decide(trusting(insecure_ignore_tlog=True), a.image, no_log)
    assert decision.allowed, decision.to_dict()
    signer = decision.attestations[0].signer
    assert signer["kind"] == "keyless" and signer["log_index"] is None
    # Allowed without a log, the rest still holds: another identity is still refused.
    denied(trusting(insecure_ignore_tlog=True, certificate_identity=OTHER_ID), a.image, no_log, "not trusted")


def test_no_log_and_no_timestamp_is_refused_even_when_allowed(trusting, made):
    a, bundle, _, _ = made
    bare = with_material(bundle, tlogEntries=[], timestampVerificationData=None)
    denied(trusting(insecure_ignore_tlog=True), a.image, bare, "no verified signing time")


def test_keyless_bundle_with_only_key_trust_is_refused(made, policy_dir, data_file, tmp_path):
    from attestation.keys import write_key_pair

    a, bundle, _, _ = made
    _, pub = write_key_pair(str(tmp_path / "k"), b"")
    with gate(policy_dir, data_file, keys=(pub,)) as g:
        decision = decide(g, a.image, bundle)
    assert not decision.allowed


def test_a_statement_about_another_image_is_not_admitted(trusting, made):
    a, _, _, bundle_b = made
    denied(trusting(), a.image, bundle_b, "no subject of the statement has the image digest")


def test_tampered_payload_is_refused(trusting, made):
    a, bundle, _, _ = made
    doc = json.loads(bundle)
    payload = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    payload["predicate"]["builder"] = {"id": "https://evil.example/builder"}
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(payload).encode()).decode()
    denied(trusting(), a.image, json.dumps(doc).encode(), "invalid signature")


def test_unreadable_trusted_root_is_a_startup_error(keyless, policy_dir, data_file, tmp_path):
    from attestation.errors import InputError

    bad = tmp_path / "root.json"
    bad.write_text('{"mediaType": "nope"}')
    with pytest.raises(InputError, match=str(bad)):
        gate(policy_dir, data_file, entry(keyless, trusted_root=str(bad)))
    with pytest.raises(InputError, match="regular expression"):
        gate(policy_dir, data_file, entry(keyless, certificate_identity_regexp="spiffe://(["))
