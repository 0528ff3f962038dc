"""Property tests: hostile input only ever produces the documented error types, and encodings round-trip."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attestation import cosign_key, dsse, intoto, keys
from attestation.dsse import Envelope, Signature
from attestation.errors import InputError, KeyLoadError
from attestation.limits import load_json

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
b64ish = st.one_of(
    st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()),
    st.binary(max_size=40).map(lambda b: base64.urlsafe_b64encode(b).decode()),
    st.text(alphabet="AZaz09+/-_= \n!", max_size=12),
    json_values,
)
signature_like = st.fixed_dictionaries(
    {}, optional={"sig": b64ish, "keyid": st.text(max_size=10) | json_values}
)
envelope_like = st.fixed_dictionaries(
    {},
    optional={
        "payloadType": st.just(dsse.PAYLOAD_TYPE_INTOTO) | json_values,
        "payload": b64ish,
        "signatures": st.lists(signature_like | json_values, max_size=4) | json_values,
    },
)


def _from_json_only_raises_input_error(data: bytes) -> None:
    try:
        envelope = Envelope.from_json(data, source="fuzz")
    except InputError as err:
        assert str(err).startswith("fuzz") and "\n" not in str(err)
        return
    assert isinstance(envelope.payload, bytes) and envelope.signatures
    assert all(isinstance(s.sig, bytes) and s.sig and isinstance(s.keyid, str) for s in envelope.signatures)


@SETTINGS
@given(st.binary(max_size=300))
def test_envelope_from_arbitrary_bytes(data: bytes) -> None:
    _from_json_only_raises_input_error(data)


@SETTINGS
@given(envelope_like | json_values)
def test_envelope_from_arbitrary_json(doc: Any) -> None:
    _from_json_only_raises_input_error(json.dumps(doc).encode())


@SETTINGS
@given(
    payload=st.binary(max_size=200),
    payload_type=st.text(min_size=1, max_size=40),
    sigs=st.lists(
        st.tuples(st.binary(min_size=1, max_size=80), st.text(max_size=30)), min_size=1, max_size=16
    ),
)
def test_envelope_json_round_trip(payload: bytes, payload_type: str, sigs: list[tuple[bytes, str]]) -> None:
    envelope = Envelope(payload, payload_type, tuple(Signature(s, k) for s, k in sigs))
    data = envelope.to_json()
    doc = json.loads(data)
    # always standard, padded base64
    assert base64.b64decode(doc["payload"], validate=True) == payload
    assert Envelope.from_json(data) == envelope


@SETTINGS
@given(st.text(max_size=20), st.binary(max_size=20), st.text(max_size=20), st.binary(max_size=20))
def test_pae_is_injective(t1: str, b1: bytes, t2: str, b2: bytes) -> None:
    if (t1, b1) != (t2, b2):
        assert dsse.pae(t1, b1) != dsse.pae(t2, b2)


@SETTINGS
@given(
    st.fixed_dictionaries(
        {},
        optional={
            "_type": st.sampled_from([intoto.STATEMENT_V01, intoto.STATEMENT_V1]) | json_values,
            "predicateType": st.text(max_size=10) | json_values,
            "subject": st.lists(
                st.fixed_dictionaries({}, optional={"name": json_values, "digest": json_values})
                | json_values,
                max_size=3,
            )
            | json_values,
            "predicate": json_values,
        },
    )
    | json_values
)
def test_statement_parse_only_raises_input_error(doc: Any) -> None:
    try:
        statement = intoto.parse(json.dumps(doc).encode(), source="fuzz")
    except InputError as err:
        assert str(err).startswith("fuzz") and "\n" not in str(err)
        return
    assert statement.type in intoto.STATEMENT_TYPES
    # whatever parses serializes, and reparses to the same statement
    assert intoto.parse(intoto.serialize(statement)) == statement


@SETTINGS
@given(st.binary(max_size=300))
def test_load_json_only_raises_input_error(data: bytes) -> None:
    try:
        load_json(data, max_bytes=1000, what="fuzz")
    except InputError as err:
        assert str(err).startswith("fuzz")


pem_labels = st.sampled_from(
    [
        "PUBLIC KEY",
        "CERTIFICATE",
        "PRIVATE KEY",
        "EC PRIVATE KEY",
        "RSA PUBLIC KEY",
        cosign_key.PEM_LABEL,
        "X",
    ]
)


@SETTINGS
@given(pem_labels, st.binary(max_size=200), st.booleans())
def test_key_loaders_only_raise_key_load_error(label: str, body: bytes, raw: bool) -> None:
    b64 = base64.b64encode(body).decode()
    data = body if raw else f"-----BEGIN {label}-----\n{b64}\n-----END {label}-----\n".encode()
    for load in (
        lambda: keys.load_public_key(data, source="fuzz"),
        lambda: keys.load_private_key(data, source="fuzz", password=b"pw"),
    ):
        try:
            load()
        except KeyLoadError as err:
            assert str(err).startswith("fuzz") and "\n" not in str(err)


@settings(max_examples=100, deadline=None)
@given(
    json_values
    | st.fixed_dictionaries({"kdf": json_values, "cipher": json_values, "ciphertext": json_values})
)
def test_cosign_key_documents_only_raise_key_load_error(doc: Any) -> None:
    b64 = base64.b64encode(json.dumps(doc).encode()).decode()
    pem = f"-----BEGIN {cosign_key.PEM_LABEL}-----\n{b64}\n-----END {cosign_key.PEM_LABEL}-----\n".encode()
    try:
        keys.load_private_key(pem, source="fuzz", password=b"pw")
    except KeyLoadError as err:
        assert str(err).startswith("fuzz")
