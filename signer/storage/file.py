"""The ``file`` storage backend: one attestation (DSSE envelope or Sigstore bundle JSON) per line,
appended — the format ``gate verify --attestations FILE`` reads."""

from __future__ import annotations

import os
from dataclasses import dataclass

from attestation.errors import InputError


@dataclass(frozen=True)
class FileStored:
    path: str
    backend: str = "file"

    def __str__(self) -> str:
        return f"file: appended to {self.path}"


def append_jsonl(path: str | os.PathLike[str], document: bytes) -> None:
    """Append ``document`` (compact JSON, no newline inside) as one line.

    One ``write`` on an ``O_APPEND`` descriptor, so concurrent writers (several runs signed at once)
    interleave whole lines, never halves; fsync so a crash cannot leave a torn last line.
    """
    if b"\n" in document or b"\r" in document:
        raise InputError(f"{path}: refusing to write a multi-line document to a JSON-lines file")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    except OSError as err:
        raise InputError(f"cannot open {path} for appending: {err.strerror}") from None
    try:
        os.write(fd, document + b"\n")
        os.fsync(fd)
    except OSError as err:
        raise InputError(f"cannot append to {path}: {err.strerror}") from None
    finally:
        os.close(fd)
