"""PEM blocks of key and certificate files, found within bounds (a hostile file cannot make the scan
expensive)."""

from __future__ import annotations

import base64
import re

from attestation.errors import KeyLoadError
from attestation.limits import MAX_KEY_FILE_BYTES

MAX_PEM_BLOCKS = 64

PEM_BLOCK = re.compile(
    rb"-----BEGIN ([A-Z0-9 ]{1,64})-----\r?\n(.*?)-----END \1-----",
    re.DOTALL,
)


def blocks(data: bytes, source: str) -> list[tuple[str, bytes]]:
    """(label, whole PEM block) for each block in ``data``."""
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyLoadError(
            f"{source} is too large for a key file: {len(data)} bytes, limit {MAX_KEY_FILE_BYTES}"
        )
    # Bounds the regex scan, which is quadratic in the number of unterminated BEGIN lines.
    if data.count(b"-----BEGIN ") > MAX_PEM_BLOCKS:
        raise KeyLoadError(f"{source} holds more than {MAX_PEM_BLOCKS} PEM blocks")
    return [(m.group(1).decode("ascii"), m.group(0)) for m in PEM_BLOCK.finditer(data)]


def single_block(data: bytes, source: str, kind: str) -> tuple[str, bytes]:
    found = blocks(data, source)
    if not found:
        raise KeyLoadError(f"{source}: no PEM block found (expected a {kind})")
    if len(found) > 1:
        labels = ", ".join(label for label, _ in found)
        raise KeyLoadError(f"{source}: holds {len(found)} PEM blocks ({labels}); expected exactly one {kind}")
    return found[0]


def encode(label: str, der: bytes) -> bytes:
    b64 = base64.b64encode(der).decode("ascii")
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return (f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n").encode("ascii")
