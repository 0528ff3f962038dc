"""Tekton objects as Chains' Go code re-encodes them: decode into the ``tekton.dev/v1`` Go types, then
``encoding/json.Marshal``.

Chains never copies a run's JSON through: ``externalParameters.runSpec`` is ``json.Marshal(run.Spec)``
and the ``slsa-tekton`` task descriptor is ``json.Marshal(taskRun)``. The round trip drops unknown keys,
matches keys case-insensitively (old Pipelines wrote ``EnableAPIFields``), fills non-``omitempty`` zero
values (``"computeResources": {}`` in every step, ``"serviceAccountName": ""``), drops empty
``omitempty`` fields, sorts map keys, prints times as RFC 3339 seconds in UTC and durations as
``time.Duration.String()``. To reproduce it without hand-written field lists, ``tekton_v1_types.json``
records, per Go struct, the fields in declaration order with their JSON names and ``omitempty`` /
``omitzero`` flags (obtained by reflecting over the types Chains vendors).

Known approximation: values of the wrong JSON type are passed through where Go would reject the object.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any, cast

from signer.golang import format_go_duration, metav1_time, parse_go_duration
from signer.run import normalize_param_value

_MISSING: Any = object()
Encoder = Callable[[Any], Any]

_SCHEMA_PATH = Path(__file__).with_name("tekton_v1_types.json")


@cache
def _schema() -> dict[str, Any]:
    return cast(dict[str, Any], json.loads(_SCHEMA_PATH.read_text(encoding="utf-8")))


# ------------------------------------------------------------------------------------------ scalars


def _string(raw: Any) -> Any:
    return "" if raw is _MISSING or raw is None else raw


def _zero_number(raw: Any) -> Any:
    return 0 if raw is _MISSING or raw is None else raw


def _bool(raw: Any) -> Any:
    return False if raw is _MISSING or raw is None else raw


def _nullable(raw: Any) -> Any:
    return None if raw is _MISSING else raw


def _sorted_any(raw: Any) -> Any:
    # interface{} decodes objects into map[string]interface{}, which Go encodes with sorted keys.
    if raw is _MISSING:
        return None
    if isinstance(raw, dict):
        return {k: _sorted_any(raw[k]) for k in sorted(raw)}
    if isinstance(raw, list):
        return [_sorted_any(v) for v in raw]
    return raw


def _time(raw: Any) -> Any:
    """metav1.Time: RFC 3339 in, ``t.UTC().Format(time.RFC3339)`` out (fraction dropped); zero is null."""
    if raw is _MISSING or raw is None:
        return None
    if not isinstance(raw, str):
        return raw
    return metav1_time(raw) or raw


def _duration(raw: Any) -> Any:
    if raw is _MISSING or raw is None:
        return "0s"
    ns = parse_go_duration(raw) if isinstance(raw, str) else None
    return raw if ns is None else format_go_duration(ns)


def _param_value(raw: Any) -> Any:
    # ParamValue.UnmarshalJSON: arrays of strings and string maps keep their type, anything else is a
    # string (JSON null gives ""); MarshalJSON writes the kept type back (map keys sorted).
    if raw is _MISSING or raw is None:
        return ""
    value = normalize_param_value(raw)
    return {k: value[k] for k in sorted(value)} if isinstance(value, dict) else value


_QUANTITY = re.compile(r"([+-]?)(\d*)(?:\.(\d*))?(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?")
_DECIMAL_SUFFIX = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_NAME = {v: k for k, v in _DECIMAL_SUFFIX.items()}
_BINARY_SUFFIX = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_BINARY_NAME = {0: "", **{v: k for k, v in _BINARY_SUFFIX.items()}}


def _decimal_canonical(value: Fraction, *, exponent_form: bool) -> str:
    """resource.Quantity's DecimalSI/DecimalExponent form: the smallest exponent that is a multiple of 3
    and keeps an integer mantissa; values below a nano round up (Quantity keeps 9 decimal places)."""
    if value == 0:
        return "0"
    scaled = value * 10**9
    nanos = scaled.numerator // scaled.denominator
    if nanos != scaled:
        nanos += 1  # ceil, as Quantity rounds up lost precision
    exponent = -9
    while nanos % 1000 == 0 and exponent < 18:
        nanos //= 1000
        exponent += 3
    if exponent_form:
        return f"{nanos}" if exponent == 0 else f"{nanos}e{exponent}"
    return f"{nanos}{_DECIMAL_NAME[exponent]}"


def _quantity(raw: Any) -> Any:
    """resource.Quantity re-encoded in canonical form (``0.5`` -> ``500m``, ``1024Mi`` -> ``1Gi``,
    ``1000m`` -> ``1``). Anything it cannot read passes through."""
    if raw is _MISSING or raw is None:
        return "0"
    if isinstance(raw, (int, float)) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str) or len(raw) > 64:
        return raw
    m = _QUANTITY.fullmatch(raw.strip())
    if not m or not (m.group(2) or m.group(3)):
        return raw
    sign, whole, frac, suffix = m.group(1), m.group(2) or "0", m.group(3) or "", m.group(4) or ""
    if _kept_as_written(whole.lstrip("0") or "0", frac, suffix):
        return raw
    value = Fraction(int(whole + frac), 10 ** len(frac))
    if sign == "-":
        value = -value
    if suffix in _BINARY_SUFFIX:
        value *= 2 ** _BINARY_SUFFIX[suffix]
        if -1024 < value < 1024 or value.denominator != 1:
            return _signed(value, lambda v: _decimal_canonical(v, exponent_form=False))
        return _signed(value, _binary_canonical)
    if suffix[:1] in ("e", "E"):
        value *= Fraction(10) ** int(suffix[1:])
        return _signed(value, lambda v: _decimal_canonical(v, exponent_form=True))
    value *= Fraction(10) ** _DECIMAL_SUFFIX[suffix]
    return _signed(value, lambda v: _decimal_canonical(v, exponent_form=False))


def _kept_as_written(num: str, denom: str, suffix: str) -> bool:
    """ParseQuantity's fast path keeps the input string when it looks canonical already: decimal
    values whose scale is a multiple of 3 with digits neither ending in ``000`` nor starting with ``0``
    (so ``1.234``, ``+2`` and ``1E6`` stay as written), binary values with an integer count of a
    ``Ki``/``Mi``/... unit that is not a multiple of 8."""
    if suffix in _BINARY_SUFFIX:
        exponent = _BINARY_SUFFIX[suffix]
        precision = 15 - len(num) - int(exponent * 3 / 10) - 1
        return not denom and precision >= 0 and exponent % 10 == 0 and int(num) & 7 != 0
    exponent = int(suffix[1:]) if suffix[:1] in ("e", "E") else _DECIMAL_SUFFIX[suffix]
    if 18 - (len(num) + len(denom)) < 0:
        return False
    scale = exponent - len(denom)
    shifted = num + denom
    # Go's % keeps the sign; only "is it zero" matters here, which Python's % answers the same way.
    return scale >= -9 and scale % 3 == 0 and not shifted.endswith("000") and shifted[0] != "0"


def _binary_canonical(value: Fraction) -> str:
    amount, exponent = int(value), 0
    while amount % 1024 == 0 and exponent < 60:
        amount //= 1024
        exponent += 10
    return f"{amount}{_BINARY_NAME[exponent]}"


def _signed(value: Fraction, fmt: Callable[[Fraction], str]) -> str:
    return "-" + fmt(-value) if value < 0 else fmt(value)


_CUSTOM: dict[str, tuple[Encoder, Any]] = {
    # custom type -> (encoder, Go zero value as encoded)
    "meta.Time": (_time, None),
    "knative.VolatileTime": (_time, None),
    "meta.Duration": (_duration, "0s"),
    "tekton.ParamValue": (_param_value, ""),
    "intstr.IntOrString": (_zero_number, 0),
    "resource.Quantity": (_quantity, "0"),
    "runtime.RawExtension": (_nullable, None),
    "meta.FieldsV1": (_nullable, None),
}
_SCALARS: dict[str, tuple[Encoder, Any]] = {
    "string": (_string, ""),
    "int": (_zero_number, 0),
    "float": (_zero_number, 0),
    "bool": (_bool, False),
    "bytes": (_nullable, None),
    "any": (_sorted_any, None),
}


# ------------------------------------------------------------------------------------------ compiled types


class _Field:
    __slots__ = ("empty", "encode", "name", "omitempty", "omitzero", "type", "zero")
    encode: Encoder  # set when the struct is compiled (the types are recursive)
    zero: Any

    def __init__(self, name: str, type_: str, flags: list[str]) -> None:
        self.name = name
        self.type = type_
        self.omitempty = "omitempty" in flags
        self.omitzero = "omitzero" in flags
        # What omitempty drops: a nil pointer, an empty slice or map, a zero scalar; never a struct
        # (the custom marshalers here are all structs).
        if type_.startswith("*") or type_ == "any":
            self.empty = _is_nil
        elif type_.startswith(("[]", "map:")) or type_ == "bytes":
            self.empty = _is_empty_collection
        elif type_ in _SCALARS:
            self.empty = _is_zero_scalar
        else:
            self.empty = _never


def _is_nil(value: Any) -> bool:
    return value is None


def _is_empty_collection(value: Any) -> bool:
    return value is None or value == [] or value == {} or value == ""


def _is_zero_scalar(value: Any) -> bool:
    return value is None or value is False or value == "" or (type(value) in (int, float) and value == 0)


def _never(value: Any) -> bool:
    return False


def _struct_fields(name: str) -> list[_Field]:
    """Fields in Go encoding order, embedded (inline) structs expanded in place."""
    out: list[_Field] = []
    for entry in _schema()["types"][name]:
        json_name, type_, *flags = entry
        if type_.startswith("inline:"):
            target = type_.removeprefix("inline:").lstrip("*")
            out.extend(_struct_fields(target))
        else:
            out.append(_Field(json_name, type_, flags))
    return out


@cache
def _encoder(type_: str) -> tuple[Encoder, Any]:
    """(encoder, encoded zero value) for a schema type expression."""
    if type_ in _SCALARS:
        return _SCALARS[type_]
    if type_.startswith("custom:"):
        return _CUSTOM.get(type_.removeprefix("custom:"), (_sorted_any, None))
    if type_.startswith("*"):
        inner, _ = _encoder(type_[1:])
        return (lambda raw: None if raw is _MISSING or raw is None else inner(raw)), None
    if type_.startswith("[]"):
        item, _ = _encoder(type_[2:])

        def encode_list(raw: Any) -> Any:
            if raw is _MISSING or raw is None:
                return None
            return [item(v) for v in raw] if isinstance(raw, list) else raw

        return encode_list, None
    if type_.startswith("map:"):
        value_enc, _ = _encoder(type_[4:])

        def encode_map(raw: Any) -> Any:
            if raw is _MISSING or raw is None:
                return None
            if not isinstance(raw, dict):
                return raw
            return {str(k): value_enc(raw[k]) for k in sorted(raw, key=str)}

        return encode_map, None
    return _struct_encoder(type_)


class _Struct:
    """One Go struct type; its fields are compiled on first use because the types are recursive
    (a PipelineTask can embed a PipelineSpec)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.fields: list[_Field] | None = None
        self.exact: dict[str, _Field] = {}
        self.folded: dict[str, _Field] = {}

    def _compile(self) -> list[_Field]:
        fields = _struct_fields(self.name)
        for f in fields:
            f.encode, f.zero = _encoder(f.type)
        self.exact = {f.name: f for f in fields}
        for f in fields:
            self.folded.setdefault(f.name.casefold(), f)
        self.fields = fields
        return fields

    def encode(self, raw: Any) -> Any:
        if raw is not _MISSING and raw is not None and not isinstance(raw, dict):
            return raw
        fields = self.fields if self.fields is not None else self._compile()
        given: dict[str, Any] = {}
        if raw is not _MISSING and raw is not None:
            # encoding/json: exact name first, else a case-insensitive match; a later key wins.
            exact, folded = self.exact, self.folded
            for key, value in raw.items():
                f = exact.get(key) or folded.get(str(key).casefold())
                if f is not None:
                    given[f.name] = value
        out: dict[str, Any] = {}
        for f in fields:
            value = f.encode(given.get(f.name, _MISSING))
            if f.omitzero and f.zero == value:
                continue
            if f.omitempty and f.empty(value):
                continue
            out[f.name] = value
        return out


def _struct_encoder(name: str) -> tuple[Encoder, Any]:
    struct = _Struct(name)
    return struct.encode, _StructZero(struct)


class _StructZero:
    # omitzero on a struct field: compare with the struct's encoded zero value, built on first use.
    def __init__(self, struct: _Struct) -> None:
        self.struct = struct
        self.value: Any = _MISSING

    def __eq__(self, other: object) -> bool:
        if self.value is _MISSING:
            self.value = self.struct.encode(_MISSING)
        return bool(self.value == other)


def _root(kind: str) -> Encoder:
    return _encoder(_schema()["roots"][kind])[0]


def taskrun(obj: dict[str, Any]) -> dict[str, Any]:
    """A TaskRun object as ``json.Marshal(*v1.TaskRun)`` writes it."""
    return cast(dict[str, Any], _root("TaskRun")(obj))


def encode(go_type: str, value: Any) -> Any:
    """``json.Marshal`` of ``value`` decoded as a schema type, e.g. ``tekton.TaskRef``."""
    return _encoder(go_type)[0](value)


def run_spec(kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """``json.Marshal`` of a ``TaskRunSpec`` or ``PipelineRunSpec``."""
    return cast(dict[str, Any], _root(f"{kind}Spec")(spec))
