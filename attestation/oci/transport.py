"""How the registry client sends one HTTP request and reads its answer under a size cap.

Two interchangeable transports, chosen by name (:data:`TRANSPORTS`, by
:class:`~attestation.oci.registry.RegistryClient`):

* ``httpx``, the default: what every command (`gate verify`, `signer`) uses; cheap to import;
* ``aiohttp``: what `gate serve` uses; about a quarter of httpx's CPU per request, which saves about a
  quarter of a first look's CPU, but ~115 ms more to import, which a one-shot command would pay every
  time (docs/performance.md). It is imported only when chosen.

Both keep connections alive, verify TLS with the caller's :class:`ssl.SSLContext`, call ``on_https``
before every HTTPS hop (the client loads the system CA store lazily), follow redirects only when asked,
and say the same things the same way: :class:`TimeoutError` for a timeout, :class:`TransportFailure` when
no HTTP answer came, :class:`~attestation.errors.RegistryError` for a body over the cap or endless
redirects.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from attestation.errors import RegistryError

TRANSPORTS: tuple[str, ...] = ("httpx", "aiohttp")
USER_AGENT = "provgate/0.1"
# Error bodies are read for their message only, never whole.
MAX_ERROR_BODY = 64 * 1024
MAX_REDIRECTS = 10


@dataclass(frozen=True)
class Reply:
    status: int
    headers: Mapping[str, str]  # case-insensitive lookups, as both libraries give them
    body: bytes
    url: str  # the last hop's


class TransportFailure(Exception):
    """No HTTP answer: connection refused or reset, DNS, TLS. ``ssl_error`` is the TLS error, if one was
    the cause (a certificate that fails verification is never retried)."""

    def __init__(self, message: str, ssl_error: ssl.SSLError | None = None) -> None:
        super().__init__(message)
        self.ssl_error = ssl_error


def ssl_cause(exc: BaseException) -> ssl.SSLError | None:
    """The :class:`ssl.SSLError` behind ``exc``, following its cause and context chain."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        # aiohttp's certificate error is itself an SSLError but carries the one ssl raised (with its
        # verify_message) as an attribute.
        found = getattr(cur, "certificate_error", None)
        if isinstance(found, ssl.SSLError):
            return found
        if isinstance(cur, ssl.SSLError) and type(cur).__module__ == "ssl":
            return cur
        seen.add(id(cur))
        cur = cur.__cause__ or cur.__context__
    return None


class Transport(Protocol):
    async def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        content: bytes | None,
        *,
        max_bytes: int,
        where: str,
        follow_redirects: bool = False,
    ) -> Reply:
        """One request; the body read up to ``max_bytes`` (``MAX_ERROR_BODY`` for an error status: more
        is cut, not refused). No timeout of its own: the caller puts it under ``asyncio.timeout``."""
        ...

    @property
    def is_closed(self) -> bool: ...

    async def aclose(self) -> None: ...


class BodyReader:
    """The size cap both transports apply: refuse a success answer larger than ``max_bytes`` (declared or
    read), cut an error answer at ``MAX_ERROR_BODY``."""

    def __init__(self, method: str, status: int, declared: str | None, max_bytes: int, where: str) -> None:
        self.limit = max_bytes if status < 400 else MAX_ERROR_BODY
        self.error = status >= 400
        self.where = where
        self.chunks: list[bytes] = []
        self.total = 0
        self.done = method == "HEAD"
        if (
            not self.done
            and not self.error
            and declared
            and declared.isdigit()
            and int(declared) > self.limit
        ):
            raise RegistryError(f"{where}: response of {declared} bytes exceeds the limit of {self.limit}")

    def add(self, chunk: bytes) -> bool:
        """Keep ``chunk``; False once an error body reached its cut (stop reading)."""
        self.total += len(chunk)
        if self.total > self.limit:
            if self.error:
                self.chunks.append(chunk[: len(chunk) - (self.total - self.limit)])
                return False
            raise RegistryError(f"{self.where}: response exceeds the limit of {self.limit} bytes")
        self.chunks.append(chunk)
        return True

    def body(self) -> bytes:
        return b"".join(self.chunks)
