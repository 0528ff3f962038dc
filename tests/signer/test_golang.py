"""Go's and protojson's encodings the formats reproduce; expected values are Go's documented outputs
(time.Duration.String, protobuf Timestamp JSON, encoding/json escaping)."""

from __future__ import annotations

import pytest

from attestation.errors import InputError
from signer import golang


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1h", "1h0m0s"),
        ("90s", "1m30s"),
        ("1.5s", "1.5s"),
        ("1500ms", "1.5s"),
        ("0", "0s"),
        ("250ms", "250ms"),
        ("1us", "1\u00b5s"),
        ("-2m", "-2m0s"),
        ("1h30m", "1h30m0s"),
        ("26h", "26h0m0s"),
    ],
)
def test_duration_is_reformatted_as_go_does(text: str, expected: str) -> None:
    ns = golang.parse_go_duration(text)
    assert ns is not None
    assert golang.format_go_duration(ns) == expected


@pytest.mark.parametrize("text", ["", "1x", "h", "1h-", "1", "x" * 100])
def test_durations_go_rejects_are_not_parsed(text: str) -> None:
    assert golang.parse_go_duration(text) is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-01T10:00:00Z", "2024-05-01T10:00:00Z"),
        ("2024-05-01T10:00:00.5Z", "2024-05-01T10:00:00.500Z"),
        ("2024-05-01T10:00:00.000123Z", "2024-05-01T10:00:00.000123Z"),
        ("2024-05-01T00:30:00-01:00", "2024-05-01T01:30:00Z"),
    ],
)
def test_timestamps_print_as_protobuf_timestamps(value: str, expected: str) -> None:
    assert golang.proto_timestamp(value, "x") == expected


@pytest.mark.parametrize("value", ["yesterday", "2024-05-01T10:00:00", 5])
def test_bad_timestamps_are_input_errors(value: object) -> None:
    with pytest.raises(InputError, match=r"status\.startTime"):
        golang.proto_timestamp(value, "run.yaml: status.startTime")


def test_go_json_escapes_html_and_line_separators_only() -> None:
    expected = '{"a":"é\\u2028\\n","b":"\\u003c\\u0026\\u003e"}'.encode()
    assert golang.go_json({"b": "<&>", "a": "é\u2028\n"}) == expected
