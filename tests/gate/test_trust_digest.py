"""``TrustPolicy.digest``: what a verdict cache keys on (DESIGN.md §6). It must change whenever anything
the gate trusts changes, and only then."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from gate.trust import TrustPolicy, load_trust_policy
from tests.spire.certs import make_ca

ID = "spiffe://example.org/ns/tekton-chains/sa/signer"
OTHER_ID = "spiffe://example.org/ns/tekton-chains/sa/other"
PARTNER_ID = "spiffe://partner.org/ns/tekton-chains/sa/signer"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two public keys, two CA bundles, two CAs that name no trust domain, two TSA roots, each in a file of
    its own."""
    out = tmp_path_factory.mktemp("trust")
    made: dict[str, Path] = {}
    for name in ("k1", "k2"):
        key = ec.generate_private_key(ec.SECP256R1()).public_key()
        made[name] = out / f"{name}.pub"
        made[name].write_bytes(
            key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        )
    for name in ("ca1", "ca2", "tsa1", "tsa2"):
        made[name] = out / f"{name}.pem"
        made[name].write_bytes(make_ca(org=name).pem)
    for name in ("root1", "root2"):
        made[name] = out / f"{name}.pem"
        made[name].write_bytes(make_ca(org=name, spiffe_san=False).pem)
    return made


def digest(files: dict[str, Path], keys=(), cas=(), ids=(), tsas=()) -> str:
    return load_trust_policy(
        [files[k] for k in keys],
        # "td=name" maps a file to a trust domain
        trust_bundles=[f"{c.split('=')[0]}={files[c.split('=')[1]]}" if "=" in c else files[c] for c in cas],
        spiffe_ids=list(ids),
        tsa_cert_files=[files[t] for t in tsas],
    ).digest


def test_the_digest_names_its_hash(files: dict[str, Path]) -> None:
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest(files, keys=["k1"]))


def test_the_same_trust_gives_the_same_digest_however_it_is_given(files: dict[str, Path]) -> None:
    base = digest(files, keys=["k1", "k2"], cas=["ca1", "ca2"], ids=[ID, OTHER_ID], tsas=["tsa1", "tsa2"])
    again = digest(
        files, keys=["k2", "k1", "k2"], cas=["ca2", "ca1"], ids=[OTHER_ID, ID, ID], tsas=["tsa2", "tsa1"]
    )
    assert again == base


def test_every_change_to_what_is_trusted_changes_the_digest(files: dict[str, Path]) -> None:
    variants = {
        "one key": {"keys": ["k1"]},
        "the other key": {"keys": ["k2"]},
        "both keys": {"keys": ["k1", "k2"]},
        "a key and a CA": {"keys": ["k1"], "cas": ["ca1"], "ids": [ID]},
        "a CA": {"cas": ["ca1"], "ids": [ID]},
        "another CA": {"cas": ["ca2"], "ids": [ID]},
        "both CAs": {"cas": ["ca1", "ca2"], "ids": [ID]},
        "another SPIFFE ID": {"cas": ["ca1"], "ids": [OTHER_ID]},
        "a second SPIFFE ID": {"cas": ["ca1"], "ids": [ID, OTHER_ID]},
        "a TSA": {"cas": ["ca1"], "ids": [ID], "tsas": ["tsa1"]},
        "another TSA": {"cas": ["ca1"], "ids": [ID], "tsas": ["tsa2"]},
        "both TSAs": {"cas": ["ca1"], "ids": [ID], "tsas": ["tsa1", "tsa2"]},
        # The same certificate as a signing CA or as a timestamp authority is different trust.
        "ca1 as the TSA": {"cas": ["ca1"], "ids": [ID], "tsas": ["ca1"]},
        "ca1 as a CA and tsa1 as the CA": {"cas": ["tsa1"], "ids": [ID], "tsas": ["ca1"]},
        # Which trust domain a CA vouches for is trust too (issue 10, finding 1).
        "root1 for example.org": {"cas": ["root1"], "ids": [ID]},
        "root1 for partner.org": {"cas": ["root1"], "ids": [PARTNER_ID]},
        "root1 for both": {"cas": ["example.org=root1", "partner.org=root1"], "ids": [ID, PARTNER_ID]},
        "root1 and root2 mapped": {
            "cas": ["example.org=root1", "partner.org=root2"],
            "ids": [ID, PARTNER_ID],
        },
        "root1 and root2 swapped": {
            "cas": ["example.org=root2", "partner.org=root1"],
            "ids": [ID, PARTNER_ID],
        },
        "root1 and root2 for example.org": {
            "cas": ["example.org=root1", "example.org=root2", "partner.org=root2"],
            "ids": [ID, PARTNER_ID],
        },
    }
    digests = {name: digest(files, **kw) for name, kw in variants.items()}
    assert len(set(digests.values())) == len(digests), digests


def test_the_digest_is_computed_from_the_trust_not_given_with_it(files: dict[str, Path]) -> None:
    loaded = load_trust_policy([files["k1"]], trust_bundles=[files["ca1"]], spiffe_ids=[ID])
    built = TrustPolicy(keys=loaded.keys, x509_bundles=loaded.x509_bundles, spiffe_ids=loaded.spiffe_ids)
    assert built.digest == loaded.digest
    assert TrustPolicy(keys=loaded.keys).digest != loaded.digest
    assert TrustPolicy().digest != TrustPolicy(keys=loaded.keys).digest
