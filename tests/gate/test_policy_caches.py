"""The start-up caches: parsed policy sets (gate.policy.loader), compiled wasm and its native code, and the
remembered `opa version` (gate.policy.wasm).

What a user relies on: a cache never serves a stale policy or data after an edit, a damaged entry is
ignored and rebuilt (never a crash, never a different decision), a cache directory someone else could
have written is not read at all, and a replaced opa binary is asked for its version again.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from attestation.errors import PolicyError
from gate.policy import evaluate_input, load_policy_set, make_engine
from gate.policy import opa_build as wasm_mod
from gate.policy.model import PolicySet
from policies import ROOT
from tests.gate.test_policy_library import tep0084_input
from tests.infra import require_binary

BUILDER = "https://tekton.dev/chains/v2"  # the builder.id of the TEP-0084 sample
ACCEPTED = "builder.builder_id_accepted"
OTHER_UID = 65534  # nobody


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    opa = require_binary("opa")  # looked up before XDG_CACHE_HOME moves: the build cache is under it
    home = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    monkeypatch.setenv("PROVGATE_OPA", str(opa))
    return home


@pytest.fixture
def policies(tmp_path: Path) -> Path:
    """A private, editable copy of the shipped library."""
    dest = tmp_path / "policies"
    shutil.copytree(ROOT, dest, ignore=shutil.ignore_patterns("__pycache__", "*.py"))
    return dest


def decide(policy_set: PolicySet) -> dict[str, Any]:
    engine = make_engine(policy_set)
    try:
        ev = evaluate_input(tep0084_input(), policy_set, engine)
    finally:
        engine.close()
    return {
        "violations": sorted((r.code, r.msg, r.title) for r in ev.violations),
        "warnings": sorted((r.code, r.msg) for r in ev.warnings),
        "rules_evaluated": ev.rules_evaluated,
    }


def codes(decision: dict[str, Any]) -> set[str]:
    return {code for code, _, _ in decision["violations"]}


def load(policies: Path, data: Sequence[Path] = ()) -> PolicySet:
    return load_policy_set([policies], list(data))


def set_cache_entries(cache_home: Path) -> list[Path]:
    return sorted((cache_home / "provgate" / "policy-sets").glob("*.json"))


def wasm_entries(cache_home: Path, suffix: str) -> set[Path]:
    return set((cache_home / "provgate" / "wasm").glob(f"*{suffix}"))


def reference(policies: Path, data: Sequence[Path] = ()) -> tuple[PolicySet, dict[str, Any]]:
    """Policy set and decision computed with no cache at all (a fresh, empty cache home)."""
    saved = os.environ["XDG_CACHE_HOME"]
    os.environ["XDG_CACHE_HOME"] = saved + "-reference"
    try:
        policy_set = load(policies, data)
        return policy_set, decide(policy_set)
    finally:
        os.environ["XDG_CACHE_HOME"] = saved


# -- (a) no stale entries after an edit ---------------------------------------------------------------


def test_editing_the_rule_data_file_after_a_cached_load_changes_data_and_decision(
    cache_home: Path, policies: Path
) -> None:
    first = load(policies)
    before = decide(first)
    assert ACCEPTED not in codes(before)
    assert set_cache_entries(cache_home), "the first load should have filled the cache"
    assert load(policies).data == first.data  # a cache hit reads back the same

    rule_data = policies / "rule_data.yml"
    text = rule_data.read_text()
    assert f"    - {BUILDER}\n" in text
    rule_data.write_text(text.replace(f"    - {BUILDER}\n", "    - https://builder.example/only\n"))

    edited = load(policies)
    assert edited.data["rule_data"]["allowed_builder_ids"] == ["https://builder.example/only"]
    assert edited.digest != first.digest
    after = decide(edited)
    assert ACCEPTED in codes(after)
    assert codes(after) - codes(before) == {ACCEPTED}

    rule_data.write_text(text)  # and back: the original entry decides as before
    assert decide(load(policies)) == before


def test_editing_a_data_file_given_with_data_changes_data_and_decision(
    cache_home: Path, policies: Path, tmp_path: Path
) -> None:
    extra = tmp_path / "data.yaml"
    extra.write_text(f"rule_data:\n  allowed_builder_ids: [{BUILDER}]\n")
    allowed = decide(load(policies, [extra]))
    assert ACCEPTED not in codes(allowed)

    extra.write_text("rule_data:\n  allowed_builder_ids: [https://builder.example/only]\n")
    edited = load(policies, [extra])
    assert edited.data["rule_data"]["allowed_builder_ids"] == ["https://builder.example/only"]
    assert ACCEPTED in codes(decide(edited))


def test_editing_a_policy_file_after_a_cached_load_changes_rules_and_decision(
    cache_home: Path, policies: Path
) -> None:
    before = decide(load(policies))
    assert ACCEPTED not in codes(before)
    assert wasm_entries(cache_home, ".wasm") and set_cache_entries(cache_home)

    builder = policies / "release" / "builder.rego"
    source = builder.read_text()
    edited_source = (
        source.replace("# title: Builder ID accepted", "# title: Builder ID on the list")
        .replace(
            "failure_msg: Builder ID %s is not one of the allowed builder IDs (%s)",
            "failure_msg: Builder %s refused, the allowed are %s",
        )
        # the rule's logic inverted: the allowed builder is now the one refused
        .replace("\tnot _accepted(id, lib.as_set(allowed))\n", "\t_accepted(id, lib.as_set(allowed))\n")
    )
    assert edited_source.count("Builder ID on the list") == 1
    assert "\t_accepted(id, lib.as_set(allowed))\n" in edited_source
    builder.write_text(edited_source)

    edited = load(policies)
    rule = edited.rule(ACCEPTED)
    assert rule is not None and rule.title == "Builder ID on the list"
    assert rule.failure_msg == "Builder %s refused, the allowed are %s"
    after = decide(edited)
    [(_code, msg, title)] = [v for v in after["violations"] if v[0] == ACCEPTED]
    assert title == "Builder ID on the list"
    assert msg.startswith(f"Builder {BUILDER} refused, the allowed are ")


def test_a_rule_data_edit_reuses_the_compiled_module_and_a_rego_edit_compiles_anew(
    cache_home: Path, policies: Path
) -> None:
    # Rule data is loaded into the compiled module at start, not compiled in: the policy author's loop
    # of editing rule data pays no compile, and the edit still decides.
    def stored(suffix: str) -> dict[Path, tuple[int, int]]:
        return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in wasm_entries(cache_home, suffix)}

    before = decide(load(policies))
    assert ACCEPTED not in codes(before)
    compiled, native = stored(".wasm"), stored(".cwasm")
    assert len(compiled) == 1 and len(native) == 1

    rule_data = policies / "rule_data.yml"
    text = rule_data.read_text()
    rule_data.write_text(text.replace(f"    - {BUILDER}\n", "    - https://builder.example/only\n"))
    after = decide(load(policies))
    assert codes(after) - codes(before) == {ACCEPTED}
    assert stored(".wasm") == compiled and stored(".cwasm") == native, "rule data must not recompile"

    builder = policies / "release" / "builder.rego"
    builder.write_text(builder.read_text() + "\n# an edit of the Rego\n")
    assert decide(load(policies)) == after
    assert len(stored(".wasm")) == 2 and len(stored(".cwasm")) == 2


# -- (b) damaged entries are ignored and rebuilt ----------------------------------------------------------


GARBAGE = {
    "empty": lambda good: b"",
    "truncated": lambda good: good[: len(good) // 2],
    "garbage": lambda good: b"\x00\xff not a cache entry \xfe" * 50,
    "wrong-shape": lambda good: b'{"data": [], "rules": {}}',
    "bad-rule": lambda good: json.dumps(
        {**json.loads(good), "rules": [{**json.loads(good)["rules"][0], "kind": "allow"}]}
    ).encode(),
}


@pytest.mark.parametrize("damage", sorted(GARBAGE))
def test_a_damaged_policy_set_entry_is_ignored_and_rebuilt(
    cache_home: Path, policies: Path, damage: str
) -> None:
    expected_set, expected = reference(policies)
    load(policies)
    [entry] = set_cache_entries(cache_home)
    good = entry.read_bytes()
    entry.write_bytes(GARBAGE[damage](good))

    policy_set = load(policies)
    assert policy_set.rules == expected_set.rules
    assert policy_set.data == expected_set.data
    assert policy_set.digest == expected_set.digest
    assert decide(policy_set) == expected
    assert json.loads(entry.read_bytes()) == json.loads(good), "the entry should have been rewritten"


WASM_DAMAGE = {
    "empty": lambda good: b"",
    "garbage": lambda good: b"\x00\xff not wasm \xfe" * 100,
    "truncated": lambda good: good[: len(good) // 2],
    "wasm-header-then-garbage": lambda good: b"\0asm\x01\0\0\0" + b"\xff" * 1000,
}


@pytest.mark.parametrize("kind", [".wasm", ".cwasm"])
@pytest.mark.parametrize("damage", sorted(WASM_DAMAGE))
def test_a_damaged_wasm_or_native_code_entry_is_ignored_and_rebuilt(
    cache_home: Path, damage: str, kind: str
) -> None:
    policy_set = load_policy_set([ROOT])
    expected = decide(policy_set)
    [entry] = wasm_entries(cache_home, kind)
    good = entry.read_bytes()
    entry.write_bytes(WASM_DAMAGE[damage](good))

    assert decide(policy_set) == expected
    # rebuilt, not left damaged (compiling is not byte-for-byte reproducible, so not compared with `good`)
    assert entry.read_bytes() != WASM_DAMAGE[damage](good)
    assert wasm_entries(cache_home, kind) == {entry}
    assert decide(policy_set) == expected


@pytest.mark.parametrize("damage", [b"", b"\x00\xff\xfe", b"two words", b"x" * 500])
def test_a_damaged_remembered_opa_version_is_ignored_and_rewritten(cache_home: Path, damage: bytes) -> None:
    opa = Path(os.environ["PROVGATE_OPA"])
    version = wasm_mod.opa_version(opa)
    [entry] = wasm_entries(cache_home, ".opa-version")
    entry.write_bytes(damage)
    assert wasm_mod.opa_version(opa) == version
    assert entry.read_bytes() == version.encode()


# -- (c) caches others could have written are not read ---------------------------------------------------


EXPOSURES = ["world-writable", "group-writable", "other-owner"]


def _expose_any(directory: Path, how: str) -> None:
    """Make ``directory`` one another user could have written to."""
    if how == "world-writable":
        directory.chmod(0o777)
    elif how == "group-writable":
        directory.chmod(0o770)
    else:
        if os.getuid() != 0:
            pytest.skip("giving the cache directory to another user needs root")
        os.chown(directory, OTHER_UID, OTHER_UID)
        directory.chmod(0o700)


@pytest.mark.parametrize("how", EXPOSURES)
def test_a_policy_set_entry_in_a_directory_others_can_write_is_not_used(
    cache_home: Path, policies: Path, how: str
) -> None:
    expected_set, expected = reference(policies)
    load(policies)
    [entry] = set_cache_entries(cache_home)
    doc = json.loads(entry.read_bytes())
    # What someone else might plant: the allowed builder dropped and every message rewritten.
    doc["data"]["rule_data"]["allowed_builder_ids"] = ["https://attacker.example"]
    for rule in doc["rules"]:
        rule["title"] = "planted"
    entry.write_text(json.dumps(doc))
    planted = load(policies)  # the plant works while the directory is private: the test can fail
    assert planted.data["rule_data"]["allowed_builder_ids"] == ["https://attacker.example"]

    _expose_any(entry.parent, how)
    policy_set = load(policies)
    assert policy_set.data == expected_set.data
    assert policy_set.rules == expected_set.rules
    assert decide(policy_set) == expected
    assert set_cache_entries(cache_home) == [entry]
    assert json.loads(entry.read_bytes()) == doc, "nothing should be written into a shared directory"


def _inverted(policies: Path) -> PolicySet:
    builder = policies / "release" / "builder.rego"
    source = builder.read_text()
    assert "\tnot _accepted(id, lib.as_set(allowed))\n" in source
    builder.write_text(
        source.replace("\tnot _accepted(id, lib.as_set(allowed))\n", "\t_accepted(id, lib.as_set(allowed))\n")
    )
    return load(policies)


@pytest.mark.parametrize("how", EXPOSURES)
@pytest.mark.parametrize("kind", [".wasm", ".cwasm"])
def test_compiled_policy_or_native_code_in_a_directory_others_can_write_is_not_used(
    cache_home: Path, policies: Path, kind: str, how: str
) -> None:
    genuine = load_policy_set([ROOT])
    expected = decide(genuine)
    assert ACCEPTED not in codes(expected)
    genuine_entry = wasm_entries(cache_home, kind)
    [genuine_entry_path] = genuine_entry
    # Another policy set (the builder rule inverted: the allowed builder is refused), compiled into the
    # same cache: its entry is what gets planted under the genuine policy set's name.
    other = decide(_inverted(policies))
    assert ACCEPTED in codes(other)
    [planted_from] = wasm_entries(cache_home, kind) - genuine_entry
    shutil.copyfile(planted_from, genuine_entry_path)
    assert codes(decide(genuine)) == codes(other)  # the plant works while the directory is private

    _expose_any(genuine_entry_path.parent, how)
    assert decide(genuine) == expected


@pytest.mark.parametrize("how", EXPOSURES)
def test_a_remembered_opa_version_in_a_directory_others_can_write_is_not_used(
    cache_home: Path, how: str
) -> None:
    opa = Path(os.environ["PROVGATE_OPA"])
    version = wasm_mod.opa_version(opa)
    [entry] = wasm_entries(cache_home, ".opa-version")
    entry.write_text("9.9.9-planted")
    assert wasm_mod.opa_version(opa) == "9.9.9-planted"  # the plant works while the directory is private
    _expose_any(entry.parent, how)
    assert wasm_mod.opa_version(opa) == version


# -- (d) a replaced opa binary is asked again ---------------------------------------------------------


@pytest.fixture
def opa_copy(tmp_path: Path, cache_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "bin" / "opa"
    path.parent.mkdir()
    shutil.copy2(os.environ["PROVGATE_OPA"], path)
    monkeypatch.setenv("PROVGATE_OPA", str(path))
    return path


def _replace_with_other_file(path: Path) -> None:
    new = path.with_name("opa.new")
    shutil.copyfile(path, new)
    with new.open("ab") as fh:
        fh.write(b"\0" * 16)  # a different file: another size and inode
    new.chmod(0o755)
    os.replace(new, path)


def _replace_same_content(path: Path) -> None:
    new = path.with_name("opa.new")
    shutil.copy2(path, new)  # same bytes, size and mtime; another inode
    os.replace(new, path)


def _rewrite_in_place(path: Path) -> None:
    st = path.stat()
    data = path.read_bytes()
    with path.open("r+b") as fh:
        fh.write(data)  # same inode, size and (restored) mtime: only the change time moves
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize(
    "replace", [_replace_with_other_file, _replace_same_content, _rewrite_in_place], ids=lambda f: f.__name__
)
def test_replacing_the_opa_binary_invalidates_the_remembered_version(
    opa_copy: Path, cache_home: Path, monkeypatch: pytest.MonkeyPatch, replace: Any
) -> None:
    real = wasm_mod.opa_version(opa_copy)
    asked: list[Path] = []

    def upgraded(opa: Path) -> str:
        asked.append(opa)
        return "99.0.0-upgraded"

    monkeypatch.setattr(wasm_mod, "_run_opa_version", upgraded)
    assert wasm_mod.opa_version(opa_copy) == real  # remembered: the binary is not asked
    assert asked == []

    replace(opa_copy)
    assert wasm_mod.opa_version(opa_copy) == "99.0.0-upgraded"
    assert asked == [opa_copy]
    assert wasm_mod.opa_version(opa_copy) == "99.0.0-upgraded"  # and remembered for the new binary
    assert len(asked) == 1


def test_a_replaced_opa_binary_compiles_the_policy_afresh(opa_copy: Path, cache_home: Path) -> None:
    policy_set = load_policy_set([ROOT])
    assert decide(policy_set)["rules_evaluated"] > 0
    [compiled] = wasm_entries(cache_home, ".wasm")
    # A different opa at the same path (a shell script that is not opa at all): the remembered version
    # must not stand in for it, so the cached module is not reused and compiling with it fails closed.
    opa_copy.unlink()
    opa_copy.write_text('#!/bin/sh\n[ "$1" = version ] && echo "Version: 0.0.1-other" && exit 0\nexit 1\n')
    opa_copy.chmod(0o755)
    with pytest.raises(PolicyError, match="does not compile"):
        make_engine(policy_set)
    assert wasm_entries(cache_home, ".wasm") == {compiled}
