"""The wasm engine: host built-ins match OPA, unknown built-ins are refused, the compile cache works,
and every engine gives the same decisions when called from several threads at once."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from attestation.errors import PolicyError
from gate.policy import PolicyEngine, load_policy_set, make_engine
from gate.policy.host_builtins import parse_rfc3339_ns
from gate.policy.opa_build import opa_version
from gate.policy.opa_server import OpaEngine
from gate.policy.wasm import WasmEngine
from policies import ROOT
from tests.gate.test_engine_parity import CORPUS, own_opa_server, summary
from tests.infra.opa import opa_binary, opa_server  # noqa: F401

TIMESTAMPS = [
    "2024-01-01T00:00:00Z",
    "2024-01-01T00:00:00+00:00",
    "2024-01-01T00:00:00.123456789Z",
    "2024-01-01T00:00:00.1234567891234Z",  # Go keeps nine digits
    "2024-01-01T00:00:00,5Z",  # Go's general parser takes a comma
    "2024-01-01T1:00:00Z",  # ... and a one-digit hour
    "2024-01-01T00:00:00+24:60",  # ... and offsets up to 24:60
    "2024-01-01T00:00:00-05:30",
    "2024-02-29T12:00:00Z",
    "1677-09-21T00:12:43.145224192Z",  # the first instant int64 nanoseconds hold
    "2262-04-11T23:47:16.854775807Z",  # the last
    # undefined on OPA:
    "1677-09-21T00:12:43.145224191Z",
    "2262-04-11T23:47:16.854775808Z",
    "2023-02-29T00:00:00Z",
    "2024-01-01T24:00:00Z",
    "2024-01-01T00:00:60Z",
    "2024-01-01T00:00:00+25:00",
    "2024-01-01t00:00:00Z",
    "2024-01-01T00:00:00z",
    "2024-01-01 00:00:00Z",
    "2024-01-01T00:00:00",
    "2024-01-01T00:00:00.Z",
    "2024-01-01T00:00:00+0000",
    "2024-1-01T00:00:00Z",
    " 2024-01-01T00:00:00Z",
    "2024-01-01T00:00:00+00:00Z",
    "2024-13-01T00:00:00Z",
    "\uff12\uff10\uff12\uff14-01-01T00:00:00Z",  # fullwidth digits
    "",
]

TIME_POLICY = """\
package t

parsed := {t: ns | some t in input.ts; ns := time.parse_rfc3339_ns(t)}

# An undefined built-in call must make the negation true, as on OPA.
unparseable := {t | some t in input.ts; not time.parse_rfc3339_ns(t)}
"""


def test_rfc3339_host_builtin_matches_opa(opa_server: str) -> None:  # noqa: F811
    policy_set = load_policy_set([ROOT])
    opa = OpaEngine(policy_set, opa_server)
    try:
        got = opa.query(
            "x := {t: ns | some t in input.ts; ns := time.parse_rfc3339_ns(t)}", {"ts": TIMESTAMPS}
        )
    finally:
        opa.close()
    mine = {t: ns for t in TIMESTAMPS if (ns := parse_rfc3339_ns(t)) is not None}
    assert mine == got
    assert len(got) == 11  # both defined and undefined cases are exercised


def test_undefined_host_builtin_is_undefined_in_rego(tmp_path: Path) -> None:
    (tmp_path / "t.rego").write_text(TIME_POLICY)
    from gate.policy.opa_build import compile_wasm_entrypoints, find_opa
    from gate.policy.wasm import PolicyConfig, load_wasm_policy

    wasm = compile_wasm_entrypoints(tmp_path, ["t/parsed", "t/unparseable"], find_opa())
    policy = load_wasm_policy(wasm, PolicyConfig(pool_size=1))
    try:
        ts = ["2024-01-01T00:00:00Z", "yesterday"]
        assert policy.evaluate({"ts": ts}, "t/parsed") == {"2024-01-01T00:00:00Z": 1704067200000000000}
        assert policy.evaluate({"ts": ts}, "t/unparseable") == ["yesterday"]
    finally:
        policy.close()


def test_a_builtin_the_host_cannot_match_refuses_to_load(tmp_path: Path) -> None:
    # OPA's wasm target asks the host for sprintf; opapywasm's is an approximation of Go's fmt.
    (tmp_path / "p.rego").write_text(
        "package policy.release.p\n\n"
        "# METADATA\n# title: t\n# description: d\n# custom:\n#   short_name: s\n#   failure_msg: m %s\n"
        "#   solution: s\n"
        'deny contains {"code": "p.s", "params": [sprintf("%v", [input])]} if true\n'
    )
    with pytest.raises(PolicyError, match="sprintf"):
        WasmEngine(load_policy_set([tmp_path]))


def test_compile_error_names_the_source_file(tmp_path: Path) -> None:
    (tmp_path / "broken.rego").write_text("package policy.release.broken\n\ndeny contains x if {\n")
    with pytest.raises(PolicyError, match=r"broken\.rego"):
        WasmEngine(load_policy_set([tmp_path]))


@pytest.fixture
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("PROVGATE_OPA", str(opa_binary()))  # found before the cache moves
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "provgate" / "wasm"


def fake_opa(tmp_path: Path, version: str) -> Path:
    """An `opa` that reports a version and fails to build: a start that needs the compiler fails."""
    path = tmp_path / f"opa-{version}"
    path.write_text(f'#!/bin/sh\n[ "$1" = version ] && echo "Version: {version}" && exit 0\nexit 1\n')
    path.chmod(0o755)
    return path


def test_second_start_uses_the_cache_and_the_key_has_the_opa_version(
    tmp_path: Path, cache_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policy_set = load_policy_set([ROOT])
    WasmEngine(policy_set).close()
    assert len(list(cache_home.glob("*.wasm"))) == 1
    assert len(list(cache_home.glob("*.cwasm"))) == 1

    real_version = opa_version(Path(os.environ["PROVGATE_OPA"]))
    monkeypatch.setenv("PROVGATE_OPA", str(fake_opa(tmp_path, real_version)))
    engine = WasmEngine(policy_set)  # from the cache: the fake compiler is never asked
    assert engine.evaluate(dict(CORPUS)["tep0084"]).violations
    engine.close()

    monkeypatch.setenv("PROVGATE_OPA", str(fake_opa(tmp_path, "0.0.1-other")))
    with pytest.raises(PolicyError, match="does not compile"):
        WasmEngine(policy_set)


def test_a_cache_others_can_write_is_not_used(cache_home: Path) -> None:
    cache_home.mkdir(parents=True)
    cache_home.chmod(0o777)
    engine = WasmEngine(load_policy_set([ROOT]))
    engine.close()
    assert list(cache_home.iterdir()) == []
    assert stat.S_IMODE(os.stat(cache_home).st_mode) == 0o777


def test_missing_opa_binary_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PROVGATE_OPA", str(tmp_path / "nowhere" / "opa"))
    with pytest.raises(PolicyError, match="PROVGATE_OPA"):
        WasmEngine(load_policy_set([ROOT]))
    monkeypatch.delenv("PROVGATE_OPA")
    monkeypatch.delenv("PROVGATE_BIN_CACHE", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with pytest.raises(PolicyError, match="needs the opa binary"):
        WasmEngine(load_policy_set([ROOT]))


@pytest.fixture(scope="module", params=["wasm", "opa"])
def any_engine(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PolicyEngine]:
    with own_opa_server(tmp_path_factory.mktemp("opa-threads")) as url:
        engine = make_engine(load_policy_set([ROOT]), engine=request.param, opa_url=url)
        yield engine
        engine.close()


def test_concurrent_evaluations_decide_as_sequential_ones(any_engine: PolicyEngine) -> None:
    """What the webhook does: many threads, one engine. Each result belongs to its own input."""
    docs = [doc for name, doc in CORPUS if not name.startswith("v1.0") and "sample" not in name][:8]
    expected = [summary(any_engine, doc) for doc in docs]
    with ThreadPoolExecutor(max_workers=8) as pool:
        got = list(pool.map(lambda i: (i % len(docs), summary(any_engine, docs[i % len(docs)])), range(64)))
    for i, result in got:
        assert result == expected[i]


def test_the_policys_memory_is_read_and_written_only_within_its_bounds() -> None:
    # Memory is reached by address (gate.policy.wasm._direct_memory): an address past the end must be an
    # error, never a write into the host process.
    from opapywasm.errors import OpaMemoryError

    engine = WasmEngine(load_policy_set([ROOT]))
    try:
        instance = engine._policy._build_instance()
        abi = instance._abi
        size = abi.memory_len()
        abi.memory_write(size - 3, b"abc")
        assert abi.memory_read(size - 3, size) == b"abc"
        for addr, data in ((size - 2, b"abc"), (size, b"a"), (-1, b"a")):
            with pytest.raises(OpaMemoryError, match="outside the policy's memory"):
                abi.memory_write(addr, data)
        for start, stop in ((size - 1, size + 1), (-1, 2), (5, 4)):
            with pytest.raises(OpaMemoryError, match="outside the policy's memory"):
                abi.memory_read(start, stop)
        instance.close()
    finally:
        engine.close()


class _Exports:
    """What gate.policy.wasm._unchecked_i32 needs of a runtime, over a small real module."""

    def __init__(self, wat: str) -> None:
        import wasmtime

        self.store = wasmtime.Store()
        self._instance = wasmtime.Instance(self.store, wasmtime.Module(self.store.engine, wat), [])

    def get_func(self, name: str) -> object:
        return self._instance.exports(self.store)[name]


EXPORTS = """(module
  (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))
  (func (export "nothing") (param i32))
  (func (export "wide") (param i64) (result i64) (local.get 0))
  (func (export "trap") (result i32) unreachable))"""


def test_unchecked_calls_are_only_made_for_i32_functions_and_fail_like_checked_ones() -> None:
    import wasmtime

    from gate.policy.wasm import _unchecked_i32

    exports = _Exports(EXPORTS)
    add = _unchecked_i32(exports, "add")  # type: ignore[arg-type]
    assert add(2, 40) == 42
    assert add(-1, 0) == -1 and add(2**32 - 1, 0) == -1  # an address above 2 GiB reads back as the i32
    assert _unchecked_i32(exports, "nothing")(7) is None  # type: ignore[arg-type]
    # Any other type would be read wrongly by an unchecked call: those keep wasmtime-py's checked call.
    assert _unchecked_i32(exports, "wide") is None  # type: ignore[arg-type]
    for args in ((1,), (1, 2, 3)):
        with pytest.raises(wasmtime.WasmtimeError, match="arguments given"):
            add(*args)
    for bad in (2**32, -(2**31) - 1):
        with pytest.raises(wasmtime.WasmtimeError, match="does not fit an i32"):
            add(bad, 0)
    with pytest.raises(wasmtime.Trap, match="unreachable"):
        _unchecked_i32(exports, "trap")()  # type: ignore[arg-type]


def test_evaluations_call_the_module_without_wasmtime_pys_checked_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The fast path is a measured part of every first look (docs/performance.md); a wasmtime-py or
    # opapywasm change that silently sent the calls back through Func.__call__ would fail here.
    import wasmtime

    doc = next(doc for name, doc in CORPUS if "sample" not in name)
    engine = WasmEngine(load_policy_set([ROOT]))
    try:
        expected = summary(engine, doc)
        for _ in range(engine.pool_size):  # builds every instance (data is loaded by checked calls)
            assert summary(engine, doc) == expected

        def refused(*args: object, **kwargs: object) -> object:
            raise AssertionError("an evaluation called wasmtime.Func.__call__")

        monkeypatch.setattr(wasmtime.Func, "__call__", refused)
        assert summary(engine, doc) == expected
    finally:
        engine.close()
