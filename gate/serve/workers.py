"""``workers: N``: N processes answering on the same listening sockets.

One event loop runs one first look at a time (signature checks, statement parsing, the policy: milliseconds
of CPU each), so a burst of first looks queues behind itself; more processes let the machine's other
cores take part. The parent binds the sockets, forks the workers (each inherits them and accepts from the
same queue: an idle worker takes the next connection) and then only watches:

* each worker loads the gate itself (policies compiled, trust read), keeps its own verdict cache, tag
  cache and registry connections, and looks at the TLS and configuration files on its own schedule: a
  reload or a rotated certificate reaches every worker within ``reloadInterval``;
* each worker's readiness is a byte in memory shared across the fork (:class:`Board`), so ``GET /readyz``
  from any worker is ready only while every worker is;
* metrics go to files in a directory the workers share (:mod:`gate.serve.metrics`), so ``GET /metrics``
  from any worker is the sum over all of them;
* SIGTERM/SIGINT is passed to every worker, each finishes its requests in flight, and the parent exits
  when the last one has; a second signal is passed on too (the workers then exit at once);
* a worker that dies is replaced (with empty caches), and so is one whose event loop stopped running
  (``workerStallSeconds``); one that fails while starting stops them all, as
  one process would have.

Nothing else is shared but the sockets, the board and the metrics files, with one exception: a worker
with several first looks at once may ask a less busy worker to decide some of them, over a Unix socket
(:mod:`gate.serve.peers`), and keeps the answer as its own verdict; otherwise a verdict one worker cached
is verified afresh by another (docs/admission.md).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import gc
import logging
import mmap
import os
import shutil
import signal
import socket
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from attestation.errors import InputError
from gate.serve.config import ServeConfig
from gate.serve.metrics import MULTIPROC_ENV

log = logging.getLogger(__name__)

STARTING, READY, NOT_READY = 0, 1, 2
# A worker that keeps dying is not replaced for ever: this many exits within RESTART_WINDOW seconds stop
# the server (the kubelet then restarts the container, and says so).
MAX_RESTARTS = 5
RESTART_WINDOW = 60.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
POLL = 0.1  # seconds between looks at the workers (waitpid); signals interrupt the sleep


class Board:
    """Per worker, in memory shared across the fork: a state byte (starting, ready or not ready), the
    last time its event loop ran (``time.monotonic``, one clock for every process of the machine) and how
    many verifications it is computing."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._map = mmap.mmap(-1, count)  # anonymous and MAP_SHARED: the children write, all read
        self._beats = mmap.mmap(-1, 8 * count)
        self._busy = mmap.mmap(-1, 4 * count)  # verifications each is computing (gate.serve.peers)

    def starting(self, index: int) -> None:
        """Worker ``index`` is being (re)started: its slot as new. A worker killed mid-verification
        (stalled, out of memory) left its count behind, and a replacement that inherited it would look
        busy to the others for as long as it lives, so they would never share a first look with it."""
        self.set(index, STARTING)
        self.beat(index)
        struct.pack_into("i", self._busy, 4 * index, 0)

    def add_busy(self, index: int, delta: int) -> None:
        """Only the worker ``index`` writes its count, from its event loop (and the supervisor, while no
        worker ``index`` runs: :meth:`starting`)."""
        count: int = struct.unpack_from("i", self._busy, 4 * index)[0]
        struct.pack_into("i", self._busy, 4 * index, max(0, count + delta))

    def busy(self) -> list[int]:
        return list(struct.unpack_from(f"{self.count}i", self._busy))

    def set(self, index: int, state: int) -> None:
        self._map[index] = state

    def states(self) -> list[int]:
        return list(self._map[: self.count])

    def beat(self, index: int) -> None:
        struct.pack_into("d", self._beats, 8 * index, time.monotonic())

    def last_beat(self, index: int) -> float:
        value: float = struct.unpack_from("d", self._beats, 8 * index)[0]
        return value


@dataclass(frozen=True)
class WorkerSlot:
    """What a worker knows of the others: its number (1-based in logs) and the board."""

    index: int
    board: Board
    parent: int  # the supervising process; a worker whose parent is gone stops
    peers: Path | None = None  # where the workers answer each other (gate.serve.peers)

    def report(self, ready: bool) -> None:
        # A beat first: the stall clock starts when the worker leaves "starting", however long it
        # took to load (the parent's beat at the fork may be older than workerStallSeconds by then).
        self.board.beat(self.index)
        self.board.set(self.index, READY if ready else NOT_READY)

    def beat(self) -> None:
        """The worker's event loop is running (called from it every second)."""
        self.board.beat(self.index)

    def not_ready(self) -> list[int]:
        """The other workers (numbered from 1) that are starting or not ready."""
        return [i + 1 for i, s in enumerate(self.board.states()) if i != self.index and s != READY]

    @property
    def orphaned(self) -> bool:
        return os.getppid() != self.parent


def _die_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when its parent dies (a SIGKILLed supervisor must not leave
    workers holding the port); elsewhere the workers notice at their next look at the files."""
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


class _Prefix(logging.Filter):
    """Every log line of a worker says which worker it comes from."""

    def __init__(self, number: int) -> None:
        super().__init__()
        self.prefix = f"worker {number}: "

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and not record.msg.startswith(self.prefix):
            record.msg = self.prefix + record.msg  # the prefix has no % directive: arguments unchanged
        return True


def _label_logs(number: int) -> None:
    seen: set[int] = set()
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        for handler in getattr(logger, "handlers", []):
            if id(handler) not in seen:
                seen.add(id(handler))
                handler.addFilter(_Prefix(number))


def _child(
    config: ServeConfig,
    sockets: list[socket.socket],
    slot: WorkerSlot,
    metrics_dir: Path,
    runner: Callable[[ServeConfig, list[socket.socket], WorkerSlot], None],
) -> None:
    """The worker's life, in the forked process; never returns."""
    code = 1
    try:
        # Out of the parent's process group: a Ctrl-C in a terminal signals the whole foreground group,
        # and a worker that got it directly and then the parent's SIGTERM would take the second as
        # "exit now" and cut its requests in flight. Only the parent's one SIGTERM reaches a worker.
        os.setpgid(0, 0)
        for sig in STOP_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)
        _die_with_parent()
        if slot.orphaned:
            os._exit(0)
        _label_logs(slot.index + 1)
        from gate.serve.metrics import multiprocess

        multiprocess(metrics_dir)
        runner(config, sockets, slot)
        code = 0
    except KeyboardInterrupt:
        code = 0
    except SystemExit as err:
        code = err.code if isinstance(err.code, int) else 1
    except BaseException as err:
        from attestation.errors import ProvgateError

        if isinstance(err, ProvgateError):  # what keeps the gate from loading: one line, as the CLI says it
            log.error("%s", err)
            code = 2
        else:
            log.exception("the worker failed")
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


class Supervisor:
    """The parent: forks the workers, passes signals on, replaces a worker that dies."""

    def __init__(
        self,
        config: ServeConfig,
        sockets: list[socket.socket],
        runner: Callable[[ServeConfig, list[socket.socket], WorkerSlot], None],
    ) -> None:
        self.config = config
        self.sockets = sockets
        self.runner = runner
        self.board = Board(config.workers)
        self.children: dict[int, int] = {}  # pid -> worker index
        self.stopping = 0  # signals received
        self.restarts: list[float] = []
        self.killed: set[int] = set()  # stalled workers sent SIGKILL, not yet reaped
        parent_dir = os.environ.get(MULTIPROC_ENV) or None
        try:
            self.metrics_dir = Path(tempfile.mkdtemp(prefix="provgate-metrics-", dir=parent_dir))
        except OSError as err:
            where = parent_dir or os.environ.get("TMPDIR") or "/tmp"
            raise InputError(
                f"workers: {config.workers} needs a writable directory for the workers' shared metrics "
                f"({MULTIPROC_ENV} or TMPDIR): {where}: {err.strerror or err}"
            ) from None
        # The workers' sockets for each other: a directory only this user can enter (mkdtemp: 0700),
        # short enough for a socket path.
        try:
            self.peers_dir: Path | None = Path(tempfile.mkdtemp(prefix="provgate-peers-"))
        except OSError as err:
            log.warning(
                "no directory for the workers to share a request's images (%s): each decides its own", err
            )
            self.peers_dir = None

    def _spawn(self, index: int) -> None:
        self.board.starting(index)
        slot = WorkerSlot(index=index, board=self.board, parent=os.getpid(), peers=self.peers_dir)
        # No signal may reach the child before it has dropped the parent's handlers (which would pass
        # it on to the other workers): blocked across the fork, unblocked by each side after.
        signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        try:
            pid = os.fork()
            if pid == 0:
                _child(self.config, self.sockets, slot, self.metrics_dir, self.runner)
            self.children[pid] = index
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS)

    def _signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopping += 1
        for pid in list(self.children):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _kill_stalled(self) -> None:
        """SIGKILL a ready worker whose event loop has not run for ``worker_stall`` seconds; reaping it
        then replaces it like any worker that died (and counts towards the restart limit)."""
        now = time.monotonic()
        states = self.board.states()
        for pid, index in list(self.children.items()):
            stalled = now - self.board.last_beat(index)
            if pid in self.killed or states[index] == STARTING or stalled < self.config.worker_stall:
                continue
            log.error(
                "worker %d (pid %d): its event loop has not run for %.0f s (workerStallSeconds: %g); killed",
                index + 1,
                pid,
                stalled,
                self.config.worker_stall,
            )
            self.killed.add(pid)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def _reap(self) -> list[tuple[int, int, int]]:
        """The workers that exited since the last look: (pid, index, exit code)."""
        out = []
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            index = self.children.pop(pid, None)
            self.killed.discard(pid)
            if index is None:
                continue
            code = os.waitstatus_to_exitcode(status)
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid, str(self.metrics_dir))  # its gauges no longer count
            out.append((pid, index, code))
        return out

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self._signal) for sig in STOP_SIGNALS}
        # What the parent has loaded is shared with the workers page by page until written; collections
        # that would touch it in every worker (and copy it) skip it from here.
        gc.freeze()
        try:
            for index in range(self.config.workers):
                self._spawn(index)
            return self._watch()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for sock in self.sockets:
                sock.close()
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
            if self.peers_dir is not None:
                shutil.rmtree(self.peers_dir, ignore_errors=True)

    def _watch(self) -> int:
        announced = False
        worst = 0
        closed = False
        while self.children:
            time.sleep(POLL)
            if self.stopping and not closed:
                # The workers hold the sockets while they drain; the parent's copies go now, so the
                # listening socket closes with the last worker.
                for sock in self.sockets:
                    sock.close()
                closed = True
            if not self.stopping:
                self._kill_stalled()
            for pid, index, code in self._reap():
                if self.stopping:
                    worst = max(worst, 0 if code == 0 else 1)
                    log.info("worker %d (pid %d) stopped", index + 1, pid)
                    continue
                if self.board.states()[index] == STARTING:
                    log.error("worker %d (pid %d) failed to start (exit %d); stopping", index + 1, pid, code)
                    self._signal(signal.SIGTERM, None)
                    worst = code if code > 0 else 1
                    continue
                now = time.monotonic()
                self.restarts = [t for t in self.restarts if now - t < RESTART_WINDOW] + [now]
                if len(self.restarts) > MAX_RESTARTS:
                    log.error(
                        "worker %d (pid %d) exited with code %d, the %dth worker exit within %gs; stopping",
                        index + 1,
                        pid,
                        code,
                        len(self.restarts),
                        RESTART_WINDOW,
                    )
                    self._signal(signal.SIGTERM, None)
                    worst = 1
                    continue
                log.error(
                    "worker %d (pid %d) exited with code %d; starting another (its caches start empty)",
                    index + 1,
                    pid,
                    code,
                )
                self._spawn(index)
            if not announced and not self.stopping and all(s != STARTING for s in self.board.states()):
                announced = True
                for sock in self.sockets:
                    host, port = sock.getsockname()[:2]
                    log.info("listening on https://%s:%d (%d workers)", host, port, self.config.workers)
        log.info("stopped")
        return worst
