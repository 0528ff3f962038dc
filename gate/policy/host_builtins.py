"""The built-ins the wasm engine's host answers for the compiled policy: OPA's wasm evaluates most
built-ins itself and asks the host for the rest. Each one here follows OPA's Go implementation exactly
(tests/gate/test_engine_wasm.py compares them with the real OPA); a failing call is *undefined*, as on
OPA."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any


class Undefined(Exception):
    """Raised by a host built-in to make its call undefined, as OPA does when a built-in fails."""


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
# Go's time.Parse(time.RFC3339, s) as OPA calls it: Go first tries a strict RFC 3339 reader and then its
# general layout parser, which additionally takes a one-digit hour, a comma as the decimal separator and
# zone offsets up to 24:60. Both read any number of fraction digits and keep the first nine.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{1,2}):(\d{2}):(\d{2})(?:[.,](\d+))?(?:(Z)|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _days_from_civil(y: int, m: int, d: int) -> int:
    # Days since 1970-01-01 in the proleptic Gregorian calendar, year 0 included as Go has it.
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse_rfc3339_ns(text: str) -> int | None:
    """Nanoseconds since the epoch as OPA's ``time.parse_rfc3339_ns`` gives them; None where OPA fails."""
    m = _RFC3339.fullmatch(text)
    if not m:
        return None
    year, month, day, hour, minute, sec = (int(g) for g in m.groups()[:6])
    frac, zulu, sign, zh, zm = m.group(7), m.group(8), m.group(9), m.group(10), m.group(11)
    if not (1 <= month <= 12 and hour <= 23 and minute <= 59 and sec <= 59):
        return None
    days_in_month = 29 if month == 2 and _leap(year) else _DAYS_IN_MONTH[month - 1]
    if not 1 <= day <= days_in_month:
        return None
    offset = 0
    if not zulu:
        oh, om = int(zh), int(zm)
        if oh > 24 or om > 60:
            return None
        offset = (oh * 60 + om) * 60 * (-1 if sign == "-" else 1)
    nanos = int((frac or "0")[:9].ljust(9, "0"))
    seconds = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + sec - offset
    ns = seconds * 1_000_000_000 + nanos
    if not _INT64_MIN <= ns <= _INT64_MAX:
        return None  # OPA: "time outside of valid range"
    return ns


def _rfc3339_ns(value: Any) -> int:
    if not isinstance(value, str):
        raise Undefined
    ns = parse_rfc3339_ns(value)
    if ns is None:
        raise Undefined
    return ns


# Host built-ins provided here, each matching OPA's Go implementation (tests/gate/test_engine_wasm.py
# compares them with the real OPA). opapywasm's own defaults (sprintf, json.is_valid, yaml.*) are
# approximations and are deliberately not on this list.
HOST_BUILTINS: dict[str, Callable[..., Any]] = {
    "time.parse_rfc3339_ns": _rfc3339_ns,
}
