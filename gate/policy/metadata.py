"""METADATA blocks of Rego rules and packages, parsed out of the source.

The rules derive their result codes from their METADATA with ``rego.metadata.chain()``; the gate reads
the same annotations here for each result's title, description, solution and message template, and for
the generated docs (``tests/gate/test_policy_library.py`` holds this reading to ``opa inspect``'s). Only
the part of OPA's annotation syntax the library uses is supported: a ``# METADATA`` comment block of YAML
directly above a ``deny contains``/``warn contains`` rule, or directly above the ``package`` line (the
package's title and description).
"""

from __future__ import annotations

import re
from typing import Any

from attestation.errors import PolicyError
from gate.policy.model import Rule, RuleKind

_PACKAGE = re.compile(r"^package\s+([A-Za-z_][\w.]*)\s*$", re.MULTILINE)
_PACKAGE_HEAD = re.compile(r"^package\s")
_RULE_HEAD = re.compile(r"^(deny|warn)\s+contains\b")
_RELEASE = "policy.release."
REQUIRED = ("title", "description")
REQUIRED_CUSTOM = ("short_name", "failure_msg", "solution")


def package_of(source: str, path: str) -> str:
    match = _PACKAGE.search(source)
    if not match:
        raise PolicyError(f"{path}: no package declaration")
    return match.group(1)


def parse_rules(source: str, path: str) -> list[Rule]:
    """The METADATA-annotated deny/warn rules of one module of ``policy.release.*``.

    Raises :class:`PolicyError` naming the file and line for a deny/warn rule without a complete METADATA
    block: an undocumented rule would give results nobody can act on.
    """
    package = package_of(source, path)
    if not package.startswith(_RELEASE):
        return []
    short_pkg = package[len(_RELEASE) :]
    lines = source.splitlines()
    rules: list[Rule] = []
    seen_heads: set[int] = set()
    i = 0
    while i < len(lines):
        if lines[i].strip() != "# METADATA":
            i += 1
            continue
        start = i
        i += 1
        body: list[str] = []
        while i < len(lines) and lines[i].startswith("#"):
            body.append(lines[i][2:] if lines[i].startswith("# ") else lines[i][1:])
            i += 1
        if i < len(lines) and _PACKAGE_HEAD.match(lines[i]):
            continue  # the package's own block: parse_package
        head = _RULE_HEAD.match(lines[i]) if i < len(lines) else None
        if head is None:
            raise PolicyError(f"{path}:{start + 1}: METADATA block is not directly above a deny/warn rule")
        kind: RuleKind = "deny" if head.group(1) == "deny" else "warn"
        seen_heads.add(i)
        rules.append(_rule(_yaml(body, path, start), kind, short_pkg, path, start))
    for n, line in enumerate(lines):
        if _RULE_HEAD.match(line) and n not in seen_heads and not _continues_rule(lines, n, seen_heads):
            raise PolicyError(f"{path}:{n + 1}: {line.split()[0]} rule without a METADATA block")
    return rules


def parse_package(source: str, path: str) -> tuple[str, str] | None:
    """The title and description of the METADATA block directly above the ``package`` line, or None.

    Raises :class:`PolicyError` naming the file and line for a block that is not a YAML mapping with a
    title and a description.
    """
    lines = source.splitlines()
    head = next((n for n, line in enumerate(lines) if _PACKAGE_HEAD.match(line)), None)
    if head is None:
        return None
    start = head
    while start > 0 and lines[start - 1].startswith("#"):
        start -= 1
    block = lines[start:head]
    if "# METADATA" not in (line.strip() for line in block):
        return None
    start += [line.strip() for line in block].index("# METADATA")
    body = [line[2:] if line.startswith("# ") else line[1:] for line in lines[start + 1 : head]]
    doc = _yaml(body, path, start)
    for key in REQUIRED:
        if not isinstance(doc.get(key), str) or not doc[key].strip():
            raise PolicyError(f"{path}:{start + 1}: package METADATA lacks {key}")
    return doc["title"].strip(), doc["description"].strip()


def _continues_rule(lines: list[str], n: int, heads: set[int]) -> bool:
    # A second body of an annotated rule (same kind, further down, no METADATA of its own) is accepted:
    # a policy may spell its codes by hand there. Through lib.result_helper it gets no short_name from
    # rego.metadata.chain() and reports <package>.metadata_missing, which the gate shows as a result of
    # an undeclared rule, still a violation; the bundled library gives every body its own block.
    kind = lines[n].split()[0]
    return any(h < n and lines[h].split()[0] == kind for h in heads)


def _yaml(body: list[str], path: str, line: int) -> dict[str, Any]:
    import yaml  # only when the policy set is not in the loader's cache (docs/performance.md)

    try:
        doc = yaml.safe_load("\n".join(body))
    except yaml.YAMLError as err:
        raise PolicyError(
            f"{path}:{line + 1}: METADATA is not valid YAML: {str(err).splitlines()[0]}"
        ) from None
    if not isinstance(doc, dict):
        raise PolicyError(f"{path}:{line + 1}: METADATA must be a YAML mapping")
    return doc


def _rule(doc: dict[str, Any], kind: RuleKind, package: str, path: str, line: int) -> Rule:
    custom = doc.get("custom")
    if not isinstance(custom, dict):
        raise PolicyError(f"{path}:{line + 1}: METADATA has no custom section")
    for key in REQUIRED:
        if not isinstance(doc.get(key), str) or not doc[key].strip():
            raise PolicyError(f"{path}:{line + 1}: METADATA lacks {key}")
    for key in REQUIRED_CUSTOM:
        if not isinstance(custom.get(key), str) or not custom[key].strip():
            raise PolicyError(f"{path}:{line + 1}: METADATA lacks custom.{key}")
    short_name = custom["short_name"].strip()
    return Rule(
        code=f"{package}.{short_name}",
        package=package,
        short_name=short_name,
        title=doc["title"].strip(),
        description=doc["description"].strip(),
        solution=custom["solution"].strip(),
        failure_msg=custom["failure_msg"].strip(),
        kind=kind,
        path=path,
    )
