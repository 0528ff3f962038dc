"""Key files and DSSE envelopes against the real cosign binary (offline: no Rekor, no TUF)."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest

from attestation import dsse, intoto, keys
from attestation.errors import VerificationError
from tests.infra import require_binary

OFFLINE_SIGN = ["--tlog-upload=false", "--use-signing-config=false", "--new-bundle-format=false", "-y"]


def _cosign(args: list[str], cwd: Path, password: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "COSIGN_PASSWORD"}
    env["HOME"] = str(cwd)  # keep cosign's TUF cache and config out of the user's home
    if password is not None:
        env["COSIGN_PASSWORD"] = password
    cosign = require_binary("cosign")
    return subprocess.run([str(cosign), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "blob").write_bytes(b"hello provgate\n")
    return tmp_path


def test_cosign_signs_and_verifies_with_a_key_pair_we_wrote(work: Path) -> None:
    key_path, pub_path = keys.write_key_pair(str(work / "ours"), b"s3cret")
    signed = _cosign(
        ["sign-blob", "--key", str(key_path), *OFFLINE_SIGN, "--output-signature", "blob.sig", "blob"],
        work,
        password="s3cret",
    )
    assert signed.returncode == 0, signed.stderr
    verified = _cosign(
        ["verify-blob", "--key", str(pub_path), "--insecure-ignore-tlog", "--signature", "blob.sig", "blob"],
        work,
    )
    assert verified.returncode == 0 and "Verified OK" in verified.stderr, verified.stderr
    # the signature cosign made verifies with our loader too (ECDSA P-256 over SHA-256 of the blob)
    sig = base64.b64decode((work / "blob.sig").read_text())
    assert keys.load_public_key_file(pub_path).verify(sig, (work / "blob").read_bytes())
    # and cosign refuses our key with the wrong password
    wrong = _cosign(["sign-blob", "--key", str(key_path), *OFFLINE_SIGN, "blob"], work, password="nope")
    assert wrong.returncode != 0 and "decryption failed" in wrong.stderr


def test_we_load_a_key_pair_cosign_generated(work: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made = _cosign(["generate-key-pair", "--output-key-prefix", "theirs"], work, password="pw")
    assert made.returncode == 0, made.stderr
    monkeypatch.setenv("COSIGN_PASSWORD", "pw")
    signer = keys.load_private_key_file(work / "theirs.key")
    assert keys.load_public_key_file(work / "theirs.pub") == signer.public_key
    monkeypatch.setenv("COSIGN_PASSWORD", "wrong")
    with pytest.raises(keys.WrongPasswordError):
        keys.load_private_key_file(work / "theirs.key")


def test_we_verify_a_dsse_attestation_cosign_made(work: Path) -> None:
    made = _cosign(["generate-key-pair", "--output-key-prefix", "c"], work, password="")
    assert made.returncode == 0, made.stderr
    (work / "pred.json").write_text('{"builder":{"id":"https://tekton.dev/chains/v2"}}')
    attested = _cosign(
        [
            "attest-blob",
            "--key",
            "c.key",
            "--predicate",
            "pred.json",
            "--type",
            "https://slsa.dev/provenance/v1",
            *OFFLINE_SIGN,
            "--output-attestation",
            "att.json",
            "blob",
        ],
        work,
        password="",
    )
    assert attested.returncode == 0, attested.stderr
    # cosign prints the DSSE envelope on stdout and writes the signed statement to --output-attestation
    envelope = dsse.Envelope.from_json(attested.stdout.strip(), source="att.json")
    assert envelope.payload == (work / "att.json").read_bytes()
    verified = dsse.verify(envelope, [keys.load_public_key_file(work / "c.pub")])
    assert len(verified) == 1
    statement = intoto.parse(envelope.payload)
    assert statement.predicate_type == "https://slsa.dev/provenance/v1"
    assert statement.subject[0].digest == {"sha256": hashlib.sha256((work / "blob").read_bytes()).hexdigest()}
    assert statement.predicate == json.loads((work / "pred.json").read_text())
    # a different key does not verify it
    other = keys.load_public_key(keys.generate_cosign_key_pair(b"")[1], source="other.pub")
    with pytest.raises(VerificationError, match=r"no signature on att\.json verifies"):
        dsse.verify(envelope, [other])
