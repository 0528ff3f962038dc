"""Kubernetes objects from a YAML or JSON file, as ``kubectl get -o yaml|json`` prints them: a single
object, several YAML documents or a ``List``. Bounded in size, nesting depth, value count and object
count, because YAML aliases can make a small file expand enormously.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from attestation.errors import InputError, LimitExceeded

MAX_FILE_BYTES = 32 * 1024 * 1024


MAX_NODES = 2_000_000


MAX_DEPTH = 64


MAX_DOCUMENTS = 10_000


def _check_shape(doc: Any, source: str) -> None:
    """Bound nesting depth and node count; YAML aliases can make a small file expand enormously."""
    stack: list[tuple[Any, int]] = [(doc, 0)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > MAX_NODES:
            raise LimitExceeded(f"{source}: more than {MAX_NODES} values (YAML aliases?)")
        if depth > MAX_DEPTH:
            raise LimitExceeded(f"{source}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, depth + 1) for v in node)


def parse_documents(text: str, *, source: str) -> list[dict[str, Any]]:
    """The objects in a YAML/JSON text: one object, multi-document YAML, or ``kind: List`` items."""
    stripped = text.lstrip()
    try:
        if stripped[:1] in ("{", "["):
            docs = [json.loads(text)]
        else:
            loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
            docs = list(yaml.load_all(text, Loader=loader))
    except (ValueError, yaml.YAMLError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"{source}: not valid YAML or JSON: {first}") from None
    out: list[dict[str, Any]] = []
    for doc in docs:
        if doc is None:
            continue
        _check_shape(doc, source)
        if isinstance(doc, list):
            items: list[Any] = doc
        elif isinstance(doc, dict) and str(doc.get("kind", "")).endswith("List") and "items" in doc:
            items = doc.get("items") or []
            if not isinstance(items, list):
                raise InputError(f"{source}: {doc.get('kind')}.items is not a list")
        else:
            items = [doc]
        for item in items:
            if not isinstance(item, dict):
                raise InputError(f"{source}: expected Kubernetes objects, found a {type(item).__name__}")
            out.append(item)
        if len(out) > MAX_DOCUMENTS:
            raise LimitExceeded(f"{source}: more than {MAX_DOCUMENTS} objects")
    if not out:
        raise InputError(f"{source}: no objects found")
    return out


def load_documents(path: str | Path) -> list[dict[str, Any]]:
    """Read a YAML or JSON file of Kubernetes objects (bounded in size, depth and count)."""
    p = Path(path)
    try:
        with p.open("rb") as fh:
            data = fh.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise InputError(f"{p}: cannot read: {err.strerror or err}") from None
    if len(data) > MAX_FILE_BYTES:
        raise LimitExceeded(f"{p}: larger than {MAX_FILE_BYTES} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{p}: not UTF-8 text") from None
    return parse_documents(text, source=str(p))
