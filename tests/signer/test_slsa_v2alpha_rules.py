"""The Go/protojson encoding rules the SLSA v1.0 formats reproduce; expected values are Go's documented
outputs (time.Duration.String, protobuf Timestamp JSON, encoding/json escaping)."""

from __future__ import annotations

import pytest

from attestation.errors import InputError
from signer.provenance import slsa_v1_0_predicate
from signer.provenance.slsa_v1_0_predicate import Dependency


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
    ns = slsa_v1_0_predicate.parse_go_duration(text)
    assert ns is not None
    assert slsa_v1_0_predicate.format_go_duration(ns) == expected


@pytest.mark.parametrize("text", ["", "1x", "h", "1h-", "1", "x" * 100])
def test_durations_go_rejects_are_not_parsed(text: str) -> None:
    assert slsa_v1_0_predicate.parse_go_duration(text) is None


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
    assert slsa_v1_0_predicate.proto_timestamp(value, "x") == expected


@pytest.mark.parametrize("value", ["yesterday", "2024-05-01T10:00:00", 5])
def test_bad_timestamps_are_input_errors(value: object) -> None:
    with pytest.raises(InputError, match=r"status\.startTime"):
        slsa_v1_0_predicate.proto_timestamp(value, "run.yaml: status.startTime")


def test_go_json_escapes_html_and_line_separators_only() -> None:
    expected = '{"a":"é\\u2028\\n","b":"\\u003c\\u0026\\u003e"}'.encode()
    assert slsa_v1_0_predicate.go_json({"b": "<&>", "a": "é\u2028\n"}) == expected


def test_feature_flags_follow_the_go_struct() -> None:
    warnings: list[str] = []
    got = slsa_v1_0_predicate.feature_flags(
        {"EnableAPIFields": "alpha", "enableTektonOCIBundles": False, "setSecurityContext": "yes",
         "coschedule": "", "unknown": True},
        warnings,
        "tr.yaml: status.provenance.featureFlags",
    )
    # *bool keeps an explicit false; omitempty drops ""; a mistyped value is dropped with a warning.
    assert got == {"enableAPIFields": "alpha", "enableTektonOCIBundles": False}
    assert warnings and "setSecurityContext" in warnings[0]


def test_dedupe_keeps_config_entries_and_ignores_names() -> None:
    a = Dependency(uri="git+https://x.git", digest=(("sha1", "1" * 40),))
    deps = [
        Dependency(name="pipeline", uri=a.uri, digest=a.digest),
        Dependency(name="pipelineTask", uri=a.uri, digest=a.digest),  # same uri+digest: dropped
        Dependency(name="stepAction/s", uri=a.uri, digest=a.digest),  # always kept
        Dependency(name="inputs/result", uri=a.uri, digest=a.digest, content=b"x"),  # content differs
        Dependency(uri=a.uri, digest=a.digest),  # dropped
    ]
    assert [d.name for d in slsa_v1_0_predicate.dedupe(deps)] == ["pipeline", "stepAction/s", "inputs/result"]
