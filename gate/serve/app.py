"""The HTTP surface of ``gate serve`` (Starlette apps): ``POST /validate``, ``POST /mutate``,
``POST /v1/verify``, ``GET /healthz``, ``GET /readyz``, ``GET /metrics`` on ``listen``, and, when
``verifyApi.listen`` is set, ``POST /v1/verify`` and ``GET /healthz`` only on that client-certificate
listener: the API server calls the admission endpoints on ``listen``, so a release tool's certificate opens
the one endpoint it is for (and ``/metrics``, which names namespaces, stays off a port exposed for CI).

Every body is read with a bound before it is parsed. Every admission request runs under a deadline
shorter than the API server's own (its ``?timeout=``), so the answer is provgate's, never the API
server's "context deadline exceeded". Nothing answers with a traceback: a body that is not an
AdmissionReview is a 400 naming what is wrong; an unexpected failure is logged here and answered as a
denial (or a 500 with one line when there is no request to deny).
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from attestation.errors import InputError
from attestation.limits import load_json
from attestation.reference import InvalidReference, parse
from gate.decision import Decision, undecided
from gate.render import printable, to_json_bytes
from gate.serve.admission import BadReview, Review, parse_review, response
from gate.serve.config import MAX_WEBHOOK_TIMEOUT, ServeConfig
from gate.serve.decider import Decider
from gate.serve.metrics import Metrics
from gate.serve.pullsecrets import PullSecrets
from gate.serve.webhook import mutate, validate

if TYPE_CHECKING:
    from gate.serve.workers import WorkerSlot

log = logging.getLogger(__name__)

MAX_VERIFY_IMAGES = 256
MAX_VERIFY_BODY = 1024 * 1024
JSON = "application/json"
_ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str | None) -> float | None:
    """Seconds of a Go duration as the API server writes ``?timeout=`` (``10s``, ``1m30s``); None if
    absent or not one."""
    if not text or len(text) > 32:
        return None
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            return None
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    return total if pos == len(text) and pos else None


def request_budget(timeout: str | None, cap: float) -> float:
    """Seconds this request may take: the API server's timeout less a margin for the way back (a
    tenth, at least a quarter second), never more than ``cap``."""
    given = parse_go_duration(timeout)
    if given is None:
        return cap
    given = min(given, MAX_WEBHOOK_TIMEOUT)
    return max(0.05, min(cap, given - max(0.25, given / 10)))


def _json(doc: Any, status: int = 200) -> Response:
    # Hostile characters a caller sent (an image reference) come back as JSON escapes: the same strings,
    # in bytes that are valid UTF-8 and drive no terminal.
    return Response(to_json_bytes(doc), status, media_type=JSON)


def _error(message: str, status: int) -> Response:
    return _json({"error": printable(" ".join(message.split()))}, status)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused past ``limit`` bytes before more than that is read."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BadReview(
            f"request body of {declared} bytes is larger than the limit of {limit} (maxRequestBytes)"
        )
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            raise BadReview(f"request body is larger than the limit of {limit} bytes (maxRequestBytes)")
        chunks.append(chunk)
    return b"".join(chunks)


class ApiToken:
    """The bearer token for ``/v1/verify``, read again when its file changes (a rotated Secret)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._token = b""
        self.refresh()

    def refresh(self) -> None:
        try:
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_ino)
            if stamp != self._stamp:
                token = self.path.read_bytes()[:4096].strip()
                if not token:
                    raise InputError(f"verifyApi.bearerTokenFile {self.path} is empty")
                self._token, self._stamp = token, stamp
        except OSError as err:
            raise InputError(f"verifyApi.bearerTokenFile {self.path}: cannot read ({err.strerror})") from None

    def accepts(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer ") or not self._token:
            return False
        return hmac.compare_digest(header[len("Bearer ") :].strip().encode(), self._token)


class Server:
    """The app and what its handlers share."""

    def __init__(
        self,
        config: ServeConfig,
        decider: Decider,
        metrics: Metrics,
        *,
        pull_secrets: PullSecrets | None = None,
        worker: WorkerSlot | None = None,
    ) -> None:
        self.config = config
        self.worker = worker
        self.decider = decider
        self.metrics = metrics
        self.pull_secrets = pull_secrets
        api = config.verify_api
        self.token = ApiToken(api.bearer_token_file) if api.bearer_token_file else None
        routes = [
            Route("/validate", self._timed("validate", self.validate), methods=["POST"]),
            Route("/mutate", self._timed("mutate", self.mutate), methods=["POST"]),
            Route("/v1/verify", self._timed("verify", self.verify), methods=["POST"]),
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
            Route("/metrics", self.metrics_endpoint, methods=["GET"]),
        ]
        self.app = Starlette(routes=routes)
        # Which listener a request came in on is which app it reached, not its local address: two
        # listeners may share a port number on different addresses.
        self.client_cert_app = Starlette(
            routes=[
                Route("/v1/verify", self._timed("verify", self.verify_client_cert), methods=["POST"]),
                Route("/healthz", self.healthz, methods=["GET"]),
                Route("/{path:path}", self.not_on_client_cert_listener, methods=_ALL_METHODS),
            ]
        )

    def _timed(
        self, endpoint: str, handler: Callable[[Request], Awaitable[Response]]
    ) -> Callable[[Request], Awaitable[Response]]:
        histogram = self.metrics.latency.labels(endpoint)

        async def timed(request: Request) -> Response:
            started = time.perf_counter()
            try:
                return await handler(request)
            finally:
                histogram.observe(time.perf_counter() - started)

        return timed

    # -- admission -------------------------------------------------------------------------------------

    async def _admission(self, request: Request, endpoint: str) -> Response:
        started = time.monotonic()
        config = self.decider.config
        budget = request_budget(request.query_params.get("timeout"), config.verify_timeout)
        review: Review | None = None
        try:
            body = await read_body(request, config.max_body_bytes)
            review = parse_review(body, max_bytes=config.max_body_bytes)
            deadline = started + budget
            if endpoint == "validate":
                answer = await validate(review, config, self.decider, deadline, self.pull_secrets)
            else:
                answer = await mutate(review, config, self.decider, deadline, self.pull_secrets)
        except BadReview as err:
            log.warning("%s: bad request: %s", endpoint, printable(str(err)))
            return _error(str(err), 400)
        except Exception as err:  # never a traceback to the caller, never an allow
            log.exception("%s: internal error", endpoint)
            if review is None:
                return _error(f"provgate internal error: {type(err).__name__}", 500)
            message = f"provgate internal error: {type(err).__name__}: {err}"
            return _json(response(review.uid, allowed=False, code=500, message=message))
        kind = review.kind.kind
        self.metrics.admissions.labels(
            endpoint, kind, review.operation, answer.outcome, review.namespace
        ).inc()
        if answer.outcome in ("denied", "undecided", "invalid", "warned") and endpoint == "validate":
            status = answer.body["response"].get("status", {}).get("message", "")
            log.info(
                "%s %s %s/%s%s: %s",
                answer.outcome,
                kind,
                review.namespace,
                review.name,
                " (dry run)" if review.dry_run else "",
                printable(status or "; ".join(answer.body["response"].get("warnings", []))),
            )
        return _json(answer.body)

    async def validate(self, request: Request) -> Response:
        return await self._admission(request, "validate")

    async def mutate(self, request: Request) -> Response:
        return await self._admission(request, "mutate")

    # -- on demand -------------------------------------------------------------------------------------

    def _refusal(self, request: Request, *, client_cert: bool) -> Response | None:
        api = self.config.verify_api
        if not api.enabled:
            return _error("POST /v1/verify is turned off (verifyApi.enabled: false)", 404)
        if client_cert:
            return None  # the TLS handshake required a certificate issued by verifyApi.clientCaFile
        if self.token is not None:
            try:
                self.token.refresh()
            except InputError as err:
                log.error("%s", err)
                return _error("the API token cannot be read; see the server log", 503)
            if self.token.accepts(request.headers.get("authorization")):
                return None
            return _error("missing or wrong bearer token (Authorization: Bearer <verifyApi token>)", 401)
        if api.listen is not None:
            return _error(
                "POST /v1/verify is served on the client-certificate listener (verifyApi.listen)", 403
            )
        if self.config.loopback_only:
            return None
        return _error(
            "POST /v1/verify needs authentication when the server listens beyond loopback: set "
            "verifyApi.bearerTokenFile or verifyApi.clientCaFile",
            403,
        )

    async def verify(self, request: Request) -> Response:
        return await self._verify(request, client_cert=False)

    async def verify_client_cert(self, request: Request) -> Response:
        return await self._verify(request, client_cert=True)

    async def not_on_client_cert_listener(self, request: Request) -> Response:
        return _error(
            f"{request.method} {request.url.path}: not served here; the client-certificate listener "
            "(verifyApi.listen) serves POST /v1/verify and GET /healthz, the admission webhooks are on "
            "listen",
            404,
        )

    async def _verify(self, request: Request, *, client_cert: bool) -> Response:
        refused = self._refusal(request, client_cert=client_cert)
        if refused is not None:
            return refused
        try:
            body = await read_body(request, MAX_VERIFY_BODY)
            doc = load_json(body, max_bytes=MAX_VERIFY_BODY, what="request body")
        except InputError as err:
            return _error(f'{err}; expected {{"image": "..."}} or {{"images": [...]}}', 400)
        images, single = _verify_request(doc)
        if isinstance(images, str):
            return _error(images, 400)
        deadline = time.monotonic() + self.decider.config.verify_timeout
        import asyncio

        decisions = await asyncio.gather(*(self._decide_one(image, deadline) for image in images))
        if single:
            return _json(decisions[0].to_dict())
        return _json({"decisions": [d.to_dict() for d in decisions]})

    async def _decide_one(self, image: str, deadline: float) -> Decision:
        try:
            ref = parse(image)
        except InvalidReference as err:
            return undecided(image, [str(err)])
        decision, _ = await self.decider.decide(ref, deadline)
        return decision

    # -- probes ----------------------------------------------------------------------------------------

    async def healthz(self, request: Request) -> Response:
        return Response("ok\n", media_type="text/plain")

    async def readyz(self, request: Request) -> Response:
        decider = self.decider
        current = decider.current
        ready = decider.ready
        doc: dict[str, Any] = {"ready": ready}
        if decider.reason:
            doc["reason"] = decider.reason
        if self.worker is not None:
            # Ready only while every worker is: the probe reaches one of them, the API server all.
            doc["worker"] = self.worker.index + 1
            doc["workers"] = self.worker.board.count
            others = self.worker.not_ready()
            if others:
                ready = doc["ready"] = False
                listed = ", ".join(str(n) for n in others)
                doc.setdefault("reason", f"worker {listed} not ready (the server log says why)")
        if current is not None:
            doc["policy"] = current.key[0]
            doc["trust"] = current.key[1]
            doc["rules"] = len(current.gate.policy_set.rules)
            doc["mode"] = current.config.mode
        return _json(doc, 200 if ready else 503)

    async def metrics_endpoint(self, request: Request) -> Response:
        return Response(self.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


def _verify_request(doc: Any) -> tuple[list[str] | str, bool]:
    """The images asked for, and whether the answer is one decision; or a message saying what is wrong."""
    usage = 'expected {"image": "..."} or {"images": ["...", ...]}'
    if not isinstance(doc, dict) or set(doc) - {"image", "images"} or len(doc) != 1:
        return f"request body: {usage}", False
    if "image" in doc:
        image = doc["image"]
        if not isinstance(image, str) or not image:
            return f"image must be a non-empty string; {usage}", False
        return [image], True
    images = doc["images"]
    if not isinstance(images, list) or not images or not all(isinstance(i, str) and i for i in images):
        return f"images must be a non-empty list of strings; {usage}", False
    if len(images) > MAX_VERIFY_IMAGES:
        return f"{len(images)} images asked for, the limit is {MAX_VERIFY_IMAGES}", False
    return images, False
