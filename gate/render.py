"""What the gate prints or sends, made safe to print: one rule for every surface (CLI text and JSON, stdout
and stderr, debug log lines, and the admission server's responses).

Registry error bodies, image references from admission requests, and unverified bytes quoted in an
attestation's reason all reach the output, so none of it may drive a terminal or reorder what a reader
sees, and all of it must be valid UTF-8 whatever it held. The hostile characters are the Unicode controls
(C0, DEL, C1), the format characters (bidi overrides and isolates, zero-width characters, the byte-order
mark, tag characters), the line and paragraph separators, and lone surrogates, which Python strings can
hold (a JSON ``"\\ud800"`` escape decodes to one) but UTF-8 cannot encode.

* :func:`printable` for text: each hostile character becomes a visible escape (``\\x1b``, ``\\u202e``,
  ``\\ud800``), so a reader sees what was there and nothing is acted on. Backslashes are not escaped, so
  a literal ``\\x1b`` in the input reads the same as an escaped ESC: text output is for people.
* :func:`to_json` for JSON: the same characters as JSON ``\\uXXXX`` escapes, so the document is exact (a
  reader decodes the very same string) and its bytes are valid UTF-8.
* :func:`encode_utf8` for the bytes written: UTF-8 that cannot fail, for any string at all.
"""

from __future__ import annotations

import json
import re
from typing import Any

# Unicode categories Cc, Cf, Cs, Zl and Zp as of Unicode 15 (the ranges are checked against the running
# Python's unicodedata by tests/gate/test_render.py); spelled out because deriving them at import costs
# every start of the CLI a scan of all code points.
_HOSTILE_RANGES = (
    (0x0000, 0x001F),
    (0x007F, 0x009F),
    (0x00AD, 0x00AD),
    (0x0600, 0x0605),
    (0x061C, 0x061C),
    (0x06DD, 0x06DD),
    (0x070F, 0x070F),
    (0x0890, 0x0891),
    (0x08E2, 0x08E2),
    (0x180E, 0x180E),
    (0x200B, 0x200F),
    (0x2028, 0x202E),
    (0x2060, 0x2064),
    (0x2066, 0x206F),
    (0xD800, 0xDFFF),
    (0xFEFF, 0xFEFF),
    (0xFFF9, 0xFFFB),
    (0x110BD, 0x110BD),
    (0x110CD, 0x110CD),
    (0x13430, 0x1343F),
    (0x1BCA0, 0x1BCA3),
    (0x1D173, 0x1D17A),
    (0xE0001, 0xE0001),
    (0xE0020, 0xE007F),
)
HOSTILE = re.compile("[" + "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in _HOSTILE_RANGES) + "]")
# In JSON text json.dumps has escaped C0 inside strings already; a raw one is indentation's newline.
_HOSTILE_IN_JSON = re.compile(
    "[" + "".join(f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in _HOSTILE_RANGES if lo > 0x1F) + "]"
)


def _text_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def _json_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    # JSON spells a code point above the BMP as its UTF-16 surrogate pair.
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def printable(text: str) -> str:
    """``text`` with every hostile character replaced by a visible escape; ordinary text unchanged."""
    if HOSTILE.search(text) is None:
        return text
    return HOSTILE.sub(_text_escape, text)


def to_json(doc: Any, *, indent: int | None = None) -> str:
    """``doc`` as JSON text that is valid UTF-8 and safe to print: readable non-ASCII text stays as it is,
    every hostile character is a ``\\uXXXX`` escape. ``json.loads`` of it gives back ``doc``."""
    text = json.dumps(doc, indent=indent, ensure_ascii=False, allow_nan=False)
    # Outside strings json.dumps writes only ASCII punctuation, digits, literals and whitespace, so every
    # match is inside a string, where a \\u escape means the same character.
    return _HOSTILE_IN_JSON.sub(_json_escape, text)


def to_json_bytes(doc: Any, *, indent: int | None = None) -> bytes:
    """:func:`to_json` as the UTF-8 bytes to send (an HTTP body, an AdmissionReview)."""
    return to_json(doc, indent=indent).encode("utf-8")


def encode_utf8(text: str) -> bytes:
    """UTF-8 bytes of any string: a lone surrogate that escaped :func:`printable` becomes ``\\udXXX``
    rather than an exception or invalid bytes."""
    return text.encode("utf-8", "backslashreplace")
