"""``signer sign --storage``: what lands in each backend verifies, and bad storage settings fail before
anything is signed or written."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
import yaml

from attestation import bundle, dsse, keys
from attestation.oci.reader import fetch_attestations_sync
from signer import samples
from tests.infra.registry import registry_plain, registry_referrers
from tests.oci.helpers import push_small_image
from tests.signer.test_cli import assert_error, key_pair, signer

__all__ = ["key_pair", "registry_plain", "registry_referrers", "signer"]

PASSWORD = {"COSIGN_PASSWORD": "s3cret"}


def write_sample(tmp_path: Path, image_url: str, image_digest: str) -> Path:
    pipelinerun, taskruns = samples.load(
        "tep0084-pipelinerun", image_url=image_url, image_digest=image_digest
    )
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump_all([pipelinerun, *taskruns], sort_keys=False))
    return path


@pytest.fixture
def pushed_image(registry_plain) -> tuple[str, str]:
    """(repository, digest) of a fresh tiny image on the plain registry."""
    return push_small_image(registry_plain, "signer-storage")


@pytest.mark.parametrize("encoding", ["dsse", "sigstore-bundle"])
def test_oci_storage_lands_next_to_the_image_and_verifies(signer, key_pair, tmp_path, pushed_image, encoding):
    repo, digest = pushed_image
    run = write_sample(tmp_path, repo, digest)
    proc = signer(
        "sign",
        str(run),
        "--key",
        str(key_pair[0]),
        "--storage",
        "oci",
        "--oci-encoding-format",
        encoding,
        env=PASSWORD,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == ""  # stored, not printed
    assert f"stored in oci ({encoding}): {repo}@{digest}" in proc.stderr

    _, found = fetch_attestations_sync(f"{repo}@{digest}")
    assert len(found) == 1
    raw = found[0].data
    envelope = (
        bundle.parse_bundle(raw, source="test").envelope
        if encoding == "sigstore-bundle"
        else dsse.Envelope.from_json(raw)
    )
    verified = dsse.verify(envelope, [keys.load_public_key_file(key_pair[1])])
    assert len(verified) == 1
    statement = json.loads(envelope.payload)
    assert {"name": repo, "digest": {"sha256": digest.removeprefix("sha256:")}} in statement["subject"]


def test_tekton_and_file_storage(signer, key_pair, tmp_path):
    notes, lines = tmp_path / "notes.json", tmp_path / "att.jsonl"
    run = write_sample(tmp_path, "registry.example/app", "sha256:" + "ab" * 32)
    for _ in range(2):
        proc = signer(
            "sign",
            str(run),
            "--key",
            str(key_pair[0]),
            "--storage",
            "tekton,file",
            "--annotations-out",
            str(notes),
            "--file-out",
            str(lines),
            env=PASSWORD,
        )
        assert proc.returncode == 0, proc.stderr

    uid = yaml.safe_load(run.read_text().split("\n---\n")[0])["metadata"]["uid"]
    annotations = json.loads(notes.read_text())
    key = f"pipelinerun-{uid}"  # Chains' ShortKey for a PipelineRun artifact
    kinds = ("payload", "signature", "cert", "chain")
    assert set(annotations) == {f"chains.tekton.dev/{k}-{key}" for k in kinds}
    envelope = dsse.Envelope.from_json(base64.b64decode(annotations[f"chains.tekton.dev/signature-{key}"]))
    assert base64.b64decode(annotations[f"chains.tekton.dev/payload-{key}"]) == envelope.payload
    assert annotations[f"chains.tekton.dev/cert-{key}"] == ""  # written, empty, for key signers

    # The file backend appends: two signings, two lines, each a verifiable envelope.
    written = lines.read_text().splitlines()
    assert len(written) == 2
    for line in written:
        assert dsse.verify(dsse.Envelope.from_json(line), [keys.load_public_key_file(key_pair[1])])


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--storage", "s3"], "unknown storage backend 's3'"),
        (["--storage", "tekton"], "--annotations-out"),
        (["--storage", "file"], "--file-out"),
    ],
)
def test_bad_storage_settings_fail_before_signing(signer, key_pair, tmp_path, args, fragment):
    run = write_sample(tmp_path, "registry.example/app", "sha256:" + "ab" * 32)
    proc = signer("sign", str(run), "--key", str(key_pair[0]), *args, env=PASSWORD)
    assert_error(proc, fragment)
    assert list(tmp_path.iterdir()) == [run]  # nothing written


def test_oci_storage_for_an_image_the_registry_does_not_hold(signer, key_pair, tmp_path, registry_plain):
    repo = registry_plain.repo("missing")
    run = write_sample(tmp_path, repo, "sha256:" + "cd" * 32)
    proc = signer("sign", str(run), "--key", str(key_pair[0]), "--storage", "oci", env=PASSWORD)
    assert_error(proc, repo)


def test_oci_storage_unreachable_registry(signer, key_pair, tmp_path):
    from tests.infra import free_port

    run = write_sample(tmp_path, f"127.0.0.1:{free_port()}/app", "sha256:" + "cd" * 32)
    proc = signer("sign", str(run), "--key", str(key_pair[0]), "--storage", "oci", env=PASSWORD)
    assert_error(proc, "127.0.0.1")


def test_a_temporary_failure_says_so_and_a_permanent_one_does_not(signer, key_pair, tmp_path, registry_plain):
    from tests.infra import free_port

    down = write_sample(tmp_path, f"127.0.0.1:{free_port()}/app", "sha256:" + "cd" * 32)
    proc = signer("sign", str(down), "--key", str(key_pair[0]), "--storage", "oci", env=PASSWORD)
    assert_error(proc, "connection failed", "(temporary: try again later)")

    missing = write_sample(tmp_path, registry_plain.repo("missing"), "sha256:" + "cd" * 32)
    proc = signer("sign", str(missing), "--key", str(key_pair[0]), "--storage", "oci", env=PASSWORD)
    assert_error(proc, "not found")
    assert "temporary" not in proc.stderr


def test_verbose_prints_the_debug_log_which_is_silent_by_default(signer, key_pair, tmp_path, pushed_image):
    repo, digest = pushed_image
    run = write_sample(tmp_path, repo, digest)
    args = ("sign", str(run), "--key", str(key_pair[0]), "--storage", "oci")
    quiet = signer(*args, env=PASSWORD)
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == f"stored in oci (dsse): {repo}@{digest}\n"

    loud = signer("-v", *args, env=PASSWORD)
    assert loud.returncode == 0, loud.stderr
    lines = loud.stderr.splitlines()
    assert lines[-1] == f"stored in oci (dsse): {repo}@{digest} (already stored)"
    debug = [line for line in lines if line.startswith("debug: ")]
    assert debug and len(debug) == len(lines) - 1
    assert any(
        line.startswith("debug: signer.attest: PipelineRun ") and f"signed with key {key_pair[0]}" in line
        for line in debug
    )
    assert f"debug: signer.storage.oci: {repo}@{digest} already carries this statement" in loud.stderr


def test_verbose_shows_the_registry_retries_before_the_error(signer, key_pair, tmp_path):
    from tests.infra import free_port

    host = f"127.0.0.1:{free_port()}"
    down = write_sample(tmp_path, f"{host}/app", "sha256:" + "cd" * 32)
    proc = signer("-v", "sign", str(down), "--key", str(key_pair[0]), "--storage", "oci", env=PASSWORD)
    assert proc.returncode == 2
    *debug, last = proc.stderr.splitlines()
    retries = [line for line in debug if "retrying in" in line]
    assert len(retries) == 3
    assert all(
        line.startswith("debug: attestation.oci.registry: ") and f"({host}/app): connection failed" in line
        for line in retries
    )
    assert last.startswith("error: ") and last.endswith("(temporary: try again later)")
