"""The import graph of the three packages stays a tree-like thing a newcomer can read: no module imports
itself back through others, and ``gate`` and ``signer`` never import each other (DESIGN.md §1: the gate
image must not need kopf, the operator image must not need the policy engines).

Read statically from the source with ``ast``: every ``import`` statement counts, wherever it stands
(inside a function or under ``TYPE_CHECKING`` too), because a lazy import only hides a circle.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("attestation", "signer", "gate")
APART = (("gate", "signer"), ("signer", "gate"))
# Circles that exist and are being taken apart elsewhere; each entry must still be a circle, so the list
# cannot outlive the circle it excuses. None now.
KNOWN_CIRCLES: tuple[frozenset[str], ...] = ()


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))}


def _imported(path: Path, name: str, known: dict[str, Path]) -> Iterator[str]:
    """The project modules ``path`` (module ``name``) imports: for ``from a.b import c`` the module
    ``a.b.c`` when it exists, else ``a.b``."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                # ``import a.b`` imports module a.b (the longest prefix that is one of ours)
                target = alias.name
                while target and target not in known:
                    target = target.rpartition(".")[0]
                if target:
                    yield target
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            submodules = [f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in known]
            yield from submodules
            if len(submodules) < len(node.names) and base in known:
                yield base


def _graph() -> dict[str, set[str]]:
    known = _modules()
    return {name: set(_imported(path, name, known)) - {name} for name, path in known.items()}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def _edges_within(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    members = set(component)
    return [f"{a} -> {b}" for a in component for b in sorted(graph[a] & members)]


def test_no_module_imports_itself_back() -> None:
    graph = _graph()
    circles = [c for c in _circles(graph) if frozenset(c) not in KNOWN_CIRCLES]
    assert not circles, "import circles:\n" + "\n".join(
        f"  {', '.join(c)}\n    " + "\n    ".join(_edges_within(graph, c)) for c in circles
    )


def test_every_excused_circle_is_still_there() -> None:
    still = {frozenset(c) for c in _circles(_graph())}
    gone = [sorted(c) for c in KNOWN_CIRCLES if c not in still]
    assert not gone, f"no longer circles, remove them from KNOWN_CIRCLES: {gone}"


@pytest.mark.parametrize(("importer", "imported"), APART, ids=[f"{a}-not-{b}" for a, b in APART])
def test_gate_and_signer_never_import_each_other(importer: str, imported: str) -> None:
    graph = _graph()
    crossing = sorted(
        f"{a} -> {b}"
        for a, targets in graph.items()
        if a.split(".")[0] == importer
        for b in targets
        if b.split(".")[0] == imported
    )
    assert not crossing, f"{importer} imports {imported}:\n  " + "\n  ".join(crossing)


def test_the_walk_sees_the_imports_it_guards() -> None:
    """The graph is not empty by accident: known edges of each kind are found."""
    graph = _graph()
    assert "attestation.errors" in graph["signer.run"]  # from a.b import name
    assert "signer.provenance.gojson" in graph["signer.provenance.formats.slsa_v1"]  # from a import module
    assert "attestation.dsse" in graph["signer.signing.key"]  # from a import module
    assert any(b.startswith("attestation.") for b in graph["gate.verify"])
    found = _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})
    assert found == [["a", "b", "c"]]
