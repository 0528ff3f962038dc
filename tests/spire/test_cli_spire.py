"""``signer verify-results`` and ``signer sign --spiffe-socket`` through the real console entry point."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.spire.certs import make_ca, make_svid
from tests.spire.tekton import taskrun, termination_results

TD = "example.org"
FILES = {"IMAGE_DIGEST": "sha256:" + "ab" * 32, "IMAGE_URL": "registry.local/app"}


def signer(*args: str) -> subprocess.CompletedProcess[str]:
    code = "import sys; from signer.cli import main; main(sys.argv[1:])"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    root = make_ca(TD)
    (d / "bundle.pem").write_bytes(root.pem)
    svid = make_svid(root, [f"spiffe://{TD}/ns/ci/taskrun/build-1"])
    obj = taskrun("build-1", "ci", termination_results(FILES, svid.key, svid.pem.decode()))
    (d / "good.json").write_text(json.dumps(obj))
    for r in obj["status"]["results"]:
        if r["name"] == "IMAGE_DIGEST":
            r["value"] = "sha256:" + "cd" * 32
    (d / "tampered.json").write_text(json.dumps(obj))
    return d


def test_verified_run_exits_0(files: Path):
    done = signer(
        "verify-results",
        str(files / "good.json"),
        "--trust-bundle",
        str(files / "bundle.pem"),
        "--trust-domain",
        TD,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "verified: 2 results signed by spiffe://example.org/ns/ci/taskrun/build-1\n"


def test_tampered_run_exits_1_with_one_line_per_reason(files: Path):
    done = signer(
        "verify-results",
        str(files / "tampered.json"),
        "--trust-bundle",
        str(files / "bundle.pem"),
        "--trust-domain",
        TD,
    )
    assert done.returncode == 1
    assert done.stdout == (
        "not verified: result IMAGE_DIGEST: signature does not verify (value changed after signing?)\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--trust-bundle", "missing.pem", "--trust-domain", TD], "cannot read trust bundle missing.pem"),
        (["--trust-domain", TD], "give --trust-bundle FILE or --spiffe-socket URI, not both"),
        (
            ["--trust-bundle", "BUNDLE", "--trust-domain", "Example.ORG"],
            "--trust-domain 'Example.ORG' must be",
        ),
    ],
)
def test_unusable_input_exits_2_with_one_line(files: Path, args, message):
    args = [str(files / "bundle.pem") if a == "BUNDLE" else a for a in args]
    done = signer("verify-results", str(files / "good.json"), *args)
    assert done.returncode == 2
    assert message in done.stderr and done.stderr.count("\n") == 1
    assert done.stdout == ""


def test_sign_with_missing_agent_socket_signs_nothing(files: Path, tmp_path: Path):
    out = tmp_path / "att.json"
    done = signer(
        "sign", str(files / "good.json"), "--spiffe-socket", f"unix://{tmp_path}/none.sock", "--out", str(out)
    )
    assert done.returncode == 2
    assert "does not exist (is the SPIRE agent running?)" in done.stderr
    assert not out.exists()


def test_sign_needs_exactly_one_signing_source(files: Path):
    done = signer("sign", str(files / "good.json"))
    assert done.returncode == 2 and "exactly one of --key FILE or --spiffe-socket URI" in done.stderr


@pytest.fixture(scope="module")
def key_file(tmp_path_factory) -> Path:
    from attestation.keys import write_key_pair

    key, _ = write_key_pair(str(tmp_path_factory.mktemp("key") / "cosign"), b"")
    return key


def test_enforced_nonfalsifiability_signs_a_verified_run(files: Path, key_file: Path, tmp_path: Path):
    out = tmp_path / "att.json"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from signer.cli import main; main(sys.argv[1:])",
            "sign",
            str(files / "good.json"),
            "--key",
            str(key_file),
            "--out",
            str(out),
            "--enforce-nonfalsifiability",
            "spire",
            "--spire-trust-bundle",
            str(files / "bundle.pem"),
            "--spire-trust-domain",
            TD,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COSIGN_PASSWORD": "", "PATH": ""},
    )
    assert done.returncode == 0, done.stderr
    statement = json.loads(__import__("base64").b64decode(json.loads(out.read_text())["payload"]))
    assert statement["subject"] == [{"name": "registry.local/app", "digest": {"sha256": "ab" * 32}}]


def test_enforced_nonfalsifiability_refuses_a_tampered_run(files: Path, key_file: Path, tmp_path: Path):
    out, lines = tmp_path / "att.json", tmp_path / "att.jsonl"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from signer.cli import main; main(sys.argv[1:])",
            "sign",
            str(files / "tampered.json"),
            "--key",
            str(key_file),
            "--out",
            str(out),
            "--storage",
            "file",
            "--file-out",
            str(lines),
            "--enforce-nonfalsifiability",
            "spire",
            "--spire-trust-bundle",
            str(files / "bundle.pem"),
            "--spire-trust-domain",
            TD,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COSIGN_PASSWORD": "", "PATH": ""},
    )
    assert done.returncode == 1, done.stderr
    assert "IMAGE_DIGEST" in done.stderr  # the reason names the forged result
    assert "gets no provenance" in done.stderr.splitlines()[-1]
    assert "Traceback" not in done.stderr
    assert not out.exists() and not lines.exists()  # nothing signed, nothing stored


def test_enforced_nonfalsifiability_needs_its_trust_settings(files: Path, key_file: Path):
    done = signer(
        "sign", str(files / "good.json"), "--key", str(key_file), "--enforce-nonfalsifiability", "spire"
    )
    assert done.returncode == 2
    assert "--spire-trust-bundle" in done.stderr


def test_enforced_nonfalsifiability_marks_the_run_failed_for_tekton_storage(
    files: Path, key_file: Path, tmp_path: Path
):
    notes, out = tmp_path / "notes.json", tmp_path / "att.json"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from signer.cli import main; main(sys.argv[1:])",
            "sign",
            str(files / "tampered.json"),
            "--key",
            str(key_file),
            "--out",
            str(out),
            "--storage",
            "tekton",
            "--annotations-out",
            str(notes),
            "--enforce-nonfalsifiability",
            "spire",
            "--spire-trust-bundle",
            str(files / "bundle.pem"),
            "--spire-trust-domain",
            TD,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COSIGN_PASSWORD": "", "PATH": ""},
    )
    assert done.returncode == 1, done.stderr
    marked = json.loads(notes.read_text())
    # Chains' "never attest this run" marker, and the reason for whoever looks at the run
    assert marked["chains.tekton.dev/signed"] == "failed"
    assert "IMAGE_DIGEST" in marked["provgate.dev/not-verified"]
    assert not any(k.startswith("chains.tekton.dev/payload-") for k in marked)
    assert not out.exists()
