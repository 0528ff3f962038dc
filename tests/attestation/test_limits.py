"""Bounded JSON loading (attestation.limits)."""

from __future__ import annotations

import pytest

from attestation.errors import InputError, LimitExceeded
from attestation.limits import MAX_JSON_DEPTH, check_json_depth, load_json


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def test_depth_limit_is_inclusive() -> None:
    assert load_json(_nested(MAX_JSON_DEPTH), max_bytes=1000, what="doc") is not None
    with pytest.raises(LimitExceeded) as err:
        load_json(_nested(MAX_JSON_DEPTH + 1), max_bytes=1000, what="doc")
    assert str(err.value) == f"doc nests deeper than {MAX_JSON_DEPTH} levels"


def test_depth_counts_objects_and_arrays_and_scalars_do_not_add_a_level() -> None:
    check_json_depth({"a": [{"b": 1}]}, max_depth=3)
    with pytest.raises(LimitExceeded):
        check_json_depth({"a": [{"b": []}]}, max_depth=3)


def test_size_limit_applies_before_parsing() -> None:
    assert load_json(b"[1, 2]", max_bytes=6, what="doc") == [1, 2]
    with pytest.raises(LimitExceeded, match="doc is too large: 7 bytes, the limit is 6"):
        load_json(b"[1, 2] ", max_bytes=6, what="doc")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "doc is not valid JSON: Expecting value at line 1 column 1"),
        (b'{"a":1,"a":2}', "doc is not valid JSON: duplicate key 'a'"),
        (b"[NaN]", "doc is not valid JSON: NaN is not valid JSON"),
        (b"[-Infinity]", "doc is not valid JSON: -Infinity is not valid JSON"),
        (b"\xef\xbb\xbf{}", "doc is not valid JSON: Unexpected UTF-8 BOM"),
        (b'{"a":"\xff"}', "doc is not valid UTF-8 (byte 6)"),
        (b"[" + b"9" * 5000 + b"]", "doc is not valid JSON: "),
        (b"{} {}", "doc is not valid JSON: Extra data"),
    ],
)
def test_invalid_json_is_an_input_error(data: bytes, message: str) -> None:
    with pytest.raises(InputError) as err:
        load_json(data, max_bytes=10_000, what="doc")
    assert str(err.value).startswith(message)
    assert not isinstance(err.value, LimitExceeded) or "too large" in str(err.value)


def test_text_input_and_nested_duplicates() -> None:
    assert load_json('{"a":{"b":[1]}}', max_bytes=100, what="doc") == {"a": {"b": [1]}}
    with pytest.raises(InputError, match="duplicate key 'x'"):
        load_json('{"a":[{"x":1,"x":1}]}', max_bytes=100, what="doc")
