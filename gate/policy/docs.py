"""``python -m gate.policy.docs > docs/policies.md``: the rule reference, generated from METADATA."""

from __future__ import annotations

import sys
from pathlib import Path

from gate.policy.loader import load_policy_set
from gate.policy.metadata import package_of, parse_package
from gate.policy.model import PolicySet

HEADER = """# Policy rules

Generated from the METADATA blocks of `policies/release/*.rego` by `python -m gate.policy.docs`; do not
edit by hand. A result's `code` is `<package>.<short_name>`; `%s` in a message is filled from the result.
"""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _paragraphs(text: str) -> str:
    # A package description is longer than a rule's: a blank line inside its folded (>-) YAML text
    # separates paragraphs, and YAML keeps each as one line.
    return "\n\n".join(_one_line(p) for p in text.split("\n") if p.strip())


def package_docs(policy_set: PolicySet) -> dict[str, tuple[str, str]]:
    """``{package: (title, description)}`` from the package METADATA blocks of ``policy.release.*``."""
    out: dict[str, tuple[str, str]] = {}
    for path, source in sorted(policy_set.modules.items()):
        package = package_of(source, path).removeprefix("policy.release.")
        doc = parse_package(source, path)
        if doc is not None and package in policy_set.packages:
            out.setdefault(package, doc)
    return out


def render(policy_set: PolicySet) -> str:
    """Markdown: one section per package (its title and description), one entry per rule, in package
    then code order."""
    out = [HEADER]
    docs = package_docs(policy_set)
    for package in sorted(policy_set.packages):
        title, description = docs.get(package, ("", ""))
        out.append(f"## `{package}`: {title}\n" if title else f"## `{package}`\n")
        if description:
            out.append(_paragraphs(description) + "\n")
        for rule in sorted((r for r in policy_set.rules if r.package == package), key=lambda r: r.code):
            kind = "deny" if rule.kind == "deny" else "warn"
            out.append(f"### {rule.title}\n")
            out.append(f"* Code: `{rule.code}` ({kind})")
            out.append(f"* Message: `{_one_line(rule.failure_msg)}`")
            out.append(f"* Solution: {_one_line(rule.solution)}")
            out.append(f"* Source: `{Path(rule.path).relative_to(policy_set.roots[0]).as_posix()}`\n")
            out.append(_one_line(rule.description) + "\n")
    return "\n".join(out).rstrip() + "\n"


def main() -> None:
    from policies import ROOT

    sys.stdout.write(render(load_policy_set([ROOT])))


if __name__ == "__main__":
    main()
