"""Keyless signing never fails silently, and verification never needs a service.

* Offline: a stored bundle verifies from the trusted root alone in a process that can reach nothing (its
  own network namespace: not even loopback) and whose clock is a day past the 10-minute certificate.
* Fulcio, the log or the TSA down while signing: exit 2 with a temporary error, and nothing stored.
* A refused identity token: exit 2 naming the claim, nothing stored.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from attestation.oci.reader import fetch_referrers, resolve
from attestation.reference import parse
from tests.infra import free_port
from tests.keyless.conftest import SIGNER_ID, Built, build_run
from tests.keyless.helpers import cli, sign_args, sign_to_file
from tests.oci.helpers import deadline, run

pytestmark = [pytest.mark.xdist_group("spire"), pytest.mark.slow]

# The gate in a process whose clock is moved by time-machine, so "now" is wherever the test says.
LATER_GATE = """\
import datetime as dt, sys, time_machine
with time_machine.travel(dt.datetime.fromisoformat(sys.argv[1]), tick=True):
    from gate.cli import main
    main(sys.argv[2:])
"""


def _unshare() -> list[str]:
    """A command prefix that runs in a new network namespace (no interface is up: nothing reachable)."""
    binary = shutil.which("unshare")
    if binary is None or subprocess.run([binary, "-n", "true"], capture_output=True).returncode != 0:
        pytest.fail("unshare -n (a private network namespace) is needed to prove verification is offline")
    return [binary, "-n"]


def test_verifies_offline_after_the_certificate_expired(
    keyless, registry_referrers, tmp_path, policy_dir, data_file
):
    built = build_run(registry_referrers, tmp_path, name="offline")
    bundle = sign_to_file(keyless, built, tmp_path / "bundle.json")
    (tmp_path / "att.jsonl").write_bytes(bundle + b"\n")
    leaf = json.loads(bundle)["verificationMaterial"]["certificate"]["rawBytes"]
    from cryptography import x509

    expires = x509.load_der_x509_certificate(base64.b64decode(leaf)).not_valid_after_utc
    a_day_later = (expires.replace(microsecond=0) + __import__("datetime").timedelta(days=1)).isoformat()

    def gate(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                *_unshare(),
                sys.executable,
                "-c",
                LATER_GATE,
                a_day_later,
                "verify",
                built.image,
                "--attestations",
                str(tmp_path / "att.jsonl"),
                "--certificate-oidc-issuer",
                keyless.issuer,
                "--trusted-root",
                str(keyless.trusted_root_file),
                "--policy",
                str(policy_dir),
                "--data",
                str(data_file),
                "--output",
                "json",
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )

    done = gate("--certificate-identity", SIGNER_ID)
    assert done.returncode == 0, (done.stderr, done.stdout[-2000:])
    decision = json.loads(done.stdout)
    assert decision["allowed"] is True
    assert decision["attestations"][0]["signer"]["signed_at"] < expires.isoformat()
    # The same process refuses another identity: it decided, it did not just fail open.
    assert gate("--certificate-identity", "spiffe://example.org/ns/x/sa/y").returncode == 1
    # And the namespace really reaches nothing: not even the Fulcio of this session.
    probe = subprocess.run(
        [*_unshare(), sys.executable, "-c", f"import httpx; httpx.get('{keyless.fulcio_url}', timeout=2)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode != 0


def _referrers(server, built: Built):
    async def look():
        async with server.client() as client:
            image = await resolve(client, parse(built.image), deadline=deadline())
            return await fetch_referrers(client, image, deadline=deadline())

    return run(look())


def _dead_url(path: str = "") -> str:
    return f"http://127.0.0.1:{free_port()}{path}"


@pytest.mark.parametrize(
    ("service", "message"),
    [
        ("fulcio_url", "Fulcio at"),
        ("rekor_url", "transparency log at"),
        ("tsa_url", "timestamp authority"),
    ],
)
def test_service_down_while_signing_stores_nothing(keyless, registry_referrers, tmp_path, service, message):
    built = build_run(registry_referrers, tmp_path, name=f"down-{service.split('_')[0]}")
    config = keyless.write_trust_config(
        tmp_path / "trust.json", **{service: _dead_url("/api/v1/timestamp" if service == "tsa_url" else "")}
    )
    args = sign_args(keyless, built)
    args[args.index("--trust-config") + 1] = str(config)
    done = cli(
        "signer",
        *args,
        "--storage",
        "oci,tekton,file",
        "--annotations-out",
        str(tmp_path / "notes.json"),
        "--file-out",
        str(tmp_path / "att.jsonl"),
    )
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert message in line and "temporary" in line, line
    assert _referrers(registry_referrers, built) == []
    assert not (tmp_path / "notes.json").exists() and not (tmp_path / "att.jsonl").exists()


def test_service_down_in_the_library_is_a_transient_error(keyless, registry_referrers, tmp_path):
    """The operator's view: attest() raises a TransientError, so it retries."""
    from attestation.errors import TransientError
    from signer.attest import ArtifactConfig, AttestConfig, attest
    from signer.run import to_run
    from signer.signing.keyless import KeylessConfig, KeylessSigning
    from signer.storage import StorageConfig

    built = build_run(registry_referrers, tmp_path, name="down-lib")
    config_file = keyless.write_trust_config(tmp_path / "trust.json", rekor_url=_dead_url())
    backend = KeylessSigning(
        KeylessConfig(
            trust_config=str(config_file), spiffe_socket=keyless.spire.workload_socket, spiffe_id=SIGNER_ID
        )
    )
    artifact = ArtifactConfig(storage=("oci",), signer="keyless")
    config = AttestConfig(
        signers={"keyless": backend}, taskrun=artifact, pipelinerun=artifact, storage=StorageConfig()
    )
    run_obj = to_run(json.loads(built.run_file.read_text()), source=str(built.run_file))
    with pytest.raises(TransientError, match="transparency log"):
        attest(run_obj, [], config)
    assert _referrers(registry_referrers, built) == []


def _token_with(keyless, **claims) -> str:
    """A real JWT-SVID with some claims replaced (its signature then no longer matches: Fulcio's concern)."""
    token = keyless.jwt_svid(SIGNER_ID)
    head, body, sig = token.split(".")
    doc = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    for key, value in claims.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    new = base64.urlsafe_b64encode(json.dumps(doc).encode()).rstrip(b"=").decode()
    return f"{head}.{new}.{sig}"


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"aud": ["somebody-else"]}, "claim 'aud'"),
        ({"iss": None}, "no 'iss' claim"),
        ({"exp": 1_000_000_000}, "claim 'exp'"),
        ({}, "refused the identity token"),  # well-formed, but its signature no longer matches
    ],
)
def test_refused_token_is_permanent_and_names_the_claim(
    keyless, registry_referrers, tmp_path, claims, message
):
    built = build_run(registry_referrers, tmp_path, name="token")
    token = _token_with(keyless, **claims) if claims else _token_with(keyless, sub=SIGNER_ID + "x")
    (tmp_path / "token").write_text(token)
    done = cli(
        "signer",
        "sign",
        str(built.run_file),
        "--keyless",
        "--identity-token-file",
        str(tmp_path / "token"),
        "--trust-config",
        str(keyless.trust_config_file),
        "--storage",
        "oci",
    )
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert message in line and "temporary" not in line, line
    assert _referrers(registry_referrers, built) == []


def test_keyless_flags_need_keyless(keyless, tmp_path: Path):
    done = cli("signer", "sign", "run.json", "--trust-config", str(keyless.trust_config_file), "--key", "k")
    assert done.returncode == 2 and "go with --keyless" in done.stderr
    done = cli("signer", "sign", "run.json", "--keyless", "--key", "k")
    assert done.returncode == 2 and "exactly one of" in done.stderr
