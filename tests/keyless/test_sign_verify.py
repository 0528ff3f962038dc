"""Keyless end to end: ``signer sign --keyless`` with a JWT-SVID against the private Sigstore, the
bundle stored as a referrer, ``gate verify`` admitting it by identity and issuer, and cosign agreeing."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.keyless.conftest import SIGNER_ID, Built, build_run

pytestmark = [pytest.mark.xdist_group("spire"), pytest.mark.slow]


def cli(
    module: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    code = f"import sys; from {module}.cli import main; main(sys.argv[1:])"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout, env=env
    )


@pytest.fixture(scope="module")
def signed(keyless, registry_referrers, tmp_path_factory) -> tuple[Built, Path]:
    d = tmp_path_factory.mktemp("keyless")
    built = build_run(registry_referrers, d)
    done = cli(
        "signer",
        "sign",
        str(built.run_file),
        "--keyless",
        "--spiffe-socket",
        keyless.spire.workload_socket,
        "--spiffe-id",
        SIGNER_ID,
        "--trust-config",
        str(keyless.trust_config_file),
        "--storage",
        "oci,tekton,file",
        "--annotations-out",
        str(d / "notes.json"),
        "--file-out",
        str(d / "att.jsonl"),
    )
    assert done.returncode == 0, done.stderr
    return built, d


def test_signed_keyless_is_admitted_by_identity_and_issuer(keyless, signed, policy_dir, data_file):
    built, d = signed
    done = cli(
        "gate",
        "verify",
        built.image,
        "--certificate-identity",
        SIGNER_ID,
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
    )
    assert done.returncode == 0, (done.stderr, done.stdout)
    decision = json.loads(done.stdout)
    assert decision["allowed"] is True
