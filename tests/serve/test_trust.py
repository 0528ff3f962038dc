"""``gate serve`` with X.509 trust from its configuration file: two SPIFFE trust domains from real SPIRE
servers (a partner's CA must not vouch for our identities), a cached verdict that must not outlive the
certificate it rests on, and keyless signatures from the private Sigstore (``trust.keyless``)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from attestation.oci.writer import push_attestation_legacy, push_image
from attestation.spiffe import load_pem_certificates
from signer.signing.spire import SvidSigner, sign_statement
from tests.gate.conftest import data_file, policy_dir  # noqa: F401
from tests.infra.registry import RegistryServer, registry_referrers  # noqa: F401
from tests.infra.sigstore import SigstoreStack
from tests.infra.spire import Spire, SpireServer
from tests.keyless.conftest import OTHER_ID, SIGNER_ID, build_run
from tests.keyless.helpers import cli, sign_args
from tests.serve.conftest import GateProcess, pod, provenance, review
from tests.spire.certs import Issued, make_svid

pytestmark = pytest.mark.xdist_group("spire")

# Our trust domain (the SPIRE server with an agent) and a partner's (a second SPIRE server whose CA key
# is on disk, so the test can act as the partner, who holds it).
OURS, PARTNER = "example.org", "other.org"
OUR_SIGNER = f"spiffe://{OURS}/ns/provgate/sa/signer"
PARTNER_SIGNER = f"spiffe://{PARTNER}/ns/provgate/sa/signer"


def validate(gate: GateProcess, image: str) -> dict[str, Any]:
    answer = gate.post("/validate?timeout=10s", review(pod(image)))
    assert answer.status_code == 200, answer.text
    return answer.json()["response"]


def push_svid_signed(server: RegistryServer, leaf_pem: bytes, key: Any, spiffe_id: str) -> str:
    """A fresh image and the bundled sample's provenance for it, signed with an X509-SVID (no timestamp)
    and stored as the signer stores it (cosign's ``.att`` layer with the certificate annotation);
    returns ``repo:tag@digest``."""
    [leaf] = load_pem_certificates(leaf_pem, source="svid")

    async def push() -> str:
        deadline = time.monotonic() + 60
        async with server.client() as client:
            layer = f"provgate serve svid {time.monotonic_ns()}".encode()
            image = await push_image(client, server.repo(), [layer], tag="v1", deadline=deadline)
            statement = provenance("tep0084-pipelinerun", image.reference.name, image.digest)
            signed = sign_statement(statement, SvidSigner(spiffe_id, [leaf], key))
            await push_attestation_legacy(
                client, image, signed.envelope.to_json(), certificate=leaf_pem, deadline=deadline
            )
            return f"{image.reference.name}:v1@{image.digest}"

    return asyncio.run(push())


def minted(server: SpireServer, spiffe_id: str, directory: Path, ttl: str = "1h") -> tuple[bytes, Any]:
    leaf_pem, key_pem = server.mint(spiffe_id, directory, ttl=ttl)
    return leaf_pem, load_pem_private_key(key_pem, None)


@pytest.fixture(scope="module")
def bundles(spire: Spire, spire_other_domain: SpireServer, tmp_path_factory) -> dict[str, Path]:
    directory = tmp_path_factory.mktemp("bundles")
    return {
        OURS: spire.server.write_bundle(directory / "ours.pem"),
        PARTNER: spire_other_domain.write_bundle(directory / "partner.pem"),
    }


def spiffe_trust(bundles: dict[str, Path]) -> dict[str, Any]:
    return {
        "spiffe": [
            {"trustBundle": str(bundles[OURS]), "spiffeId": OUR_SIGNER},
            {"trustBundle": str(bundles[PARTNER]), "spiffeId": PARTNER_SIGNER},
        ]
    }


# -- two trust domains ----------------------------------------------------------------------------------


def test_each_trust_domain_vouches_only_for_its_own_identities(
    start_gate,
    tmp_path: Path,
    registry_plain: RegistryServer,
    spire: Spire,
    spire_other_domain: SpireServer,
    bundles: dict[str, Path],
    rule_data_file: Path,
) -> None:
    gate = start_gate(tmp_path, trust=spiffe_trust(bundles), data=[str(rule_data_file)])
    partners = push_svid_signed(
        registry_plain, *minted(spire_other_domain, PARTNER_SIGNER, tmp_path / "p"), PARTNER_SIGNER
    )
    ours = push_svid_signed(registry_plain, *minted(spire.server, OUR_SIGNER, tmp_path / "o"), OUR_SIGNER)
    assert validate(gate, partners)["allowed"] is True
    assert validate(gate, ours)["allowed"] is True
    # The partner holds its CA key: a certificate it issues for our identity is not ours.
    [partner_ca] = load_pem_certificates(spire_other_domain.bundle_pem(), source="partner")
    forged = make_svid(Issued(partner_ca, spire_other_domain.x509_ca_key()), [OUR_SIGNER])
    image = push_svid_signed(registry_plain, forged.pem, forged.key, OUR_SIGNER)
    answer = validate(gate, image)
    message = answer["status"]["message"]
    assert answer["allowed"] is False, answer
    # The denial names the rule and why the attestation did not verify; /v1/verify says the same.
    assert "[builtin.attestation.signature_check]" in message and "chain does not verify" in message, message
    decision = gate.post("/v1/verify", {"image": image}).json()
    assert decision["allowed"] is False
    [report] = decision["attestations"]
    assert not report["verified"] and "chain does not verify" in report["error"]


# -- a verdict never outlives its certificate -------------------------------------------------------------


def test_a_cached_allow_is_not_served_after_its_certificate_expires(
    start_gate,
    tmp_path: Path,
    registry_plain: RegistryServer,
    spire_other_domain: SpireServer,
    bundles: dict[str, Path],
    rule_data_file: Path,
) -> None:
    gate = start_gate(tmp_path, trust=spiffe_trust(bundles), data=[str(rule_data_file)], cache={"ttl": 3600})
    leaf_pem, key = minted(spire_other_domain, PARTNER_SIGNER, tmp_path / "short", ttl="6s")
    not_after = x509.load_pem_x509_certificate(leaf_pem).not_valid_after_utc
    image = push_svid_signed(registry_plain, leaf_pem, key, PARTNER_SIGNER)
    assert validate(gate, image)["allowed"] is True
    assert validate(gate, image)["allowed"] is True
    assert gate.metric("provgate_verdict_cache_hits_total") == 1  # the verdict is in the cache ...
    wait = (not_after - dt.datetime.now(dt.UTC)).total_seconds() + 1.0
    assert wait < 8, f"the certificate lives {wait:.0f}s more; the test expects a few"
    time.sleep(max(0.0, wait))
    # ... for the hour of cache.ttl, but not past the certificate's notAfter: verified again, denied.
    answer = validate(gate, image)
    message = answer["status"]["message"]
    assert answer["allowed"] is False, answer
    assert "[builtin.attestation.signature_check]" in message, message
    assert "certificate is not valid at" in message, message
    assert gate.metric("provgate_verdict_cache_hits_total") == 1
    assert gate.metric("provgate_verifications_total") == 2


# -- keyless ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def keyless_signed(keyless: SigstoreStack, registry_referrers: RegistryServer, tmp_path_factory) -> str:  # noqa: F811
    """An image in the referrers registry, its TaskRun signed keyless (Fulcio certificate for the
    signer's JWT-SVID, Rekor entry, timestamp) by ``signer sign --keyless --storage oci``."""
    built = build_run(registry_referrers, tmp_path_factory.mktemp("keyless"), "serve")
    done = cli("signer", *sign_args(keyless, built), "--storage", "oci")
    assert done.returncode == 0, done.stderr
    return built.image


def keyless_config(stack: SigstoreStack, identity: str, policy: Path, data: Path) -> dict:
    return {
        "policy": [str(policy)],
        "data": [str(data)],
        "trust": {
            "keyless": [
                {
                    "certificateIdentity": identity,
                    "certificateOidcIssuer": stack.issuer,
                    "trustedRoot": str(stack.trusted_root_file),
                }
            ]
        },
    }


def test_keyless_trust_admits_by_identity_and_denies_another(
    start_gate,
    tmp_path: Path,
    keyless: SigstoreStack,
    keyless_signed: str,
    policy_dir: Path,  # noqa: F811
    data_file: Path,  # noqa: F811
) -> None:
    image = keyless_signed
    gate = start_gate(tmp_path / "signer", **keyless_config(keyless, SIGNER_ID, policy_dir, data_file))
    assert validate(gate, image)["allowed"] is True
    decision = gate.post("/v1/verify", {"image": image}).json()
    assert decision["allowed"] is True, json.dumps(decision)
    [signer] = [a["signer"] for a in decision["attestations"] if a["verified"]]
    assert signer["kind"] == "keyless" and signer["san"] == SIGNER_ID and signer["issuer"] == keyless.issuer

    other = start_gate(tmp_path / "other", **keyless_config(keyless, OTHER_ID, policy_dir, data_file))
    answer = validate(other, image)
    message = answer["status"]["message"]
    assert answer["allowed"] is False
    assert f"- {image} (container c0): " in message, message
    assert "[builtin.attestation.signature_check]" in message and f"signed by {SIGNER_ID}" in message, message
    decision = other.post("/v1/verify", {"image": image}).json()
    assert decision["allowed"] is False
    assert any(f"signed by {SIGNER_ID}" in (a.get("error") or "") for a in decision["attestations"])
