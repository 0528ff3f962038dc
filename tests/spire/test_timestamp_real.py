"""RFC 3161 timestamps from the real timestamp-authority (in-memory signer) on loopback."""

from __future__ import annotations

import datetime as dt
import re

import pytest

from attestation.errors import InputError, LimitExceeded, VerificationError
from attestation.timestamp import parse_tsa_certs, request_timestamp, verify_timestamp
from tests.spire.certs import make_ca

pytestmark = pytest.mark.xdist_group("spire")

SIG = b"0E\x02\x21\x00" + bytes(range(32)) + b"\x02\x20" + bytes(range(32, 64))


def test_token_over_the_signature_verifies_at_a_current_time(tsa):
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    token = request_timestamp(SIG, tsa.url)
    at = verify_timestamp(token, SIG, tsa.trust)
    assert before <= at <= dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)


def test_token_over_other_bytes_is_refused(tsa):
    token = request_timestamp(SIG, tsa.url)
    with pytest.raises(VerificationError, match="does not verify"):
        verify_timestamp(token, SIG + b"x", tsa.trust)


def test_token_from_an_untrusted_tsa_is_refused(tsa):
    token = request_timestamp(SIG, tsa.url)
    other = parse_tsa_certs(make_ca(org="Other TSA").pem, source="other.pem")
    with pytest.raises(VerificationError, match="does not verify"):
        verify_timestamp(token, SIG, other)


def test_backdated_token_is_refused(tsa):
    token = request_timestamp(SIG, tsa.url)
    # genTime is a DER GeneralizedTime (tag 0x18) inside the signed TSTInfo: move it back a year.
    found = re.search(rb"\x18[\x0f-\x20](\d{4})\d{10}(\.\d+)?Z", token)
    assert found, "no GeneralizedTime in the token"
    start = found.start(1)
    forged = token[:start] + str(int(found.group(1)) - 1).encode() + token[start + 4 :]
    with pytest.raises(VerificationError, match="does not verify"):
        verify_timestamp(forged, SIG, tsa.trust)


def test_garbage_and_oversized_tokens_are_refused(tsa):
    with pytest.raises(VerificationError, match="not an RFC 3161 timestamp response"):
        verify_timestamp(b"\x30\x03\x02\x01\x00", SIG, tsa.trust)
    with pytest.raises(LimitExceeded):
        verify_timestamp(b"\x00" * (64 * 1024 + 1), SIG, tsa.trust)


def test_unreachable_tsa_is_a_clear_error():
    from tests.infra import free_port

    with pytest.raises(InputError, match="unreachable"):
        request_timestamp(SIG, f"http://127.0.0.1:{free_port()}/api/v1/timestamp", timeout=2)


def test_tsa_chain_file_needs_a_root():
    leaf_only = b""
    with pytest.raises(InputError, match="no PEM certificates"):
        parse_tsa_certs(leaf_only, source="tsa.pem")
