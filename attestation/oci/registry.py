"""An async OCI distribution client: raw manifest bytes, blobs, referrers, auth, TLS, retries.

Why not oras-py for this (docs/oci.md): it re-serialises manifests (so we cannot control or verify
digests), cannot push an index, has no referrers API, and retries for minutes with no caller deadline.

Every call takes an absolute ``deadline`` (a ``time.monotonic()`` value). Transient failures (connection
errors, 429, 5xx) are retried with exponential backoff at most ``max_retries`` times and never past the
deadline; ``Retry-After`` is honoured when it fits. Bodies are read with a size cap. Errors are
:class:`RegistryError` naming the registry, repository and operation. The HTTP library underneath is a
:mod:`transport <attestation.oci.transport>`: httpx, or aiohttp for a long-lived server.
"""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import json
import logging
import os
import random
import ssl
import sys
import time
import urllib.parse
from collections.abc import Callable, Mapping, Sequence

from attestation.errors import InputError, RegistryAuthError, RegistryError, RegistryUnavailable
from attestation.oci import layout
from attestation.oci.auth import (
    Challenge,
    Credentials,
    DockerConfig,
    basic_header,
    parse_challenge,
    scoped_credentials,
)
from attestation.oci.cache import ContentCache
from attestation.oci.transport import (
    MAX_ERROR_BODY,
    Reply,
    Transport,
    TransportFailure,
)
from attestation.reference import ImageReference

RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
MAX_TOKEN_BYTES = 1024 * 1024

log = logging.getLogger(__name__)


def is_loopback(registry: str) -> bool:
    host = registry.rsplit(":", 1)[0] if not registry.endswith("]") else registry
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def open_transport(kind: str, context: ssl.SSLContext, on_https: Callable[[], None]) -> Transport:
    """A transport by its name in :data:`~attestation.oci.transport.TRANSPORTS`; each library is imported
    only when chosen."""
    if kind == "httpx":
        from attestation.oci.transport_httpx import HttpxTransport

        return HttpxTransport(context, on_https)
    if kind == "aiohttp":
        from attestation.oci.transport_aiohttp import AiohttpTransport

        return AiohttpTransport(context, on_https)
    raise ValueError(f"unknown registry transport {kind!r} (one of httpx, aiohttp)")


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _registry_message(body: bytes) -> str:
    """The first OCI error code/message of an error body, if it has one."""
    try:
        doc = json.loads(body[:MAX_ERROR_BODY])
        err = doc["errors"][0]
        return f"{err.get('code', '')}: {err.get('message', '')}".strip(": ")
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        return ""


def _client_context() -> ssl.SSLContext:
    """What ``ssl.create_default_context()`` makes, without the system CA store: trusts no CA yet."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, check_hostname
    keylog = os.environ.get("SSLKEYLOGFILE")
    if keylog and not sys.flags.ignore_environment:
        context.keylog_filename = keylog
    return context


class RegistryClient:
    """One client per process (or per request batch); safe for concurrent use within one event loop."""

    def __init__(
        self,
        *,
        insecure_registries: Sequence[str] = (),
        ca_file: str | None = None,
        docker_config: str | None = None,
        max_retries: int = 3,
        backoff: float = 0.2,
        max_backoff: float = 5.0,
        max_concurrency: int = 16,
        credentials: Mapping[str, Credentials] | None = None,
        plain_http_loopback: bool = True,
        cache_bytes: int = 0,
        cache_ttl: float = 60.0,
        observer: Callable[[str, str], None] | None = None,
        transport: str = "httpx",
    ) -> None:
        """``cache_bytes`` > 0 lets a long-lived client (the gate's) remember content fetched by digest and
        which registries lack the referrers API (:mod:`attestation.oci.cache`); tags are always asked.
        ``observer(registry, outcome)`` is told of every request sent: the HTTP status, or ``error``.
        ``transport`` names the HTTP library (:data:`attestation.oci.transport.TRANSPORTS`)."""
        self._observer = observer
        self._insecure = {r.strip() for r in insecure_registries if r.strip()}
        self._plain_http_loopback = plain_http_loopback
        self._max_retries = max_retries
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._explicit_creds = dict(credentials or {})
        self._docker_config_arg = docker_config
        self._docker_config: DockerConfig | None = None
        self._scheme: dict[str, str] = {}
        self._probing: dict[str, asyncio.Future[str]] = {}
        self._auth_header: dict[tuple[str, str], str] = {}  # (registry, scope) -> Authorization
        self._sem = asyncio.Semaphore(max_concurrency)
        self.cache = ContentCache(cache_bytes, cache_ttl)
        # ssl.create_default_context() minus its system CA store, which is loaded by a request hook
        # before the first HTTPS request (every redirect hop passes the hook): loading it is a noticeable
        # part of a `gate verify` against a plain-HTTP (loopback or insecure) registry (docs/performance.md).
        # Until then the context trusts no CA, so nothing can be accepted without it.
        context = _client_context()
        if ca_file:
            try:
                context.load_verify_locations(cafile=ca_file)
            except (OSError, ssl.SSLError) as err:
                raise InputError(f"CA file {ca_file}: cannot load: {err}") from None
        self._context = context
        self._system_cas_loaded = False
        self._transport_kind = transport
        self._http: Transport = open_transport(transport, context, self._before_https)

    def _before_https(self) -> None:
        if not self._system_cas_loaded:
            self._context.load_default_certs(ssl.Purpose.SERVER_AUTH)
            self._system_cas_loaded = True

    async def aclose(self) -> None:
        probes = list(self._probing.values())
        for probe in probes:
            probe.cancel()
        await asyncio.gather(*probes, return_exceptions=True)
        await self._http.aclose()

    async def __aenter__(self) -> RegistryClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- scheme, credentials -------------------------------------------------------------------

    def plain_http_allowed(self, registry: str) -> bool:
        return registry in self._insecure or (self._plain_http_loopback and is_loopback(registry))

    async def _scheme_for(self, registry: str, deadline: float) -> str:
        if registry in self._scheme:
            return self._scheme[registry]
        if registry in self._insecure:
            self._scheme[registry] = "http"
            return "http"
        if not self.plain_http_allowed(registry):
            self._scheme[registry] = "https"
            return "https"
        # A verification's first requests go out together; they share one probe instead of each making
        # its own (a client, a TLS attempt). Shielded: one caller giving up does not cancel it for others.
        probe = self._probing.get(registry)
        if probe is None:
            probe = asyncio.ensure_future(self._probe_scheme(registry, deadline))
            self._probing[registry] = probe
            probe.add_done_callback(lambda done: self._probe_done(registry, done))
        return await asyncio.shield(probe)

    def _probe_done(self, registry: str, probe: asyncio.Future[str]) -> None:
        self._probing.pop(registry, None)
        if not probe.cancelled():
            probe.exception()  # seen by every waiter; marked retrieved in case they all gave up

    async def _probe_scheme(self, registry: str, deadline: float) -> str:
        # Loopback: HTTPS first, plain HTTP only when the server does not speak TLS at all (as Docker
        # does). A certificate that fails verification is an error, never a reason to downgrade.
        # The first probe trusts no CA: a server that does not speak TLS fails it as it fails the real
        # one, without loading the CA store; one that does fails certificate verification, and only then
        # is the probe repeated with the verifying client, which decides.
        probe = open_transport(self._transport_kind, _client_context(), lambda: None)
        try:
            for client in (probe, self._http):
                timeout = max(0.05, min(2.0, deadline - time.monotonic()))
                try:
                    async with asyncio.timeout(timeout):
                        await client.send(
                            "GET",
                            f"https://{registry}/v2/",
                            {},
                            None,
                            max_bytes=MAX_ERROR_BODY,
                            where=f"registry {registry}",
                        )
                    scheme = "https"
                except (TimeoutError, TransportFailure) as err:
                    cause = err.ssl_error if isinstance(err, TransportFailure) else None
                    if cause is None:
                        log.debug("registry %s: no TLS answer, trying plain HTTP this time", registry)
                        return "http"  # nothing answered TLS in time: try HTTP, decide again next time
                    if isinstance(cause, ssl.SSLCertVerificationError):
                        if client is probe:
                            continue  # it speaks TLS: ask again with the trusted CAs
                        raise RegistryError(
                            f"registry {registry}: TLS certificate verification failed "
                            f"({cause.verify_message}); pass the registry's CA with --registry-ca"
                        ) from None
                    scheme = "http"
                break
        finally:
            await probe.aclose()
        self._scheme[registry] = scheme
        log.debug("registry %s: speaks %s", registry, scheme)
        return scheme

    async def _credentials(self, registry: str) -> Credentials | None:
        scoped = scoped_credentials.get()
        if scoped is not None:
            found = await scoped(registry)
            if found is not None:
                return found
        if registry in self._explicit_creds:
            return self._explicit_creds[registry]
        if self._docker_config is None:
            self._docker_config = DockerConfig.load(self._docker_config_arg)
        config = self._docker_config
        return await asyncio.to_thread(config.credentials, registry)

    async def _authenticate(
        self, registry: str, scope: str, challenge: Challenge | None, deadline: float
    ) -> str:
        creds = await self._credentials(registry)
        log.debug(
            "registry %s: %s challenge for %s, %s",
            registry,
            challenge.scheme if challenge else "no",
            scope,
            f"credentials from {creds.source}" if creds else "anonymous",
        )
        if challenge is None:
            raise RegistryError(f"registry {registry}: 401 without a WWW-Authenticate challenge")
        if challenge.scheme == "basic":
            if creds is None or creds.username is None:
                raise RegistryAuthError(
                    f"registry {registry}: authentication required and no credentials found"
                )
            return basic_header(creds)
        if challenge.scheme != "bearer":
            raise RegistryError(
                f"registry {registry}: unsupported authentication scheme {challenge.scheme!r}"
            )
        if creds is not None and creds.registry_token:
            return "Bearer " + creds.registry_token
        return "Bearer " + await self._fetch_token(registry, scope, challenge, creds, deadline)

    async def _fetch_token(
        self, registry: str, scope: str, challenge: Challenge, creds: Credentials | None, deadline: float
    ) -> str:
        realm = challenge.params.get("realm")
        if not realm:
            raise RegistryError(f"registry {registry}: bearer challenge without a realm")
        parsed = urllib.parse.urlsplit(realm)
        if parsed.scheme != "https" and not (
            parsed.scheme == "http" and self.plain_http_allowed(parsed.netloc)
        ):
            raise RegistryError(f"registry {registry}: refusing token realm {realm!r} over plain HTTP")
        query = {k: v for k, v in (("service", challenge.params.get("service")), ("scope", scope)) if v}
        headers: dict[str, str] = {}
        content: bytes | None = None
        if creds is not None and creds.identity_token:
            method, url = "POST", realm
            form = {
                "grant_type": "refresh_token",
                "refresh_token": creds.identity_token,
                "client_id": "provgate",
            }
            content = urllib.parse.urlencode({**form, **query}).encode()
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        else:
            method = "GET"
            url = realm + ("&" if parsed.query else "?") + urllib.parse.urlencode(query) if query else realm
            if creds is not None and creds.username is not None:
                headers["Authorization"] = basic_header(creds)
        try:
            async with asyncio.timeout(max(0.05, deadline - time.monotonic())):
                resp = await self._http.send(
                    method, url, headers, content, max_bytes=MAX_TOKEN_BYTES, where=f"token service {realm}"
                )
        except (TimeoutError, TransportFailure) as err:
            reason = f"registry {registry}: token request to {realm} failed: {err or 'timed out'}"
            raise RegistryUnavailable(reason) from None
        except RegistryError:
            raise RegistryError(
                f"registry {registry}: token response larger than {MAX_TOKEN_BYTES} bytes"
            ) from None
        if resp.status != 200:
            busy = resp.status in RETRY_STATUS
            refused = resp.status in (401, 403)
            raise (RegistryUnavailable if busy else RegistryAuthError if refused else RegistryError)(
                f"registry {registry}: token service {realm} answered {resp.status} for {scope}"
            )
        try:
            doc = json.loads(resp.body)
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise RegistryError(f"registry {registry}: token service {realm} returned no token")
        return token

    # -- the one request loop ------------------------------------------------------------------

    async def request(
        self,
        method: str,
        ref: ImageReference,
        path: str,
        *,
        what: str,
        deadline: float,
        push: bool = False,
        headers: Mapping[str, str] | None = None,
        content: bytes | None = None,
        ok: Sequence[int] = (200,),
        allow: Sequence[int] = (),
        max_bytes: int = layout.MAX_MANIFEST_BYTES,
        follow_redirects: bool = False,
    ) -> Reply:
        """Send one registry API request with auth, retries, the deadline and a body-size cap.

        ``path`` starts with ``/v2/`` or is an absolute URL (an upload Location). Statuses in ``ok`` and
        ``allow`` are returned; anything else raises :class:`RegistryError`.
        """
        registry = ref.registry
        where = f"{what} ({registry}/{ref.repository})"
        scope = f"repository:{ref.repository}:{'pull,push' if push else 'pull'}"
        attempt = 0
        authed_once = False
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RegistryUnavailable(f"{where}: deadline exceeded")
            if path.startswith(("http://", "https://")):
                url = path
            else:
                url = f"{await self._scheme_for(registry, deadline)}://{registry}{path}"
            req_headers = dict(headers or {})
            auth = self._auth_header.get((registry, scope))
            if auth:
                req_headers["Authorization"] = auth
            try:
                async with self._sem, asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    reply = await self._http.send(
                        method,
                        url,
                        req_headers,
                        content,
                        max_bytes=max_bytes,
                        where=where,
                        follow_redirects=follow_redirects,
                    )
            except TimeoutError:
                self._observe(registry, "error")
                if time.monotonic() >= deadline:
                    raise RegistryUnavailable(f"{where}: deadline exceeded waiting for {registry}") from None
                reason = "timed out"
            except TransportFailure as err:
                self._observe(registry, "error")
                cause = err.ssl_error
                if isinstance(cause, ssl.SSLCertVerificationError):
                    raise RegistryError(
                        f"{where}: TLS certificate verification failed ({cause.verify_message})"
                    ) from None
                reason = f"connection failed: {err or type(err).__name__}"
            else:
                self._observe(registry, str(reply.status))
                if reply.status == 401 and not authed_once:
                    authed_once = True
                    challenge = parse_challenge(reply.headers.get("www-authenticate"))
                    self._auth_header[(registry, scope)] = await self._authenticate(
                        registry, scope, challenge, deadline
                    )
                    continue
                if reply.status in ok or reply.status in allow:
                    return reply
                if reply.status in (401, 403):
                    raise RegistryAuthError(
                        f"{where}: {reply.status} {_registry_message(reply.body) or 'unauthorized'}"
                        " (check the credentials in the docker config)"
                    )
                if reply.status not in RETRY_STATUS:
                    detail = _registry_message(reply.body)
                    raise RegistryError(
                        f"{where}: unexpected HTTP {reply.status}" + (f" {detail}" if detail else "")
                    )
                reason = f"HTTP {reply.status}"
                retry_after = _retry_after(reply.headers.get("retry-after"))
            if attempt >= self._max_retries:
                raise RegistryUnavailable(f"{where}: giving up after {attempt + 1} attempts, last: {reason}")
            delay = min(self._max_backoff, self._backoff * (2**attempt)) * (0.5 + random.random() / 2)
            if reason.startswith("HTTP") and retry_after is not None:
                delay = max(delay, retry_after)
            if time.monotonic() + delay >= deadline:
                raise RegistryUnavailable(f"{where}: {reason}; retrying would pass the deadline")
            attempt += 1
            log.debug("%s: %s; retrying in %.2f s (attempt %d)", where, reason, delay, attempt + 1)
            await asyncio.sleep(delay)

    def _observe(self, registry: str, outcome: str) -> None:
        if self._observer is not None:
            self._observer(registry, outcome)

    # -- OCI distribution operations -----------------------------------------------------------

    async def get_manifest(
        self,
        ref: ImageReference,
        reference: str,
        *,
        deadline: float,
        accept: Sequence[str] = layout.IMAGE_MEDIA_TYPES,
        missing_ok: bool = False,
    ) -> tuple[bytes, str, str] | None:
        """``(body, media_type, digest)`` of a manifest by tag or digest; None if absent and ``missing_ok``.

        The digest is computed over the bytes received; a digest reference must match it. With the
        cache on, a manifest fetched by digest in the last ``cache_ttl`` seconds is not asked again.
        """
        by_digest = reference.startswith("sha256:")
        key = ("manifest", ref.registry, ref.repository, reference, *accept)
        if by_digest and self.cache.enabled:
            hit = self.cache.get(key, fresh=True)
            if hit is not None:
                log.debug("manifest %s@%s: from the content cache", ref.name, reference)
                return hit[0], hit[1], reference
        what = f"manifest {reference}"
        reply = await self.request(
            "GET",
            ref,
            f"/v2/{ref.repository}/manifests/{reference}",
            what=what,
            deadline=deadline,
            headers={"Accept": ", ".join(accept)},
            allow=(404,) if missing_ok else (),
        )
        if reply.status == 404:
            return None
        digest = layout.sha256_digest(reply.body)
        where = f"{ref.name}:{reference}" if ":" not in reference else f"{ref.name}@{reference}"
        if reference.startswith("sha256:") and digest != reference:
            raise RegistryError(f"manifest {where}: registry returned content with digest {digest}")
        header = reply.headers.get("docker-content-digest")
        if header and header.startswith("sha256:") and header != digest:
            raise RegistryError(
                f"manifest {where}: Docker-Content-Digest {header} does not match content {digest}"
            )
        media_type = reply.headers.get("content-type", "").split(";")[0].strip()
        if by_digest and self.cache.enabled:
            self.cache.put(key, reply.body, media_type)
        return reply.body, media_type, digest

    async def put_manifest(
        self, ref: ImageReference, reference: str, body: bytes, media_type: str, *, deadline: float
    ) -> str:
        await self.request(
            "PUT",
            ref,
            f"/v2/{ref.repository}/manifests/{reference}",
            what=f"push manifest {reference}",
            deadline=deadline,
            push=True,
            headers={"Content-Type": media_type},
            content=body,
            ok=(200, 201, 202),
        )
        return layout.sha256_digest(body)

    async def blob_exists(
        self, ref: ImageReference, digest: str, *, deadline: float, push: bool = False
    ) -> bool:
        reply = await self.request(
            "HEAD",
            ref,
            f"/v2/{ref.repository}/blobs/{digest}",
            what=f"blob {digest}",
            deadline=deadline,
            push=push,
            allow=(404,),
            follow_redirects=True,
        )
        return reply.status == 200

    async def upload_blob(self, ref: ImageReference, data: bytes, *, deadline: float) -> str:
        """Upload ``data`` (monolithic POST + PUT) unless the registry has it; returns its digest."""
        digest = layout.sha256_digest(data)
        if await self.blob_exists(ref, digest, deadline=deadline, push=True):
            return digest
        start = await self.request(
            "POST",
            ref,
            f"/v2/{ref.repository}/blobs/uploads/",
            what="start blob upload",
            deadline=deadline,
            push=True,
            ok=(202,),
        )
        location = start.headers.get("location")
        if not location:
            raise RegistryError(f"start blob upload ({ref.name}): no Location header")
        url = urllib.parse.urljoin(start.url, location)
        sep = "&" if "?" in url else "?"
        await self.request(
            "PUT",
            ref,
            f"{url}{sep}digest={urllib.parse.quote(digest)}",
            what=f"upload blob {digest}",
            deadline=deadline,
            push=True,
            headers={"Content-Type": "application/octet-stream"},
            content=data,
            ok=(201, 204),
        )
        return digest

    async def get_blob(
        self, ref: ImageReference, digest: str, *, size: int | None, deadline: float, max_bytes: int
    ) -> bytes:
        """A blob, verified against its sha256 digest and declared size."""
        if not layout.is_sha256(digest):
            raise RegistryError(f"blob {ref.name}@{digest}: only sha256 digests are supported")
        if size is not None and size > max_bytes:
            raise RegistryError(
                f"blob {ref.name}@{digest}: declared size {size} exceeds the limit of {max_bytes}"
            )
        key = ("blob", ref.registry, ref.repository, digest)
        if self.cache.enabled:
            hit = self.cache.get(key, fresh=False)
            if hit is not None and (size is None or len(hit[0]) == size) and len(hit[0]) <= max_bytes:
                log.debug("blob %s@%s: from the content cache", ref.name, digest)
                return hit[0]
        reply = await self.request(
            "GET",
            ref,
            f"/v2/{ref.repository}/blobs/{digest}",
            what=f"blob {digest}",
            deadline=deadline,
            max_bytes=max_bytes,
            follow_redirects=True,
        )
        if layout.sha256_digest(reply.body) != digest:
            raise RegistryError(f"blob {ref.name}@{digest}: content does not match its digest")
        if size is not None and len(reply.body) != size:
            raise RegistryError(f"blob {ref.name}@{digest}: {len(reply.body)} bytes, descriptor says {size}")
        if self.cache.enabled:
            self.cache.put(key, reply.body)
        return reply.body

    async def get_referrers(self, ref: ImageReference, digest: str, *, deadline: float) -> bytes | None:
        """The referrers API index for ``digest``; None if the registry does not implement the API.

        Like go-containerregistry: only a 200 with the OCI index content type counts as support. With the
        cache on, a repository found without the API is not asked again for ``cache_ttl`` seconds.
        """
        where = f"{ref.registry}/{ref.repository}"
        if self.cache.lacks_referrers_api(where):
            log.debug("%s: no referrers API (remembered)", where)
            return None
        reply = await self.request(
            "GET",
            ref,
            f"/v2/{ref.repository}/referrers/{digest}",
            what=f"referrers of {digest}",
            deadline=deadline,
            headers={"Accept": layout.OCI_INDEX},
            allow=(404, 400, 405, 406),
        )
        content_type = reply.headers.get("content-type", "").split(";")[0].strip()
        supported = reply.status == 200 and content_type == layout.OCI_INDEX
        self.cache.note_referrers_api(where, supported=supported)
        return reply.body if supported else None
