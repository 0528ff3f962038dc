"""in-toto attestation Statements (v0.1 and v1): bounded parsing at the edge, deterministic serialization.

Serialization follows what Tekton Chains produces with ``protojson.Marshal`` of an ``in_toto.v1.Statement``:
top-level keys in proto field order, ``subject`` omitted when empty, subject fields in ResourceDescriptor
order, map and Struct keys sorted at every level. The exact bytes still differ from Chains' (protojson
inserts random spaces on purpose), which is fine: signatures cover the stored bytes, never a re-encoding.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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

# The statement is validated by hand rather than with a pydantic model, whose import cost more of every
# `gate verify` start than the check itself (docs/performance.md). The rules are those the pydantic model
# had (strict types, the same bounds, the first failing field in field order named), except that only the
# wire names are accepted: a second spelling of a field is a second way to read one statement.
# Spellings of the top-level fields other parsers (and this one, once) accepted: a statement carrying them
# is refused rather than read one way here and another way elsewhere.
_OTHER_SPELLINGS = {"type": "_type", "predicate_type": "predicateType"}


@dataclass(frozen=True, slots=True)
class Subject:
    """An artifact the statement is about. Unknown descriptor fields are ignored."""

    digest: dict[str, str]
    name: str = ""


@dataclass(frozen=True, slots=True)
class Statement:
    """A validated in-toto Statement. Extra top-level fields are ignored."""

    type: str
    predicate_type: str
    subject: list[Subject] = field(default_factory=list)
    predicate: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The statement as JSON-ready data with wire field names."""
        return {
            "_type": self.type,
            "subject": [{"name": s.name, "digest": dict(s.digest)} for s in self.subject],
            "predicateType": self.predicate_type,
            "predicate": copy.deepcopy(self.predicate),
        }


class _Invalid(Exception):
    def __init__(self, loc: str, msg: str | None = None) -> None:
        super().__init__(loc)
        self.loc = loc
        self.msg = msg  # None: the field is missing


def _field(doc: Mapping[str, Any], name: str) -> Any:
    if name not in doc:
        raise _Invalid(name)
    return doc[name]


def _string(value: Any, loc: str, *, min_length: int = 0) -> str:
    if not isinstance(value, str):
        raise _Invalid(loc, "Input should be a valid string")
    if len(value) < min_length:
        raise _Invalid(loc, f"String should have at least {min_length} character")
    return value


def _str_dict(value: Any, loc: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Invalid(loc, "Input should be a valid dictionary")
    for key in value:
        if not isinstance(key, str):
            raise _Invalid(f"{loc}.{key}.[key]", "Input should be a valid string")
    return value


def _subject(value: Any, loc: str) -> Subject:
    if not isinstance(value, dict):
        raise _Invalid(loc, "Input should be a valid dictionary or instance of Subject")
    name = _string(value["name"], f"{loc}.name") if "name" in value else ""
    if "digest" not in value:
        raise _Invalid(f"{loc}.digest")
    digest = _str_dict(value["digest"], f"{loc}.digest")
    if not digest:
        raise _Invalid(f"{loc}.digest", "Dictionary should have at least 1 item, not 0")
    for n, (algorithm, hex_digest) in enumerate(digest.items()):
        _string(hex_digest, f"{loc}.digest.{algorithm}")
        if n == MAX_DIGESTS_PER_SUBJECT:
            raise _Invalid(f"{loc}.digest", f"Dictionary should have at most {MAX_DIGESTS_PER_SUBJECT} items")
    return Subject(name=name, digest=dict(digest))


def _statement(doc: Mapping[str, Any]) -> Statement:
    for other, name in _OTHER_SPELLINGS.items():
        if other in doc:
            raise _Invalid(other, f"not an in-toto statement field (the field is {name})")
    type_ = _string(_field(doc, "_type"), "_type")
    if type_ not in STATEMENT_TYPES:
        raise _Invalid("_type", f"must be {STATEMENT_V01} or {STATEMENT_V1}, got {type_[:200]!r}")
    subjects: list[Subject] = []
    if "subject" in doc:
        raw = doc["subject"]
        if not isinstance(raw, list):
            raise _Invalid("subject", "Input should be a valid list")
        if len(raw) > MAX_SUBJECTS_PER_STATEMENT:
            raise _Invalid(
                "subject", f"List should have at most {MAX_SUBJECTS_PER_STATEMENT} items, not {len(raw)}"
            )
        subjects = [_subject(item, f"subject.{n}") for n, item in enumerate(raw)]
    predicate_type = _string(_field(doc, "predicateType"), "predicateType", min_length=1)
    predicate = dict(_str_dict(doc["predicate"], "predicate")) if "predicate" in doc else {}
    return Statement(type=type_, subject=subjects, predicate_type=predicate_type, predicate=predicate)


def parse(payload: bytes, *, source: str = "statement") -> Statement:
    """Parse and validate statement bytes (call only after the signature over them verified)."""
    doc = load_json(payload, max_bytes=MAX_STATEMENT_BYTES, what=source)
    return from_dict(doc, source=source)


def from_dict(doc: Any, *, source: str = "statement") -> Statement:
    if not isinstance(doc, dict):
        raise InputError(f"{source}: an in-toto statement must be a JSON object")
    try:
        return _statement(doc)
    except _Invalid as err:
        if err.msg is None:
            raise InputError(f"{source}: field {err.loc} is missing") from None
        raise InputError(f"{source}: field {err.loc}: {err.msg}") from None


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
