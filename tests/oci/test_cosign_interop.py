"""Interop with the real cosign v3 binary, offline with keys, on both registries: cosign verifies what we
store (legacy .att layers and bundle referrers), and we read and verify what cosign stores."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

import pytest

from attestation import dsse
from attestation.bundle import envelope_to_bundle, parse_bundle
from attestation.keys import load_private_key, load_public_key, write_key_pair
from attestation.oci.reader import ResolvedImage, fetch_attestations
from attestation.oci.writer import push_attestation_legacy, push_attestation_referrer, push_image
from tests.infra import require_binary
from tests.infra.registry import RegistryServer
from tests.oci.helpers import deadline, run

PASSWORD = "interop-pw"
SLSA02 = "https://slsa.dev/provenance/v0.2"
SLSA1 = "https://slsa.dev/provenance/v1"


@pytest.fixture(scope="module")
def cosign(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], Path]:
    """(cosign binary, environment, directory holding cosign.key/cosign.pub made by cosign itself)."""
    binary = require_binary("cosign")
    home = tmp_path_factory.mktemp("cosign-home")
    env = {**os.environ, "HOME": str(home), "TUF_ROOT": str(home / "tuf"), "COSIGN_PASSWORD": PASSWORD}
    subprocess.run(
        [binary, "generate-key-pair"], cwd=home, env=env, check=True, capture_output=True, timeout=60
    )
    return binary, env, home


def _cosign(cosign: tuple[Path, dict[str, str], Path], *args: str) -> subprocess.CompletedProcess[str]:
    binary, env, home = cosign
    return subprocess.run([binary, *args], cwd=home, env=env, capture_output=True, text=True, timeout=120)


def _push(server: RegistryServer) -> ResolvedImage:
    async def go() -> ResolvedImage:
        async with server.client() as client:
            return await push_image(client, server.repo(), deadline=deadline())

    return run(go())


def _statement(image: ResolvedImage, predicate_type: str) -> bytes:
    return json.dumps(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": image.reference.name, "digest": {"sha256": image.digest.split(":")[1]}}],
            "predicateType": predicate_type,
            "predicate": {"builder": {"id": "https://provgate.test/builder"}},
        }
    ).encode()


def _fetch(server: RegistryServer, image: ResolvedImage):
    async def go():
        async with server.client() as client:
            return await fetch_attestations(client, image, deadline=deadline())

    return run(go())


@pytest.mark.parametrize(
    ("layout_kind", "cosign_type"), [("legacy", "slsaprovenance"), ("bundle", "slsaprovenance1")]
)
def test_cosign_verifies_what_we_store(
    any_registry: RegistryServer,
    cosign: tuple[Path, dict[str, str], Path],
    layout_kind: str,
    cosign_type: str,
) -> None:
    home = cosign[2]
    signer = load_private_key(
        (home / "cosign.key").read_bytes(), source="cosign.key", password=PASSWORD.encode()
    )
    image = _push(any_registry)
    predicate_type = SLSA02 if layout_kind == "legacy" else SLSA1
    envelope = dsse.sign(_statement(image, predicate_type), signer)

    async def store() -> None:
        async with any_registry.client() as client:
            if layout_kind == "legacy":
                await push_attestation_legacy(client, image, envelope.to_json(), deadline=deadline())
            else:
                bundle = envelope_to_bundle(envelope, public_key=signer.public_key)
                await push_attestation_referrer(
                    client, image, bundle, predicate_type=predicate_type, deadline=deadline()
                )

    run(store())
    args = [
        "verify-attestation",
        "--key",
        "cosign.pub",
        "--insecure-ignore-tlog=true",
        "--type",
        cosign_type,
        "--allow-http-registry",
        image.pinned,
    ]
    if layout_kind == "legacy":
        args.insert(1, "--new-bundle-format=false")
    result = _cosign(cosign, *args)
    assert result.returncode == 0, result.stderr
    # cosign prints each verified envelope on stdout; ours must be the one it found.
    printed = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert base64.b64decode(printed[0]["payload"]) == envelope.payload


def test_cosign_rejects_our_attestation_signed_with_another_key(
    registry_plain: RegistryServer, cosign: tuple[Path, dict[str, str], Path], tmp_path: Path
) -> None:
    # The control for the test above: same flow, a key cosign.pub does not match.
    key_path, _ = write_key_pair(str(tmp_path / "other"), b"x")
    signer = load_private_key(key_path.read_bytes(), source="other.key", password=b"x")
    image = _push(registry_plain)
    envelope = dsse.sign(_statement(image, SLSA02), signer)

    async def store() -> None:
        async with registry_plain.client() as client:
            await push_attestation_legacy(client, image, envelope.to_json(), deadline=deadline())

    run(store())
    result = _cosign(
        cosign,
        "verify-attestation",
        "--new-bundle-format=false",
        "--key",
        "cosign.pub",
        "--insecure-ignore-tlog=true",
        "--type",
        "slsaprovenance",
        "--allow-http-registry",
        image.pinned,
    )
    assert result.returncode != 0


@pytest.mark.parametrize("new_bundle_format", ["false", "true"])
def test_we_read_and_verify_what_cosign_attests(
    any_registry: RegistryServer, cosign: tuple[Path, dict[str, str], Path], new_bundle_format: str
) -> None:
    home = cosign[2]
    image = _push(any_registry)
    predicate = home / f"predicate-{new_bundle_format}.json"
    predicate.write_text(
        json.dumps(
            {
                "buildDefinition": {"buildType": "https://cosign.test/build", "externalParameters": {}},
                "runDetails": {"builder": {"id": "https://cosign.test"}},
            }
        )
    )
    result = _cosign(
        cosign,
        "attest",
        "--key",
        "cosign.key",
        "--type",
        "slsaprovenance1",
        "--predicate",
        str(predicate),
        "--tlog-upload=false",
        "--use-signing-config=false",
        "-y",
        f"--new-bundle-format={new_bundle_format}",
        "--allow-http-registry",
        image.pinned,
    )
    assert result.returncode == 0, result.stderr

    (stored,) = _fetch(any_registry, image)
    public_key = load_public_key((home / "cosign.pub").read_bytes(), source="cosign.pub")
    if new_bundle_format == "true":
        assert stored.media_type == "application/vnd.dev.sigstore.bundle.v0.3+json"
        assert stored.annotations["dev.sigstore.bundle.predicateType"] == SLSA1
        envelope = parse_bundle(stored.data, source=stored.source).envelope
    else:
        assert stored.media_type == "application/vnd.dsse.envelope.v1+json"
        assert stored.annotations["predicateType"] == SLSA1
        envelope = dsse.Envelope.from_json(stored.data, source=stored.source)
    assert dsse.verify(envelope, [public_key])
    statement = json.loads(envelope.payload)
    assert statement["subject"][0]["digest"]["sha256"] == image.digest.split(":")[1]
    assert statement["predicate"]["runDetails"]["builder"]["id"] == "https://cosign.test"


def test_cosign_signs_with_a_key_pair_we_generated(
    registry_plain: RegistryServer, cosign: tuple[Path, dict[str, str], Path], tmp_path: Path
) -> None:
    key_path, pub_path = write_key_pair(str(tmp_path / "ours"), PASSWORD.encode())
    image = _push(registry_plain)
    predicate = tmp_path / "p.json"
    predicate.write_text("{}")
    attest = _cosign(
        cosign,
        "attest",
        "--key",
        str(key_path),
        "--type",
        "slsaprovenance1",
        "--predicate",
        str(predicate),
        "--tlog-upload=false",
        "--use-signing-config=false",
        "-y",
        "--new-bundle-format=false",
        "--allow-http-registry",
        image.pinned,
    )
    assert attest.returncode == 0, attest.stderr
    verify = _cosign(
        cosign,
        "verify-attestation",
        "--new-bundle-format=false",
        "--key",
        str(pub_path),
        "--insecure-ignore-tlog=true",
        "--type",
        "slsaprovenance1",
        "--allow-http-registry",
        image.pinned,
    )
    assert verify.returncode == 0, verify.stderr


@pytest.mark.parametrize(
    ("fmt", "encoding", "cosign_type"),
    [
        ("slsa/v1", "dsse", "slsaprovenance"),
        ("slsa/v2alpha4", "dsse", "slsaprovenance1"),
        ("slsa/v2alpha4", "sigstore-bundle", "slsaprovenance1"),
    ],
)
def test_signer_cli_with_cosign_key_then_cosign_verify_attestation(
    any_registry: RegistryServer,
    cosign: tuple[Path, dict[str, str], Path],
    tmp_path: Path,
    fmt: str,
    encoding: str,
    cosign_type: str,
) -> None:
    """The issue's path, as a user types it: `signer sign --key cosign.key --storage oci` on the bundled
    TEP-0084 PipelineRun, then `cosign verify-attestation --key cosign.pub` on the image."""
    import sys

    import yaml

    from signer import samples

    _binary, env, home = cosign
    image = _push(any_registry)
    pipelinerun, taskruns = samples.load(
        "tep0084-pipelinerun", image_url=image.reference.name, image_digest=image.digest
    )
    run_file = tmp_path / "run.yaml"
    run_file.write_text(yaml.safe_dump_all([pipelinerun, *taskruns], sort_keys=False))
    signer_cli = Path(sys.executable).parent / "signer"
    signed = subprocess.run(
        [
            signer_cli,
            "sign",
            run_file,
            "--key",
            home / "cosign.key",
            "--format",
            fmt,
            "--storage",
            "oci",
            "--oci-encoding-format",
            encoding,
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert signed.returncode == 0, signed.stderr
    args = [
        "verify-attestation",
        "--key",
        "cosign.pub",
        "--insecure-ignore-tlog=true",
        "--type",
        cosign_type,
        "--allow-http-registry",
        image.pinned,
    ]
    if encoding == "dsse":
        args.insert(1, "--new-bundle-format=false")
    result = _cosign(cosign, *args)
    assert result.returncode == 0, result.stderr
    printed = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    statement = json.loads(base64.b64decode(printed[0]["payload"]))
    # the statement cosign verified is the PipelineRun's provenance, about this image
    assert statement["predicate"]["buildDefinition" if fmt != "slsa/v1" else "buildType"]
    subject = {"name": image.reference.name, "digest": {"sha256": image.digest.split(":")[1]}}
    assert subject in statement["subject"]
