"""RFC 3161 timestamps over signatures (the Sigstore/cosign convention: the message imprint is the
SHA-256 of the raw signature bytes).

The signer asks a timestamp authority (TSA) for a token right after signing; the gate verifies the token
against the TSA certificates it trusts and uses its ``genTime`` as the moment the short-lived SVID
must have been valid. Parsing and CMS verification are ``rfc3161-client``'s.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from dataclasses import dataclass

import httpx
from cryptography import x509
from rfc3161_client import (
    HashAlgorithm,
    TimestampRequestBuilder,
    TimeStampResponse,
    VerifierBuilder,
    decode_timestamp_response,
)
from rfc3161_client import VerificationError as TsaVerificationError

from attestation.errors import InputError, LimitExceeded, TimestampUnavailable, VerificationError
from attestation.spiffe import load_pem_certificates

# A token is a CMS SignedData with the TSA chain: a few KiB. Anything large is not a token.
MAX_TIMESTAMP_BYTES = 64 * 1024
MAX_TSA_CHAIN_BYTES = 256 * 1024
MAX_TSA_CERTIFICATES = 16
TIMESTAMP_QUERY = "application/timestamp-query"


@dataclass(frozen=True)
class TsaTrust:
    """TSA certificates the gate trusts: self-signed ones are roots, the others intermediates/leaf."""

    roots: tuple[x509.Certificate, ...]
    intermediates: tuple[x509.Certificate, ...]
    source: str = "TSA certificates"


def parse_tsa_certs(data: bytes, *, source: str) -> TsaTrust:
    """A PEM file of TSA certificates (for example ``/api/v1/timestamp/certchain`` of timestamp-authority)."""
    if len(data) > MAX_TSA_CHAIN_BYTES:
        raise LimitExceeded(f"{source}: TSA certificate file is larger than {MAX_TSA_CHAIN_BYTES} bytes")
    certs = load_pem_certificates(data, source=source, max_count=MAX_TSA_CERTIFICATES)
    if not certs:
        raise InputError(f"{source}: no PEM certificates found")
    roots = tuple(c for c in certs if c.issuer == c.subject)
    if not roots:
        raise InputError(f"{source}: no self-signed root among the TSA certificates")
    return TsaTrust(
        roots=roots, intermediates=tuple(c for c in certs if c.issuer != c.subject), source=source
    )


def load_tsa_certs(path: str | os.PathLike[str]) -> TsaTrust:
    source = os.fspath(path)
    try:
        with open(source, "rb") as f:
            data = f.read(MAX_TSA_CHAIN_BYTES + 1)
    except OSError as err:
        raise InputError(f"cannot read TSA certificates {source}: {err.strerror or err}") from None
    return parse_tsa_certs(data, source=source)


def _parse(token: bytes, what: str) -> TimeStampResponse:
    if len(token) > MAX_TIMESTAMP_BYTES:
        raise LimitExceeded(f"{what} is larger than {MAX_TIMESTAMP_BYTES} bytes")
    try:
        return decode_timestamp_response(token)
    except (ValueError, TypeError) as err:
        raise VerificationError(f"{what} is not an RFC 3161 timestamp response: {_one_line(err)}") from None


def verify_timestamp(
    token: bytes, signature: bytes, trust: TsaTrust, *, what: str = "RFC 3161 timestamp"
) -> dt.datetime:
    """The trusted time (``genTime``, UTC) of ``token`` if it is a valid TSA token over ``signature``.

    Checks: status granted, CMS signature by a TSA certificate chaining to ``trust`` at ``genTime``,
    EKU timeStamping, and the message imprint equals the hash of ``signature``. Raises
    :class:`VerificationError` otherwise.
    """
    response = _parse(token, what)
    builder = VerifierBuilder()
    for root in trust.roots:
        builder = builder.add_root_certificate(root)
    for cert in trust.intermediates:
        builder = builder.add_intermediate_certificate(cert)
    try:
        # verify_message hashes with the algorithm named in the token (SHA-256/384/512) and compares
        # it to the imprint, so a token over other bytes fails here.
        builder.build().verify_message(response, signature)
    except TsaVerificationError as err:
        raise VerificationError(f"{what} does not verify: {_one_line(err)}") from None
    except ValueError as err:
        raise VerificationError(f"{what} does not verify: {_one_line(err)}") from None
    gen_time = response.tst_info.gen_time
    if gen_time.tzinfo is None:
        gen_time = gen_time.replace(tzinfo=dt.UTC)
    return gen_time.astimezone(dt.UTC)


def request_timestamp(
    signature: bytes, tsa_url: str, *, timeout: float = 10.0, client: httpx.Client | None = None
) -> bytes:
    """Ask the TSA at ``tsa_url`` for a token over ``signature``; the DER ``TimeStampResp`` bytes.

    The answer is checked to be granted, to carry our nonce and the imprint of our signature, so a
    broken or confused TSA is caught at signing time, not at the gate. Raises :class:`VerificationError`
    (bad answer) or :class:`TimestampUnavailable` (TSA unreachable or busy: retry later).
    """
    if not signature:
        raise InputError("cannot timestamp an empty signature")
    request = TimestampRequestBuilder().data(signature).hash_algorithm(HashAlgorithm.SHA256).nonce(nonce=True)
    built = request.build()
    try:
        if client is None:
            with httpx.Client(timeout=timeout) as own:
                reply = own.post(tsa_url, content=built.as_bytes(), headers={"Content-Type": TIMESTAMP_QUERY})
        else:
            reply = client.post(tsa_url, content=built.as_bytes(), headers={"Content-Type": TIMESTAMP_QUERY})
    except httpx.HTTPError as err:
        raise TimestampUnavailable(f"timestamp authority {tsa_url} unreachable: {_one_line(err)}") from None
    if reply.status_code == 429 or reply.status_code >= 500:
        raise TimestampUnavailable(f"timestamp authority {tsa_url} answered HTTP {reply.status_code}")
    if reply.status_code != 200:
        raise VerificationError(f"timestamp authority {tsa_url} answered HTTP {reply.status_code}")
    token = reply.content
    response = _parse(token, f"answer of timestamp authority {tsa_url}")
    if response.status not in (0, 1):  # granted, grantedWithMods
        raise VerificationError(f"timestamp authority {tsa_url} refused: status {response.status}")
    info = response.tst_info
    if info.nonce != built.nonce:
        raise VerificationError(f"timestamp authority {tsa_url} answered with a different nonce")
    if info.message_imprint.message != hashlib.sha256(signature).digest():
        raise VerificationError(f"timestamp authority {tsa_url} timestamped other bytes than the signature")
    return token


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__
