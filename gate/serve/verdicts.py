"""The admission path's memory (DESIGN.md §6): verdicts by image digest and everything they were decided
under, tag -> digest resolutions, and the collapsing of concurrent lookups of one key.

Why a cached verdict is never one a fresh verification would not give, with the same registry content
(docs/admission.md has the argument in full):

* the key is the pinned image (``registry/repository@sha256:…``: the attestations live beside the
  repository) plus the digests of the policy set (every Rego source and the merged data), of the trust
  configuration (every key, root, identity) and the engine: a reload of any of them is a new key, and the
  old entries are dropped;
* only decided verdicts, allowed or denied, are stored; "could not decide" (registry down, timeout,
  engine failure) never is, so the next request tries again;
* an entry lives ``ttl`` seconds at most (less when a signer's certificate, checked at "now", expires
  sooner): the only things outside the key, attestations added to or removed from the registry after the
  verdict, are seen at most ``ttl`` later.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

from gate.decision import Decision

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Python objects take several times their JSON (dicts, strings, the dataclasses): the estimate of what a
# verdict holds in memory is this times its JSON, plus the key and the entry.
OBJECT_OVERHEAD = 4
ENTRY_OVERHEAD = 600


@dataclass(frozen=True)
class _Entry(Generic[V]):
    value: V
    cost: int
    expires: float


class TtlCache(Generic[K, V]):
    """A thread-safe map whose entries expire, bounded by the cost the caller assigns (bytes), least
    recently used out first; ``on_evict`` is told of every entry pushed out by the bound."""

    def __init__(
        self,
        max_cost: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_evict: Callable[[int], None] | None = None,
    ) -> None:
        self._entries: OrderedDict[K, _Entry[V]] = OrderedDict()
        self._max = max(0, max_cost)
        self._held = 0
        self._clock = clock
        self._on_evict = on_evict
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if self._clock() >= entry.expires:
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return entry.value

    def put(self, key: K, value: V, *, cost: int, ttl: float) -> None:
        if ttl <= 0 or cost > self._max:
            return
        evicted = 0
        with self._lock:
            if key in self._entries:
                self._drop(key)
            self._entries[key] = _Entry(value, cost, self._clock() + ttl)
            self._held += cost
            while self._held > self._max:
                _, dropped = self._entries.popitem(last=False)
                self._held -= dropped.cost
                evicted += 1
        if evicted and self._on_evict is not None:
            self._on_evict(evicted)

    def remaining(self, key: K) -> float:
        """Seconds ``key`` may still be served; 0 when it is not held (or expired)."""
        with self._lock:
            entry = self._entries.get(key)
            return 0.0 if entry is None else max(0.0, entry.expires - self._clock())

    def _drop(self, key: K) -> None:
        self._held -= self._entries.pop(key).cost

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._held = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def cost(self) -> int:
        return self._held


class SingleFlight(Generic[K, V]):
    """Concurrent calls for one key share one computation (in this event loop).

    The computation runs as its own task: a caller that stops waiting (its deadline passed) does not
    cancel it for the others, and its result still reaches whoever stores it.
    """

    def __init__(self) -> None:
        self._running: dict[K, asyncio.Future[V]] = {}

    def run(self, key: K, compute: Callable[[], Awaitable[V]]) -> tuple[asyncio.Future[V], bool]:
        """The future of the computation for ``key`` and whether this call started it."""
        running = self._running.get(key)
        if running is not None:
            return running, False

        async def wrapped() -> V:
            return await compute()

        task = asyncio.ensure_future(wrapped())
        self._running[key] = task
        task.add_done_callback(lambda done: self._done(key, done))
        return task, True

    def _done(self, key: K, task: asyncio.Future[V]) -> None:
        if self._running.get(key) is task:
            del self._running[key]
        if not task.cancelled():
            task.exception()  # retrieved here, whoever still waits sees it too

    def __contains__(self, key: K) -> bool:
        return key in self._running

    def __len__(self) -> int:
        return len(self._running)


def decision_cost(key: tuple[str, ...], decision: Decision) -> int:
    """The memory a cached verdict is estimated to take (its JSON times the object overhead)."""
    size = len(json.dumps(decision.to_dict(), separators=(",", ":")))
    return ENTRY_OVERHEAD + sum(len(k) for k in key) + OBJECT_OVERHEAD * size
