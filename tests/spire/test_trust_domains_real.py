"""A SPIFFE ID is issued only by its own trust domain's CA (issue 10, finding 1), with real SPIRE: our trust
domain ``example.org`` (server and agent) federated with a partner, ``other.org``, a second real server
whose CA key sits on disk. The partner holds that key, so it can sign any certificate; the question is
whether a certificate it signs for an ``example.org`` identity is admitted once both bundles are trusted.
The bundles come as SPIRE prints them: ``bundle show -output json``, ``bundle list -output json``,
``bundle list`` (text), and the Workload API's federated bundles."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from attestation.spiffe import load_bundle_args, load_pem_certificates
from gate.cli import run as gate_run
from signer.signing.spire import SvidSigner, sign_statement
from signer.spire.results import verify_run_results
from signer.spire.trust import bundles_from_workload_api
from tests.gate.conftest import IMAGE, slsa02_statement
from tests.infra.spire import Spire, SpireServer
from tests.spire.certs import Issued, make_svid
from tests.spire.tekton import taskrun, termination_results
from tests.spire.test_cli_spire import signer

pytestmark = pytest.mark.xdist_group("spire")

OURS, PARTNER = "example.org", "other.org"
OUR_SIGNER = f"spiffe://{OURS}/ns/provgate/sa/signer"
PARTNER_SIGNER = f"spiffe://{PARTNER}/ns/provgate/sa/signer"
FEDERATED_WORKLOAD = f"spiffe://{OURS}/ns/provgate/sa/federated"
TASKRUN = f"spiffe://{OURS}/ns/ci/taskrun/build-1"


@dataclass
class Federation:
    ours: Spire
    partner: SpireServer
    partner_ca: Issued  # the partner's real CA certificate with its real key
    files: dict[str, Path]  # how an operator saves the bundles, by SPIRE command


@pytest.fixture(scope="module")
def federation(spire: Spire, spire_other_domain: SpireServer, tmp_path_factory) -> Federation:
    d = tmp_path_factory.mktemp("federation")
    spiffe = d / "partner.spiffe.json"
    spiffe.write_text(spire_other_domain.cli("bundle", "show", "-format", "spiffe").stdout)
    spire.server.cli("bundle", "set", "-id", f"spiffe://{PARTNER}", "-format", "spiffe", "-path", str(spiffe))
    files = {
        "show-json": d / "show.json",
        "list-json": d / "list.json",
        "list-text": d / "list.txt",
    }
    files["show-json"].write_text(spire.server.cli("bundle", "show", "-output", "json").stdout)
    files["list-json"].write_text(spire.server.cli("bundle", "list", "-output", "json").stdout)
    files["list-text"].write_text(spire.server.cli("bundle", "list").stdout)
    [ca] = load_pem_certificates(spire_other_domain.bundle_pem(), source="partner")
    return Federation(spire, spire_other_domain, Issued(ca, spire_other_domain.x509_ca_key()), files)


def _signed(leaf_pem: bytes, key, spiffe_id: str) -> bytes:
    [leaf] = load_pem_certificates(leaf_pem, source="svid")
    return sign_statement(slsa02_statement(), SvidSigner(spiffe_id, [leaf], key)).portable()


def _minted(server: SpireServer, spiffe_id: str, directory: Path) -> bytes:
    leaf_pem, key_pem = server.mint(spiffe_id, directory)
    return _signed(leaf_pem, load_pem_private_key(key_pem, None), spiffe_id)


def _forged(federation: Federation, spiffe_id: str) -> bytes:
    svid = make_svid(federation.partner_ca, [spiffe_id])  # the partner's real CA, our identity
    return _signed(svid.pem, svid.key, spiffe_id)


def _verify(
    capsys, tmp_path: Path, policy_dir, data_file, line: bytes, bundles: list[str]
) -> tuple[int, dict]:
    path = tmp_path / "att.jsonl"
    path.write_bytes(line + b"\n")
    args = [
        "verify",
        IMAGE,
        "--attestations",
        str(path),
        "--policy",
        str(policy_dir),
        "--data",
        str(data_file),
    ]
    for b in bundles:
        args += ["--trust-bundle", b]
    args += ["--spiffe-id", OUR_SIGNER, "--spiffe-id", PARTNER_SIGNER, "--output", "json"]
    capsys.readouterr()
    code = gate_run(args)
    out, err = capsys.readouterr()
    assert out, err
    return code, json.loads(out)


@pytest.mark.parametrize(
    "given",
    [
        ["show-json", "list-json"],  # SPIRE's JSON: each file names its trust domain
        ["show-json", "list-text"],  # `bundle list` as it prints by default
        ["show-json", f"{PARTNER}=list-json"],  # TD= picks the partner's from the list
    ],
    ids=["json", "list-text", "td-prefix"],
)
def test_partner_ca_cannot_sign_for_our_identity_at_the_gate(
    capsys, tmp_path: Path, federation: Federation, policy_dir, data_file, given: list[str]
) -> None:
    bundles = []
    for g in given:
        td, _, name = g.rpartition("=")
        bundles.append(f"{td}={federation.files[name]}" if td else str(federation.files[name]))
    # The partner's own signer, minted by the partner's SPIRE: admitted (the federation works) ...
    code, doc = _verify(
        capsys,
        tmp_path,
        policy_dir,
        data_file,
        _minted(federation.partner, PARTNER_SIGNER, tmp_path / "p"),
        bundles,
    )
    assert code == 0 and doc["attestations"][0]["signer"]["spiffe_id"] == PARTNER_SIGNER, doc
    # ... and ours, minted by our SPIRE ...
    code, doc = _verify(
        capsys,
        tmp_path,
        policy_dir,
        data_file,
        _minted(federation.ours.server, OUR_SIGNER, tmp_path / "o"),
        bundles,
    )
    assert code == 0, doc
    # ... but our identity signed with the partner's CA key is not.
    code, doc = _verify(capsys, tmp_path, policy_dir, data_file, _forged(federation, OUR_SIGNER), bundles)
    assert code == 1 and not doc["allowed"]
    [att] = doc["attestations"]
    assert not att["verified"] and "certificate chain does not verify" in att["error"]


def test_partner_ca_cannot_sign_our_taskrun_results(tmp_path: Path, federation: Federation) -> None:
    bundles = load_bundle_args([federation.files["show-json"], federation.files["list-json"]])
    assert bundles.trust_domains == (OURS, PARTNER)
    forged = make_svid(federation.partner_ca, [TASKRUN])
    obj = taskrun(
        "build-1",
        "ci",
        termination_results({"IMAGE_DIGEST": "sha256:" + "ab" * 32}, forged.key, forged.pem.decode()),
    )
    verdict = verify_run_results(obj, trust_domain=OURS, bundle=bundles)
    assert not verdict.verified and any("chain does not verify" in r for r in verdict.reasons), (
        verdict.reasons
    )
    # The signer CLI, with the bundle files as SPIRE wrote them.
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(obj))
    done = signer(
        "verify-results",
        str(path),
        "--trust-bundle",
        str(federation.files["show-json"]),
        "--trust-bundle",
        str(federation.files["list-json"]),
        "--trust-domain",
        OURS,
    )
    assert done.returncode == 1 and "SVID: certificate chain does not verify" in done.stdout, done.stderr
    # Control: the same results signed by an SVID our SPIRE minted for the TaskRun verify.
    leaf_pem, key_pem = federation.ours.server.mint(TASKRUN, tmp_path / "tr")
    key = load_pem_private_key(key_pem, None)
    real = taskrun(
        "build-1", "ci", termination_results({"IMAGE_DIGEST": "sha256:" + "ab" * 32}, key, leaf_pem.decode())
    )
    assert verify_run_results(real, trust_domain=OURS, bundle=bundles).verified


def test_workload_api_federated_bundles_stay_per_domain(federation: Federation) -> None:
    ours = federation.ours
    args = ["entry", "create", "-parentID", ours.node_id, "-spiffeID", FEDERATED_WORKLOAD]
    args += ["-selector", f"unix:uid:{os.getuid()}", "-federatesWith", f"spiffe://{PARTNER}"]
    ours.server.cli(*args)
    ours.wait_for_svid(FEDERATED_WORKLOAD)
    deadline = time.monotonic() + 30
    while True:
        bundles = bundles_from_workload_api(ours.workload_socket, OURS, federated=True)
        if bundles.trust_domains == (OURS, PARTNER) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert bundles.trust_domains == (OURS, PARTNER)
    assert bundles.for_trust_domain(PARTNER).authorities == (federation.partner_ca.cert,)
    assert federation.partner_ca.cert not in bundles.for_trust_domain(OURS).authorities
    forged = make_svid(federation.partner_ca, [TASKRUN])
    obj = taskrun(
        "build-1",
        "ci",
        termination_results({"IMAGE_DIGEST": "sha256:" + "cd" * 32}, forged.key, forged.pem.decode()),
    )
    assert not verify_run_results(obj, trust_domain=OURS, bundle=bundles).verified
