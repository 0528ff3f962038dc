"""Loading a policy set: Rego modules, their METADATA, and data documents (defaults plus ``--data``)."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from attestation.errors import InputError, PolicyError
from attestation.limits import MiB, check_json_depth, load_json
from gate.policy.metadata import package_of, parse_rules
from gate.policy.model import PolicySet, Rule

MAX_POLICY_FILE_BYTES = 1 * MiB
MAX_DATA_FILE_BYTES = 8 * MiB
MAX_POLICY_FILES = 2000
DATA_SUFFIXES = (".json", ".yaml", ".yml")


def _read(path: Path, limit: int) -> str:
    try:
        size = path.stat().st_size
        if size > limit:
            raise InputError(f"{path}: {size} bytes, the limit is {limit}")
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text") from None
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror or err})") from None


def load_data_file(path: Path) -> Any:
    """A JSON or YAML data document, bounded in size and depth."""
    text = _read(path, MAX_DATA_FILE_BYTES)
    if path.suffix == ".json":
        return load_json(text, max_bytes=MAX_DATA_FILE_BYTES, what=str(path))
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise InputError(f"{path}: not valid YAML: {' '.join(str(err).split())}") from None
    check_json_depth(doc, what=str(path))
    try:
        json.dumps(doc)  # YAML can carry dates and other things JSON (and Rego) cannot
    except (TypeError, ValueError) as err:
        raise InputError(f"{path}: data must be plain JSON-compatible values ({err})") from None
    return doc


def _merge(into: dict[str, Any], doc: Mapping[str, Any], where: str, *, override: bool) -> None:
    for key, value in doc.items():
        if key in into and isinstance(into[key], dict) and isinstance(value, Mapping):
            _merge(into[key], value, f"{where}.{key}", override=override)
        elif key in into and not override and into[key] != value:
            raise PolicyError(f"data conflict at {where}.{key}: defined twice with different values")
        else:
            into[key] = copy.deepcopy(value)


def _place(doc: Any, prefix: tuple[str, ...], path: Path) -> dict[str, Any]:
    if not prefix and not isinstance(doc, Mapping):
        raise InputError(f"{path}: a data document must be a mapping at the top level")
    for key in reversed(prefix):
        doc = {key: doc}
    return dict(doc)


def load_policy_set(policy_paths: Sequence[Path], data_paths: Sequence[Path] = ()) -> PolicySet:
    """Load Rego modules and data from files and directories.

    Directories are read the way ``opa run``/``opa test`` read them: every ``*.rego`` file, and every JSON
    or YAML file placed under the data path of its directory relative to the root given (so the shipped
    ``policies/rule_data.yml`` lands at ``data.rule_data``). ``data_paths`` files are merged at the root
    afterwards; a key under their ``rule_data`` replaces that key of the defaults. Raises
    :class:`InputError`/:class:`PolicyError` naming the file on anything unreadable or malformed.
    """
    from policies import ROOT

    roots = tuple(Path(p) for p in policy_paths) or (ROOT,)
    modules: dict[str, str] = {}
    test_modules: dict[str, str] = {}
    data: dict[str, Any] = {}
    for root in roots:
        if not root.exists():
            raise InputError(f"{root}: no such policy file or directory")
        files = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        if len(files) > MAX_POLICY_FILES:
            raise InputError(f"{root}: more than {MAX_POLICY_FILES} files")
        for path in files:
            rel = path.relative_to(root) if root.is_dir() else Path(path.name)
            if any(part.startswith(".") or part == "__pycache__" for part in rel.parts):
                continue
            if path.suffix == ".rego":
                source = _read(path, MAX_POLICY_FILE_BYTES)
                package_of(source, str(path))
                (test_modules if path.name.endswith("_test.rego") else modules)[str(path)] = source
            elif path.suffix in DATA_SUFFIXES:
                prefix = tuple(rel.parts[:-1]) if root.is_dir() else ()
                _merge(data, _place(load_data_file(path), prefix, path), "data", override=False)
    if not modules:
        raise PolicyError(f"no Rego modules found in {', '.join(map(str, roots))}")
    for path in data_paths:
        doc = _place(load_data_file(Path(path)), (), Path(path))
        rule_data = doc.pop("rule_data", None)
        _merge(data, doc, "data", override=True)
        if rule_data is not None:
            if not isinstance(rule_data, Mapping):
                raise InputError(f"{path}: rule_data must be a mapping")
            data.setdefault("rule_data", {})
            for key, value in rule_data.items():
                data["rule_data"][key] = copy.deepcopy(value)
    rules: list[Rule] = []
    for path, source in modules.items():
        rules.extend(parse_rules(source, path))
    codes = [r.code for r in rules]
    dupes = sorted({c for c in codes if codes.count(c) > 1})
    if dupes:
        raise PolicyError(f"rule code defined twice: {', '.join(dupes)}")
    return PolicySet(
        roots=roots,
        modules=modules,
        data=data,
        rules=tuple(rules),
        digest=_digest(modules, data),
        test_modules=test_modules,
    )


def _digest(modules: Mapping[str, str], data: Mapping[str, Any]) -> str:
    h = hashlib.sha256()
    # Sources hashed by content in a stable order, not by path, so a checkout in another place hashes
    # the same.
    for source in sorted(modules.values()):
        h.update(hashlib.sha256(source.encode()).digest())
    h.update(json.dumps(data, sort_keys=True, separators=(",", ":")).encode())
    return "sha256:" + h.hexdigest()
