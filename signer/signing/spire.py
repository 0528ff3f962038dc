"""Signing with the operator's SPIRE X509-SVID, optionally with an RFC 3161 timestamp.

The SVID is fetched from the Workload API for every signature: SVIDs live about an hour and rotate at
half-life, so a cached one would soon sign with an expired certificate. When the process holds several
identities (every entry whose selectors match is issued), ``spiffe_id`` picks one; otherwise the
Workload API's default (first) SVID is used.

The verifier needs more than the signature: the leaf and intermediates (stored as cosign's
``dev.sigstore.cosign/certificate`` / ``chain`` annotations or a Sigstore bundle's
``verificationMaterial``), and a timestamp over the signature so the chain can be checked at signing
time long after the SVID expired (``dev.sigstore.cosign/rfc3161timestamp`` / ``timestampVerificationData``).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from attestation import cosign, dsse, intoto
from attestation.errors import InputError, KeyLoadError, WorkloadApiUnavailable
from attestation.keys import PublicKey
from attestation.spiffe import parse_spiffe_id
from attestation.timestamp import request_timestamp
from attestation.x509 import certificate_to_pem
from signer.signing import Sign
from signer.storage import SignedProvenance

DEFAULT_TIMEOUT = 10.0

log = logging.getLogger(__name__)


class SvidSigner:
    """A :class:`attestation.keys.Signer` backed by one X509-SVID (key + certificate chain)."""

    def __init__(self, spiffe_id: str, chain: list[x509.Certificate], private_key: Any) -> None:
        if not isinstance(private_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
            raise KeyLoadError(f"SVID {spiffe_id}: unsupported key type {type(private_key).__name__}")
        self.spiffe_id = spiffe_id
        self.chain = chain  # leaf first, as the Workload API returns it (no root)
        self._key = private_key
        self.public_key = PublicKey(private_key.public_key(), source=f"SVID {spiffe_id}")
        # Verifiers never trust a keyid; the SPIFFE ID tells humans which workload signed.
        self.keyid = spiffe_id

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    def sign(self, data: bytes) -> bytes:
        key = self._key
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(data, ec.ECDSA(hashes.SHA256()))
        return key.sign(data, padding.PKCS1v15(), hashes.SHA256())

    def __repr__(self) -> str:
        return f"SvidSigner({self.spiffe_id!r})"


def workload_socket(socket: str | None) -> str:
    """The Workload API address: the argument, else ``SPIFFE_ENDPOINT_SOCKET``; must be ``unix://``."""
    address = socket or os.environ.get("SPIFFE_ENDPOINT_SOCKET", "")
    if not address:
        raise InputError("no SPIFFE Workload API socket: pass --spiffe-socket or set SPIFFE_ENDPOINT_SOCKET")
    if not address.startswith("unix:"):
        raise InputError(
            f"SPIFFE Workload API socket {address!r} must be a unix: URI (unix:///path/api.sock)"
        )
    return address


def fetch_svid_signer(
    socket: str | None = None, *, spiffe_id: str | None = None, timeout: float = DEFAULT_TIMEOUT
) -> SvidSigner:
    """The current X509-SVID from the Workload API as a signer.

    :class:`WorkloadApiUnavailable` (a :class:`KeyLoadError`; transient: one line) when the agent is down,
    the socket is missing, no identity is issued to this process, or ``spiffe_id`` is not among the issued
    ones: each can change without this process changing (the agent restarts, registration entries reach
    the agent within seconds).
    """
    from spiffe import WorkloadApiClient
    from spiffe.errors import PySpiffeError

    address = workload_socket(socket)
    wanted = parse_spiffe_id(spiffe_id, what="--spiffe-id") if spiffe_id else None
    path = address.removeprefix("unix://").removeprefix("unix:")
    if not os.path.exists(path):
        raise WorkloadApiUnavailable(
            f"SPIFFE Workload API socket {address} does not exist (is the SPIRE agent running?)"
        )
    try:
        with WorkloadApiClient(socket_path=address) as client:
            svids = client.fetch_x509_svids(timeout=timeout)
    except PySpiffeError as err:
        raise WorkloadApiUnavailable(
            f"cannot fetch an X509-SVID from {address}: {' '.join(str(err).split())}"
        ) from None
    except Exception as err:  # grpc raises its own types (deadline, unavailable)
        raise WorkloadApiUnavailable(
            f"cannot fetch an X509-SVID from {address}: {type(err).__name__}: {err}"
        ) from None
    if not svids:
        raise WorkloadApiUnavailable(f"the SPIRE agent at {address} issued no X509-SVID to this process")
    if wanted is None:
        chosen = svids[0]
    else:
        matching = [s for s in svids if str(s.spiffe_id) == wanted]
        if not matching:
            issued = ", ".join(sorted(str(s.spiffe_id) for s in svids))
            raise WorkloadApiUnavailable(
                f"the SPIRE agent at {address} issued no SVID for {wanted} (issued: {issued})"
            )
        chosen = matching[0]
    log.debug("fetched the X509-SVID %s from %s", chosen.spiffe_id, address)
    return SvidSigner(str(chosen.spiffe_id), list(chosen.cert_chain), chosen.private_key)


@dataclass(frozen=True)
class SvidSignature:
    """A DSSE envelope signed with an SVID, and what a verifier needs besides it."""

    envelope: dsse.Envelope
    spiffe_id: str
    certificate_chain: tuple[x509.Certificate, ...]  # leaf first
    rfc3161_timestamp: bytes | None = None  # DER TimeStampResp over the signature bytes

    @property
    def certificate_pem(self) -> str:
        return certificate_to_pem(self.certificate_chain[0])

    @property
    def chain_pem(self) -> str:
        """The intermediates (possibly none), PEM; never the trust anchor (verifiers bring their own)."""
        return "".join(certificate_to_pem(c) for c in self.certificate_chain[1:])

    def cosign_annotations(self) -> dict[str, str]:
        """Annotations for the ``.att`` layer, as cosign writes them for certificate-based signatures."""
        return cosign.layer_annotations(
            certificate=self.certificate_pem, chain=self.chain_pem, rfc3161_timestamp=self.rfc3161_timestamp
        )

    def certificate_chain_der(self) -> list[bytes]:
        return [c.public_bytes(Encoding.DER) for c in self.certificate_chain]


def sign_payload(
    payload: bytes,
    signer: SvidSigner,
    *,
    tsa_url: str | None = None,
    payload_type: str = dsse.PAYLOAD_TYPE_INTOTO,
    timeout: float = DEFAULT_TIMEOUT,
) -> SvidSignature:
    """Sign ``payload`` into a DSSE envelope; timestamp the signature at ``tsa_url`` when given.

    A TSA that cannot be reached or answers wrongly fails the whole signature: an SVID signature
    without its timestamp would stop verifying within the hour.
    """
    envelope = dsse.sign(payload, signer, payload_type)
    token = None
    if tsa_url:
        token = request_timestamp(envelope.signatures[0].sig, tsa_url, timeout=timeout)
        log.debug("timestamped the signature at %s", tsa_url)
    return SvidSignature(
        envelope=envelope,
        spiffe_id=signer.spiffe_id,
        certificate_chain=tuple(signer.chain),
        rfc3161_timestamp=token,
    )


def sign_statement(
    statement: Mapping[str, Any],
    signer: SvidSigner,
    *,
    tsa_url: str | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> SignedProvenance:
    """An in-toto statement (serialised as Chains does) signed with the SVID, with the certificate chain
    and the timestamp a verifier needs: what the SPIRE backend hands to storage."""
    svid = sign_payload(intoto.serialize(statement), signer, tsa_url=tsa_url, timeout=timeout)
    return SignedProvenance(
        statement,
        svid.envelope,
        certificate_chain_der=tuple(svid.certificate_chain_der()),
        rfc3161_timestamps=(svid.rfc3161_timestamp,) if svid.rfc3161_timestamp else (),
    )


@dataclass(frozen=True)
class SvidSigning:
    """The SPIRE backend: this workload's X509-SVID from the Workload API at ``socket`` (else
    ``SPIFFE_ENDPOINT_SOCKET``), fetched for every run, and an RFC 3161 timestamp from ``tsa_url``."""

    socket: str | None = None
    spiffe_id: str | None = None
    tsa_url: str | None = None
    timeout: float = DEFAULT_TIMEOUT

    @property
    def label(self) -> str:
        who = self.spiffe_id or "the default SVID"
        return f"{who} from {self.socket or 'SPIFFE_ENDPOINT_SOCKET'}" + (
            f", timestamped at {self.tsa_url}" if self.tsa_url else ""
        )

    def ready(self) -> Sign:
        signer = fetch_svid_signer(self.socket, spiffe_id=self.spiffe_id, timeout=self.timeout)
        return functools.partial(sign_statement, signer=signer, tsa_url=self.tsa_url, timeout=self.timeout)
