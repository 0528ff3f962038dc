"""gate.render: what the gate prints is valid UTF-8 and cannot drive a terminal or reorder what a reader
sees, for any string at all (property tests over text with lone surrogates, controls, NULs and bidi)."""

from __future__ import annotations

import json
import sys
import unicodedata
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gate.decision import AttestationReport, Decision, Finding, render_text, undecided
from gate.render import HOSTILE, encode_utf8, printable, to_json, to_json_bytes

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
HOSTILE_CATEGORIES = {"Cc", "Cf", "Cs", "Zl", "Zp"}
# Characters a crafted document would use: lone surrogates of both halves, NUL, ESC (terminal
# sequences), DEL and a C1 CSI, bidi overrides and isolates, line separators, zero-width and BOM.
NASTY = ["\ud800", "\udbff", "\udc00", "\udfff", "\x00", "\x1b", "\x7f", "\x9b", "\u202e", "\u2066"]
NASTY += ["\u2028", "\u2029", "\u200b", "\u200d", "\ufeff", "\U000e0041", "\n", "\r", "\t"]

any_char = st.characters(exclude_categories=()) | st.sampled_from(NASTY)
hostile_text = st.text(any_char, max_size=40)
ordinary_text = st.text(st.characters(exclude_categories=tuple(HOSTILE_CATEGORIES)), max_size=40)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | hostile_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(hostile_text, inner, max_size=4),
    max_leaves=20,
)


def test_every_control_format_separator_and_surrogate_character_is_escaped() -> None:
    # All of Unicode, as this Python knows it: the ranges in gate.render must cover every character of
    # the hostile categories (a newer Unicode that adds one fails here until the ranges are updated).
    missed = [
        f"U+{cp:04X}"
        for cp in range(sys.maxunicode + 1)
        if unicodedata.category(chr(cp)) in HOSTILE_CATEGORIES and HOSTILE.fullmatch(chr(cp)) is None
    ]
    assert missed == []


def test_escapes_say_what_was_there() -> None:
    assert printable("\x1b[2J") == "\\x1b[2J"
    assert printable("evil\u202etxt.exe") == "evil\\u202etxt.exe"
    assert printable("a\ud800b") == "a\\ud800b"
    assert printable("\U000e0041") == "\\U000e0041"
    assert printable("line\nFAKE: ALLOWED") == "line\\x0aFAKE: ALLOWED"


def test_ordinary_text_is_left_alone() -> None:
    for text in ["Required task 'buildah' is missing — ünïcode ✓", "日本語のタスク", "emoji 😀 ok", "a\\x1b"]:
        assert printable(text) == text
        assert json.loads(to_json(text)) == text


@SETTINGS
@given(hostile_text)
def test_printable_text_is_utf8_and_has_no_hostile_character(text: str) -> None:
    out = printable(text)
    out.encode("utf-8")  # strict: a lone surrogate would raise here
    assert HOSTILE.search(out) is None
    assert len(out.splitlines()) <= 1


@SETTINGS
@given(ordinary_text)
def test_printable_changes_nothing_that_is_not_hostile(text: str) -> None:
    assert printable(text) == text


@SETTINGS
@given(json_values, st.sampled_from([None, 2]))
def test_json_is_utf8_exact_and_escapes_every_hostile_character(doc: Any, indent: int | None) -> None:
    out = to_json(doc, indent=indent)
    assert to_json_bytes(doc, indent=indent).decode("utf-8") == out
    assert json.loads(out) == doc  # exact: the escapes decode to the very same strings
    # Outside indentation's newlines and spaces, nothing hostile is left, not even inside strings.
    assert HOSTILE.search(out.replace("\n", "")) is None


@SETTINGS
@given(hostile_text)
def test_encode_utf8_never_fails(text: str) -> None:
    encode_utf8(text).decode("utf-8")


def _report(text: str, verified: bool) -> AttestationReport:
    return AttestationReport(
        source=text,
        verified=verified,
        predicate_type=text or None,
        build_type=text,
        signer={"keyid": text, text: text},
        error=None if verified else text,
    )


@SETTINGS
@given(hostile_text, hostile_text, st.booleans())
def test_every_decision_renders_as_utf8_with_nothing_hostile(image: str, text: str, allowed: bool) -> None:
    finding = Finding(code=text, msg=text, title=text, description=text, solution=text, term=text)
    decisions = [
        Decision(
            allowed=allowed,
            image=image,
            violations=() if allowed else (finding,),
            warnings=(finding,),
            attestations=(_report(text, True), _report(text, False)),
            errors=(text,),
        ),
        undecided(image, [text, image], attestations=(_report(text, False),)),
    ]
    for decision in decisions:
        rendered = render_text(decision)
        rendered.encode("utf-8")
        # Every line break is the renderer's own; nothing in it came from the input.
        assert HOSTILE.search(rendered.replace("\n", "")) is None
        assert json.loads(to_json(decision.to_dict(), indent=2)) == decision.to_dict()
