"""The wasm engine: the real OPA compiler's output (``opa build -t wasm``, :mod:`gate.policy.opa_build`)
run in process by ``opapywasm`` on wasmtime.

The module's one entrypoint returns the same raw result document the OPA engine returns
(``gate.policy.results.decision_query``). Data is loaded into the module once; each evaluation transfers
only the input. wasmtime's native code for the module is cached beside the compiled module.

OPA's wasm target evaluates most built-ins inside the module; the rest it asks the host for. The host
built-ins this engine provides are :data:`gate.policy.host_builtins.HOST_BUILTINS`, each tested against
the real OPA. A policy set that needs any other host built-in is refused at load time, because an
approximation could decide differently from OPA.
"""

from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import ModuleType
from typing import Any, cast


def _import_opapywasm() -> None:
    """Import opapywasm without importlib.metadata, which it imports only to set its ``__version__``.

    Importing importlib.metadata (with the email, zipfile and csv modules it brings) was a measurable part
    of every ``gate`` start (docs/performance.md), for a string nothing here reads. While opapywasm is
    imported, importlib.metadata cannot be, so opapywasm takes its own fallback (``__version__ =
    "0.0.0+unknown"``); the block is lifted right after, and a later import of importlib.metadata works as
    usual. Nothing is blocked when either is imported already. The first import happens while a Gate is
    built, before any engine thread runs.
    """
    if "opapywasm" in sys.modules or "importlib.metadata" in sys.modules:
        return
    # A None entry is the import system's "cannot be imported" marker, which typeshed's type of
    # sys.modules leaves out.
    modules = cast("dict[str, ModuleType | None]", sys.modules)
    modules["importlib.metadata"] = None
    try:
        import opapywasm  # noqa: F401
    finally:
        if "importlib.metadata" in modules and modules["importlib.metadata"] is None:
            del modules["importlib.metadata"]


_import_opapywasm()

import opapywasm.policy  # noqa: E402
import opapywasm.runtime  # noqa: E402
import wasmtime  # noqa: E402
from opapywasm import (  # noqa: E402
    OpaBuiltinError,
    OpaPolicyClosedError,
    OpaPoolTimeoutError,
    OpaWasmError,
    OpaWasmPolicy,
    PolicyConfig,
)
from opapywasm.abi import OpaAbi  # noqa: E402
from opapywasm.errors import OpaMemoryError  # noqa: E402
from opapywasm.instance import OpaPolicyInstance  # noqa: E402
from opapywasm.runtime import EpochTicker, WasmtimeRuntime, WasmtimeRuntimeFactory  # noqa: E402

from attestation.errors import PolicyError  # noqa: E402
from attestation.files import cache_put, private_cache_dir  # noqa: E402
from gate.config import MAX_POLICY_INPUT_BYTES, EngineOptions  # noqa: E402
from gate.policy.host_builtins import HOST_BUILTINS, Undefined  # noqa: E402
from gate.policy.model import Evaluation, PolicySet, encode_json  # noqa: E402
from gate.policy.opa_build import ENTRYPOINT, WASM_CACHE, cached_wasm  # noqa: E402
from gate.policy.results import evaluation_from  # noqa: E402

log = logging.getLogger(__name__)

_DEFAULTS = EngineOptions()


# wasmtime-py builds a ctypes array type for the arguments and results of every call, and one for every
# memory read and write of a new length. ctypes keeps array types only weakly, and a type is a reference
# cycle: each became garbage for the cyclic collector, built again at the next call
# (docs/performance.md, "The collector's full passes stop the loop"). Holding the argument arrays' types
# (OPA's exports take at most 7) keeps them built; memory is read and written through addresses
# (_direct_memory), which needs no types at all.
try:
    from wasmtime._bindings import wasmtime_val_t
except ImportError:  # a wasmtime-py that moved it: only the garbage this saves is lost
    _VAL_ARRAYS: tuple[object, ...] = ()
else:
    _VAL_ARRAYS = tuple(wasmtime_val_t * n for n in range(9))


def _direct_memory(abi: OpaAbi, runtime: WasmtimeRuntime) -> None:
    """Point ``abi``'s memory reads and writes at the instance's linear memory by address, bounds-checked
    against its current size (wasm memory grows, and moves when it does)."""
    memory, store = runtime.memory, runtime.store

    def address(start: int, length: int) -> int:
        size = memory.data_len(store)
        if start < 0 or length < 0 or start + length > size:
            raise OpaMemoryError(f"[{start}, {start + length}) is outside the policy's memory ({size} bytes)")
        return ctypes.addressof(memory.data_ptr(store).contents) + start

    def write(addr: int, data: bytes) -> None:
        ctypes.memmove(address(addr, len(data)), data, len(data))

    def read(start: int, stop: int) -> bytearray:
        return bytearray(ctypes.string_at(address(start, stop - start), stop - start))

    abi.memory_write = write  # type: ignore[method-assign]
    abi.memory_read = read  # type: ignore[method-assign]


# The unchecked call takes the arguments and results as raw values, with no type look-up or conversion
# per call, which wasmtime-py's checked ``Func.__call__`` does on each of an evaluation's five export
# calls (its cost: docs/performance.md, the choices table). It is safe only for a function whose
# parameters and results are all i32, which _unchecked_i32 checks once per function; any other
# function, or a wasmtime-py without these names, keeps the checked call.
try:
    from wasmtime._bindings import wasmtime_func_call_unchecked, wasmtime_val_raw_t
    from wasmtime._func import enter_wasm
except ImportError:  # pragma: no cover - a wasmtime-py that moved them: the checked calls remain
    _UNCHECKED = False
else:
    _UNCHECKED = True

_I32_LOW, _I32_END = -(2**31), 2**32  # what an i32 argument may be: signed, or an address/length


def _unchecked_i32(runtime: WasmtimeRuntime, name: str) -> Any:
    """A call of export ``name`` taking and returning i32 values only, or None when it has another type."""
    func = runtime.get_func(name)
    store = runtime.store
    ty = func.type(store)
    i32 = wasmtime.ValType.i32()
    if any(t != i32 for t in (*ty.params, *ty.results)) or len(ty.results) > 1:
        return None
    n_params, returns = len(ty.params), bool(ty.results)
    values = wasmtime_val_raw_t * max(n_params, len(ty.results), 1)
    target = ctypes.byref(func._func)

    def call(*args: int) -> int | None:
        if len(args) != n_params:
            raise wasmtime.WasmtimeError(f"{name}: {len(args)} arguments given, {n_params} expected")
        raw = values()  # one array per call: a host built-in may call into the module again
        for i, arg in enumerate(args):
            if not _I32_LOW <= arg < _I32_END:
                raise wasmtime.WasmtimeError(f"{name}: argument {arg} does not fit an i32")
            raw[i].i32 = arg
        # As wasmtime-py's own call: a trap is raised as wasmtime.Trap, an exception a host built-in
        # raised is raised again here.
        with enter_wasm(store) as trap:
            error = wasmtime_func_call_unchecked(store._context(), target, raw, len(raw), trap)
            if error:
                raise wasmtime.WasmtimeError._from_ptr(error)
        return int(raw[0].i32) if returns else None

    return call


def _direct_calls(abi: OpaAbi, runtime: WasmtimeRuntime) -> None:
    """Route ``abi``'s export calls through :func:`_unchecked_i32` where the export's type allows."""
    if not _UNCHECKED:
        return
    found: dict[str, Any] = {}

    def direct(name: str) -> Any:
        if name not in found:
            found[name] = _unchecked_i32(runtime, name)
        return found[name]

    checked_call, checked_set, checked_free = abi._call, abi.opa_heap_ptr_set, abi.opa_free

    def call(name: str, *args: int) -> int:
        fast = direct(name)
        return checked_call(name, *args) if fast is None else cast(int, fast(*args))

    # opapywasm calls these two without _call: they return nothing.
    def no_result(name: str, checked: Callable[[int], None]) -> Callable[[int], None]:
        def one(addr: int) -> None:
            fast = direct(name)
            if fast is None:
                checked(addr)
            else:
                fast(addr)

        return one

    abi._call = call  # type: ignore[method-assign]
    abi.opa_heap_ptr_set = no_result("opa_heap_ptr_set", checked_set)  # type: ignore[method-assign,assignment]
    abi.opa_free = no_result("opa_free", checked_free)  # type: ignore[method-assign,assignment]


class _Instance(OpaPolicyInstance):
    """An instance whose host built-ins can return "undefined" (a null result address), whose memory
    is read and written by address (:func:`_direct_memory`), and whose exports are called without
    wasmtime-py's per-call type conversion (:func:`_direct_calls`).

    OPA's compiled code treats a null address from ``opa_builtinN`` as an undefined call, which is what
    OPA itself does when a built-in fails in a non-strict evaluation. opapywasm has no public way to say
    so; should this hook stop working, :class:`Undefined` surfaces as an evaluation error (a denial).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _direct_memory(self._abi, self._runtime)
        _direct_calls(self._abi, self._runtime)

    def _dispatch_builtin(self, builtin_id: int, ctx: int, arg_addrs: list[int]) -> int:
        try:
            return super()._dispatch_builtin(builtin_id, ctx, arg_addrs)
        except OpaBuiltinError as err:
            if isinstance(err.__cause__, Undefined):
                return 0
            raise


class _NativeCachedFactory(WasmtimeRuntimeFactory):
    """opapywasm's engine/module factory, but the module's native code comes from a cache when it can.

    Compiling the policy module to native code takes wasmtime far longer than deserialising a cached
    result (docs/rego-engines.md). Native code is only read from a directory only this user can write (see
    :func:`attestation.files.private_cache_dir`), since wasmtime runs it as is. Anything unreadable or
    from another wasmtime build is compiled afresh.
    """

    def __init__(
        self, wasm_bytes: bytes, *, max_memory_pages: int | None = None, native: Path | None
    ) -> None:
        config = wasmtime.Config()
        config.epoch_interruption = True  # as opapywasm sets it: per-evaluation deadlines need it
        self._max_memory_pages = max_memory_pages
        self._engine = wasmtime.Engine(config)
        self._epoch = EpochTicker(self._engine)
        module = None
        if native is not None and native.is_file():
            try:
                module = wasmtime.Module.deserialize_file(self._engine, str(native))
                log.debug("native code of the policy module from the cache: %s", native)
            except wasmtime.WasmtimeError:
                module = None
        if module is None:
            log.debug("compiling the policy module to native code")
            try:
                wasmtime.Module.validate(self._engine, wasm_bytes)
                module = wasmtime.Module(self._engine, wasm_bytes)
            except wasmtime.WasmtimeError as err:
                raise PolicyError(f"compiled policy is not valid wasm: {err}") from None
            if native is not None:
                cache_put(native, bytes(module.serialize()))
        self._module = module
        self._validate_required_env_imports()
        # opapywasm offers every module a 2-page memory and only retries on traps, so a module whose
        # memory import asks for more (a larger policy, more data segments) cannot be instantiated.
        # Its initial size is a module constant read on each instantiation; raising it to what this
        # module declares is harmless for smaller ones.
        for imp in module.imports:
            if imp.module == "env" and imp.name == "memory" and isinstance(imp.type, wasmtime.MemoryType):
                with _FACTORY_SWAP:
                    opapywasm.runtime._DEFAULT_MEMORY_PAGES = max(
                        opapywasm.runtime._DEFAULT_MEMORY_PAGES, imp.type.limits.min
                    )


# opapywasm builds its factory by name inside OpaWasmPolicy.__init__; the name is swapped for the
# duration of one construction, under this lock, to hand it the caching factory.
_FACTORY_SWAP = threading.RLock()


class _Policy(OpaWasmPolicy):
    @classmethod
    def load(cls, wasm: bytes, config: PolicyConfig, native: Path | None) -> _Policy:
        def factory(wasm_bytes: bytes, *, max_memory_pages: int | None = None) -> WasmtimeRuntimeFactory:
            return _NativeCachedFactory(wasm_bytes, max_memory_pages=max_memory_pages, native=native)

        with _FACTORY_SWAP:
            original = getattr(opapywasm.policy, "WasmtimeRuntimeFactory")  # noqa: B009
            setattr(opapywasm.policy, "WasmtimeRuntimeFactory", factory)  # noqa: B010
            try:
                return cls(wasm, config)
            finally:
                setattr(opapywasm.policy, "WasmtimeRuntimeFactory", original)  # noqa: B010

    def _build_instance(self) -> OpaPolicyInstance:
        data, version = self._data_snapshot()
        return _Instance(
            self._factory,
            self._config,
            self._abi_spec,
            initial_data=data,
            data_version=version,
            builtins=self._registry,
            epoch=self._factory.epoch,
        )


def _wasmtime_version() -> str:
    """``importlib.metadata.version("wasmtime")``, read from the one ``wasmtime-*.dist-info`` beside the
    imported package when there is exactly one (importing importlib.metadata would cost every start,
    see :func:`_import_opapywasm`); from importlib.metadata in any other layout."""
    site = Path(wasmtime.__file__ or "").parent.parent  # the sys.path entry it was imported from
    try:
        found = [
            e for e in os.listdir(site) if e.endswith(".dist-info") and e.split("-")[0].lower() == "wasmtime"
        ]
        if len(found) == 1:
            with open(site / found[0] / "METADATA", encoding="utf-8") as fh:
                for line in fh:
                    if not line.strip():
                        break  # the end of the headers
                    if line.startswith("Version:"):
                        return line[len("Version:") :].strip()
    except (OSError, UnicodeDecodeError):
        pass
    import importlib.metadata

    return importlib.metadata.version("wasmtime")


_WASMTIME_VERSION = _wasmtime_version()


def _native_path(wasm: bytes) -> Path | None:
    directory = private_cache_dir(WASM_CACHE)
    if directory is None:
        return None
    # Keyed by the module's content and the wasmtime build that compiles it.
    key = hashlib.sha256(wasm + f"\0{_WASMTIME_VERSION}\0epoch".encode()).hexdigest()
    return directory / f"{key}.cwasm"


def load_wasm_policy(wasm: bytes, config: PolicyConfig, *, native: Path | None = None) -> OpaWasmPolicy:
    """An opapywasm policy for ``wasm`` with provgate's host built-ins, which can return "undefined"
    like OPA's do. :class:`PolicyError` when the module needs a host built-in not in
    :data:`HOST_BUILTINS` (fail closed: never evaluate with an approximation). ``native``: where to cache
    the module's native code (None: compile in memory only).
    """
    try:
        policy = _Policy.load(wasm, config, native)
    except OpaWasmError as err:
        raise PolicyError(f"compiled policy does not load: {err}") from None
    try:
        missing = sorted(set(policy.builtins) - set(HOST_BUILTINS))
        if missing:
            raise PolicyError(
                f"policy set uses built-in {', '.join(missing)}, which the wasm engine cannot evaluate "
                "exactly as OPA does; use --engine opa"
            )
        for name, fn in HOST_BUILTINS.items():
            policy.register_builtin(name, fn)
    except BaseException:
        policy.close()
        raise
    return policy


class WasmEngine:
    """OPA-compiled wasm in process.

    ``evaluate`` is safe to call from several threads: opapywasm lends each call its own wasm instance
    from a pool of ``pool_size``; a call that waits longer than ``borrow_timeout`` for one fails (deny).
    Pure: a policy that needs a built-in the host would have to answer from elsewhere (the clock, the
    network, randomness) is refused at load time (:func:`load_wasm_policy`).
    """

    pure = True

    def __init__(
        self,
        policy_set: PolicySet,
        *,
        opa: Path | None = None,
        wasm: bytes | None = None,
        pool_size: int = _DEFAULTS.pool_size,
        borrow_timeout: float = _DEFAULTS.borrow_timeout,
        eval_timeout: float = _DEFAULTS.eval_timeout,
    ) -> None:
        self._policy_set = policy_set
        if wasm is None:
            wasm, _ = cached_wasm(policy_set, opa)
        native = _native_path(wasm)
        config = PolicyConfig(
            pool_size=pool_size,
            default_entrypoint=ENTRYPOINT,
            borrow_timeout_seconds=borrow_timeout,
            eval_timeout_seconds=eval_timeout,
            max_input_bytes=MAX_POLICY_INPUT_BYTES,
            max_data_bytes=MAX_POLICY_INPUT_BYTES,
            max_result_bytes=MAX_POLICY_INPUT_BYTES,
            # evaluate() hands over JSON it wrote itself; opapywasm re-parsing it in Python to check it
            # cost more than the evaluation (docs/rego-engines.md).
            parse_raw_json_input=False,
        )
        policy = load_wasm_policy(wasm, config, native=native)
        try:
            if ENTRYPOINT not in policy.entrypoints:
                raise PolicyError(f"compiled policy has no entrypoint {ENTRYPOINT}")
            policy.set_data(dict(policy_set.data))
        except BaseException:
            policy.close()
            raise
        self._policy = policy
        self._closed = threading.Event()
        # A policy that loads but does not evaluate fails at startup, not per request.
        self.evaluate({"image": {}, "attestations": []})

    @property
    def pool_size(self) -> int:
        """How many wasm instances evaluate at once (``EngineOptions.pool_size``)."""
        return int(self._policy.pool_size)

    def evaluate(self, policy_input: Mapping[str, Any]) -> Evaluation:
        start = time.perf_counter()
        if self._closed.is_set():
            raise PolicyError("policy engine is closed")
        try:
            # Inside the try: a lone surrogate is a UnicodeEncodeError, a ValueError.
            raw = encode_json(policy_input)
        except (TypeError, ValueError, RecursionError) as err:
            raise PolicyError(f"policy input is not plain JSON: {err}") from None
        return self._evaluate_raw(raw, start)

    def evaluate_json(self, raw: bytes) -> Evaluation:
        """:meth:`evaluate` for a policy input provgate encoded itself: the bytes go to the module as they
        are (opapywasm does not parse them again: ``parse_raw_json_input=False``)."""
        start = time.perf_counter()
        if self._closed.is_set():
            raise PolicyError("policy engine is closed")
        return self._evaluate_raw(raw, start)

    def _evaluate_raw(self, raw: bytes, start: float) -> Evaluation:
        try:
            output = self._policy.evaluate(raw, ENTRYPOINT)
        except OpaPoolTimeoutError:
            raise PolicyError("policy evaluation: no wasm instance free in time (too busy)") from None
        except OpaPolicyClosedError:
            raise PolicyError("policy engine is closed") from None
        except OpaWasmError as err:
            raise PolicyError(f"policy evaluation failed: {str(err).splitlines()[0][:300]}") from None
        if not isinstance(output, Mapping):
            output = None  # UNDEFINED: evaluation_from turns it into a PolicyError
        return evaluation_from(output, self._policy_set, (time.perf_counter() - start) * 1000)

    def close(self) -> None:
        self._closed.set()
        self._policy.close()


__all__ = ["PolicyConfig", "WasmEngine", "load_wasm_policy"]
