"""Images named by digest: the manifest check and the attestation lookup run together, and both must
succeed before anything is admitted."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from attestation.oci.reader import ResolvedImage
from attestation.oci.writer import push_attestation_legacy, push_image
from attestation.reference import parse
from gate.verify import Gate, GateConfig
from tests.gate.conftest import envelope_json, slsa02_statement, to_bytes
from tests.infra.registry import RegistryServer, registry_plain, registry_referrers  # noqa: F401


@pytest.fixture(scope="module")
def gate(policy_dir: Path, data_file: Path, key_file: Path) -> Gate:
    g = Gate(GateConfig(policy_paths=(policy_dir,), data_paths=(data_file,), key_files=(key_file,)))
    yield g
    g.close()


@pytest.fixture(params=["registry_plain", "registry_referrers"])
def server(request: pytest.FixtureRequest) -> RegistryServer:
    return request.getfixturevalue(request.param)


def _attach(server: RegistryServer, image: ResolvedImage, envelope: bytes) -> None:
    async def go() -> None:
        async with server.client() as client:
            await push_attestation_legacy(client, image, envelope, deadline=time.monotonic() + 30)

    asyncio.run(go())


def _push(server: RegistryServer) -> ResolvedImage:
    async def go() -> ResolvedImage:
        async with server.client() as client:
            return await push_image(
                client, server.repo(), [str(time.monotonic_ns()).encode()], deadline=time.monotonic() + 30
            )

    return asyncio.run(go())


def _signed_for(image: ResolvedImage, signer) -> bytes:
    statement = slsa02_statement(image.digest.split(":")[1], name=image.reference.name)
    return envelope_json(to_bytes(statement), signer)


def test_pinned_image_allowed(gate: Gate, server: RegistryServer, trusted_signer) -> None:
    image = _push(server)
    _attach(server, image, _signed_for(image, trusted_signer))
    decision = gate.verify_sync(image.pinned)
    assert decision.allowed, decision.to_dict()
    assert decision.image == image.pinned
    assert [a.verified for a in decision.attestations] == [True]


def test_attestations_for_a_digest_that_is_not_in_the_registry_admit_nothing(
    gate: Gate, server: RegistryServer, trusted_signer
) -> None:
    # Valid, trusted provenance stored under a digest whose manifest was never pushed: the attestation
    # lookup alone would succeed, the manifest check must still decide.
    repo = server.repo()
    ghost = ResolvedImage(parse(f"{repo}@sha256:{'d' * 64}"), "application/vnd.oci.image.manifest.v1+json")
    _attach(server, ghost, _signed_for(ghost, trusted_signer))
    decision = gate.verify_sync(ghost.pinned)
    assert not decision.allowed and not decision.decided and decision.exit_code == 2
    assert decision.image == ghost.pinned
    assert decision.attestations == ()
    [error] = decision.errors
    assert "not found" in error and repo.split("/", 1)[1] in error


def test_tag_and_digest_evaluates_the_digest(gate: Gate, server: RegistryServer, trusted_signer) -> None:
    image = _push(server)
    _attach(server, image, _signed_for(image, trusted_signer))
    decision = gate.verify_sync(f"{image.reference.name}:not-a-pushed-tag@{image.digest}")
    assert decision.allowed, decision.to_dict()
    assert decision.image == image.pinned


def test_an_att_tag_holding_an_index_is_one_unverified_attestation(
    gate: Gate, server: RegistryServer
) -> None:
    # Whoever can push the .att tag chose what it holds: an index instead of a cosign attestation image is
    # reported as one attestation that could not be read, the decision is reached (denied: nothing
    # verified) and names the digest the tag pointed to.
    from attestation.oci import layout
    from attestation.oci.writer import push_index

    async def setup() -> ResolvedImage:
        deadline = time.monotonic() + 30
        async with server.client() as client:
            image = await push_image(client, server.repo(), [b"spoilt"], tag="v1", deadline=deadline)
            tag = layout.attachment_tag(image.digest, "att")
            await push_index(client, image.reference.name, [image], tag=tag, deadline=deadline)
            return image

    image = asyncio.run(setup())
    decision = gate.verify_sync(f"{image.reference.name}:v1")
    assert decision.decided and not decision.allowed and decision.exit_code == 1
    assert decision.image == image.pinned
    [att] = decision.attestations
    assert not att.verified and "is an index" in att.error


def test_registry_failure_after_the_tag_resolved_names_the_digest(
    gate: Gate,
    registry_plain: RegistryServer,  # noqa: F811
) -> None:
    # The referrers index (the tag-schema fallback on a registry without the API) lists a manifest the
    # registry no longer holds: the lookup is incomplete, so no decision, and it names the digest.
    import httpx

    from attestation.oci import layout
    from attestation.oci.writer import push_index

    async def setup() -> tuple[ResolvedImage, ResolvedImage]:
        deadline = time.monotonic() + 30
        async with registry_plain.client() as client:
            image = await push_image(
                client, registry_plain.repo(), [b"dangling"], tag="v1", deadline=deadline
            )
            gone = await push_image(client, image.reference.name, [b"deleted later"], deadline=deadline)
            tag = layout.referrers_fallback_tag(image.digest)
            await push_index(client, image.reference.name, [gone], tag=tag, deadline=deadline)
            return image, gone

    image, gone = asyncio.run(setup())
    repository = gone.reference.repository
    deleted = httpx.delete(f"http://{registry_plain.host}/v2/{repository}/manifests/{gone.digest}")
    assert deleted.status_code == 202
    decision = gate.verify_sync(f"{image.reference.name}:v1")
    assert not decision.allowed and not decision.decided and decision.exit_code == 2
    assert decision.image == image.pinned
    assert gone.digest in decision.errors[0]
