"""Keyless end to end against the private Sigstore: ``signer sign --keyless`` with a JWT-SVID, the bundle
stored as a referrer (and the run annotations and file), ``gate verify`` admitting it by identity and
issuer with the signer's identity in the policy input, and cosign agreeing both ways."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from attestation.oci.reader import fetch_legacy, fetch_referrers, resolve
from attestation.reference import parse
from tests.keyless.conftest import OTHER_ID, SIGNER_ID, Built, build_run
from tests.keyless.helpers import cli, cosign, cosign_env, decide, entry, gate, sign_args
from tests.oci.helpers import deadline, run

pytestmark = [pytest.mark.xdist_group("spire"), pytest.mark.slow]


@pytest.fixture(scope="module")
def signed(keyless, registry_referrers, tmp_path_factory) -> tuple[Built, Path]:
    d = tmp_path_factory.mktemp("keyless")
    built = build_run(registry_referrers, d)
    done = cli(
        "signer",
        *sign_args(keyless, built),
        "--storage",
        "oci,tekton,file",
        "--annotations-out",
        str(d / "notes.json"),
        "--file-out",
        str(d / "att.jsonl"),
    )
    assert done.returncode == 0, done.stderr
    assert "transparency log entry: " in done.stderr
    return built, d


def _gate_verify(keyless, image: str, policy_dir, data_file, *extra: str):
    return cli(
        "gate",
        "verify",
        image,
        "--certificate-oidc-issuer",
        keyless.issuer,
        "--trusted-root",
        str(keyless.trusted_root_file),
        "--policy",
        str(policy_dir),
        "--data",
        str(data_file),
        "--insecure-registry",
        image.split("/")[0],
        *extra,
    )


def test_signed_keyless_is_admitted_by_identity_and_issuer(keyless, signed, policy_dir, data_file):
    built, _ = signed
    done = _gate_verify(
        keyless, built.image, policy_dir, data_file, "--certificate-identity", SIGNER_ID, "--output", "json"
    )
    assert done.returncode == 0, (done.stderr, done.stdout)
    decision = json.loads(done.stdout)
    assert decision["allowed"] is True
    [report] = [a for a in decision["attestations"] if a["verified"]]
    signer = report["signer"]
    assert signer["kind"] == "keyless"
    assert signer["san"] == SIGNER_ID and signer["spiffe_id"] == SIGNER_ID
    assert signer["issuer"] == keyless.issuer
    assert isinstance(signer["log_index"], int)


def test_policy_input_carries_the_keyless_identity(keyless, signed, policy_dir, data_file):
    built, _ = signed
    done = _gate_verify(
        keyless,
        built.image,
        policy_dir,
        data_file,
        "--certificate-identity",
        SIGNER_ID,
        "--output",
        "policy-input",
    )
    assert done.returncode == 0, done.stderr
    [attestation] = json.loads(done.stdout)["attestations"]
    [signature] = attestation["signatures"]
    assert signature["san"] == SIGNER_ID and signature["spiffe_id"] == SIGNER_ID
    assert signature["issuer"] == keyless.issuer
    assert isinstance(signature["log_index"], int)
    assert signature["certificate"].startswith("-----BEGIN CERTIFICATE-----")
    # The chain is the trusted Fulcio CA the certificate verified to, from the trusted root.
    from cryptography import x509

    [ca] = signature["chain"]
    assert x509.load_pem_x509_certificate(ca.encode()) == keyless.fulcio_cert
    assert signature["signed_at"].endswith("Z")


def test_stored_as_bundle_referrer_annotations_and_file(keyless, signed, registry_referrers):
    built, d = signed

    async def look():
        async with registry_referrers.client() as client:
            image = await resolve(client, parse(built.image), deadline=deadline())
            return (
                await fetch_referrers(client, image, deadline=deadline()),
                await fetch_legacy(client, image, deadline=deadline()),
            )

    referrers, legacy = run(look())
    [stored] = referrers
    filed = (d / "att.jsonl").read_bytes().strip()
    assert stored.data == filed  # the bundle the sigstore library made, byte for byte
    bundle = json.loads(filed)
    assert bundle["verificationMaterial"]["tlogEntries"][0]["kindVersion"]["kind"] == "hashedrekord"
    assert bundle["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"]
    # Rekor v2: the .att layout has no place for the log entry, so none is written (docs/keyless.md).
    assert legacy == []
    notes = json.loads((d / "notes.json").read_text())
    index = bundle["verificationMaterial"]["tlogEntries"][0]["logIndex"]
    assert (
        notes["chains.tekton.dev/transparency"] == f"{keyless.rekor_url}/api/v2/log/entries?logIndex={index}"
    )
    [cert_key] = [k for k in notes if k.startswith("chains.tekton.dev/cert-")]
    assert base64.b64decode(notes[cert_key]).startswith(b"-----BEGIN CERTIFICATE-----")


def test_wrong_identity_is_denied_from_the_registry(keyless, signed, policy_dir, data_file):
    built, _ = signed
    done = _gate_verify(
        keyless, built.image, policy_dir, data_file, "--certificate-identity", OTHER_ID, "--output", "json"
    )
    assert done.returncode == 1
    decision = json.loads(done.stdout)
    assert decision["allowed"] is False
    assert any(f"signed by {SIGNER_ID}" in (a.get("error") or "") for a in decision["attestations"])


def _predicate_type(d: Path) -> str:
    bundle = json.loads((d / "att.jsonl").read_bytes())
    return json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))["predicateType"]


def test_cosign_verify_attestation_accepts_it_with_the_same_trusted_root(keyless, signed, tmp_path):
    built, d = signed
    done = cosign(
        tmp_path,
        "verify-attestation",
        "--trusted-root",
        str(keyless.trusted_root_file),
        "--certificate-identity",
        SIGNER_ID,
        "--certificate-oidc-issuer",
        keyless.issuer,
        "--use-signed-timestamps",
        "--type",
        _predicate_type(d),
        "--allow-http-registry",
        built.image,
    )
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout.splitlines()[0])["payload"]
    assert json.loads(base64.b64decode(payload))["subject"][0]["digest"]["sha256"] == built.digest[7:]
    # ... and refuses another identity, so the acceptance above means something.
    other = cosign(
        tmp_path,
        "verify-attestation",
        "--trusted-root",
        str(keyless.trusted_root_file),
        "--certificate-identity",
        OTHER_ID,
        "--certificate-oidc-issuer",
        keyless.issuer,
        "--use-signed-timestamps",
        "--type",
        _predicate_type(d),
        "--allow-http-registry",
        built.image,
    )
    assert other.returncode != 0


def test_cosign_attest_keyless_with_spiffe_is_admitted(
    keyless, registry_referrers, tmp_path, policy_dir, data_file
):
    """Chains' own path: cosign gets the JWT-SVID from SPIFFE_ENDPOINT_SOCKET (--oidc-provider spiffe)."""
    built = build_run(registry_referrers, tmp_path, name="cosign-made")
    statement = json.loads(
        cli("signer", "provenance", str(built.run_file), "--format", "slsa/v1").stdout or "{}"
    )
    (tmp_path / "predicate.json").write_text(json.dumps(statement["predicate"]))
    env = {**cosign_env(tmp_path / "home"), "SPIFFE_ENDPOINT_SOCKET": keyless.spire.agent_socket_path}
    done = cosign(
        tmp_path,
        "attest",
        "--oidc-provider",
        "spiffe",
        "--signing-config",
        str(keyless.signing_config_file),
        "--trusted-root",
        str(keyless.trusted_root_file),
        "--predicate",
        str(tmp_path / "predicate.json"),
        "--type",
        statement["predicateType"],
        "--allow-http-registry",
        "-y",
        built.image,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    done = _gate_verify(
        keyless,
        built.image,
        policy_dir,
        data_file,
        "--certificate-identity-regexp",
        r"spiffe://example\.org/ns/[a-z-]+/sa/[a-z-]+",
        "--output",
        "json",
    )
    decision = json.loads(done.stdout)
    assert done.returncode == 0, [a.get("error") for a in decision["attestations"]]
    [report] = [a for a in decision["attestations"] if a["verified"]]
    assert report["signer"]["kind"] == "keyless"
    assert report["signer"]["san"] in (SIGNER_ID, OTHER_ID)


def test_keyless_and_key_trust_mix(keyless, signed, policy_dir, data_file, tmp_path):
    """A key in the trust does not stop a keyless attestation from counting, and the reverse."""
    from attestation.keys import write_key_pair

    _, pub = write_key_pair(str(tmp_path / "k"), b"")
    built, d = signed
    bundle = (d / "att.jsonl").read_bytes().strip()
    with gate(policy_dir, data_file, entry(keyless), keys=(pub,)) as g:
        decision = decide(g, built.image, bundle)
    assert decision.allowed, decision.to_dict()
