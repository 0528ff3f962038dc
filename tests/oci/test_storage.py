"""The signer's storage backends: oci (both encodings), tekton annotations, JSON-lines file."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from attestation import dsse
from attestation.bundle import parse_bundle
from attestation.errors import InputError, LimitExceeded, RegistryError
from attestation.keys import PrivateKeySigner
from attestation.oci.reader import fetch_attestations, resolve
from attestation.oci.writer import push_image
from signer.storage.file import append_jsonl
from signer.storage.oci import OciStorageConfig, oci_subjects, store_oci
from signer.storage.tekton import tekton_annotations
from tests.infra.registry import RegistryServer
from tests.oci.helpers import deadline, run

SIGNER = PrivateKeySigner(ec.generate_private_key(ec.SECP256R1()))


def _statement(*subjects: dict) -> dict:
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": list(subjects),
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {},
    }


def test_oci_subjects_are_images_with_sha256_digests() -> None:
    hex1, hex2 = "1" * 64, "2" * 64
    statement = _statement(
        {"name": "registry.example/team/app", "digest": {"sha256": hex1}},
        {"name": "busybox", "digest": {"sha256": hex2}},
        {"name": "registry.example/team/app", "digest": {"sha256": hex1}},  # duplicate
        {"name": "registry.example/other", "digest": {"sha512": "3" * 128}},  # not sha256
        {"name": "pkg:npm/left-pad@1.0.0", "digest": {"sha256": hex1}},  # not an image
        {"name": "registry.example/bad", "digest": {"sha256": "not-hex"}},
    )
    assert [str(s) for s in oci_subjects(statement)] == [
        f"registry.example/team/app@sha256:{hex1}",
        f"index.docker.io/library/busybox@sha256:{hex2}",
    ]


@pytest.mark.parametrize("encoding", ["dsse", "sigstore-bundle"])
def test_store_oci_under_every_image_subject(registry_plain: RegistryServer, encoding: str) -> None:
    async def go():
        async with registry_plain.client() as client:
            one = await push_image(client, registry_plain.repo(), [b"one"], deadline=deadline())
            two = await push_image(client, registry_plain.repo(), [b"two"], deadline=deadline())
            statement = _statement(
                *({"name": i.reference.name, "digest": {"sha256": i.digest[7:]}} for i in (one, two))
            )
            envelope = dsse.sign(json.dumps(statement).encode(), SIGNER)
            stored = await store_oci(
                client,
                envelope,
                statement,
                config=OciStorageConfig(encoding_format=encoding),  # type: ignore[arg-type]
                public_key=SIGNER.public_key,
                deadline=deadline(),
            )
            found = [await fetch_attestations(client, i, deadline=deadline()) for i in (one, two)]
            return envelope, [one.pinned, two.pinned], stored, found

    envelope, pinned, stored, found = run(go())
    assert [s.image for s in stored] == pinned
    for (att,) in found:
        if encoding == "dsse":
            assert att.data == envelope.to_json()
            assert att.annotations["predicateType"] == "https://slsa.dev/provenance/v1"
        else:
            assert parse_bundle(att.data, source=att.source).envelope == envelope


def test_store_oci_fails_for_an_image_the_registry_does_not_have(registry_plain: RegistryServer) -> None:
    name = registry_plain.repo()
    statement = _statement({"name": name, "digest": {"sha256": "4" * 64}})
    envelope = dsse.sign(json.dumps(statement).encode(), SIGNER)

    async def go():
        async with registry_plain.client() as client:
            await store_oci(client, envelope, statement, config=OciStorageConfig(), deadline=deadline())

    with pytest.raises(RegistryError, match="not found"):
        run(go())


def test_store_oci_dsse_into_another_repository(registry_plain: RegistryServer) -> None:
    other = registry_plain.repo("signatures")

    async def go():
        async with registry_plain.client() as client:
            image = await push_image(client, registry_plain.repo(), deadline=deadline())
            statement = _statement({"name": image.reference.name, "digest": {"sha256": image.digest[7:]}})
            envelope = dsse.sign(json.dumps(statement).encode(), SIGNER)
            await store_oci(
                client, envelope, statement, config=OciStorageConfig(repository=other), deadline=deadline()
            )
            return (
                await fetch_attestations(client, image, deadline=deadline()),
                await fetch_attestations(client, image, deadline=deadline(), repository=other),
            )

    beside, elsewhere = run(go())
    assert beside == [] and len(elsewhere) == 1


def test_tekton_annotations_encode_like_chains() -> None:
    envelope = dsse.sign(b'{"_type":"x"}', SIGNER)
    pem = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    got = tekton_annotations("TaskRun", "abc-123", envelope, certificate_pem=pem)
    assert set(got) == {
        f"chains.tekton.dev/{k}-taskrun-abc-123" for k in ("payload", "signature", "cert", "chain")
    }
    assert base64.b64decode(got["chains.tekton.dev/payload-taskrun-abc-123"]) == b'{"_type":"x"}'
    assert (
        dsse.Envelope.from_json(base64.b64decode(got["chains.tekton.dev/signature-taskrun-abc-123"]))
        == envelope
    )
    assert base64.b64decode(got["chains.tekton.dev/cert-taskrun-abc-123"]) == pem
    assert got["chains.tekton.dev/chain-taskrun-abc-123"] == ""
    pipeline = tekton_annotations("PipelineRun", "u1", envelope)
    assert (
        "chains.tekton.dev/cert-pipelinerun-u1" in pipeline
        and pipeline["chains.tekton.dev/cert-pipelinerun-u1"] == ""
    )


def test_tekton_annotations_refuse_what_kubernetes_would_refuse() -> None:
    big = dsse.sign(b"x" * 150_000, SIGNER)
    with pytest.raises(LimitExceeded, match=r"TaskRun u: .* more than Kubernetes"):
        tekton_annotations("TaskRun", "u", big)
    with pytest.raises(InputError, match=r"no metadata\.uid"):
        tekton_annotations("TaskRun", "", dsse.sign(b"{}", SIGNER))


def test_file_storage_appends_json_lines(tmp_path: Path) -> None:
    out = tmp_path / "attestations.jsonl"
    first, second = dsse.sign(b"{}", SIGNER), dsse.sign(b"[]", SIGNER)
    append_jsonl(out, first.to_json())
    append_jsonl(out, second.to_json())
    lines = out.read_bytes().splitlines()
    assert [dsse.Envelope.from_json(line) for line in lines] == [first, second]
    with pytest.raises(InputError, match="multi-line"):
        append_jsonl(out, b'{\n"a": 1}')
    assert out.read_bytes().splitlines() == lines  # nothing half-written
    with pytest.raises(InputError, match="cannot open"):
        append_jsonl(tmp_path / "missing-dir" / "x.jsonl", b"{}")


def test_resolve_is_what_store_uses(registry_plain: RegistryServer) -> None:
    # A digest reference resolves to itself and carries the manifest size for referrer subjects.
    async def go():
        async with registry_plain.client() as client:
            image = await push_image(client, registry_plain.repo(), deadline=deadline())
            return image, await resolve(client, image.pinned, deadline=deadline())

    pushed, resolved = run(go())
    assert resolved == pushed
