"""The wasm engine: the real OPA compiler's output (``opa build -t wasm``) run in process by ``opapywasm``.

The policy set is compiled once by the ``opa`` binary into one WebAssembly module with one entrypoint that
returns the same raw result document the other engines return (``gate.policy.results.decision_query``).
The module is cached under ``${XDG_CACHE_HOME:-~/.cache}/provgate/wasm/`` keyed by the policy set digest
and the OPA version, so a second start does not need to run the compiler. Data is loaded into the module
once; each evaluation transfers only the input.

OPA's wasm target evaluates most built-ins inside the module; the rest it asks the host for. The host
built-ins this engine provides are listed in :data:`HOST_BUILTINS` and each is tested against the real
OPA. A policy set that needs any other host built-in is refused at load time, because an approximation
could decide differently from OPA.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any


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
    sys.modules["importlib.metadata"] = None  # type: ignore[assignment]
    try:
        import opapywasm  # noqa: F401
    finally:
        if "importlib.metadata" in sys.modules and sys.modules["importlib.metadata"] is None:
            del sys.modules["importlib.metadata"]


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
from opapywasm.instance import OpaPolicyInstance  # noqa: E402
from opapywasm.runtime import EpochTicker, WasmtimeRuntimeFactory  # noqa: E402

from attestation.errors import PolicyError  # noqa: E402
from attestation.files import cache_home, cache_put, private_cache_dir  # noqa: E402
from attestation.limits import MiB  # noqa: E402
from gate.config import EngineOptions  # noqa: E402
from gate.policy.model import Evaluation, PolicySet, encode_json  # noqa: E402
from gate.policy.results import decision_query, evaluation_from  # noqa: E402

log = logging.getLogger(__name__)

ENTRYPOINT = "provgate/engine/decision"
WASM_CACHE = "wasm"  # under attestation.files.cache_home()
# Bumped whenever the generated entrypoint module or the build command changes, so stale cache entries
# are never picked up.
_LAYOUT_VERSION = "2"  # 2: the cached module carries its SHA-256
_DECISION_PACKAGE = "package provgate.engine\n\n"
MAX_INPUT_BYTES = 64 * MiB  # the gate's own bound on a policy input (gate.cli.MAX_INPUT_BYTES)
MAX_WASM_BYTES = 64 * MiB
COMPILE_TIMEOUT_S = 300.0
_DEFAULTS = EngineOptions()


class Undefined(Exception):
    """Raised by a host built-in to make its call undefined, as OPA does when a built-in fails."""


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)
# Go's time.Parse(time.RFC3339, s) as OPA calls it: Go first tries a strict RFC 3339 reader and then its
# general layout parser, which additionally takes a one-digit hour, a comma as the decimal separator and
# zone offsets up to 24:60. Both read any number of fraction digits and keep the first nine.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{1,2}):(\d{2}):(\d{2})(?:[.,](\d+))?(?:(Z)|([+-])(\d{2}):(\d{2}))",
    re.ASCII,
)


def _leap(year: int) -> bool:
    return year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)


def _days_from_civil(y: int, m: int, d: int) -> int:
    # Days since 1970-01-01 in the proleptic Gregorian calendar, year 0 included as Go has it.
    y -= m <= 2
    era = y // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def parse_rfc3339_ns(text: str) -> int | None:
    """Nanoseconds since the epoch as OPA's ``time.parse_rfc3339_ns`` gives them; None where OPA fails."""
    m = _RFC3339.fullmatch(text)
    if not m:
        return None
    year, month, day, hour, minute, sec = (int(g) for g in m.groups()[:6])
    frac, zulu, sign, zh, zm = m.group(7), m.group(8), m.group(9), m.group(10), m.group(11)
    if not (1 <= month <= 12 and hour <= 23 and minute <= 59 and sec <= 59):
        return None
    days_in_month = 29 if month == 2 and _leap(year) else _DAYS_IN_MONTH[month - 1]
    if not 1 <= day <= days_in_month:
        return None
    offset = 0
    if not zulu:
        oh, om = int(zh), int(zm)
        if oh > 24 or om > 60:
            return None
        offset = (oh * 60 + om) * 60 * (-1 if sign == "-" else 1)
    nanos = int((frac or "0")[:9].ljust(9, "0"))
    seconds = _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + sec - offset
    ns = seconds * 1_000_000_000 + nanos
    if not _INT64_MIN <= ns <= _INT64_MAX:
        return None  # OPA: "time outside of valid range"
    return ns


def _rfc3339_ns(value: Any) -> int:
    if not isinstance(value, str):
        raise Undefined
    ns = parse_rfc3339_ns(value)
    if ns is None:
        raise Undefined
    return ns


# Host built-ins provided here, each matching OPA's Go implementation (tests/gate/test_engine_wasm.py
# compares them with the real OPA). opapywasm's own defaults (sprintf, json.is_valid, yaml.*) are
# approximations and are deliberately not on this list.
HOST_BUILTINS: dict[str, Callable[..., Any]] = {
    "time.parse_rfc3339_ns": _rfc3339_ns,
}


class _Instance(OpaPolicyInstance):
    """An instance whose host built-ins can return "undefined" (a null result address).

    OPA's compiled code treats a null address from ``opa_builtinN`` as an undefined call, which is what
    OPA itself does when a built-in fails in a non-strict evaluation. opapywasm has no public way to say
    so; should this hook stop working, :class:`Undefined` surfaces as an evaluation error (a denial).
    """

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
                cache_put(native, module.serialize())
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
            original = opapywasm.policy.WasmtimeRuntimeFactory
            opapywasm.policy.WasmtimeRuntimeFactory = factory  # type: ignore[misc,assignment]
            try:
                return cls(wasm, config)
            finally:
                opapywasm.policy.WasmtimeRuntimeFactory = original  # type: ignore[misc]

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


def find_opa() -> Path:
    """The ``opa`` binary: ``$PROVGATE_OPA``, else ``opa`` on PATH, else the build cache of
    tests/infra/build-components.sh (``$PROVGATE_BIN_CACHE`` or ``${XDG_CACHE_HOME:-~/.cache}/provgate/bin``).
    """
    configured = os.environ.get("PROVGATE_OPA")
    if configured:
        path = Path(configured)
        if not (path.is_file() and os.access(path, os.X_OK)):
            raise PolicyError(f"PROVGATE_OPA={configured}: not an executable file")
        return path
    on_path = shutil.which("opa")
    if on_path:
        return Path(on_path)
    bin_cache = os.environ.get("PROVGATE_BIN_CACHE") or str(cache_home() / "bin")
    cached = Path(bin_cache) / "opa"
    if cached.is_file() and os.access(cached, os.X_OK):
        return cached
    raise PolicyError(
        "the wasm policy engine needs the opa binary to compile policies: set PROVGATE_OPA to its path or "
        "put opa on PATH (tests/infra/build-components.sh builds it), or use --engine opa"
    )


# What a remembered version may look like: one printable ASCII token, as `opa version` prints it.
_VERSION = re.compile(r"[!-~]{1,100}", re.ASCII)
# ELF; Mach-O 64-bit (both byte orders) and universal binaries.
_EXECUTABLE_MAGIC = frozenset({b"\x7fELF", b"\xcf\xfa\xed\xfe", b"\xfe\xed\xfa\xcf", b"\xca\xfe\xba\xbe"})


def opa_version(opa: Path) -> str:
    """The version ``opa version`` prints, remembered in the (private) cache per binary.

    Running ``opa version`` on every start was a measurable part of it (docs/performance.md). The entry
    is keyed by the binary's resolved
    path, device, inode, size, modification and change times: replacing or rewriting the binary (an
    upgrade) changes at least one of them, and the change time cannot be set back by its owner. Only
    an executable binary is remembered: a script (a version manager's shim) can run another opa each time.
    """
    entry: Path | None = None
    try:
        resolved = opa.resolve()
        st = resolved.stat()
        with resolved.open("rb") as fh:
            binary = fh.read(4) in _EXECUTABLE_MAGIC
    except OSError:
        pass
    else:
        directory = private_cache_dir(WASM_CACHE) if binary else None
        if directory is not None:
            identity = (
                f"{resolved}\0{st.st_dev}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}"
            )
            entry = directory / f"{hashlib.sha256(identity.encode()).hexdigest()}.opa-version"
            try:
                remembered = entry.read_text(encoding="ascii")
            except (OSError, UnicodeDecodeError):
                pass
            else:
                if _VERSION.fullmatch(remembered):
                    log.debug("opa %s: version %s (remembered)", resolved, remembered)
                    return remembered
    version = _run_opa_version(opa)
    if entry is not None:
        cache_put(entry, version.encode("ascii"))
    return version


def _run_opa_version(opa: Path) -> str:
    try:
        out = subprocess.run(
            [str(opa), "version"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise PolicyError(f"{opa}: cannot run `opa version`: {err}") from None
    match = re.search(r"^Version:\s*(\S+)", out, re.MULTILINE)
    if not match:
        raise PolicyError(f"{opa}: `opa version` printed no version")
    if not _VERSION.fullmatch(match.group(1)):
        raise PolicyError(f"{opa}: `opa version` printed an unexpected version {match.group(1)[:100]!r}")
    return match.group(1)


def decision_module(policy_set: PolicySet) -> str:
    """The generated module whose one rule is the decision document, built from the shared query."""
    query = decision_query(policy_set)
    assert query.startswith("x := ")
    return _DECISION_PACKAGE + "decision := " + query[len("x := ") :] + "\n"


def _first_error(stderr: str, names: Mapping[str, str]) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    text = next((line for line in lines if re.search(r"\.rego:\d+", line)), lines[0] if lines else "")
    for tmp_name, original in names.items():
        text = text.replace(tmp_name, original)
    return text or "unknown error"


def compile_wasm_entrypoints(
    src: Path, entrypoints: list[str], opa: Path, names: Mapping[str, str] | None = None
) -> bytes:
    """``opa build -t wasm`` of the Rego files under ``src``; the bytes of ``policy.wasm``.

    ``names`` maps file names under ``src`` back to the user's for error messages.
    """
    import tarfile  # only when the policy set is not in the cache: every start would pay the import

    with tempfile.TemporaryDirectory(prefix="provgate-wasm-out-") as tmp:
        out = Path(tmp) / "bundle.tar.gz"
        cmd = [str(opa), "build", "-t", "wasm", "-o", str(out)]
        for entrypoint in entrypoints:
            cmd += ["-e", entrypoint]
        cmd.append(str(src))
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=COMPILE_TIMEOUT_S)
        except (OSError, subprocess.SubprocessError) as err:
            raise PolicyError(f"{opa}: cannot compile policies to wasm: {err}") from None
        if proc.returncode != 0:
            error = _first_error(proc.stderr or proc.stdout, names or {})
            raise PolicyError(f"policy set does not compile to wasm: {error}")
        try:
            with tarfile.open(out, "r:gz") as tar:
                for member in tar:
                    if member.name.lstrip("/") == "policy.wasm" and member.isfile():
                        if member.size > MAX_WASM_BYTES:
                            raise PolicyError(f"compiled policy has {member.size} bytes (> {MAX_WASM_BYTES})")
                        fh = tar.extractfile(member)
                        assert fh is not None
                        return fh.read()
        except (OSError, tarfile.TarError) as err:
            raise PolicyError(f"opa build wrote an unreadable bundle: {err}") from None
    raise PolicyError("opa build produced no policy.wasm")


def compile_wasm(policy_set: PolicySet, opa: Path) -> bytes:
    """The policy set's modules plus the generated decision module, compiled to one entrypoint."""
    with tempfile.TemporaryDirectory(prefix="provgate-wasm-") as tmp:
        src = Path(tmp)
        names: dict[str, str] = {}
        # Numbered files: modules from several roots may share a name. Errors are mapped back.
        for n, (path, source) in enumerate(sorted(policy_set.modules.items())):
            tmp_path = src / f"m{n:04d}.rego"
            tmp_path.write_text(source, encoding="utf-8")
            names[str(tmp_path)] = path
        (src / "provgate_engine_decision.rego").write_text(decision_module(policy_set), encoding="utf-8")
        return compile_wasm_entrypoints(src, [ENTRYPOINT], opa, names)


def cached_wasm(policy_set: PolicySet, opa: Path | None = None) -> tuple[bytes, Path | None]:
    """The compiled module for ``policy_set`` and where it is cached (None: not cached).

    Taken from the cache when there, else compiled with ``opa build`` and cached.
    """
    opa = opa or find_opa()
    version = opa_version(opa)
    key = hashlib.sha256(f"{policy_set.digest}\0{version}\0{_LAYOUT_VERSION}".encode()).hexdigest()
    directory = private_cache_dir(WASM_CACHE)
    if directory is None:
        return compile_wasm(policy_set, opa), None
    path = directory / f"{key}.wasm"
    try:
        # The module followed by its SHA-256: a damaged entry (truncated, overwritten) is compiled afresh
        # instead of failing every start until someone clears the cache.
        stored = path.read_bytes()
        wasm, digest = stored[:-32], stored[-32:]
        if wasm[:4] == b"\0asm" and hashlib.sha256(wasm).digest() == digest:
            log.debug("policy set %s: compiled module from the cache: %s", policy_set.digest, path)
            return wasm, path
    except OSError:
        pass
    log.debug("policy set %s: compiling with %s", policy_set.digest, opa)
    wasm = compile_wasm(policy_set, opa)
    cache_put(path, wasm + hashlib.sha256(wasm).digest())
    return wasm, path


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
            max_input_bytes=MAX_INPUT_BYTES,
            max_data_bytes=MAX_INPUT_BYTES,
            max_result_bytes=MAX_INPUT_BYTES,
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


__all__ = [
    "ENTRYPOINT",
    "HOST_BUILTINS",
    "PolicyConfig",
    "WasmEngine",
    "cached_wasm",
    "compile_wasm",
    "compile_wasm_entrypoints",
    "find_opa",
    "load_wasm_policy",
]
