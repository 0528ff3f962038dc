"""in-toto attestation Statements (v0.1 and v1): bounded parsing at the edge, deterministic serialization.

Serialization follows what Tekton Chains produces with ``protojson.Marshal`` of an ``in_toto.v1.Statement``:
top-level keys in proto field order, ``subject`` omitted when empty, subject fields in ResourceDescriptor
order, map and Struct keys sorted at every level. The exact bytes still differ from Chains' (protojson
inserts random spaces on purpose), which is fine: signatures cover the stored bytes, never a re-encoding.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from attestation.errors import InputError, LimitExceeded
from attestation.limits import (
    MAX_DIGESTS_PER_SUBJECT,
    MAX_STATEMENT_BYTES,
    MAX_SUBJECTS_PER_STATEMENT,
    check_json_depth,
    load_json,
)

STATEMENT_V01 = "https://in-toto.io/Statement/v0.1"
STATEMENT_V1 = "https://in-toto.io/Statement/v1"
STATEMENT_TYPES = frozenset({STATEMENT_V01, STATEMENT_V1})

_TOP_LEVEL_ORDER = ("_type", "subject", "predicateType", "predicate")
# in_toto.v1.ResourceDescriptor field order (v0.1 subjects only use name and digest).
_DESCRIPTOR_ORDER = ("name", "uri", "digest", "content", "downloadLocation", "mediaType", "annotations")


class Subject(BaseModel):
    """An artifact the statement is about. Unknown descriptor fields are ignored."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True)

    name: str = ""
    digest: dict[str, str] = Field(min_length=1, max_length=MAX_DIGESTS_PER_SUBJECT)


class Statement(BaseModel):
    """A validated in-toto Statement. Extra top-level fields are ignored."""

    model_config = ConfigDict(extra="ignore", strict=True, frozen=True, populate_by_name=True)

    type: str = Field(alias="_type")
    subject: list[Subject] = Field(default_factory=list, max_length=MAX_SUBJECTS_PER_STATEMENT)
    predicate_type: str = Field(alias="predicateType", min_length=1)
    predicate: dict[str, Any] = Field(default_factory=dict)

    @field_validator("type")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in STATEMENT_TYPES:
            raise ValueError(f"must be {STATEMENT_V01} or {STATEMENT_V1}, got {value[:200]!r}")
        return value

    def to_dict(self) -> dict[str, Any]:
        """The statement as JSON-ready data with wire field names."""
        return self.model_dump(by_alias=True, exclude_defaults=False)


def _describe(err: ValidationError, what: str) -> str:
    first = err.errors(include_url=False)[0]
    loc = ".".join(str(part) for part in first["loc"]) or "(top level)"
    if first["type"] == "missing":
        return f"{what}: field {loc} is missing"
    msg = first["msg"].removeprefix("Value error, ")
    return f"{what}: field {loc}: {msg}"


def parse(payload: bytes, *, source: str = "statement") -> Statement:
    """Parse and validate statement bytes (call only after the signature over them verified)."""
    doc = load_json(payload, max_bytes=MAX_STATEMENT_BYTES, what=source)
    return from_dict(doc, source=source)


def from_dict(doc: Any, *, source: str = "statement") -> Statement:
    if not isinstance(doc, dict):
        raise InputError(f"{source}: an in-toto statement must be a JSON object")
    try:
        return Statement.model_validate(doc)
    except ValidationError as err:
        raise InputError(_describe(err, source)) from None


def _sorted(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list | tuple):
        return [_sorted(v) for v in value]
    return value


def _descriptor(subject: Any, where: str) -> dict[str, Any]:
    if not isinstance(subject, Mapping):
        raise InputError(f"{where} must be an object")
    unknown = sorted(set(subject) - set(_DESCRIPTOR_ORDER))
    if unknown:
        # cosign parses statements with protojson, which rejects unknown fields.
        raise InputError(f"{where} has unknown field {unknown[0]!r}")
    return {k: _sorted(subject[k]) for k in _DESCRIPTOR_ORDER if k in subject}


def serialize(statement: Mapping[str, Any] | Statement) -> bytes:
    """Compact UTF-8 JSON in Chains' key order (see module doc). Raises :class:`InputError` for fields an
    in-toto Statement cannot carry and :class:`LimitExceeded` when the result would be refused by
    :func:`parse`."""
    if isinstance(statement, Statement):
        statement = statement.to_dict()
    if not isinstance(statement, Mapping):
        raise InputError("statement must be a mapping")
    unknown = sorted(set(statement) - set(_TOP_LEVEL_ORDER))
    if unknown:
        raise InputError(f"statement has unknown top-level field {unknown[0]!r}")
    check_json_depth(statement, what="statement")
    ordered: dict[str, Any] = {}
    for key in _TOP_LEVEL_ORDER:
        if key not in statement:
            continue
        value = statement[key]
        if key == "subject":
            if not value:
                continue  # protojson omits empty repeated fields
            value = [_descriptor(s, f"statement subject[{i}]") for i, s in enumerate(value)]
        elif key == "predicate":
            value = _sorted(value)
        ordered[key] = value
    try:
        data = json.dumps(ordered, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as err:
        raise InputError(f"statement is not representable as JSON: {err}") from None
    if len(data) > MAX_STATEMENT_BYTES:
        raise LimitExceeded(f"statement is too large: {len(data)} bytes, the limit is {MAX_STATEMENT_BYTES}")
    return data
