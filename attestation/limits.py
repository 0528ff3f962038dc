"""Bounds on everything provgate reads from outside, as named constants, and a bounded JSON loader.

One place for the numbers so the signer, the gate and the registry client agree on them. Each bound is
generous for honest inputs (a 500-task ``slsa-tekton`` PipelineRun statement is a few MiB) and small
enough that a hostile registry or admission request cannot exhaust memory or CPU.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from attestation.errors import InputError, LimitExceeded

KiB = 1024
MiB = 1024 * KiB

# A DSSE envelope carries its payload base64-encoded (4/3 of the raw size) plus signatures.
MAX_ENVELOPE_BYTES: int = 16 * MiB
MAX_STATEMENT_BYTES: int = 12 * MiB
MAX_SIGNATURES_PER_ENVELOPE: int = 16
# RSA-16384 signatures are 2 KiB; anything much bigger is not a signature.
MAX_SIGNATURE_BYTES: int = 4 * KiB
MAX_KEYID_CHARS: int = 1024
MAX_PAYLOAD_TYPE_CHARS: int = 256
MAX_JSON_DEPTH: int = 64
MAX_SUBJECTS_PER_STATEMENT: int = 10_000
MAX_DIGESTS_PER_SUBJECT: int = 16
# Key files, certificates and chains (PEM). A long chain of RSA certificates stays well below this.
MAX_KEY_FILE_BYTES: int = 256 * KiB
MAX_PASSWORD_BYTES: int = 64 * KiB


def check_size(data: bytes | str, *, max_bytes: int, what: str) -> None:
    """Raise :class:`LimitExceeded` when ``data`` is longer than ``max_bytes`` (characters for ``str``)."""
    if len(data) > max_bytes:
        raise LimitExceeded(f"{what} is too large: {len(data)} bytes, the limit is {max_bytes}")


def check_json_depth(obj: Any, *, max_depth: int = MAX_JSON_DEPTH, what: str = "JSON document") -> None:
    """Raise :class:`LimitExceeded` when containers in ``obj`` nest deeper than ``max_depth``.

    The walk never goes more than ``max_depth`` levels down (cycles included), so a hostile document
    cannot exhaust the Python stack here.
    """
    if max_depth <= _MAX_RECURSIVE_DEPTH:
        # Recursion over containers only: faster than the explicit stack (docs/performance.md).
        if not _within(obj, max_depth):
            raise LimitExceeded(f"{what} nests deeper than {max_depth} levels")
        return
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        node, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(node, dict):
            children = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        if depth > max_depth:
            raise LimitExceeded(f"{what} nests deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))


# Far below the interpreter's recursion limit (1000), whatever the caller's own stack depth.
_MAX_RECURSIVE_DEPTH = 200
_CONTAINERS = (dict, list)


def _within(node: Any, levels: int) -> bool:
    """True when no container in ``node`` is more than ``levels`` deep (``node`` itself is level 1)."""
    if isinstance(node, dict):
        children: Any = node.values()
    elif isinstance(node, list):
        children = node
    else:
        return True
    if levels <= 0:
        return False
    levels -= 1
    # A plain loop and a tuple for isinstance: all() over a generator and a `dict | list` union each
    # cost a third more here.
    for child in children:  # noqa: SIM110
        if isinstance(child, _CONTAINERS) and not _within(child, levels):
            return False
    return True


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Different parsers keep the first or the last of duplicate keys; a signed document that reads one
    # way here and another way in cosign or OPA is a forgery vector, so refuse it.
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate key {key[:100]!r}")
            seen.add(key)
    return result


# A \u escape of a UTF-16 surrogate half, the only way valid UTF-8 JSON can give a lone surrogate; a cheap
# test on the text, so only documents that may hold one are searched after parsing.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _check_no_lone_surrogate(text: str, obj: Any, what: str, *, decoded: bool) -> None:
    # Text decoded from bytes holds no surrogate itself (the UTF-8 codec refuses them); a str handed in
    # may hold one raw.
    if _SURROGATE_ESCAPE.search(text) is None and (decoded or _SURROGATE.search(text) is None):
        return
    # Paired escapes decode to one character above U+FFFF; whatever half is left over is unpaired.
    found = _SURROGATE.search(json.dumps(obj, ensure_ascii=False))
    if found is not None:
        raise InputError(
            f"{what} is not valid JSON: a string holds the unpaired surrogate \\u{ord(found.group()):04x}"
        )


def load_json(data: bytes | str, *, max_bytes: int, what: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse UTF-8 JSON with bounds on size and depth.

    Strict: no NaN/Infinity, no duplicate object keys, no byte-order mark, no invalid UTF-8, and no
    string (key or value) holding an unpaired UTF-16 surrogate (I-JSON, RFC 7493 §2.1): Go's decoder,
    and so OPA, cosign and Kubernetes, reads ``"\\ud800"`` as U+FFFD, Python keeps a character that
    cannot even be encoded again, so a document with one reads differently to different verifiers.
    Raises :class:`LimitExceeded` for oversized or too deeply nested input and :class:`InputError`
    for anything that is not such JSON; never another exception.
    """
    check_size(data, max_bytes=max_bytes, what=what)
    if isinstance(data, bytes | bytearray | memoryview):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError as err:
            raise InputError(f"{what} is not valid UTF-8 (byte {err.start})") from None
    elif isinstance(data, str):
        text = data
    else:
        raise InputError(f"{what} must be bytes or text, not {type(data).__name__}")
    try:
        obj = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicate_keys)
    except RecursionError:
        raise LimitExceeded(f"{what} nests deeper than {max_depth} levels") from None
    except json.JSONDecodeError as err:
        raise InputError(
            f"{what} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}"
        ) from None
    except ValueError as err:
        # duplicate keys, NaN, integers with more digits than Python converts
        raise InputError(f"{what} is not valid JSON: {err}") from None
    check_json_depth(obj, max_depth=max_depth, what=what)
    _check_no_lone_surrogate(text, obj, what, decoded=not isinstance(data, str))
    return obj
