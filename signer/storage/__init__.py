"""Where signed provenance goes: ``oci`` (the image's registry), ``tekton`` (run annotations) and
``file`` (JSON lines), chosen like Chains' ``artifacts.*.storage`` (a comma-separated list).

:class:`SignedProvenance` is what every signing backend hands to every storage backend, so a key
signature and an SVID signature with its certificate chain and timestamp are stored the same way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from attestation import cosign, dsse
from attestation.errors import InputError
from attestation.files import write_atomic
from attestation.keys import PublicKey
from attestation.oci.auth import Credentials

BACKENDS = ("oci", "tekton", "file")

log = logging.getLogger(__name__)


def parse_backends(value: str) -> tuple[str, ...]:
    """``"oci,tekton"`` -> ``("oci", "tekton")``; unknown names are an error, duplicates collapse."""
    names: list[str] = []
    for raw in value.split(","):
        name = raw.strip()
        if not name:
            continue
        if name not in BACKENDS:
            raise InputError(f"unknown storage backend {name!r} (known: {', '.join(BACKENDS)})")
        if name not in names:
            names.append(name)
    return tuple(names)


def _pem(der: bytes) -> bytes:
    return x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)


@dataclass(frozen=True)
class SignedProvenance:
    """A signed in-toto statement and the material a verifier needs besides the envelope."""

    statement: Mapping[str, Any]
    envelope: dsse.Envelope
    public_key: PublicKey | None = None
    certificate_chain_der: tuple[bytes, ...] = ()  # leaf first; never the trust anchor (keyless: may be)
    rfc3161_timestamps: tuple[bytes, ...] = field(default=())  # DER TimeStampResp over the signature
    # Keyless: the Sigstore bundle exactly as the sigstore library made it (the log entry is only there),
    # and the log entry as Chains names it in chains.tekton.dev/transparency.
    sigstore_bundle: bytes | None = None
    transparency: str | None = None

    @property
    def certificate_pem(self) -> bytes | None:
        return _pem(self.certificate_chain_der[0]) if self.certificate_chain_der else None

    @property
    def chain_pem(self) -> bytes | None:
        if not self.certificate_chain_der:
            return None
        return b"".join(_pem(der) for der in self.certificate_chain_der[1:])

    def bundle(self) -> bytes:
        if self.sigstore_bundle is not None:
            return self.sigstore_bundle
        from attestation.bundle import envelope_to_bundle

        return envelope_to_bundle(
            self.envelope,
            public_key=self.public_key,
            certificate_chain=self.certificate_chain_der,
            rfc3161_timestamps=self.rfc3161_timestamps,
        )

    def layer_annotations(self) -> dict[str, str]:
        """Extra ``.att`` layer annotations beyond certificate/chain: the timestamp, as cosign writes it."""
        return cosign.layer_annotations(
            rfc3161_timestamp=self.rfc3161_timestamps[0] if self.rfc3161_timestamps else None
        )

    def portable(self) -> bytes:
        """One line for a file or stdout: the bare envelope when a key alone verifies it, else a bundle
        that carries the certificate chain and timestamp with it."""
        if self.sigstore_bundle is not None or self.certificate_chain_der:
            return self.bundle()
        return self.envelope.to_json()


@dataclass(frozen=True)
class StorageConfig:
    """How each backend stores (Chains' ``storage.*`` keys; which backends a run uses is chosen per kind
    of run, as Chains' ``artifacts.*.storage``).

    ``oci``: beside every image subject, as ``oci_encoding_format`` (``storage.oci.encoding-format``),
    the ``.att`` tags in ``oci_repository`` when set (``storage.oci.repository``). ``tekton``: the run
    annotations Chains writes, returned to the caller to apply and written to ``annotations_out`` when set.
    ``file``: one JSON line appended to ``file_out``.

    ``credentials`` (registry host -> credentials) come before ``docker_config``: the operator hands the
    push credentials of each run's ServiceAccount here. ``oci_skip_without_subject``: a statement with no
    image subject is skipped by the ``oci`` backend instead of refused (the operator attests such a run
    to the other backends, DESIGN §3); the CLI refuses it, as asking for ``--storage oci`` then is a
    mistake.
    """

    oci_encoding_format: str = "dsse"
    oci_repository: str | None = None
    insecure_registries: Sequence[str] = ()
    registry_ca: str | None = None
    docker_config: str | None = None
    credentials: Mapping[str, Credentials] = field(default_factory=dict)
    oci_skip_without_subject: bool = False
    oci_confirm_after: float | None = None  # see signer.storage.oci.OciStorageConfig.confirm_after
    timeout: float = 120.0
    annotations_out: str | None = None
    file_out: str | None = None

    def check(self, backends: Sequence[str]) -> None:
        """Refuse a configuration that would sign and then have nowhere to write."""
        unknown = [b for b in backends if b not in BACKENDS]
        if unknown:
            raise InputError(f"unknown storage backend {unknown[0]!r} (known: {', '.join(BACKENDS)})")
        if "file" in backends and not self.file_out:
            raise InputError("the file storage has no file to append to")
        if self.oci_encoding_format not in ("dsse", "sigstore-bundle"):
            raise InputError(
                f"unknown OCI encoding format {self.oci_encoding_format!r} (dsse, sigstore-bundle)"
            )


class Stored(Protocol):
    """Where one backend put the signed provenance; ``str()`` says so in one line."""

    @property
    def backend(self) -> str: ...


def store(
    signed: SignedProvenance,
    *,
    kind: Literal["TaskRun", "PipelineRun"],
    uid: str,
    backends: Sequence[str],
    config: StorageConfig,
) -> list[Stored]:
    """Store in every backend of ``backends``, in order; returns where each put it."""
    done: list[Stored] = []
    for backend in backends:
        if backend == "oci":
            from signer.storage.oci import OciStorageConfig, encoding_format, store_oci_sync

            oci_config = OciStorageConfig(
                encoding_format=encoding_format(config.oci_encoding_format),
                repository=config.oci_repository,
                insecure_registries=tuple(config.insecure_registries),
                ca_file=config.registry_ca,
                docker_config=config.docker_config,
                credentials=config.credentials,
                timeout=config.timeout,
                confirm_after=config.oci_confirm_after,
            )
            stored = store_oci_sync(
                signed.envelope,
                signed.statement,
                oci_config,
                public_key=signed.public_key,
                certificate_chain_der=signed.certificate_chain_der,
                certificate_pem=signed.certificate_pem,
                chain_pem=signed.chain_pem,
                annotations=signed.layer_annotations(),
                rfc3161_timestamps=signed.rfc3161_timestamps,
                sigstore_bundle=signed.sigstore_bundle,
            )
            if not stored and config.oci_skip_without_subject:
                log.debug("oci: the statement has no image subject; nothing to store beside an image")
                continue
            if not stored:
                raise InputError(
                    "--storage oci: the statement has no image subject (sha256 digest + image name) to "
                    "store the attestation under"
                )
            done.extend(stored)
        elif backend == "tekton":
            from signer.storage.tekton import TektonStored, tekton_annotations

            notes = tekton_annotations(
                kind,
                uid,
                signed.envelope,
                certificate_pem=signed.certificate_pem,
                chain_pem=signed.chain_pem,
                transparency=signed.transparency,
            )
            if config.annotations_out:
                write_annotations(config.annotations_out, notes)
            done.append(TektonStored(notes, config.annotations_out))
        elif backend == "file":
            from signer.storage.file import FileStored, append_jsonl

            append_jsonl(config.file_out or "", signed.portable())
            done.append(FileStored(config.file_out or ""))
        log.debug("stored in %s", done[-1])
    return done


def write_annotations(path: str, annotations: Mapping[str, str]) -> None:
    """The annotation map as the ``tekton`` storage writes it for something else to apply (JSON)."""
    write_atomic(path, json.dumps(annotations, indent=2).encode() + b"\n")
