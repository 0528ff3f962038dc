"""Bounded workers that serve new runs before a backlog, and a token bucket for API calls.

kopf hands every run to a handler at once (a coroutine each, cheap); the handler submits its work here
and awaits it. A fixed number of worker threads take work in priority order:

0. runs still running (a finalizer to add, a SPIRE entry to register: cheap, and the run's pod waits),
1. runs that completed after the operator started, newest first,
2. the backlog (runs that completed before the operator started), newest first,

so an operator started on a cluster with thousands of old runs attests a run that just finished right
away instead of after the backlog (Tekton Chains #979).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

RUNNING, FRESH, BACKLOG = 0, 1, 2
CLASS_NAMES = {RUNNING: "running", FRESH: "new", BACKLOG: "backlog"}


@dataclass(order=True)
class _Item:
    priority: tuple[int, float, int]
    work: Callable[[], Any] = field(compare=False)
    future: asyncio.Future[Any] = field(compare=False)
    loop: asyncio.AbstractEventLoop = field(compare=False)


class WorkQueue:
    """``workers`` threads draining a priority queue; :meth:`submit` is awaited from the event loop."""

    def __init__(self, workers: int, *, on_depth: Callable[[dict[str, int]], None] | None = None) -> None:
        if workers < 1:
            raise ValueError("at least one worker")
        self._heap: list[_Item] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._closed = False
        self._on_depth = on_depth
        self._depth = dict.fromkeys(CLASS_NAMES.values(), 0)
        self._threads = [
            threading.Thread(target=self._work, name=f"attest-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    async def submit(self, work: Callable[[], T], *, klass: int, newest: float = 0.0) -> T:
        """Run ``work`` on a worker; within a class, a larger ``newest`` (a completion time) goes first."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        item = _Item((klass, -newest, next(self._seq)), work, future, loop)
        with self._cond:
            if self._closed:
                raise RuntimeError("the work queue is closed")
            heapq.heappush(self._heap, item)
            self._count(klass, +1)
            self._cond.notify()
        return await future

    def _count(self, klass: int, delta: int) -> None:
        self._depth[CLASS_NAMES[klass]] += delta
        if self._on_depth is not None:
            self._on_depth(dict(self._depth))

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._heap and not self._closed:
                    self._cond.wait()
                if self._closed and not self._heap:
                    return
                item = heapq.heappop(self._heap)
                self._count(item.priority[0], -1)
            if item.future.cancelled():
                continue
            try:
                result = item.work()
            except BaseException as err:  # handed to the awaiting handler, which decides
                item.loop.call_soon_threadsafe(_set_exception, item.future, err)
            else:
                item.loop.call_soon_threadsafe(_set_result, item.future, result)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            for item in self._heap:
                item.loop.call_soon_threadsafe(item.future.cancel)
            self._heap.clear()
            self._cond.notify_all()


def _set_result(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[Any], err: BaseException) -> None:
    if not future.done():
        future.set_exception(err)


class TokenBucket:
    """At most ``burst`` calls at once and ``qps`` per second on average, across threads (client-go's
    ``--kube-api-qps`` / ``--kube-api-burst``). ``qps <= 0`` means no limit."""

    def __init__(self, qps: float, burst: int) -> None:
        self.qps = qps
        self.burst = max(1, burst)
        self._tokens = float(self.burst)
        self._last = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        if self.qps <= 0:
            return
        while True:
            with self._lock:
                now = time.monotonic()
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.qps)
                self._last = now
                if self._tokens >= 1:
                    self._tokens -= 1
                    return
                wait = (1 - self._tokens) / self.qps
            time.sleep(wait)
