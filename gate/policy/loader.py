"""Loading a policy set: Rego modules, their METADATA, and data documents (defaults plus ``--data``)."""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from attestation.errors import InputError, LimitExceeded, PolicyError
from attestation.files import cache_put, private_cache_dir
from attestation.limits import MiB, check_json_depth, load_json
from gate.policy import metadata, model
from gate.policy.metadata import package_of, parse_rules
from gate.policy.model import PolicySet, Rule

log = logging.getLogger(__name__)

MAX_POLICY_FILE_BYTES = 1 * MiB
MAX_DATA_FILE_BYTES = 8 * MiB
MAX_POLICY_FILES = 2000
MAX_DATA_FILES = 2000
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


def _parse_data(text: str, path: Path) -> Any:
    if path.suffix == ".json":
        return load_json(text, max_bytes=MAX_DATA_FILE_BYTES, what=str(path))
    import yaml  # only when a policy set is not in the cache: a costly import

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


def expand_data_paths(paths: Sequence[str | os.PathLike[str]]) -> tuple[Path, ...]:
    """``--data`` arguments -> data files, in the order they are merged (later ones win).

    A file stays as given. A directory stands for every ``*.json``/``*.yaml``/``*.yml`` file in it or
    below (hidden entries skipped), sorted by path, each merged at the root like a ``--data`` file, so
    the result does not depend on the order the file system lists them. A directory with no data file is
    an error: it is far more likely a wrong path than a wish for no data.
    """
    out: list[Path] = []
    for given in paths:
        path = Path(given)
        if not path.is_dir():
            out.append(path)  # the loader names a missing or unreadable file
            continue
        found = sorted(
            p
            for p in path.rglob("*")
            if p.suffix in DATA_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
            and p.is_file()
        )
        if not found:
            raise InputError(f"--data {path}: the directory has no .json, .yaml or .yml file")
        out.extend(found)
        if len(out) > MAX_DATA_FILES:
            raise LimitExceeded(f"--data {path}: more than {MAX_DATA_FILES} data files")
    return tuple(out)


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
    tree_data: list[tuple[Path, tuple[str, ...], str]] = []
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
                tree_data.append((path, prefix, _read(path, MAX_DATA_FILE_BYTES)))
    if not modules:
        raise PolicyError(f"no Rego modules found in {', '.join(map(str, roots))}")
    extra_data = [(Path(path), _read(Path(path), MAX_DATA_FILE_BYTES)) for path in data_paths]
    key = _cache_key(modules, tree_data, extra_data)
    cached = _cache_get(key)
    if cached is not None:
        log.debug("policy set from %s: rules and data from the cache", ", ".join(map(str, roots)))
        data, rules = cached
    else:
        log.debug("policy set from %s: rules and data parsed (not in the cache)", ", ".join(map(str, roots)))
        data, rules = _parse(modules, tree_data, extra_data)
        _cache_put(key, data, rules)
    return PolicySet(
        roots=roots,
        modules=modules,
        data=data,
        rules=tuple(rules),
        digest=_digest(modules, data),
        test_modules=test_modules,
    )


def _parse(
    modules: Mapping[str, str],
    tree_data: Sequence[tuple[Path, tuple[str, ...], str]],
    extra_data: Sequence[tuple[Path, str]],
) -> tuple[dict[str, Any], list[Rule]]:
    """The merged data and the rules' METADATA: the YAML-parsing part of loading, which is cached."""
    data: dict[str, Any] = {}
    for path, prefix, text in tree_data:
        _merge(data, _place(_parse_data(text, path), prefix, path), "data", override=False)
    for path, text in extra_data:
        doc = _place(_parse_data(text, path), (), path)
        rule_data = doc.pop("rule_data", None)
        _merge(data, doc, "data", override=True)
        if rule_data is not None:
            if not isinstance(rule_data, Mapping):
                raise InputError(f"{path}: rule_data must be a mapping")
            data.setdefault("rule_data", {})
            for key, value in rule_data.items():
                data["rule_data"][key] = copy.deepcopy(value)
    rules: list[Rule] = []
    for module_path, source in modules.items():
        rules.extend(parse_rules(source, module_path))
    codes = [r.code for r in rules]
    dupes = sorted({c for c in codes if codes.count(c) > 1})
    if dupes:
        raise PolicyError(f"rule code defined twice: {', '.join(dupes)}")
    return data, rules


# -- the parsed-policy cache -------------------------------------------------------------------------
# Parsing the METADATA blocks and the YAML rule data (and importing yaml) was a large part of every
# `gate verify` start (docs/performance.md). The result is kept in a private cache, keyed by every byte it
# is computed from: the code that computes it, each file's path and content, and the order they are
# merged in. Only successful loads are stored; whatever does not read back exactly as it was stored is
# recomputed.

_RULE_FIELDS = tuple(f.name for f in dataclasses.fields(Rule))


def _cache_key(
    modules: Mapping[str, str],
    tree_data: Sequence[tuple[Path, tuple[str, ...], str]],
    extra_data: Sequence[tuple[Path, str]],
) -> str:
    h = hashlib.sha256()

    def part(text: str) -> None:
        raw = text.encode("utf-8", "surrogatepass")
        h.update(b"%d:" % len(raw) + raw)

    for module in (metadata, model):  # and this file: the code that turns the files into the result
        part(Path(module.__file__ or "").read_text(encoding="utf-8"))
    part(Path(__file__).read_text(encoding="utf-8"))
    part(f"modules {len(modules)}")
    for module_path, source in modules.items():
        part(module_path)
        part(source)
    part(f"data {len(tree_data)}")
    for path, prefix, text in tree_data:
        part(str(path))
        part(json.dumps(prefix))
        part(text)
    part(f"extra {len(extra_data)}")
    for path, text in extra_data:
        part(str(path))
        part(text)
    return h.hexdigest()


def _cache_path(key: str) -> Path | None:
    directory = private_cache_dir("policy-sets")
    return directory / f"{key}.json" if directory is not None else None


def _cache_get(key: str) -> tuple[dict[str, Any], list[Rule]] | None:
    path = _cache_path(key)
    if path is None:
        return None
    try:
        doc = json.loads(path.read_bytes())
        data, raw_rules = doc["data"], doc["rules"]
        if not isinstance(data, dict) or not isinstance(raw_rules, list):
            return None
        rules = []
        for raw in raw_rules:
            if (
                not isinstance(raw, dict)
                or tuple(raw) != _RULE_FIELDS
                or not all(isinstance(v, str) for v in raw.values())
                or raw["kind"] not in ("deny", "warn")
            ):
                return None
            rules.append(Rule(**raw))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return data, rules


def _cache_put(key: str, data: dict[str, Any], rules: list[Rule]) -> None:
    path = _cache_path(key)
    if path is None:
        return
    try:
        text = json.dumps({"data": data, "rules": [dataclasses.asdict(r) for r in rules]})
        if json.loads(text)["data"] != data:
            return  # not plain JSON (YAML gave a non-string key, say): it would not read back the same
    except (TypeError, ValueError):
        return
    cache_put(path, text.encode("utf-8"))


def _digest(modules: Mapping[str, str], data: Mapping[str, Any]) -> str:
    h = hashlib.sha256()
    # Sources hashed by content in a stable order, not by path, so a checkout in another place hashes
    # the same.
    for source in sorted(modules.values()):
        h.update(hashlib.sha256(source.encode()).digest())
    h.update(json.dumps(data, sort_keys=True, separators=(",", ":")).encode())
    return "sha256:" + h.hexdigest()
