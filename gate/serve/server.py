"""Running ``gate serve``: uvicorn (httptools) on uvloop when installed, one event loop per process; one
process, or ``workers: N`` of them sharing the listening sockets (:mod:`gate.serve.workers`).

* HTTPS only. The certificate and key are loaded into the one ``SSLContext`` the listener uses, and
  loaded again when their files change (cert-manager rotates the Secret): new connections get the new
  certificate, open ones finish with the old.
* The listening socket is made here with ``TCP_NODELAY`` (inherited by every accepted connection): a
  response written in two parts otherwise waits for the peer's delayed ACK, ~40 ms per admission.
* Keep-alive outlasts the API server's idle timeout (90 s), so the client closes idle connections, never
  the server under a request the client is about to send.
* SIGTERM/SIGINT: stop accepting, finish the requests in flight (each is bounded by its deadline), then
  close the gate; a second signal exits at once.
* Every ``reload_interval`` seconds the TLS files and the policy, data, trust and configuration files are
  looked at; a change reloads them (:class:`~gate.serve.decider.Decider`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import ssl
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from attestation.errors import InputError
from gate.serve.app import Server
from gate.serve.config import ServeConfig, TlsConfig
from gate.serve.decider import Decider
from gate.serve.metrics import Metrics
from gate.serve.peers import Peers
from gate.serve.pullsecrets import PullSecrets

if TYPE_CHECKING:
    from gate.serve.workers import WorkerSlot

log = logging.getLogger(__name__)

KEEP_ALIVE = 120  # seconds; longer than Go's default IdleConnTimeout (90 s), which the API server uses
GRACEFUL_SHUTDOWN = 30  # seconds to finish requests in flight; each is bounded by its own deadline


class ReloadingTls:
    """One server ``SSLContext`` whose certificate follows the files on disk."""

    def __init__(self, tls: TlsConfig, *, client_ca: Path | None = None) -> None:
        self.tls = tls
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self.context.set_alpn_protocols(["http/1.1"])
        if client_ca is not None:
            try:
                self.context.load_verify_locations(cafile=str(client_ca))
            except (OSError, ssl.SSLError) as err:
                raise InputError(f"verifyApi.clientCaFile {client_ca}: cannot load: {err}") from None
            self.context.verify_mode = ssl.CERT_REQUIRED
        self._stamp = self._stat()
        self._load()

    def _stat(self) -> tuple[tuple[int, int, int], ...]:
        out = []
        for path in (self.tls.cert_file, self.tls.key_file):
            try:
                st = os.stat(path)
                out.append((st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                out.append((-1, -1, -1))
        return tuple(out)

    def _load(self) -> None:
        try:
            self.context.load_cert_chain(str(self.tls.cert_file), str(self.tls.key_file))
        except (OSError, ssl.SSLError) as err:
            raise InputError(
                f"tls: cannot load certFile {self.tls.cert_file} with keyFile {self.tls.key_file}: {err}"
            ) from None

    def reload_if_changed(self) -> bool:
        stamp = self._stat()
        if stamp == self._stamp:
            return False
        try:
            self._load()
        except InputError as err:
            # A half-written pair (the key before the certificate): keep the old one, try again later.
            log.warning("%s; still serving the previous certificate", err)
            return False
        self._stamp = stamp
        log.info("tls: serving the new certificate from %s", self.tls.cert_file)
        return True


def listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as err:
        sock.close()
        raise InputError(f"listen {host}:{port}: {err.strerror or err}") from None
    sock.setblocking(False)
    return sock


def _uvicorn_server(app: object, context: ssl.SSLContext) -> object:
    import uvicorn

    class Quiet(uvicorn.Server):
        # Signals are ours (both listeners stop together, nothing re-raised after shutdown).
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    config = uvicorn.Config(
        app,  # type: ignore[arg-type]
        ssl_context_factory=lambda _config, _default: context,
        http="httptools",
        lifespan="off",
        access_log=False,
        log_config=None,
        server_header=False,
        date_header=False,
        timeout_keep_alive=KEEP_ALIVE,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN,
    )
    return Quiet(config)


def bind(config: ServeConfig) -> list[socket.socket]:
    """The listening sockets: the main one, and the client-certificate one when configured."""
    sockets = [listening_socket(*config.listen)]
    if config.verify_api.listen is not None:
        try:
            sockets.append(listening_socket(*config.verify_api.listen))
        except BaseException:
            sockets[0].close()
            raise
    return sockets


async def run(
    config: ServeConfig, *, sockets: list[socket.socket] | None = None, slot: WorkerSlot | None = None
) -> None:
    """Serve until SIGTERM/SIGINT. Raises :class:`InputError` for what keeps it from starting.

    ``sockets`` (as :func:`bind` makes them) and ``slot`` are given to a worker by its supervisor
    (:mod:`gate.serve.workers`); one process alone binds its own."""
    metrics = Metrics()
    decider = Decider(config, metrics)
    tls = ReloadingTls(config.tls)
    mtls: ReloadingTls | None = None
    if config.verify_api.listen is not None:
        mtls = ReloadingTls(config.tls, client_ca=config.verify_api.client_ca_file)
    if sockets is None:
        sockets = bind(config)
    try:
        await decider.start()
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    peers: Peers | None = None
    if slot is not None and slot.peers is not None and config.workers > 1:
        peers = Peers(slot.peers, slot.index, slot.board)
        try:
            await peers.serve(decider.answer_peer)
            decider.peers = peers
        except OSError as err:  # e.g. a socket path too long under $TMPDIR: each decides its own
            log.warning("cannot answer the other workers (%s); this worker decides its own images", err)
            peers = None
    if slot is not None:
        slot.report(decider.ready)
    # What the gate loaded (policies, the engine, trust) lives as long as the process: the collector's
    # full passes need not walk it again and again (docs/performance.md, "The collector's full passes
    # stop the loop").
    gc.freeze()
    pull = PullSecrets(config.kubeconfig) if config.image_pull_secrets else None
    server = Server(config, decider, metrics, pull_secrets=pull, worker=slot)
    servers = [_uvicorn_server(server.app, tls.context)]
    if mtls is not None:
        servers.append(_uvicorn_server(server.client_cert_app, mtls.context))
    loop = asyncio.get_running_loop()

    def stop() -> None:
        for s in servers:
            if getattr(s, "should_exit", False):
                s.force_exit = True  # type: ignore[attr-defined]
            s.should_exit = True  # type: ignore[attr-defined]

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop)

    async def watch() -> None:
        while True:
            await asyncio.sleep(config.reload_interval)
            try:
                for t in (tls, mtls):
                    if t is not None:
                        t.reload_if_changed()
                if decider.changed():
                    await decider.reload()
                if slot is not None:
                    slot.report(decider.ready)
                    if slot.orphaned:
                        log.warning("the supervising process is gone; stopping")
                        stop()
            except Exception:  # the watcher must outlive any one failure
                log.exception("watching the configuration files failed")

    async def heartbeat() -> None:  # the supervisor replaces a worker whose loop stops running
        while slot is not None:
            slot.beat()
            await asyncio.sleep(1.0)

    watcher = asyncio.ensure_future(watch())
    beating = asyncio.ensure_future(heartbeat())
    for sock in sockets:
        host, port = sock.getsockname()[:2]
        if slot is None:
            log.info("listening on https://%s:%d", host, port)
        else:  # the supervisor says "listening" once every worker is
            log.info("ready on https://%s:%d", host, port)
    try:
        await asyncio.gather(*(s.serve(sockets=[sock]) for s, sock in zip(servers, sockets, strict=True)))  # type: ignore[attr-defined]
    finally:
        watcher.cancel()
        beating.cancel()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        if slot is not None:
            slot.report(False)
        if peers is not None:
            await peers.close()
        await decider.aclose()
        for sock in sockets:
            sock.close()
        log.info("stopped")


def _run_loop(config: ServeConfig, sockets: list[socket.socket] | None, slot: WorkerSlot | None) -> None:
    try:
        import uvloop
    except ImportError:  # uvloop is optional: the asyncio loop serves too, a little slower
        asyncio.run(run(config, sockets=sockets, slot=slot))
    else:
        uvloop.run(run(config, sockets=sockets, slot=slot))


def serve(config: ServeConfig) -> int:
    """Run the server until a signal stops it: in this process, or in ``config.workers`` processes
    sharing the sockets bound here. 0 then."""
    if config.workers <= 1:
        _run_loop(config, None, None)
        return 0
    from gate.serve.workers import Supervisor

    sockets = bind(config)
    try:
        supervisor = Supervisor(config, sockets, _run_loop)
    except InputError as err:
        for sock in sockets:
            sock.close()
        if not config.workers_auto:
            raise
        # workers: auto is a default: a machine where several cannot run still gets a server.
        log.warning("%s; serving with one worker (workers: auto)", err)
        _run_loop(replace(config, workers=1), None, None)
        return 0
    return supervisor.run()
