"""The registry client's default transport, on httpx (:mod:`attestation.oci.transport`)."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Mapping

import httpx

from attestation.errors import RegistryError
from attestation.oci.transport import (
    MAX_REDIRECTS,
    USER_AGENT,
    BodyReader,
    Reply,
    TransportFailure,
    ssl_cause,
)


class HttpxTransport:
    def __init__(self, context: ssl.SSLContext, on_https: Callable[[], None]) -> None:
        self._on_https = on_https

        async def before(request: httpx.Request) -> None:  # every redirect hop passes it
            if request.url.scheme != "http":
                self._on_https()

        self._http = httpx.AsyncClient(
            verify=context,
            follow_redirects=False,
            max_redirects=MAX_REDIRECTS,
            headers={"User-Agent": USER_AGENT},
            event_hooks={"request": [before]},
        )  # httpx's default timeouts (5 s to connect, between reads): a stalled hop is retried

    @property
    def is_closed(self) -> bool:
        return self._http.is_closed

    async def aclose(self) -> None:
        await self._http.aclose()

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
        try:
            request = self._http.build_request(method, url, headers=dict(headers), content=content)
            resp = await self._http.send(request, stream=True, follow_redirects=follow_redirects)
            try:
                reader = BodyReader(
                    method, resp.status_code, resp.headers.get("content-length"), max_bytes, where
                )
                if not reader.done:
                    async for chunk in resp.aiter_bytes():
                        if not reader.add(chunk):
                            break
                return Reply(resp.status_code, resp.headers, reader.body(), str(resp.url))
            finally:
                await resp.aclose()
        except httpx.TooManyRedirects:
            raise RegistryError(f"{where}: more than {MAX_REDIRECTS} redirects") from None
        except httpx.TimeoutException:
            raise TimeoutError(f"{where}: timed out") from None
        except httpx.TransportError as err:
            raise TransportFailure(str(err) or type(err).__name__, ssl_cause(err)) from err
