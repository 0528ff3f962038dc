"""Provenance signed with an X509-SVID from the real SPIRE agent, timestamped by the real TSA, verified by
the gate: offline (``--attestations``) and from real registries (cosign ``.att`` layer with certificate
annotations, Sigstore bundle referrer). Negative cases use real SPIRE CAs too: a second trust domain and a
rogue server that claims ``example.org``.

The short-lived SVID case waits out a 10 s SVID: its fixture is taken by the first test of this module
and checked by the last, so the wait overlaps with the other tests.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key

from attestation import intoto
from attestation.bundle import envelope_to_bundle, parse_bundle
from attestation.dsse import Envelope
from attestation.oci.reader import fetch_attestations_sync
from attestation.spiffe import load_pem_certificates
from attestation.timestamp import verify_timestamp
from attestation.x509 import verify_envelope_x509
from gate.cli import run as gate_run
from signer.signing.spire import SvidSigner, SvidSigning, fetch_svid_signer, sign_statement
from tests.gate.conftest import IMAGE, slsa1_statement
from tests.infra import free_port
from tests.infra.registry import RegistryServer
from tests.infra.spire import Spire, SpireServer, run_spire
from tests.infra.tsa import Tsa
from tests.oci.helpers import push_small_image
from tests.signer.test_cli_storage import write_sample

pytestmark = pytest.mark.xdist_group("spire")

SIGNER_ID = "spiffe://example.org/ns/provgate/sa/signer"
OTHER_ID = "spiffe://example.org/ns/other/sa/builder"
SHORT_ID = "spiffe://example.org/ns/provgate/sa/short-lived"
SHORT_TTL = 10  # seconds; the agent rotates at half-life, so a fetched SVID has 5-10 s left
REPO = "registry.local/team/app"
DIGEST = "sha256:" + "ab" * 32


# ----------------------------------------------------------------------------- fixtures


@dataclass
class ShortLived:
    with_timestamp: bytes  # Sigstore bundle lines
    without_timestamp: bytes
    foreign_timestamp: bytes  # a valid token, but over another signature
    not_after: dt.datetime


@pytest.fixture(scope="module")
def short_lived(spire: Spire, tsa: Tsa) -> ShortLived:
    spire.issue(SHORT_ID, x509_ttl=SHORT_TTL)
    svid = fetch_svid_signer(spire.workload_socket, spiffe_id=SHORT_ID)
    # Signed as the SPIRE backend signs (sign_statement), written as the signer writes it (portable()).
    stamped = sign_statement(slsa1_statement(), svid, tsa_url=tsa.url)
    other = sign_statement(slsa1_statement(), svid, tsa_url=tsa.url)
    assert stamped.rfc3161_timestamps and other.rfc3161_timestamps
    chain = stamped.certificate_chain_der
    return ShortLived(
        with_timestamp=stamped.portable(),
        without_timestamp=sign_statement(slsa1_statement(), svid).portable(),
        foreign_timestamp=envelope_to_bundle(
            stamped.envelope, certificate_chain=chain, rfc3161_timestamps=[other.rfc3161_timestamps[0]]
        ),
        not_after=svid.leaf.not_valid_after_utc,
    )


@pytest.fixture(scope="module")
def issued(spire: Spire) -> Spire:
    spire.issue(SIGNER_ID)
    spire.issue(OTHER_ID)
    return spire


@dataclass
class TrustFiles:
    bundle: Path  # example.org, as `spire-server bundle show` prints it
    tsa_chain: Path


@pytest.fixture(scope="module")
def trust(spire: Spire, tsa: Tsa, tmp_path_factory) -> TrustFiles:
    d = tmp_path_factory.mktemp("trust")
    return TrustFiles(bundle=spire.server.write_bundle(d / "bundle.pem"), tsa_chain=tsa.chain_file)


def gate(capsys, *argv: str | Path) -> tuple[int, str, str]:
    capsys.readouterr()
    code = gate_run([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def trust_args(trust: TrustFiles, ids=(SIGNER_ID,), with_tsa: bool = True, bundles=None) -> list[str | Path]:
    args: list[str | Path] = []
    for b in bundles or [trust.bundle]:
        args += ["--trust-bundle", b]
    for i in ids:
        args += ["--spiffe-id", i]
    if with_tsa:
        args += ["--tsa-certs", trust.tsa_chain]
    return args


def offline(capsys, policy, data, image, lines, trust, *extra, **kw) -> tuple[int, str, str]:
    """``gate verify IMAGE --attestations FILE``; JSON output unless ``extra`` asks for another."""
    if "--output" not in extra:
        extra = (*extra, "--output", "json")
    with tempfile.TemporaryDirectory(prefix="pg-att") as d:
        path = Path(d) / "attestations.jsonl"
        path.write_bytes(b"".join(line.rstrip(b"\n") + b"\n" for line in lines))
        return gate(
            capsys,
            "verify",
            image,
            "--attestations",
            path,
            "--policy",
            policy,
            "--data",
            data,
            *trust_args(trust, **kw),
            *extra,
        )


def reasons(out: str) -> str:
    """Why a JSON decision denied: attestation errors, violation messages and errors, one per line."""
    doc = json.loads(out)
    assert doc["allowed"] is False
    found = [a["error"] for a in doc["attestations"] if a.get("error")]
    return "\n".join(found + [v["msg"] for v in doc["violations"]] + doc["errors"])


def policy_signatures(out: str) -> list[dict]:
    doc = json.loads(out)
    return [s for att in doc["attestations"] for s in att["signatures"]]


def minted_line(server: SpireServer, spiffe_id: str, directory: Path, statement=None) -> bytes:
    """A bundle line signed with an SVID that ``server`` minted (no agent involved)."""
    leaf_pem, key_pem = server.mint(spiffe_id, directory)
    [leaf] = load_pem_certificates(leaf_pem, source="minted")
    signer_ = SvidSigner(spiffe_id, [leaf], load_pem_private_key(key_pem, None))
    return sign_statement(statement or slsa1_statement(), signer_).portable()


# ----------------------------------------------------------------------------- the library


def test_real_svid_signature_with_real_timestamp_verifies(short_lived, issued, tsa, spire):
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    # The SPIRE signing backend as the signer runs it: the SVID fetched for the run, then the statement.
    sign = SvidSigning(spire.workload_socket, spiffe_id=SIGNER_ID, tsa_url=tsa.url).ready()
    signed = sign(slsa1_statement())
    after = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    # What SPIRE really issues: a lone leaf (no UpstreamAuthority), one URI SAN, EC P-256.
    assert len(signed.certificate_chain_der) == 1
    assert signed.envelope.signatures[0].keyid == SIGNER_ID  # the signature names the SVID it was made with
    assert signed.envelope.payload == intoto.serialize(slsa1_statement())
    [verified] = verify_envelope_x509(
        signed.envelope,
        certificate=signed.certificate_pem,
        chain=[],
        timestamps=list(signed.rfc3161_timestamps),
        bundles=spire.server.bundle(),
        allowed_ids={SIGNER_ID},
        tsa=tsa.trust,
    )
    assert verified.spiffe_id == SIGNER_ID
    assert verified.signed_at is not None and before <= verified.signed_at <= after
    # The token is over the signature bytes (Sigstore's convention), checked independently here.
    assert verify_timestamp(signed.rfc3161_timestamps[0], signed.envelope.signatures[0].sig, tsa.trust)
    # The validated chain ends in the SPIRE CA the server publishes.
    [root] = verified.chain_pems
    assert root.encode() == spire.server.bundle_pem()


def test_spiffe_id_picks_among_several_issued_svids(issued):
    assert fetch_svid_signer(issued.workload_socket, spiffe_id=OTHER_ID).spiffe_id == OTHER_ID
    assert fetch_svid_signer(issued.workload_socket, spiffe_id=SIGNER_ID).spiffe_id == SIGNER_ID
    from attestation.errors import KeyLoadError

    with pytest.raises(KeyLoadError, match=r"issued no SVID for spiffe://example\.org/ns/nobody"):
        fetch_svid_signer(issued.workload_socket, spiffe_id="spiffe://example.org/ns/nobody")


# ----------------------------------------------------------------------------- CLI, offline


@pytest.fixture(scope="module")
def cli_signed(issued, tsa, tmp_path_factory) -> Path:
    """`signer sign --spiffe-socket --tsa-url --out`, run as the console script would (in-process)."""
    from signer.cli import main

    d = tmp_path_factory.mktemp("cli-signed")
    run = write_sample(d, REPO, DIGEST)
    out = d / "att.jsonl"
    with pytest.raises(SystemExit) as exc:
        main(
            [
                "sign",
                str(run),
                "--spiffe-socket",
                issued.workload_socket,
                "--spiffe-id",
                SIGNER_ID,
                "--tsa-url",
                tsa.url,
                "--out",
                str(out),
            ]
        )
    assert exc.value.code == 0
    return out


def test_cli_signed_provenance_is_allowed_offline(capsys, cli_signed, trust, policy_dir, data_file):
    image = f"{REPO}@{DIGEST}"
    code, out, err = offline(capsys, policy_dir, data_file, image, [cli_signed.read_bytes()], trust)
    assert code == 0, out + err
    code, out, err = offline(
        capsys, policy_dir, data_file, image, [cli_signed.read_bytes()], trust, "--output", "policy-input"
    )
    assert code == 0, err
    [sig] = policy_signatures(out)
    assert sig["spiffe_id"] == SIGNER_ID
    signed_at = dt.datetime.fromisoformat(sig["signed_at"].replace("Z", "+00:00"))
    assert abs(dt.datetime.now(dt.UTC) - signed_at) < dt.timedelta(minutes=10)
    bundle = json.loads(cli_signed.read_bytes())
    [token] = bundle["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"]
    # signed_at is the TSA's genTime over this very signature, not a time from the payload
    envelope = parse_bundle(cli_signed.read_bytes(), source="att").envelope
    tsa_time = verify_timestamp(
        base64.b64decode(token["signedTimestamp"]), envelope.signatures[0].sig, trust_tsa(trust)
    )
    assert signed_at == tsa_time


def trust_tsa(trust: TrustFiles):
    from attestation.timestamp import load_tsa_certs

    return load_tsa_certs(trust.tsa_chain)


def test_other_image_digest_is_denied(capsys, cli_signed, trust, policy_dir, data_file):
    code, out, _ = offline(
        capsys, policy_dir, data_file, f"{REPO}@sha256:{'cd' * 32}", [cli_signed.read_bytes()], trust
    )
    assert code == 1 and "sha256:" + "cd" * 32 in reasons(out)


def test_wrong_spiffe_id_is_denied(capsys, cli_signed, trust, policy_dir, data_file):
    code, out, _ = offline(
        capsys, policy_dir, data_file, f"{REPO}@{DIGEST}", [cli_signed.read_bytes()], trust, ids=(OTHER_ID,)
    )
    assert code == 1
    assert f"signed by {SIGNER_ID}, which is not an allowed SPIFFE ID ({OTHER_ID})" in reasons(out)


def test_tampered_payload_is_denied(capsys, cli_signed, trust, policy_dir, data_file):
    doc = json.loads(cli_signed.read_bytes())
    statement = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    # what an attacker would change: where the source came from
    statement["predicate"]["materials"].append({"uri": "git+https://evil.example/app", "digest": {}})
    doc["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    code, out, _ = offline(
        capsys, policy_dir, data_file, f"{REPO}@{DIGEST}", [json.dumps(doc).encode()], trust
    )
    assert code == 1 and f"no signature verifies with the key of certificate {SIGNER_ID}" in reasons(out)


def test_other_trust_domain_is_denied(
    capsys,
    spire_other_domain,
    trust,
    policy_dir,
    data_file,
    tmp_path,
):
    foreign_id = "spiffe://other.org/ns/provgate/sa/signer"
    line = minted_line(spire_other_domain, foreign_id, tmp_path / "mint")
    other_bundle = spire_other_domain.write_bundle(tmp_path / "other.pem")
    # Only example.org is trusted, but other.org's signer is allowed: that ID can never verify, which is
    # a configuration error, said at once.
    only_ours = [f"example.org={trust.bundle}"]
    code, _, err = offline(
        capsys, policy_dir, data_file, IMAGE, [line], trust, ids=(SIGNER_ID, foreign_id), bundles=only_ours
    )
    assert code == 2 and "no --trust-bundle for its trust domain other.org" in err
    # Both bundles trusted (federation-style), each for its own trust domain, but only example.org's
    # signer allowed: still denied.
    bundles = [f"example.org={trust.bundle}", f"other.org={other_bundle}"]
    code, out, _ = offline(capsys, policy_dir, data_file, IMAGE, [line], trust, bundles=bundles)
    assert code == 1 and f"signed by {foreign_id}, which is not an allowed SPIFFE ID" in reasons(out)
    # other.org's real CA given as example.org's: refused when the gate starts (its URI SAN says other.org).
    code, _, err = offline(
        capsys, policy_dir, data_file, IMAGE, [line], trust, bundles=[trust.bundle, other_bundle]
    )
    assert code == 2 and "belongs to trust domain other.org (URI SAN), not example.org" in err
    # Control: the same line is accepted once that domain and ID are trusted, so the denials above are
    # about trust, not a broken line.
    code, out, _ = offline(
        capsys, policy_dir, data_file, IMAGE, [line], trust, ids=(foreign_id,), bundles=[other_bundle]
    )
    assert code == 0, out


def test_rogue_ca_claiming_the_trust_domain_is_denied(
    capsys,
    spire_rogue,
    trust,
    policy_dir,
    data_file,
    tmp_path,
):
    line = minted_line(spire_rogue, SIGNER_ID, tmp_path / "mint")
    code, out, _ = offline(capsys, policy_dir, data_file, IMAGE, [line], trust)
    assert code == 1 and "certificate chain does not verify" in reasons(out)


def test_spiffe_bundle_json_from_the_server_works_too(
    capsys,
    spire,
    trust,
    policy_dir,
    data_file,
    tmp_path,
    cli_signed,
):
    spiffe_json = tmp_path / "bundle.json"
    spiffe_json.write_bytes(spire.server.cli("bundle", "show", "-format", "spiffe").stdout.encode())
    code, out, _ = offline(
        capsys,
        policy_dir,
        data_file,
        f"{REPO}@{DIGEST}",
        [cli_signed.read_bytes()],
        trust,
        bundles=[spiffe_json],
    )
    assert code == 0, out


# ----------------------------------------------------------------------------- registry path


@pytest.mark.parametrize(
    ("registry", "encoding"),
    [
        ("registry_plain", "dsse"),
        ("registry_referrers", "sigstore-bundle"),
        ("registry_plain", "sigstore-bundle"),
    ],
)
def test_stored_in_the_registry_and_allowed_from_there(
    request,
    capsys,
    signer,
    issued,
    tsa,
    trust,
    policy_dir,
    data_file,
    tmp_path,
    registry,
    encoding,
):
    server: RegistryServer = request.getfixturevalue(registry)
    repo, digest = push_small_image(server, "spire")
    run = write_sample(tmp_path, repo, digest)
    proc = signer(
        "sign",
        str(run),
        "--spiffe-socket",
        issued.workload_socket,
        "--spiffe-id",
        SIGNER_ID,
        "--tsa-url",
        tsa.url,
        "--storage",
        "oci",
        "--oci-encoding-format",
        encoding,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"stored in oci ({encoding}): {repo}@{digest}" in proc.stderr

    _, [stored] = fetch_attestations_sync(f"{repo}@{digest}")
    if encoding == "dsse":
        # cosign's layout for certificate signatures: leaf, chain (empty: SPIRE issues no intermediate
        # without an UpstreamAuthority) and the RFC 3161 timestamp as annotations of the .att layer.
        notes = stored.annotations
        [leaf] = load_pem_certificates(notes["dev.sigstore.cosign/certificate"].encode(), source="ann")
        assert leaf.public_bytes(Encoding.PEM).decode() == notes["dev.sigstore.cosign/certificate"]
        assert "dev.sigstore.cosign/chain" in notes
        token = json.loads(notes["dev.sigstore.cosign/rfc3161timestamp"])["SignedRFC3161Timestamp"]
        envelope = Envelope.from_json(stored.data)
        assert verify_timestamp(base64.b64decode(token), envelope.signatures[0].sig, tsa.trust)
    else:
        material = json.loads(stored.data)["verificationMaterial"]
        assert material["timestampVerificationData"]["rfc3161Timestamps"]

    image = f"{repo}@{digest}"
    code, out, err = gate(
        capsys,
        "verify",
        image,
        "--policy",
        policy_dir,
        "--data",
        data_file,
        *trust_args(trust),
        "--output",
        "policy-input",
    )
    assert code == 0, err
    [sig] = policy_signatures(out)
    assert sig["spiffe_id"] == SIGNER_ID and sig["signed_at"]
    code, out, err = gate(
        capsys, "verify", image, "--policy", policy_dir, "--data", data_file, *trust_args(trust)
    )
    assert code == 0, out + err
    # The registry path denies for the same reasons as the offline one.
    code, out, _ = gate(
        capsys,
        "verify",
        image,
        "--policy",
        policy_dir,
        "--data",
        data_file,
        *trust_args(trust, ids=(OTHER_ID,)),
        "--output",
        "json",
    )
    assert code == 1 and "not an allowed SPIFFE ID" in reasons(out)


# ----------------------------------------------------------------------------- nothing signed


def _nothing_stored(tmp_path: Path, server: RegistryServer, ref: str) -> None:
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.yaml"]
    _, found = fetch_attestations_sync(ref)
    assert found == []


def test_agent_down_signs_and_stores_nothing(signer, registry_plain, tmp_path):
    repo, digest = push_small_image(registry_plain, "spire")
    run = write_sample(tmp_path, repo, digest)
    with run_spire() as private:
        private.issue(SIGNER_ID)
        private.agent.kill()  # a crashed agent: its socket file stays, nothing answers
        private.agent.wait()
        assert os.path.exists(private.agent_socket_path)
        proc = signer(
            "sign",
            str(run),
            "--spiffe-socket",
            private.workload_socket,
            "--storage",
            "oci,tekton,file",
            "--annotations-out",
            str(tmp_path / "notes.json"),
            "--file-out",
            str(tmp_path / "att.jsonl"),
            "--out",
            str(tmp_path / "out.json"),
        )
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert line.startswith("error: cannot fetch an X509-SVID from unix://") and proc.stdout == ""
    _nothing_stored(tmp_path, registry_plain, f"{repo}@{digest}")


def test_tsa_down_signs_and_stores_nothing(signer, issued, registry_plain, tmp_path):
    repo, digest = push_small_image(registry_plain, "spire")
    run = write_sample(tmp_path, repo, digest)
    tsa_url = f"http://127.0.0.1:{free_port()}/api/v1/timestamp"
    proc = signer(
        "sign",
        str(run),
        "--spiffe-socket",
        issued.workload_socket,
        "--spiffe-id",
        SIGNER_ID,
        "--tsa-url",
        tsa_url,
        "--storage",
        "oci,file",
        "--file-out",
        str(tmp_path / "att.jsonl"),
    )
    assert proc.returncode == 2
    [line] = proc.stderr.strip().splitlines()
    assert f"timestamp authority {tsa_url} unreachable" in line
    _nothing_stored(tmp_path, registry_plain, f"{repo}@{digest}")


def test_tsa_down_is_a_transient_failure_and_nothing_is_stored(issued, tmp_path):
    from attestation.errors import TimestampUnavailable, TransientError
    from signer.attest import ArtifactConfig, AttestConfig, attest
    from signer.documents import load_documents
    from signer.run import child_taskruns, to_run
    from signer.storage import StorageConfig

    docs = load_documents(write_sample(tmp_path, REPO, DIGEST))
    run = to_run(docs[0], source="run.yaml")
    children = child_taskruns(run, [to_run(d, source="run.yaml") for d in docs[1:]])
    tsa_url = f"http://127.0.0.1:{free_port()}/api/v1/timestamp"
    signing = SvidSigning(issued.workload_socket, spiffe_id=SIGNER_ID, tsa_url=tsa_url)
    lines = tmp_path / "att.jsonl"
    artifact = ArtifactConfig(storage=("file",), signer="spire")
    config = AttestConfig(
        signers={"spire": signing},
        taskrun=artifact,
        pipelinerun=artifact,
        storage=StorageConfig(file_out=str(lines)),
    )
    with pytest.raises(TimestampUnavailable, match=f"timestamp authority {tsa_url} unreachable") as err:
        attest(run, children, config)
    assert isinstance(err.value, TransientError)
    assert not lines.exists()


# ----------------------------------------------------------------------------- expiry (keep last)


def test_expired_svid_verifies_through_its_timestamp_only(
    capsys,
    short_lived,
    trust,
    policy_dir,
    data_file,
):
    wait = (short_lived.not_after - dt.datetime.now(dt.UTC)).total_seconds() + 1
    if wait > 0:
        time.sleep(wait)
    assert dt.datetime.now(dt.UTC) > short_lived.not_after  # the SVID has expired

    code, out, err = offline(
        capsys,
        policy_dir,
        data_file,
        IMAGE,
        [short_lived.with_timestamp],
        trust,
        "--output",
        "policy-input",
        ids=(SHORT_ID,),
    )
    assert code == 0, err
    [sig] = policy_signatures(out)
    signed_at = dt.datetime.fromisoformat(sig["signed_at"].replace("Z", "+00:00"))
    assert sig["spiffe_id"] == SHORT_ID and signed_at <= short_lived.not_after
    code, out, _ = offline(
        capsys, policy_dir, data_file, IMAGE, [short_lived.with_timestamp], trust, ids=(SHORT_ID,)
    )
    assert code == 0, out

    # No timestamp: checked at "now", where the SVID is expired.
    code, out, _ = offline(
        capsys, policy_dir, data_file, IMAGE, [short_lived.without_timestamp], trust, ids=(SHORT_ID,)
    )
    assert code == 1 and "certificate is not valid at" in reasons(out)
    assert "(no trusted timestamp: checked at the current time)" in reasons(out)
    # A timestamp the gate does not trust is no timestamp: same denial.
    code, out, _ = offline(
        capsys,
        policy_dir,
        data_file,
        IMAGE,
        [short_lived.with_timestamp],
        trust,
        ids=(SHORT_ID,),
        with_tsa=False,
    )
    assert code == 1 and "no trusted timestamp" in reasons(out)
    # A real token over another signature is a denial, never a fallback to "now".
    code, out, _ = offline(
        capsys, policy_dir, data_file, IMAGE, [short_lived.foreign_timestamp], trust, ids=(SHORT_ID,)
    )
    assert code == 1 and "RFC 3161 timestamp does not verify" in reasons(out)
