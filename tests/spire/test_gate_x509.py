"""gate with X.509/SPIFFE trust on the offline path (Sigstore bundles with x509CertificateChain), with
SVIDs made in the test; the real SPIRE agent and TSA versions are in test_spire_real.py."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from attestation.errors import InputError
from gate.verify import Gate, GateConfig
from signer.signing.spire import SvidSigner, sign_statement
from tests.gate.conftest import IMAGE, data_file, policy_dir, slsa02_statement  # noqa: F401
from tests.spire.certs import NOW, make_ca, make_svid

ID = "spiffe://example.org/ns/provgate/sa/signer"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    root = make_ca(not_before=NOW - dt.timedelta(days=1))
    inter = make_ca(issuer=root, not_before=NOW - dt.timedelta(days=1))
    path = tmp_path_factory.mktemp("x509") / "bundle.pem"
    # an older, retired CA kept in the file as operators are told to
    path.write_bytes(
        make_ca(not_after=NOW - dt.timedelta(days=2), not_before=NOW - dt.timedelta(days=5)).pem + root.pem
    )
    return root, inter, path


def bundle_line(inter, uris=(ID,), statement=None, **kw) -> bytes:
    svid = make_svid(inter, list(uris), **kw)
    signer = SvidSigner(uris[0], [svid.cert, inter.cert], svid.key)
    return sign_statement(statement or slsa02_statement(), signer).portable()


def make_gate(policy_dir, data_file, bundle: Path, ids=(ID,)) -> Gate:  # noqa: F811
    return Gate(
        GateConfig(
            policy_paths=(policy_dir,),
            data_paths=(data_file,),
            trust_bundles=(bundle,),
            spiffe_ids=tuple(ids),
        )
    )


def test_svid_signed_bundle_is_allowed_and_identity_reaches_policy(pki, policy_dir, data_file):  # noqa: F811
    _, inter, bundle = pki
    gate = make_gate(policy_dir, data_file, bundle)
    line = bundle_line(inter)
    decision = gate.verify_sync(IMAGE, attestations=[line])
    assert decision.allowed, decision.to_dict()
    [att] = decision.to_dict()["attestations"]
    assert att["signer"]["kind"] == "x509" and att["signer"]["spiffe_id"] == ID
    [sig] = gate.prepare_offline(IMAGE, [line]).policy_input()["attestations"][0]["signatures"]
    assert sig["spiffe_id"] == ID
    assert "signed_at" not in sig  # no timestamp: nothing may claim a signing time
    assert sig["certificate"].startswith("-----BEGIN CERTIFICATE-----") and len(sig["chain"]) == 2


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"uris": ("spiffe://example.org/ns/other/sa/x",)}, "not an allowed SPIFFE ID"),
        ({"uris": ("spiffe://evil.org/ns/provgate/sa/signer",)}, "not an allowed SPIFFE ID"),
        ({"uris": (ID, "spiffe://example.org/ns/b/sa/c")}, "exactly one URI SAN"),
        (
            {"not_before": NOW - dt.timedelta(hours=3), "not_after": NOW - dt.timedelta(hours=2)},
            "no trusted timestamp",
        ),
    ],
)
def test_untrusted_svid_signatures_are_denied_with_the_reason(pki, policy_dir, data_file, kwargs, reason):  # noqa: F811
    _, inter, bundle = pki
    gate = make_gate(policy_dir, data_file, bundle)
    decision = gate.verify_sync(IMAGE, attestations=[bundle_line(inter, **kwargs)])
    assert not decision.allowed
    [att] = decision.attestations
    assert not att.verified and reason in att.error
    assert gate.prepare_offline(IMAGE, [bundle_line(inter, **kwargs)]).policy_input()["attestations"] == []


def test_rogue_ca_is_denied(pki, policy_dir, data_file):  # noqa: F811
    _, _, bundle = pki
    gate = make_gate(policy_dir, data_file, bundle)
    decision = gate.verify_sync(IMAGE, attestations=[bundle_line(make_ca(issuer=make_ca()))])
    assert not decision.allowed and "chain does not verify" in decision.attestations[0].error


def test_trust_bundle_without_spiffe_id_is_refused_at_startup(pki, policy_dir, data_file):  # noqa: F811
    _, _, bundle = pki
    with pytest.raises(InputError, match="needs at least one --spiffe-id"):
        make_gate(policy_dir, data_file, bundle, ids=())
    with pytest.raises(InputError, match="not a valid SPIFFE ID"):
        make_gate(policy_dir, data_file, bundle, ids=("spiffe://example.org/a/",))
