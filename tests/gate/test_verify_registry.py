"""Decisions on the registry path, against real registries started on loopback (tests/infra/registry.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from attestation.oci.writer import push_attestation_legacy, push_image
from gate.checklist import NO_VERIFIED_ATTESTATION
from gate.cli import run
from gate.verify import Gate, GateConfig
from tests.gate.conftest import envelope_json, slsa02_statement, to_bytes
from tests.infra import free_port
from tests.infra.registry import RegistryServer, registry_plain, registry_referrers  # noqa: F401


async def _push(server: RegistryServer, envelopes: list[bytes]) -> tuple[str, str]:
    """Push a tiny image tagged v1 with ``envelopes`` as .att layers; returns (tag ref, digest)."""
    deadline = time.monotonic() + 30
    async with server.client() as client:
        image = await push_image(
            client,
            server.repo(),
            [b"layer " + str(time.monotonic_ns()).encode()],
            tag="v1",
            deadline=deadline,
        )
        for env in envelopes:
            await push_attestation_legacy(client, image, env, deadline=deadline)
    return f"{image.reference.name}:v1", image.digest


@pytest.fixture(scope="module")
def gate(policy_dir: Path, data_file: Path, key_file: Path) -> Gate:
    g = Gate(GateConfig(policy_paths=(policy_dir,), data_paths=(data_file,), key_files=(key_file,)))
    yield g
    g.close()


@pytest.fixture(params=["registry_plain", "registry_referrers"])
def server(request: pytest.FixtureRequest) -> RegistryServer:
    return request.getfixturevalue(request.param)


def test_tag_is_resolved_and_only_the_digest_is_evaluated(
    gate: Gate, server: RegistryServer, trusted_signer
) -> None:
    # The statement must name the digest the tag resolves to, which exists only after the push: push the
    # image, then sign a statement for its digest.
    tag_ref, digest = asyncio.run(_push(server, []))
    name = tag_ref.rsplit(":", 1)[0]
    envelope = envelope_json(to_bytes(slsa02_statement(digest.split(":")[1], name=name)), trusted_signer)

    async def attach() -> None:
        from attestation.oci.reader import resolve

        async with server.client() as client:
            image = await resolve(client, tag_ref, deadline=time.monotonic() + 30)
            await push_attestation_legacy(client, image, envelope, deadline=time.monotonic() + 30)

    asyncio.run(attach())
    decision = gate.verify_sync(tag_ref)
    assert decision.allowed, decision.to_dict()
    assert decision.image == f"{name}@{digest}"
    [att] = decision.attestations
    assert att.verified and att.source  # named after the layer it came from
    assert decision.timings.resolve_ms > 0 and decision.timings.fetch_ms > 0


def test_attestation_for_another_image_denies(gate: Gate, server: RegistryServer, trusted_signer) -> None:
    other = envelope_json(to_bytes(slsa02_statement("c" * 64)), trusted_signer)
    tag_ref, digest = asyncio.run(_push(server, [other]))
    decision = gate.verify_sync(tag_ref)
    assert not decision.allowed and decision.exit_code == 1
    assert decision.violations[0].code == NO_VERIFIED_ATTESTATION
    assert digest in decision.attestations[0].error


def test_image_without_attestations_denies(gate: Gate, registry_plain: RegistryServer) -> None:  # noqa: F811
    tag_ref, _ = asyncio.run(_push(registry_plain, []))
    decision = gate.verify_sync(tag_ref)
    assert not decision.allowed and decision.exit_code == 1
    assert "no attestations were found" in decision.violations[0].msg


def test_warm_gate_serves_many_calls_in_one_loop(gate: Gate, registry_plain, trusted_signer) -> None:  # noqa: F811
    tag_ref, _ = asyncio.run(_push(registry_plain, []))

    async def many() -> list[bool]:
        async with gate:  # one registry client for every call
            return [(await gate.verify(tag_ref)).decided for _ in range(3)]

    assert asyncio.run(many()) == [True, True, True]


def test_missing_image_could_not_decide(gate: Gate, registry_plain: RegistryServer) -> None:  # noqa: F811
    decision = gate.verify_sync(f"{registry_plain.repo()}:nope")
    assert not decision.allowed and not decision.decided and decision.exit_code == 2
    assert "not found" in decision.errors[0]


def test_unreachable_registry_could_not_decide(capsys, policy_dir, data_file, key_file) -> None:
    image = f"127.0.0.1:{free_port()}/team/app:v1"
    code = run(
        [
            "verify",
            image,
            "--policy",
            str(policy_dir),
            "--data",
            str(data_file),
            "--key",
            str(key_file),
            "--timeout",
            "5",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 2
    assert out.splitlines()[0] == f"COULD NOT DECIDE: {image}"
    assert "treat as denied" in out
    [line] = err.strip().splitlines()
    assert line.startswith("gate: error: ") and "127.0.0.1" in line
