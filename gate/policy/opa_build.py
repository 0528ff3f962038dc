"""OPA's compiler as the wasm engine uses it: the ``opa`` binary and its version, ``opa build -t wasm`` of a
policy set with the one generated decision entrypoint, and the private cache of compiled modules keyed
by exactly what is compiled (the Rego sources and the generated module) and the OPA version, so a second
start does not run the compiler.

Rule data is not compiled in: the engine loads it into the module when it starts (``set_data``), so an
edit of the rule data reuses the compiled module and only a Rego edit compiles again."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

from attestation.errors import PolicyError
from attestation.files import cache_home, cache_put, private_cache_dir
from attestation.limits import MiB
from gate.policy.model import PolicySet
from gate.policy.results import decision_query

log = logging.getLogger(__name__)

ENTRYPOINT = "provgate/engine/decision"
WASM_CACHE = "wasm"  # under attestation.files.cache_home()
# Bumped whenever the generated entrypoint module or the build command changes, so stale cache entries
# are never picked up.
_LAYOUT_VERSION = "3"  # 2: the cached module carries its SHA-256; 3: keyed by the compiled sources
_DECISION_PACKAGE = "package provgate.engine\n\n"
MAX_WASM_BYTES = 64 * MiB
COMPILE_TIMEOUT_S = 300.0


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


def _compiled_files(policy_set: PolicySet) -> list[tuple[str, str, str]]:
    """What ``opa build`` compiles for ``policy_set``: ``(file name, source, name in errors)`` for each
    module, under numbered names (modules from several roots may share a name), then the generated
    decision module. Everything the compiled module is made of, so also what its cache key hashes."""
    files = [
        (f"m{n:04d}.rego", source, path)
        for n, (path, source) in enumerate(sorted(policy_set.modules.items()))
    ]
    files.append(("provgate_engine_decision.rego", decision_module(policy_set), "(the generated decision)"))
    return files


def compile_wasm(policy_set: PolicySet, opa: Path) -> bytes:
    """The policy set's modules plus the generated decision module, compiled to one entrypoint."""
    with tempfile.TemporaryDirectory(prefix="provgate-wasm-") as tmp:
        src = Path(tmp)
        names: dict[str, str] = {}
        for name, source, shown in _compiled_files(policy_set):
            (src / name).write_text(source, encoding="utf-8")
            names[str(src / name)] = shown
        return compile_wasm_entrypoints(src, [ENTRYPOINT], opa, names)


def _cache_key(policy_set: PolicySet, opa_version: str) -> str:
    h = hashlib.sha256()
    for part in (
        _LAYOUT_VERSION,
        opa_version,
        *(p for name, source, _ in _compiled_files(policy_set) for p in (name, source)),
    ):
        encoded = part.encode("utf-8")
        h.update(len(encoded).to_bytes(8, "big") + encoded)  # length-prefixed: no two sequences collide
    return h.hexdigest()


def cached_wasm(policy_set: PolicySet, opa: Path | None = None) -> tuple[bytes, Path | None]:
    """The compiled module for ``policy_set`` and where it is cached (None: not cached).

    Taken from the cache when there, else compiled with ``opa build`` and cached.
    """
    opa = opa or find_opa()
    key = _cache_key(policy_set, opa_version(opa))
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
