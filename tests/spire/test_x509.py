"""attestation.x509 / attestation.spiffe: SVID path validation and trust bundles (certificates made here)."""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from cryptography.hazmat.primitives import serialization

from attestation.errors import InputError, LimitExceeded, VerificationError
from attestation.spiffe import (
    TrustBundles,
    load_trust_bundle,
    parse_spiffe_id,
    parse_trust_bundle,
    svid_spiffe_id,
    validate_trust_domain,
)
from attestation.x509 import verify_svid
from tests.spire.certs import NOW, make_ca, make_svid

ID = "spiffe://example.org/ns/build/sa/provgate-signer"


@pytest.fixture(scope="module")
def pki():
    root = make_ca()
    inter = make_ca(issuer=root)
    return root, inter


def bundle_of(*cas, trust_domain="example.org"):
    bundle = parse_trust_bundle(b"".join(c.pem for c in cas), source="bundle.pem")
    return TrustBundles.bind([bundle], default_trust_domain=trust_domain)


def test_svid_through_intermediate_verifies_with_exact_id(pki):
    root, inter = pki
    leaf = make_svid(inter, [ID])
    got = verify_svid(leaf.cert, [inter.cert], bundle_of(root), at=NOW, allowed_ids={ID})
    assert got.spiffe_id == ID
    assert [c.subject.rfc4514_string() for c in got.chain] == [
        "O=SPIRE,C=US",
        "O=SPIFFE,C=US",
        "O=SPIFFE,C=US",
    ]
    assert got.chain[-1] == root.cert


def test_missing_intermediate_is_denied(pki):
    root, inter = pki
    leaf = make_svid(inter, [ID])
    with pytest.raises(VerificationError, match="chain does not verify"):
        verify_svid(leaf.cert, [], bundle_of(root), at=NOW, allowed_ids={ID})


def test_other_spiffe_id_is_denied(pki):
    root, _ = pki
    leaf = make_svid(root, ["spiffe://example.org/ns/build/sa/someone-else"])
    with pytest.raises(VerificationError, match="someone-else is not allowed"):
        verify_svid(leaf.cert, [], bundle_of(root), at=NOW, allowed_ids={ID})


def test_other_trust_domain_is_denied_even_with_same_path(pki):
    root, _ = pki
    leaf = make_svid(root, ["spiffe://evil.org/ns/build/sa/provgate-signer"])
    with pytest.raises(VerificationError, match=r"not in trust domain example\.org"):
        verify_svid(leaf.cert, [], bundle_of(root), at=NOW, trust_domain="example.org")
    with pytest.raises(VerificationError, match="not allowed"):
        verify_svid(leaf.cert, [], bundle_of(root), at=NOW, allowed_ids={ID})


def test_rogue_ca_with_the_right_id_is_denied(pki):
    root, _ = pki
    rogue = make_ca()  # same subject names as the real CA, different key
    leaf = make_svid(rogue, [ID])
    with pytest.raises(VerificationError, match="chain does not verify"):
        verify_svid(leaf.cert, [], bundle_of(root), at=NOW, allowed_ids={ID})


def test_two_uri_sans_are_denied(pki):
    root, _ = pki
    leaf = make_svid(root, [ID, "spiffe://example.org/ns/build/sa/other"])
    with pytest.raises(VerificationError, match=r"exactly one URI SAN.*it has 2"):
        verify_svid(leaf.cert, [], bundle_of(root), at=NOW, allowed_ids={ID})


def test_no_uri_san_is_denied(pki):
    root, _ = pki
    leaf = make_svid(root, [])
    with pytest.raises(VerificationError, match="it has 0"):
        verify_svid(leaf.cert, [], bundle_of(root), at=NOW)


def test_uri_san_that_is_not_a_spiffe_id_is_denied(pki):
    root, _ = pki
    leaf = make_svid(root, ["https://example.org/ns/build"])
    with pytest.raises(VerificationError, match="not a valid SPIFFE ID"):
        verify_svid(leaf.cert, [], bundle_of(root), at=NOW)


def test_ca_certificate_as_leaf_is_denied(pki):
    root, _ = pki
    leaf = make_svid(root, [ID], ca=True)
    with pytest.raises(VerificationError, match="cA must not be asserted"):
        verify_svid(leaf.cert, [], bundle_of(root), at=NOW, allowed_ids={ID})


def test_leaf_without_digital_signature_usage_is_denied(pki):
    root, _ = pki
    leaf = make_svid(root, [ID], key_usage_sign=False)
    with pytest.raises(VerificationError, match="digitalSignature"):
        verify_svid(leaf.cert, [], bundle_of(root), at=NOW, allowed_ids={ID})


def test_validity_is_checked_at_the_given_time():
    root = make_ca(not_before=NOW - dt.timedelta(days=1))
    leaf = make_svid(
        root, [ID], not_before=NOW - dt.timedelta(hours=3), not_after=NOW - dt.timedelta(hours=2)
    )
    with pytest.raises(VerificationError, match="not valid at"):
        verify_svid(leaf.cert, [], bundle_of(root), at=NOW, allowed_ids={ID})
    # at a moment inside its lifetime (a trusted timestamp) the same certificate verifies
    inside = NOW - dt.timedelta(hours=2, minutes=30)
    assert verify_svid(leaf.cert, [], bundle_of(root), at=inside, allowed_ids={ID}).spiffe_id == ID


def test_old_ca_kept_in_bundle_still_verifies_after_rotation():
    old_root = make_ca(not_before=NOW - dt.timedelta(days=3), not_after=NOW - dt.timedelta(days=1))
    new_root = make_ca()
    at = NOW - dt.timedelta(days=2)
    leaf = make_svid(
        old_root, [ID], not_before=at - dt.timedelta(minutes=5), not_after=at + dt.timedelta(hours=1)
    )
    bundle = bundle_of(new_root, old_root)
    assert verify_svid(leaf.cert, [], bundle, at=at, allowed_ids={ID}).spiffe_id == ID
    with pytest.raises(VerificationError):
        verify_svid(leaf.cert, [], bundle_of(new_root), at=at, allowed_ids={ID})


def test_naive_time_is_a_programming_error(pki):
    root, _ = pki
    leaf = make_svid(root, [ID])
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_svid(leaf.cert, [], bundle_of(root), at=NOW.replace(tzinfo=None))


# --- trust bundles -----------------------------------------------------------------------------


def spiffe_json(*cas, extra_keys=()):
    keys = [
        {
            "use": "x509-svid",
            "kty": "EC",
            "x5c": [base64.b64encode(c.cert.public_bytes(serialization.Encoding.DER)).decode()],
        }
        for c in cas
    ]
    return json.dumps({"keys": [*keys, *extra_keys], "spiffe_sequence": 1}).encode()


def test_spiffe_json_bundle_is_read_and_jwt_keys_ignored(pki, tmp_path):
    root, _inter = pki
    path = tmp_path / "bundle.json"
    path.write_bytes(spiffe_json(root, extra_keys=[{"use": "jwt-svid", "kty": "EC", "kid": "k"}]))
    bundle = load_trust_bundle(path)
    assert bundle.authorities == (root.cert,) and bundle.trust_domain is None  # the format has no field
    leaf = make_svid(root, [ID])
    bound = TrustBundles.bind([bundle], default_trust_domain="example.org")
    assert verify_svid(leaf.cert, [], bound, at=NOW).spiffe_id == ID


def test_pem_bundle_with_several_cas_and_duplicates(pki):
    root, _inter = pki
    other = make_ca()
    [bundle] = TrustBundles.bind([*bundle_of(root, other).bundles, *bundle_of(root).bundles]).bundles
    assert bundle.authorities == (root.cert, other.cert) and bundle.trust_domain == "example.org"


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (b"", InputError, "neither PEM certificates nor a SPIFFE bundle"),
        (b"hello", InputError, "neither PEM"),
        (b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", InputError, "malformed PEM"),
        (b'{"keys": 3}', InputError, "'keys' array"),
        (b'{"keys": []}', InputError, "holds no X.509 authorities"),
        (
            b'{"keys": [{"use": "x509-svid", "x5c": ["!!"]}]}',
            InputError,
            r"keys\[0\].x5c\[0\] is not a base64",
        ),
        (b'{"keys": [{"use": "x509-svid", "x5c": []}]}', InputError, "exactly one certificate"),
        (b'{"keys": [', InputError, "not valid JSON"),
    ],
)
def test_bad_bundles_give_one_clear_error(data, error, message):
    with pytest.raises(error, match=message) as info:
        parse_trust_bundle(data, source="bundle-file")
    assert str(info.value).startswith("bundle-file") or "bundle-file" in str(info.value)
    assert "\n" not in str(info.value)


def test_leaf_in_bundle_is_refused(pki):
    root, _ = pki
    leaf = make_svid(root, [ID])
    with pytest.raises(InputError, match="is not a CA"):
        parse_trust_bundle(leaf.pem, source="b.pem")


def test_bundle_size_and_count_are_bounded(pki):
    root, _ = pki
    with pytest.raises(LimitExceeded):
        parse_trust_bundle(root.pem * 65, source="b.pem")
    with pytest.raises(LimitExceeded):
        parse_trust_bundle(b" " * (1024 * 1024 + 1), source="b.pem")


def test_unreadable_bundle_file_names_the_file(tmp_path):
    with pytest.raises(InputError, match=r"cannot read trust bundle .*nope\.pem"):
        load_trust_bundle(tmp_path / "nope.pem")


# --- SPIFFE IDs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "spiffe://example.org",
        "spiffe://Example.org/a",
        "spiffe://example.org/a/",
        "spiffe://example.org/a/../b",
        "spiffe://example.org:8080/a",
        "spiffe://user@example.org/a",
        "http://example.org/a",
        "spiffe://example.org/a?x=1",
        "spiffe:///a",
        "spiffe://example.org//a",
    ],
)
def test_invalid_spiffe_ids_are_refused(bad):
    with pytest.raises(InputError, match="SPIFFE ID"):
        parse_spiffe_id(bad)


def test_valid_spiffe_id_round_trips():
    assert parse_spiffe_id("spiffe://example.org/ns/default/taskrun/tr-1") == (
        "spiffe://example.org/ns/default/taskrun/tr-1"
    )


def test_trust_domain_validation():
    assert validate_trust_domain("example.org") == "example.org"
    for bad in ("", "spiffe://example.org", "Example.org", "a/b"):
        with pytest.raises(InputError):
            validate_trust_domain(bad)


def test_svid_spiffe_id_reads_the_single_uri(pki):
    root, _ = pki
    assert svid_spiffe_id(make_svid(root, [ID]).cert) == ID
