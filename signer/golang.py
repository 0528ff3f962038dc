"""Go and protobuf encodings Chains' output depends on: Go's ``encoding/json``, ``time.Duration``,
``time.Time`` as RFC 3339, and protojson's ``google.protobuf.Timestamp``.

A leaf: it imports nothing of the signer, so the run model and every format can use it.
"""

from __future__ import annotations

import base64
import json
import re
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from typing import Any

from attestation.errors import InputError

ZERO_TIME = "0001-01-01T00:00:00Z"
# Go's time.Parse(time.RFC3339), which metav1.Time uses, wants an upper-case T and Z.
_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})")


_TIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)


def is_rfc3339(value: str) -> bool:
    """Whether Go's ``time.Parse(time.RFC3339)`` accepts ``value``."""
    return _RFC3339.fullmatch(value) is not None


def metav1_time(value: str) -> str | None:
    """A time as a Kubernetes ``metav1.Time`` marshals it, ``t.UTC().Format(time.RFC3339)``: UTC, ``Z``,
    whole seconds. None when ``value`` is not a time with a zone."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def rfc3339(value: str | None) -> str | None:
    """A Kubernetes time as Go marshals ``time.Time.UTC()``: RFC 3339, ``Z``, fraction without
    trailing zeros (nanosecond precision kept)."""
    if value is None:
        return None
    m = _TIME.fullmatch(value)
    if not m:
        raise InputError(f"time {value!r} is not RFC 3339")
    y, mo, d, h, mi, s, frac, z, sign, oh, om = m.groups()
    try:
        dt = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=UTC)
    except ValueError:
        raise InputError(f"time {value!r} is not a valid date") from None
    if not z:
        offset = timedelta(hours=int(oh), minutes=int(om))
        dt = dt - offset if sign == "+" else dt + offset
    out = dt.strftime("%Y-%m-%dT%H:%M:%S")
    frac = (frac or "")[:9].rstrip("0")
    return f"{out}.{frac}Z" if frac else f"{out}Z"


# Bounds: the inputs are already size-limited when loaded; these keep pathological values from
# turning into pathological work.
MAX_DURATION_LENGTH = 64


_GO_HTML_ESCAPES = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


_GO_ESCAPED = ("<", ">", "&", "\u2028", "\u2029")


def go_json(value: Any, *, sort_keys: bool = True) -> bytes:
    """Compact JSON as Go's ``encoding/json.Marshal`` writes it for maps, slices and strings.

    Go escapes HTML-significant characters and the two JavaScript line separators; everything else
    (non-ASCII included) is written as UTF-8, which ``ensure_ascii=False`` matches. The C encoder is
    used on purpose: ``slsa-tekton`` embeds whole TaskRuns and must stay fast for large pipelines.
    """
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=sort_keys)
    if any(ch in text for ch in _GO_ESCAPED):
        text = text.translate(_GO_HTML_ESCAPES)
    return text.encode("utf-8", "surrogatepass")


def proto_timestamp(value: Any, where: str) -> str:
    """An RFC 3339 time as protojson prints a ``google.protobuf.Timestamp``: UTC, ``Z``, and a
    fraction of 0, 3, 6 or 9 digits (Kubernetes keeps nanoseconds when it parses the time)."""
    # rfc3339 normalises to UTC with the nanosecond fraction, trailing zeros trimmed.
    try:
        utc = rfc3339(value) if isinstance(value, str) and value else None
    except InputError:
        utc = None
    if utc is None:
        raise InputError(f"{where}: not an RFC 3339 time: {value!r}")
    base, _, frac = utc.removesuffix("Z").partition(".")
    nanos = int(frac.ljust(9, "0")) if frac else 0
    if nanos == 0:
        return base + "Z"
    if nanos % 1_000_000 == 0:
        return f"{base}.{nanos // 1_000_000:03d}Z"
    if nanos % 1000 == 0:
        return f"{base}.{nanos // 1000:06d}Z"
    return f"{base}.{nanos:09d}Z"


_DURATION_PART = re.compile(r"(\d*)(?:\.(\d*))?(ns|us|\u00b5s|\u03bcs|ms|s|m|h)")


_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,
    "\u03bcs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}


def parse_go_duration(text: str) -> int | None:
    """Nanoseconds of a Go ``time.ParseDuration`` string, or None when Go would reject it."""
    if not isinstance(text, str) or not text or len(text) > MAX_DURATION_LENGTH:
        return None
    sign = 1
    rest = text
    if rest[0] in "+-":
        sign = -1 if rest[0] == "-" else 1
        rest = rest[1:]
    if rest == "0":
        return 0
    if not rest:
        return None
    total = Fraction(0)
    pos = 0
    while pos < len(rest):
        match = _DURATION_PART.match(rest, pos)
        if not match or (not match.group(1) and not match.group(2)):
            return None
        whole, frac, unit = match.groups()
        number = Fraction(int(whole or "0"))
        if frac:
            number += Fraction(int(frac), 10 ** len(frac))
        total += number * _UNIT_NS[unit]
        pos = match.end()
    return sign * int(total)


def _fmt_frac(value: int, precision: int) -> str:
    whole, frac = divmod(value, 10**precision)
    if not frac:
        return str(whole)
    return f"{whole}." + f"{frac:0{precision}d}".rstrip("0")


def format_go_duration(ns: int) -> str:
    """Go's ``time.Duration.String()`` (``1h0m0s``, ``1.5s``, ``250ms``, ``0s``)."""
    magnitude = abs(ns)
    if magnitude < 1_000_000_000:
        if magnitude == 0:
            return "0s"
        if magnitude < 1_000:
            text = f"{magnitude}ns"
        elif magnitude < 1_000_000:
            text = _fmt_frac(magnitude, 3) + "\u00b5s"
        else:
            text = _fmt_frac(magnitude, 6) + "ms"
    else:
        seconds = _fmt_frac(magnitude % 60_000_000_000, 9) + "s"
        minutes = magnitude // 60_000_000_000
        text = seconds
        if minutes:
            text = f"{minutes % 60}m" + text
            hours = minutes // 60
            if hours:
                text = f"{hours}h" + text
    return "-" + text if ns < 0 else text


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")
