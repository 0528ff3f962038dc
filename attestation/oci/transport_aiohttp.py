"""The registry client's transport for `gate serve`, on aiohttp (:mod:`attestation.oci.transport` says why).

Redirects are followed here, not by aiohttp, so that every hop passes ``on_https`` before its connection is
made and the ``Authorization`` header never leaves the origin it was meant for.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import aiohttp
from yarl import URL

from attestation.errors import RegistryError
from attestation.oci.transport import (
    MAX_REDIRECTS,
    USER_AGENT,
    BodyReader,
    Reply,
    TransportFailure,
    ssl_cause,
)

if TYPE_CHECKING:
    from multidict import CIMultiDictProxy

REDIRECT_STATUS = frozenset({301, 302, 303, 307, 308})
# As httpx's defaults: a connection that does not open, or a hop that stops sending, within this many
# seconds fails (and is retried by the client while its deadline allows).
HOP_TIMEOUT = aiohttp.ClientTimeout(total=None, sock_connect=5.0, sock_read=5.0)


def _origin(url: URL) -> tuple[str, str | None, int | None]:
    return url.scheme, url.host, url.port


class AiohttpTransport:
    def __init__(self, context: ssl.SSLContext, on_https: Callable[[], None]) -> None:
        self._context = context
        self._on_https = on_https
        self._session: aiohttp.ClientSession | None = None  # made in the event loop, by the first request
        self._closed = False

    def _open(self) -> aiohttp.ClientSession:
        if self._closed:
            raise TransportFailure("the registry client is closed")
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=self._context, limit=100),
                headers={"User-Agent": USER_AGENT},
                timeout=HOP_TIMEOUT,
            )
        return self._session

    @property
    def is_closed(self) -> bool:
        return self._closed

    async def aclose(self) -> None:
        self._closed = True
        session, self._session = self._session, None
        if session is not None:
            await session.close()

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
        session = self._open()
        target = URL(url, encoded=True)
        hop_headers = dict(headers)
        try:
            for _ in range(MAX_REDIRECTS + 1):
                if target.scheme != "http":
                    self._on_https()
                async with session.request(
                    method, target, headers=hop_headers, data=content, allow_redirects=False
                ) as resp:
                    location = resp.headers.get("Location")
                    if not (follow_redirects and resp.status in REDIRECT_STATUS and location):
                        reader = BodyReader(
                            method, resp.status, resp.headers.get("Content-Length"), max_bytes, where
                        )
                        if not reader.done:
                            async for chunk in resp.content.iter_chunked(64 * 1024):
                                if not reader.add(chunk):
                                    break
                        found: CIMultiDictProxy[str] = resp.headers
                        return Reply(resp.status, found, reader.body(), str(target))
                following = target.join(URL(location, encoded=True))
                if _origin(following) != _origin(target):
                    hop_headers = {k: v for k, v in hop_headers.items() if k.lower() != "authorization"}
                if resp.status == 303 and method != "HEAD":
                    method, content = "GET", None
                target = following
        except TimeoutError:
            raise TimeoutError(f"{where}: timed out") from None
        except aiohttp.ClientError as err:
            raise TransportFailure(str(err) or type(err).__name__, ssl_cause(err)) from err
        raise RegistryError(f"{where}: more than {MAX_REDIRECTS} redirects")
