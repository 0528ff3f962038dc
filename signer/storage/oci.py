"""The ``oci`` storage backend: the signed statement stored beside every image it names, in the format
chosen by ``storage.oci.encoding-format`` like Chains: ``dsse`` (a layer of cosign's ``.att`` tag) or
``sigstore-bundle`` (a bundle v0.3 OCI 1.1 referrer).

Storing is idempotent: an image that already carries this statement signed by this signer gets nothing
new, so a run attested again (an operator retrying after a failure elsewhere) does not pile up copies.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from cryptography import x509

from attestation import dsse
from attestation.bundle import envelope_to_bundle, parse_bundle
from attestation.errors import InputError, ProvgateError, VerificationError
from attestation.keys import PublicKey
from attestation.oci.auth import Credentials
from attestation.oci.reader import ResolvedImage, fetch_legacy, fetch_referrers, resolve
from attestation.oci.registry import RegistryClient
from attestation.oci.writer import CONFIRM_AFTER, push_attestation_legacy, push_attestation_referrer
from attestation.reference import ImageReference, InvalidReference, parse

EncodingFormat = Literal["dsse", "sigstore-bundle"]
_ENCODING_FORMATS: Mapping[str, EncodingFormat] = {"dsse": "dsse", "sigstore-bundle": "sigstore-bundle"}
MAX_OCI_SUBJECTS = 100

log = logging.getLogger(__name__)


def encoding_format(value: str) -> EncodingFormat:
    """A ``storage.oci.encoding-format`` value, refused unless it names one of the two formats."""
    known = _ENCODING_FORMATS.get(value)
    if known is None:
        raise InputError(f"unknown storage.oci.encoding-format {value!r} (dsse, sigstore-bundle)")
    return known


@dataclass(frozen=True)
class OciStorageConfig:
    encoding_format: EncodingFormat = "dsse"
    repository: str | None = None  # storage.oci.repository: where .att tags go (dsse only, as in Chains)
    insecure_registries: Sequence[str] = ()
    ca_file: str | None = None
    docker_config: str | None = None
    credentials: Mapping[str, Credentials] = field(default_factory=dict)  # registry host -> credentials
    timeout: float = 120.0
    # None: the writer's own quiet period before confirming a tag write (attestation.oci.writer). The
    # operator passes 0: it keeps other provgate writers off a tag itself (one replica, one write per
    # image at a time in the process: image_lock).
    confirm_after: float | None = None


@dataclass(frozen=True)
class OciStored:
    """The attestation is stored beside ``image`` (``repo@sha256:...``); ``already``: it was there before
    (this statement, signed by this signer), so nothing was written."""

    image: str
    encoding: EncodingFormat
    already: bool = False
    backend: str = "oci"

    def __str__(self) -> str:
        return f"oci ({self.encoding}): {self.image}" + (" (already stored)" if self.already else "")


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
    sigstore_bundle: bytes | None = None,
) -> list[OciStored]:
    """Store under every image subject; returns where, in subject order. Each subject must exist in its
    registry (resolved by digest): attaching to a digest the registry does not hold would be lost.

    A keyless signature (``sigstore_bundle``) is stored as that bundle, an OCI 1.1 referrer, whatever
    the encoding format: its transparency log entry exists only in the bundle. cosign's ``.att`` layout
    can carry a Rekor v1 entry (its ``dev.sigstore.cosign/bundle`` annotation) but has no place for a
    Rekor v2 one, and a ``.att`` layer without its log entry is a keyless signature in no log, which
    neither cosign nor the gate accepts by default (docs/keyless.md).
    """
    subjects = oci_subjects(statement)
    predicate_type = str(statement.get("predicateType") or "")
    bundle = None
    encoding: EncodingFormat = config.encoding_format
    if sigstore_bundle is not None:
        bundle = sigstore_bundle
        encoding = "sigstore-bundle"
        config = replace(config, encoding_format=encoding)
    elif config.encoding_format == "sigstore-bundle":
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
    key = _signer_key(public_key, certificate_chain_der)
    confirm_after = CONFIRM_AFTER if config.confirm_after is None else config.confirm_after
    stored = []
    for subject in subjects:
        image = await resolve(client, subject, deadline=deadline)
        lock = image_lock(config.repository or image.reference.name, image.digest)
        await asyncio.to_thread(lock.acquire)
        try:
            if await _already_stored(client, image, envelope, key, config=config, deadline=deadline):
                log.debug("%s already carries this statement signed by this signer", image.pinned)
                stored.append(OciStored(image.pinned, encoding, already=True))
                continue
            if bundle is not None:
                await push_attestation_referrer(
                    client,
                    image,
                    bundle,
                    predicate_type=predicate_type,
                    deadline=deadline,
                    confirm_after=confirm_after,
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
                    confirm_after=confirm_after,
                )
        finally:
            lock.release()
        log.debug("attached to %s as %s", image.pinned, encoding)
        stored.append(OciStored(image.pinned, encoding))
    return stored


_IMAGE_LOCKS: dict[tuple[str, str], threading.Lock] = {}
_IMAGE_LOCKS_GUARD = threading.Lock()


def image_lock(repository: str, digest: str) -> threading.Lock:
    """One lock per image attachment in this process: two runs attesting one image (a rebuild with the
    same digest) look and write one after the other, never interleaved."""
    with _IMAGE_LOCKS_GUARD:
        if len(_IMAGE_LOCKS) > 10_000:
            for key in [k for k, lock in _IMAGE_LOCKS.items() if not lock.locked()]:
                del _IMAGE_LOCKS[key]
        return _IMAGE_LOCKS.setdefault((repository, digest), threading.Lock())


def _signer_key(public_key: PublicKey | None, certificate_chain_der: Sequence[bytes]) -> PublicKey | None:
    if public_key is not None:
        return public_key
    if certificate_chain_der:
        leaf = x509.load_der_x509_certificate(certificate_chain_der[0])
        return PublicKey(leaf.public_key(), source="signing certificate")
    return None


async def _already_stored(
    client: RegistryClient,
    image: ResolvedImage,
    envelope: dsse.Envelope,
    key: PublicKey | None,
    *,
    config: OciStorageConfig,
    deadline: float,
) -> bool:
    """Whether ``image`` carries ``envelope``'s statement signed by the same key already.

    Signing again gives other bytes (ECDSA signatures are randomised, timestamps differ), so identical
    bytes alone would not make a retried run idempotent. Only a signature that verifies with the
    signer's key counts: anyone who can push could store the same payload under a signature of theirs.
    Without a key, only the very same envelope counts.
    """
    if config.encoding_format == "dsse":
        found = await fetch_legacy(client, image, deadline=deadline, repository=config.repository)
    else:
        found = await fetch_referrers(client, image, deadline=deadline)
    for attestation in found:
        try:
            if config.encoding_format == "dsse":
                other = dsse.Envelope.from_json(attestation.data, source=attestation.source)
            else:
                other = parse_bundle(attestation.data, source=attestation.source).envelope
        except ProvgateError:
            continue  # not an envelope we could have written
        if (other.payload_type, other.payload) != (envelope.payload_type, envelope.payload):
            continue
        if other.signatures == envelope.signatures:
            return True
        if key is not None:
            try:
                dsse.verify(other, [key])
            except VerificationError:
                continue
            return True
    return False


def store_oci_sync(
    envelope: dsse.Envelope, statement: Mapping[str, Any], config: OciStorageConfig, **material: Any
) -> list[OciStored]:
    """:func:`store_oci` in one blocking call with a client made from ``config`` (for the CLI)."""

    async def run() -> list[OciStored]:
        async with RegistryClient(
            insecure_registries=config.insecure_registries,
            ca_file=config.ca_file,
            docker_config=config.docker_config,
            credentials=config.credentials,
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
