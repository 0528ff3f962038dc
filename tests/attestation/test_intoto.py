"""in-toto statements: serialization order and bounded parsing (attestation.intoto)."""

from __future__ import annotations

import json

import pytest

from attestation import intoto
from attestation.errors import InputError, LimitExceeded
from attestation.limits import MAX_STATEMENT_BYTES

DIGEST = "a" * 64


def test_serialize_orders_top_level_like_protojson_and_sorts_predicate_keys() -> None:
    statement = {
        "predicate": {"z": {"b": 1, "a": [{"y": 1, "x": 2}]}, "builder": {"id": "b"}},
        "predicateType": "https://slsa.dev/provenance/v1",
        "subject": [{"digest": {"sha512": "f", "sha256": DIGEST}, "name": "img"}],
        "_type": intoto.STATEMENT_V1,
    }
    expected = (
        '{"_type":"https://in-toto.io/Statement/v1",'
        '"subject":[{"name":"img","digest":{"sha256":"' + DIGEST + '","sha512":"f"}}],'
        '"predicateType":"https://slsa.dev/provenance/v1",'
        '"predicate":{"builder":{"id":"b"},"z":{"a":[{"x":2,"y":1}],"b":1}}}'
    ).encode()
    assert intoto.serialize(statement) == expected


def test_serialize_omits_empty_subject_and_keeps_unicode_as_utf8() -> None:
    statement = {"_type": intoto.STATEMENT_V01, "subject": [], "predicateType": "p", "predicate": {"n": "é"}}
    assert (
        intoto.serialize(statement)
        == (
            '{"_type":"https://in-toto.io/Statement/v0.1","predicateType":"p","predicate":{"n":"é"}}'
        ).encode()
    )


def test_serialize_subject_fields_in_resource_descriptor_order() -> None:
    subject = {
        "annotations": {"b": 1, "a": 2},
        "mediaType": "m",
        "uri": "u",
        "digest": {"sha256": DIGEST},
        "name": "n",
        "downloadLocation": "d",
        "content": "Yw==",
    }
    out = intoto.serialize({"_type": intoto.STATEMENT_V1, "subject": [subject], "predicateType": "p"})
    assert out.decode().startswith(
        '{"_type":"https://in-toto.io/Statement/v1","subject":[{"name":"n","uri":"u","digest":{"sha256":"'
        + DIGEST
        + '"},"content":"Yw==","downloadLocation":"d","mediaType":"m","annotations":{"a":2,"b":1}}]'
    )


def test_serialize_rejects_fields_a_statement_cannot_carry() -> None:
    with pytest.raises(InputError, match="unknown top-level field 'extra'"):
        intoto.serialize({"_type": intoto.STATEMENT_V1, "predicateType": "p", "extra": 1})
    with pytest.raises(InputError, match=r"subject\[0\] has unknown field 'color'"):
        intoto.serialize(
            {
                "_type": intoto.STATEMENT_V1,
                "predicateType": "p",
                "subject": [{"name": "n", "digest": {}, "color": "red"}],
            }
        )
    with pytest.raises(InputError, match="not representable as JSON"):
        intoto.serialize(
            {"_type": intoto.STATEMENT_V1, "predicateType": "p", "predicate": {"x": float("nan")}}
        )


def test_serialize_refuses_what_parse_would_refuse() -> None:
    big = {"_type": intoto.STATEMENT_V1, "predicateType": "p", "predicate": {"x": "a" * MAX_STATEMENT_BYTES}}
    with pytest.raises(LimitExceeded):
        intoto.serialize(big)


@pytest.mark.parametrize("statement_type", [intoto.STATEMENT_V01, intoto.STATEMENT_V1])
def test_parse_accepts_both_statement_versions(statement_type: str) -> None:
    payload = json.dumps(
        {
            "_type": statement_type,
            "subject": [{"name": "registry.local/app", "digest": {"sha256": DIGEST}, "uri": "ignored"}],
            "predicateType": "https://slsa.dev/provenance/v0.2",
            "predicate": {"builder": {"id": "https://tekton.dev/chains/v2"}},
            "unknownTopLevel": True,
        }
    ).encode()
    st = intoto.parse(payload)
    assert st.type == statement_type
    assert st.predicate_type == "https://slsa.dev/provenance/v0.2"
    assert [(s.name, s.digest) for s in st.subject] == [("registry.local/app", {"sha256": DIGEST})]
    assert st.predicate == {"builder": {"id": "https://tekton.dev/chains/v2"}}


def test_parse_then_serialize_round_trips() -> None:
    statement = {
        "_type": intoto.STATEMENT_V1,
        "subject": [{"name": "a", "digest": {"sha256": DIGEST}}],
        "predicateType": "p",
        "predicate": {"k": [1, "two", None, True]},
    }
    data = intoto.serialize(statement)
    assert intoto.serialize(intoto.parse(data)) == data


def test_statement_without_subject_parses_with_empty_list() -> None:
    st = intoto.parse(b'{"_type":"https://in-toto.io/Statement/v1","predicateType":"p"}')
    assert st.subject == [] and st.predicate == {}


BAD_STATEMENTS = [
    (b"{", "stmt is not valid JSON"),
    (b"[1]", "stmt: an in-toto statement must be a JSON object"),
    (b'{"predicateType":"p"}', "stmt: field _type is missing"),
    (
        b'{"_type":"https://in-toto.io/Statement/v2","predicateType":"p"}',
        "stmt: field _type: must be https://in-toto.io/Statement/v0.1 or https://in-toto.io/Statement/v1",
    ),
    (b'{"_type":"https://in-toto.io/Statement/v1"}', "stmt: field predicateType is missing"),
    (b'{"_type":"https://in-toto.io/Statement/v1","predicateType":""}', "stmt: field predicateType"),
    (b'{"_type":"https://in-toto.io/Statement/v1","predicateType":1}', "stmt: field predicateType"),
    (
        b'{"_type":"https://in-toto.io/Statement/v1","predicateType":"p","predicate":[]}',
        "stmt: field predicate",
    ),
    (b'{"_type":"https://in-toto.io/Statement/v1","predicateType":"p","subject":{}}', "stmt: field subject"),
    (
        b'{"_type":"https://in-toto.io/Statement/v1","predicateType":"p","subject":[{"name":"a"}]}',
        "stmt: field subject.0.digest is missing",
    ),
    (
        b'{"_type":"https://in-toto.io/Statement/v1","predicateType":"p","subject":[{"name":"a","digest":{}}]}',
        "stmt: field subject.0.digest",
    ),
    (
        b'{"_type":"https://in-toto.io/Statement/v1","predicateType":"p","subject":[{"digest":{"sha256":1}}]}',
        "stmt: field subject.0.digest.sha256",
    ),
    (
        b'{"_type":"https://in-toto.io/Statement/v1","_type":"https://in-toto.io/Statement/v1","predicateType":"p"}',
        "duplicate key '_type'",
    ),
]


V1 = "https://in-toto.io/Statement/v1"
# The Python field names (``type``, ``predicate_type``) are not the statement's: a statement spelled with
# them is refused however it is mixed with the wire names, never read as the same statement.
OTHER_SPELLINGS = [
    ({"type": V1, "predicateType": "p"}, "field type: not an in-toto statement field (the field is _type)"),
    ({"_type": V1, "predicate_type": "p"}, "field predicate_type: not an in-toto statement field"),
    ({"type": V1, "predicate_type": "p"}, "field type: not an in-toto statement field"),
    ({"_type": V1, "type": V1, "predicateType": "p"}, "field type: not an in-toto statement field"),
    (
        {"_type": V1, "predicateType": "https://slsa.dev/provenance/v1", "predicate_type": "https://evil/p"},
        "field predicate_type: not an in-toto statement field (the field is predicateType)",
    ),
    ({"type": V1, "_type": V1, "predicate_type": "p", "predicateType": "p"}, "field type: not an in-toto"),
    ({"_type": V1, "predicateType": "p", "type": None}, "field type: not an in-toto statement field"),
]


@pytest.mark.parametrize(("doc", "message"), OTHER_SPELLINGS)
def test_a_statement_spelled_with_other_field_names_is_refused(doc: dict, message: str) -> None:
    with pytest.raises(InputError) as err:
        intoto.parse(json.dumps(doc).encode(), source="stmt")
    assert str(err.value).startswith(f"stmt: {message}")
    with pytest.raises(InputError):
        intoto.from_dict(doc, source="stmt")


@pytest.mark.parametrize(("payload", "message"), BAD_STATEMENTS)
def test_bad_statements_are_rejected_naming_the_problem(payload: bytes, message: str) -> None:
    with pytest.raises(InputError) as err:
        intoto.parse(payload, source="stmt")
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_deep_predicate_is_rejected() -> None:
    payload = b'{"_type":"https://in-toto.io/Statement/v1","predicateType":"p","predicate":' + (
        b'{"a":' * 70 + b"1" + b"}" * 70 + b"}"
    )
    with pytest.raises(LimitExceeded, match="nests deeper than 64"):
        intoto.parse(payload)


def test_pathologically_deep_json_is_a_limit_error_not_a_crash() -> None:
    with pytest.raises(LimitExceeded):
        intoto.parse(b"[" * 200_000 + b"]" * 200_000)
