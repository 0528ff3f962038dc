"""The ``oci`` storage backend: the signed statement stored beside every image it names, in the format
chosen by ``storage.oci.encoding-format`` like Chains: ``dsse`` (a layer of cosign's ``.att`` tag) or
``sigstore-bundle`` (a bundle v0.3 OCI 1.1 referrer)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from attestation import dsse
from attestation.bundle import envelope_to_bundle
from attestation.errors import InputError
from attestation.keys import PublicKey
from attestation.oci.reader import resolve
from attestation.oci.registry import RegistryClient
from attestation.oci.writer import push_attestation_legacy, push_attestation_referrer
from attestation.reference import ImageReference, InvalidReference, parse

EncodingFormat = Literal["dsse", "sigstore-bundle"]
MAX_OCI_SUBJECTS = 100


@dataclass(frozen=True)
class OciStorageConfig:
    encoding_format: EncodingFormat = "dsse"
    repository: str | None = None  # storage.oci.repository: where .att tags go (dsse only, as in Chains)
    insecure_registries: Sequence[str] = ()
    ca_file: str | None = None
    docker_config: str | None = None
    timeout: float = 120.0


def oci_subjects(statement: Mapping[str, Any]) -> list[ImageReference]:
    """Statement subjects to store under: a sha256 digest and a name that is an OCI reference."""
    out: list[ImageReference] = []
    for subject in statement.get("subject") or []:
        if not isinstance(subject, Mapping):
            continue
        digest = (subject.get("digest") or {}).get("sha256")
        name = subject.get("name")
        if not isinstance(digest, str) or not isinstance(name, str):
            continue
        try:
            ref = parse(name)
            pinned = ImageReference(ref.registry, ref.repository).with_digest(f"sha256:{digest}")
        except InvalidReference:
            continue  # a file, a package URL: not an image
        if pinned not in out:
            out.append(pinned)
    if len(out) > MAX_OCI_SUBJECTS:
        raise InputError(
            f"statement names {len(out)} images, more than the {MAX_OCI_SUBJECTS} the oci storage stores"
        )
    return out


async def store_oci(
    client: RegistryClient,
    envelope: dsse.Envelope,
    statement: Mapping[str, Any],
    *,
    config: OciStorageConfig,
    deadline: float,
    public_key: PublicKey | None = None,
    certificate_chain_der: Sequence[bytes] = (),
    certificate_pem: bytes | None = None,
    chain_pem: bytes | None = None,
    annotations: Mapping[str, str] | None = None,
    rfc3161_timestamps: Sequence[bytes] = (),
) -> list[str]:
    """Store under every image subject; returns their pinned references. Each subject must exist in its
    registry (resolved by digest): attaching to a digest the registry does not hold would be lost."""
    subjects = oci_subjects(statement)
    predicate_type = str(statement.get("predicateType") or "")
    bundle = None
    if config.encoding_format == "sigstore-bundle":
        bundle = envelope_to_bundle(
            envelope,
            public_key=public_key,
            certificate_chain=certificate_chain_der,
            rfc3161_timestamps=rfc3161_timestamps,
        )
    elif config.encoding_format != "dsse":
        raise InputError(
            f"unknown storage.oci.encoding-format {config.encoding_format!r} (dsse, sigstore-bundle)"
        )
    stored = []
    for subject in subjects:
        image = await resolve(client, subject, deadline=deadline)
        if bundle is not None:
            await push_attestation_referrer(
                client, image, bundle, predicate_type=predicate_type, deadline=deadline
            )
        else:
            await push_attestation_legacy(
                client,
                image,
                envelope.to_json(),
                annotations=annotations,
                predicate_type=predicate_type or None,
                certificate=certificate_pem,
                chain=chain_pem,
                deadline=deadline,
                repository=config.repository,
            )
        stored.append(image.pinned)
    return stored


def store_oci_sync(
    envelope: dsse.Envelope, statement: Mapping[str, Any], config: OciStorageConfig, **material: Any
) -> list[str]:
    """:func:`store_oci` in one blocking call with a client made from ``config`` (for the CLI)."""

    async def run() -> list[str]:
        async with RegistryClient(
            insecure_registries=config.insecure_registries,
            ca_file=config.ca_file,
            docker_config=config.docker_config,
        ) as client:
            return await store_oci(
                client,
                envelope,
                statement,
                config=config,
                deadline=time.monotonic() + config.timeout,
                **material,
            )

    return asyncio.run(run())
