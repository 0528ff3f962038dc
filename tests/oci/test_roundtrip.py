"""Round trips through real registries: distribution (no referrers API) and ggcr (referrers API)."""

from __future__ import annotations

import asyncio
import json

import pytest

from attestation.errors import RegistryError
from attestation.oci import layout
from attestation.oci.reader import fetch_attestations, resolve
from attestation.oci.writer import (
    push_attestation_legacy,
    push_attestation_referrer,
    push_image,
    push_index,
    push_signature_legacy,
    simple_signing_payload,
)
from attestation.reference import parse
from tests.infra.registry import RegistryServer
from tests.oci.helpers import deadline, envelope, raw_manifest, run, sha256

ACCEPT_ALL = ", ".join(layout.IMAGE_MEDIA_TYPES)


def test_resolve_tag_gives_digest_of_manifest_bytes(any_registry: RegistryServer) -> None:
    repo = any_registry.repo()

    async def go() -> tuple[str, str]:
        async with any_registry.client() as client:
            await push_image(client, repo, [b"layer one"], tag="v1", deadline=deadline())
            image = await resolve(client, f"{repo}:v1", deadline=deadline())
            return image.reference.digest or "", image.pinned

    digest, pinned = run(go())
    name = parse(repo)
    body = raw_manifest(any_registry.host, name.repository, "v1", ACCEPT_ALL).content
    assert digest == sha256(body)
    assert pinned == f"{repo}@{sha256(body)}"


def test_resolve_missing_tag_names_the_image(any_registry: RegistryServer) -> None:
    repo = any_registry.repo()

    async def go() -> None:
        async with any_registry.client() as client:
            await push_image(client, repo, tag="v1", deadline=deadline())
            await resolve(client, f"{repo}:nope", deadline=deadline())

    with pytest.raises(RegistryError, match=r"nope.*not found"):
        run(go())


def test_resolve_rejects_digest_reference_served_with_other_content(any_registry: RegistryServer) -> None:
    repo = any_registry.repo()

    async def go() -> None:
        async with any_registry.client() as client:
            await push_image(client, repo, tag="v1", deadline=deadline())
            await resolve(client, f"{repo}@sha256:{'a' * 64}", deadline=deadline())

    with pytest.raises(RegistryError):
        run(go())


def test_legacy_attestations_round_trip_and_are_not_duplicated(any_registry: RegistryServer) -> None:
    repo = any_registry.repo()
    first, second = envelope(1), envelope(2, "https://slsa.dev/provenance/v1")

    async def go():
        async with any_registry.client() as client:
            image = await push_image(client, repo, deadline=deadline())
            d1 = await push_attestation_legacy(client, image, first, deadline=deadline())
            d2 = await push_attestation_legacy(client, image, second, deadline=deadline())
            again = await push_attestation_legacy(client, image, first, deadline=deadline())
            found = await fetch_attestations(client, image, deadline=deadline())
            return image, (d1, d2, again), found

    image, (d1, d2, again), found = run(go())
    assert (d1, d2, again) == (sha256(first), sha256(second), sha256(first))
    assert [a.data for a in found] == [first, second]
    assert all(a.media_type == "application/vnd.dsse.envelope.v1+json" for a in found)
    assert found[0].annotations == {
        "dev.cosignproject.cosign/signature": "",
        "predicateType": "https://slsa.dev/provenance/v0.2",
    }
    assert found[1].annotations["predicateType"] == "https://slsa.dev/provenance/v1"
    assert "sha256-" in found[0].source and ".att layer 0" in found[0].source

    # The stored layout, read without our client: cosign's tag, OCI manifest, cosign-shaped config.
    hexd = image.digest.split(":")[1]
    resp = raw_manifest(
        any_registry.host, image.reference.repository, f"sha256-{hexd}.att", layout.OCI_MANIFEST
    )
    assert resp.status_code == 200
    manifest = json.loads(resp.content)
    assert manifest["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
    assert [x["digest"] for x in manifest["layers"]] == [sha256(first), sha256(second)]
    assert {x["mediaType"] for x in manifest["layers"]} == {"application/vnd.dsse.envelope.v1+json"}


def test_certificate_annotations_for_x509_signers(registry_plain: RegistryServer) -> None:
    repo = registry_plain.repo()
    cert = b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

    async def go():
        async with registry_plain.client() as client:
            image = await push_image(client, repo, deadline=deadline())
            await push_attestation_legacy(client, image, envelope(1), certificate=cert, deadline=deadline())
            return await fetch_attestations(client, image, deadline=deadline())

    (found,) = run(go())
    assert found.annotations["dev.sigstore.cosign/certificate"] == cert.decode()
    assert found.annotations["dev.sigstore.cosign/chain"] == ""


def test_attestations_are_per_digest(any_registry: RegistryServer) -> None:
    repo = any_registry.repo()

    async def go():
        async with any_registry.client() as client:
            one = await push_image(client, repo, [b"one"], tag="one", deadline=deadline())
            two = await push_image(client, repo, [b"two"], tag="two", deadline=deadline())
            await push_attestation_legacy(client, one, envelope(1), deadline=deadline())
            await push_attestation_referrer(
                client, one, b'{"bundle":1}', predicate_type="p", deadline=deadline()
            )
            return await fetch_attestations(client, two, deadline=deadline())

    assert run(go()) == []


def test_referrer_bundle_round_trip(any_registry: RegistryServer) -> None:
    repo = any_registry.repo()
    bundle = b'{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","dsseEnvelope":{}}'

    async def go():
        async with any_registry.client() as client:
            image = await push_image(client, repo, deadline=deadline())
            digest = await push_attestation_referrer(
                client, image, bundle, predicate_type="https://slsa.dev/provenance/v1", deadline=deadline()
            )
            again = await push_attestation_referrer(
                client, image, bundle, predicate_type="https://slsa.dev/provenance/v1", deadline=deadline()
            )
            return image, digest, again, await fetch_attestations(client, image, deadline=deadline())

    image, digest, again, found = run(go())
    assert again == digest  # same bundle attached once
    (att,) = found
    assert att.data == bundle
    assert att.media_type == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert att.annotations["dev.sigstore.bundle.content"] == "dsse-envelope"
    assert att.annotations["dev.sigstore.bundle.predicateType"] == "https://slsa.dev/provenance/v1"

    name = image.reference
    manifest = json.loads(
        raw_manifest(any_registry.host, name.repository, digest, layout.OCI_MANIFEST).content
    )
    assert manifest["artifactType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert manifest["subject"] == {"mediaType": image.media_type, "digest": image.digest, "size": image.size}
    assert manifest["config"]["digest"] == sha256(b"{}")
    fallback = raw_manifest(
        any_registry.host, name.repository, f"sha256-{image.digest[7:]}", layout.OCI_INDEX
    )
    if any_registry.referrers_api:
        assert fallback.status_code == 404  # the API was used, no tag written
    else:
        index = json.loads(fallback.content)
        assert index["mediaType"] == layout.OCI_INDEX
        assert [m["digest"] for m in index["manifests"]] == [digest]
        assert index["manifests"][0]["artifactType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"


def test_image_signature_in_sig_tag(registry_plain: RegistryServer) -> None:
    repo = registry_plain.repo()

    async def go():
        async with registry_plain.client() as client:
            image = await push_image(client, repo, deadline=deadline())
            payload = simple_signing_payload(image)
            await push_signature_legacy(client, image, payload, b"\x30\x01\x02", deadline=deadline())
            return image, payload

    image, payload = run(go())
    assert json.loads(payload) == {
        "critical": {
            "identity": {"docker-reference": repo},
            "image": {"docker-manifest-digest": image.digest},
            "type": "cosign container image signature",
        },
        "optional": None,
    }
    resp = raw_manifest(
        registry_plain.host, image.reference.repository, f"sha256-{image.digest[7:]}.sig", layout.OCI_MANIFEST
    )
    (layer,) = json.loads(resp.content)["layers"]
    assert layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    assert layer["annotations"] == {"dev.cosignproject.cosign/signature": "MAEC"}
    assert layer["digest"] == sha256(payload)


def test_index_and_platform_manifest_digests_both_work(any_registry: RegistryServer) -> None:
    repo = any_registry.repo()

    async def go():
        async with any_registry.client() as client:
            amd = await push_image(client, repo, [b"amd"], tag="amd", deadline=deadline())
            arm = await push_image(client, repo, [b"arm"], tag="arm", deadline=deadline())
            await push_index(client, repo, [amd, arm], tag="multi", deadline=deadline())
            index = await resolve(client, f"{repo}:multi", deadline=deadline())
            await push_attestation_legacy(client, index, envelope(10), deadline=deadline())
            await push_attestation_legacy(client, amd, envelope(11), deadline=deadline())
            platform = await resolve(client, f"{repo}@{amd.digest}", deadline=deadline())
            return (
                index,
                await fetch_attestations(client, index, deadline=deadline()),
                await fetch_attestations(client, platform, deadline=deadline()),
            )

    index, on_index, on_platform = run(go())
    assert index.media_type == layout.OCI_INDEX
    assert [a.data for a in on_index] == [envelope(10)]
    assert [a.data for a in on_platform] == [envelope(11)]


@pytest.mark.parametrize("writers", [8])
def test_concurrent_legacy_writers_lose_no_layer(any_registry: RegistryServer, writers: int) -> None:
    repo = any_registry.repo()

    async def go():
        async with any_registry.client() as setup:
            image = await push_image(setup, repo, deadline=deadline())

        async def writer(n: int) -> str:
            async with any_registry.client() as client:  # separate connections, like separate processes
                return await push_attestation_legacy(client, image, envelope(100 + n), deadline=deadline(60))

        digests = await asyncio.gather(*(writer(n) for n in range(writers)))
        async with any_registry.client() as reader:
            return digests, await fetch_attestations(reader, image, deadline=deadline())

    digests, found = run(go())
    assert sorted(a.data for a in found) == sorted(envelope(100 + n) for n in range(writers))
    assert sorted(digests) == sorted(sha256(envelope(100 + n)) for n in range(writers))


def test_concurrent_referrer_writers_on_fallback_index(registry_plain: RegistryServer) -> None:
    repo = registry_plain.repo()
    writers = 6

    async def go():
        async with registry_plain.client() as setup:
            image = await push_image(setup, repo, deadline=deadline())

        async def writer(n: int) -> str:
            async with registry_plain.client() as client:
                bundle = b'{"n":%d}' % n
                return await push_attestation_referrer(
                    client, image, bundle, predicate_type="p", deadline=deadline(60)
                )

        await asyncio.gather(*(writer(n) for n in range(writers)))
        async with registry_plain.client() as reader:
            return await fetch_attestations(reader, image, deadline=deadline())

    found = run(go())
    assert sorted(a.data for a in found) == sorted(b'{"n":%d}' % n for n in range(writers))
