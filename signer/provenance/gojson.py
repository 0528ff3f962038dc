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

Known approximation: ``resource.Quantity`` values are kept as written (Go canonicalises e.g. ``1000m``
to ``1``); values of the wrong JSON type are passed through where Go would reject the object.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

from signer.run import normalize_param_value

_MISSING: Any = object()
Encoder = Callable[[Any], Any]

_SCHEMA_PATH = Path(__file__).with_name("tekton_v1_types.json")


@cache
def _schema() -> dict[str, Any]:
    return json.loads(_SCHEMA_PATH.read_text(encoding="utf-8"))


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
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        return raw
    if parsed.tzinfo is None:
        return raw
    return parsed.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _duration(raw: Any) -> Any:
    # Imported here: slsa1_0 imports this module.
    from signer.provenance.slsa1_0 import format_go_duration, parse_go_duration

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


_CUSTOM: dict[str, tuple[Encoder, Any]] = {
    # custom type -> (encoder, Go zero value as encoded)
    "meta.Time": (_time, None),
    "knative.VolatileTime": (_time, None),
    "meta.Duration": (_duration, "0s"),
    "tekton.ParamValue": (_param_value, ""),
    "intstr.IntOrString": (_zero_number, 0),
    "resource.Quantity": (lambda raw: "0" if raw is _MISSING or raw is None else raw, "0"),
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

    __hash__ = None  # type: ignore[assignment]


def _root(kind: str) -> Encoder:
    return _encoder(_schema()["roots"][kind])[0]


def taskrun(obj: dict) -> dict:
    """A TaskRun object as ``json.Marshal(*v1.TaskRun)`` writes it."""
    return _root("TaskRun")(obj)


def run_spec(kind: str, spec: dict) -> dict:
    """``json.Marshal`` of a ``TaskRunSpec`` or ``PipelineRunSpec``."""
    return _root(f"{kind}Spec")(spec)
