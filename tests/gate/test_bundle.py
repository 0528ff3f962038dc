"""Sigstore bundle v0.3 attestations through the gate: offline lines, OCI 1.1 referrers on both registries
(referrers API and the tag-schema fallback), bundles written by the real cosign, and bad bundles."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from attestation import dsse
from attestation.bundle import envelope_to_bundle, public_key_hint
from attestation.keys import PrivateKeySigner
from attestation.oci.reader import ResolvedImage
from attestation.oci.writer import push_attestation_referrer, push_image
from gate.checklist import NO_VERIFIED_ATTESTATION
from gate.cli import run
from gate.verify import Gate, GateConfig
from tests.gate.conftest import IMAGE, slsa02_statement, slsa1_statement, to_bytes
from tests.infra import require_binary
from tests.infra.registry import RegistryServer, registry_plain, registry_referrers  # noqa: F401

SLSA1 = "https://slsa.dev/provenance/v1"


@pytest.fixture(scope="module")
def gate(policy_dir: Path, data_file: Path, key_file: Path) -> Gate:
    g = Gate(GateConfig(policy_paths=(policy_dir,), data_paths=(data_file,), key_files=(key_file,)))
    yield g
    g.close()


def bundle_for(statement: dict[str, Any], signer: PrivateKeySigner, **kwargs: Any) -> bytes:
    return envelope_to_bundle(dsse.sign(to_bytes(statement), signer), public_key=signer.public_key, **kwargs)


def edit(bundle: bytes, change: Any) -> bytes:
    doc = json.loads(bundle)
    change(doc)
    return json.dumps(doc).encode()


def the_error(decision: Any) -> str:
    """The one attestation's error, after checking that nothing was admitted because of it."""
    assert not decision.allowed and decision.exit_code == 1, decision.to_dict()
    assert decision.violations[0].code == NO_VERIFIED_ATTESTATION
    [att] = decision.attestations
    assert not att.verified and att.error
    return att.error


# --- offline ------------------------------------------------------------------------------------------


def test_bundle_line_allowed_offline(
    tmp_path: Path, trusted_signer, policy_dir: Path, data_file: Path, key_file: Path, capsys
) -> None:
    lines = tmp_path / "atts.jsonl"
    lines.write_bytes(bundle_for(slsa1_statement(), trusted_signer) + b"\n")
    args = ["verify", IMAGE, "--key", str(key_file), "--policy", str(policy_dir), "--data", str(data_file)]
    code = run([*args, "--attestations", str(lines), "--output", "json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out
    assert out["allowed"] is True and out["image"] == IMAGE
    [att] = out["attestations"]
    assert att["verified"] is True and att["predicateType"] == SLSA1
    assert att["source"] == f"{lines}:1"
    assert att["signer"]["keyid"] == trusted_signer.public_key.keyid


def test_bundle_and_envelope_lines_mix(gate: Gate, trusted_signer, sign) -> None:
    decision = gate.verify_sync(
        IMAGE, attestations=[sign(slsa02_statement()), bundle_for(slsa1_statement(), trusted_signer)]
    )
    assert decision.allowed, decision.to_dict()
    assert [a.verified for a in decision.attestations] == [True, True]


def test_key_hint_is_only_a_hint(gate: Gate, trusted_signer, untrusted_signer) -> None:
    # A hint naming another key does not stop the trusted key from being tried...
    misleading = edit(
        bundle_for(slsa02_statement(), trusted_signer),
        lambda d: d["verificationMaterial"].update(
            publicKey={"hint": public_key_hint(untrusted_signer.public_key)}
        ),
    )
    assert gate.verify_sync(IMAGE, attestations=[misleading]).allowed
    # ...and a hint naming the trusted key does not make a foreign signature trusted.
    forged = edit(
        bundle_for(slsa02_statement(), untrusted_signer),
        lambda d: d["verificationMaterial"].update(
            publicKey={"hint": public_key_hint(trusted_signer.public_key)}
        ),
    )
    error = the_error(gate.verify_sync(IMAGE, attestations=[forged]))
    assert "no signature on attestation 1 verifies" in error


def test_tampered_bundle_envelope_is_denied(gate: Gate, trusted_signer) -> None:
    other = base64.b64encode(to_bytes(slsa02_statement(tasks=5))).decode()
    tampered = edit(
        bundle_for(slsa02_statement(), trusted_signer), lambda d: d["dsseEnvelope"].update(payload=other)
    )
    decision = gate.verify_sync(IMAGE, attestations=[tampered])
    error = the_error(decision)
    assert "no signature on attestation 1 verifies" in error
    # verified before parsing: the tampered statement was never read
    assert decision.attestations[0].predicate_type is None


def test_bundle_with_foreign_payload_type_is_denied(gate: Gate, trusted_signer) -> None:
    env = dsse.sign(to_bytes(slsa02_statement()), trusted_signer, payload_type="application/json")
    bundle = envelope_to_bundle(env, public_key=trusted_signer.public_key)
    assert "is not application/vnd.in-toto+json" in the_error(gate.verify_sync(IMAGE, attestations=[bundle]))


def test_message_signature_bundle_is_not_an_attestation(gate: Gate, trusted_signer) -> None:
    def to_message_signature(doc: dict[str, Any]) -> None:
        doc.pop("dsseEnvelope")
        doc["messageSignature"] = {
            "messageDigest": {"algorithm": "SHA2_256", "digest": base64.b64encode(b"\1" * 32).decode()},
            "signature": base64.b64encode(trusted_signer.sign(b"blob")).decode(),
        }

    bundle = edit(bundle_for(slsa02_statement(), trusted_signer), to_message_signature)
    error = the_error(gate.verify_sync(IMAGE, attestations=[bundle]))
    assert error == "attestation 1: bundle holds a message signature, not an attestation (no dsseEnvelope)"


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.pop("verificationMaterial"), "attestation 1: verificationMaterial must be an object"),
        (
            lambda d: d["dsseEnvelope"]["signatures"][0].update(sig="not base64!"),
            "attestation 1: signatures[0]: field sig is not valid base64",
        ),
        (
            lambda d: d.update(mediaType="application/vnd.dev.sigstore.bundle.v9+json"),
            "unsupported bundle mediaType",
        ),
        (lambda d: d.update(extra=1), "attestation 1: unknown bundle field(s) 'extra'"),
        (
            lambda d: d["verificationMaterial"].update(certificate={"rawBytes": "AAAA"}),
            "needs exactly one of publicKey, x509CertificateChain, certificate (found 2)",
        ),
    ],
    ids=["no-material", "bad-sig-base64", "media-type", "unknown-field", "two-kinds-of-material"],
)
def test_malformed_bundle_is_denied_with_the_reason(gate: Gate, trusted_signer, change, expected) -> None:
    bundle = edit(bundle_for(slsa02_statement(), trusted_signer), change)
    assert expected in the_error(gate.verify_sync(IMAGE, attestations=[bundle]))


def test_truncated_bundle_line_is_denied(gate: Gate, trusted_signer) -> None:
    bundle = bundle_for(slsa02_statement(), trusted_signer)
    assert "is not valid JSON" in the_error(gate.verify_sync(IMAGE, attestations=[bundle[:-10]]))


# --- registry: OCI 1.1 referrers ------------------------------------------------------------------------


@pytest.fixture(params=["registry_plain", "registry_referrers"])
def server(request: pytest.FixtureRequest) -> RegistryServer:
    # distribution has no referrers API (tag-schema fallback); the ggcr registry has it
    return request.getfixturevalue(request.param)


def _push_with_referrer(server: RegistryServer, make_bundle: Any) -> tuple[str, ResolvedImage]:
    """Push an image tagged v1 and attach ``make_bundle(image)`` as a referrer; returns (tag ref, image)."""

    async def go() -> tuple[str, ResolvedImage]:
        deadline = time.monotonic() + 30
        async with server.client() as client:
            image = await push_image(
                client,
                server.repo(),
                [b"layer " + str(time.monotonic_ns()).encode()],
                tag="v1",
                deadline=deadline,
            )
            bundle = make_bundle(image)
            if bundle is not None:
                await push_attestation_referrer(
                    client, image, bundle, predicate_type=SLSA1, deadline=deadline
                )
        return f"{image.reference.name}:v1", image

    return asyncio.run(go())


def _verify_cli(
    image: str, key: Path, policy_dir: Path, data_file: Path, capsys
) -> tuple[int, dict[str, Any]]:
    code = run(
        [
            "verify",
            image,
            "--key",
            str(key),
            "--policy",
            str(policy_dir),
            "--data",
            str(data_file),
            "--output",
            "json",
        ]
    )
    return code, json.loads(capsys.readouterr().out)


def test_bundle_referrer_allowed(
    server: RegistryServer, trusted_signer, policy_dir: Path, data_file: Path, key_file: Path, capsys
) -> None:
    def make(image: ResolvedImage) -> bytes:
        return bundle_for(
            slsa1_statement(image.digest.split(":")[1], name=image.reference.name), trusted_signer
        )

    tag_ref, image = _push_with_referrer(server, make)
    code, out = _verify_cli(tag_ref, key_file, policy_dir, data_file, capsys)
    assert code == 0, out
    assert out["allowed"] is True and out["image"] == image.pinned
    [att] = out["attestations"]
    assert att["verified"] is True and att["predicateType"] == SLSA1
    assert att["source"].startswith("referrer sha256:")


def test_tampered_bundle_referrer_is_denied(
    server: RegistryServer, trusted_signer, policy_dir: Path, data_file: Path, key_file: Path, capsys
) -> None:
    def make(image: ResolvedImage) -> bytes:
        hex_digest = image.digest.split(":")[1]
        good = bundle_for(slsa1_statement(hex_digest, name=image.reference.name), trusted_signer)
        forged = slsa1_statement(hex_digest, name=image.reference.name)
        forged["predicate"]["runDetails"]["builder"]["id"] = "https://evil.example/builder"
        payload = base64.b64encode(to_bytes(forged)).decode()
        return edit(good, lambda d: d["dsseEnvelope"].update(payload=payload))

    tag_ref, _ = _push_with_referrer(server, make)
    code, out = _verify_cli(tag_ref, key_file, policy_dir, data_file, capsys)
    assert code == 1 and out["allowed"] is False
    assert out["violations"][0]["code"] == NO_VERIFIED_ATTESTATION
    [att] = out["attestations"]
    assert att["verified"] is False and att["predicateType"] is None
    assert "no signature on referrer sha256:" in att["error"] and "verifies" in att["error"]


def test_bundle_referrer_for_another_image_is_denied(
    server: RegistryServer, trusted_signer, policy_dir: Path, data_file: Path, key_file: Path, capsys
) -> None:
    # Properly signed and attached to this image, but the statement is about another digest.
    tag_ref, image = _push_with_referrer(
        server, lambda image: bundle_for(slsa1_statement("c" * 64), trusted_signer)
    )
    code, out = _verify_cli(tag_ref, key_file, policy_dir, data_file, capsys)
    assert code == 1 and out["allowed"] is False
    [att] = out["attestations"]
    assert att["verified"] is False and f"image digest {image.digest}" in att["error"]


# --- bundles written by the real cosign -----------------------------------------------------------------

COSIGN_PASSWORD = "gate-bundle-pw"


@pytest.fixture(scope="module")
def cosign(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], Path]:
    binary = require_binary("cosign")
    home = tmp_path_factory.mktemp("cosign-home")
    env = {**os.environ, "HOME": str(home), "TUF_ROOT": str(home / "tuf"), "COSIGN_PASSWORD": COSIGN_PASSWORD}
    subprocess.run(
        [binary, "generate-key-pair"], cwd=home, env=env, check=True, capture_output=True, timeout=60
    )
    return binary, env, home


def test_cosign_new_bundle_format_attestation_verifies(
    server: RegistryServer, cosign, policy_dir: Path, data_file: Path, capsys
) -> None:
    from tests.gate.conftest import BUILDER_ID

    binary, env, home = cosign
    tag_ref, image = _push_with_referrer(server, lambda image: None)
    predicate = home / f"predicate-{server.kind}.json"
    predicate.write_text(
        json.dumps(
            {
                "buildDefinition": {
                    "buildType": "https://tekton.dev/chains/v2/slsa",
                    "externalParameters": {},
                },
                "runDetails": {"builder": {"id": BUILDER_ID}},
            }
        )
    )
    attest = subprocess.run(
        [
            binary,
            "attest",
            "--key",
            "cosign.key",
            "--type",
            "slsaprovenance1",
            "--predicate",
            str(predicate),
            "--tlog-upload=false",
            "--use-signing-config=false",
            "--new-bundle-format=true",
            "--allow-http-registry",
            "-y",
            image.pinned,
        ],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert attest.returncode == 0, attest.stderr
    code, out = _verify_cli(tag_ref, home / "cosign.pub", policy_dir, data_file, capsys)
    assert code == 0, out
    [att] = out["attestations"]
    assert att["verified"] is True and att["predicateType"] == SLSA1
    assert att["source"].startswith("referrer sha256:")
