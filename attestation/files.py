"""Files provgate reads and writes: read within a bound, replaced atomically, and a cache directory private
to the user.

Two kinds of callers, two semantics:

* a file the user asked for (the signer's annotation map): :func:`write_atomic` raises
  :class:`InputError` naming the file when it cannot be written, and the file's mode follows the umask;
* a cache entry (parsed policy sets, compiled policies, the OPA version): :func:`cache_put` writes it
  readable by this user only and ignores a failure, since an unwritable cache only costs the next start
  the work it would have saved.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

from attestation.errors import InputError, LimitExceeded


def read_bounded(
    path: str | os.PathLike[str], max_bytes: int, what: str, *, error: type[InputError] | None = None
) -> bytes:
    """The bytes of ``path``, never more than ``max_bytes`` read: every file a user names (keys, trust
    roots, tokens, attestations) is read through here, so none can exhaust memory. Raises ``error``
    (default :class:`InputError`, :class:`LimitExceeded` for a file over the bound) naming ``what`` and
    the file."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as f:
            data = f.read(max_bytes + 1)
    except OSError as err:
        raise (error or InputError)(f"cannot read {what} {name}: {err.strerror or err}") from None
    if len(data) > max_bytes:
        raise (error or LimitExceeded)(f"{what} {name} is larger than {max_bytes} bytes")
    return data


def write_atomic(path: str | os.PathLike[str], data: bytes, *, private: bool = False) -> None:
    """Replace ``path`` with ``data`` so that no reader ever sees a half-written file: written under a
    unique name beside it, then renamed over it. ``private``: mode 0600, else what the umask leaves of
    0666. Raises :class:`InputError` naming ``path``; nothing is left behind then."""
    target = Path(path)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600 if private else 0o666)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise InputError(f"cannot write {os.fspath(path)}: {err.strerror or err}") from None


def cache_home() -> Path:
    """``${XDG_CACHE_HOME:-~/.cache}/provgate``: provgate's caches, and the components the build makes."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "provgate"


def private_cache_dir(name: str) -> Path | None:
    """:func:`cache_home` / ``name``, created if needed, when it is a directory owned by this user that
    nobody else can write to; None otherwise.

    What the caches hold decides admissions (the wasm cache holds native code that runs as it is), so a
    cache others could write is not used at all.
    """
    path = cache_home() / name
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = path.stat()
    except OSError:
        return None
    return path if st.st_uid == os.getuid() and not st.st_mode & 0o022 else None


def cache_put(path: Path, data: bytes) -> None:
    """Store a cache entry (in a :func:`private_cache_dir`): atomically, private, failures ignored."""
    with contextlib.suppress(InputError):  # an unwritable cache only costs the next start the work
        write_atomic(path, data, private=True)
