"""What a long-lived registry client may remember between calls, and for how long.

Only answers that cannot change under the same name are kept: a blob or a manifest fetched by its digest
is checked against that digest before it is stored, so a hit returns exactly the bytes the registry would
send again. Tags (the cosign ``.att`` tag, the referrers fallback tag) and the referrers API listing are
never kept: attestations are added to an image after it is built, and a verification must see them.

What can change for a digest is whether the registry still has it, and whether the registry implements
the referrers API (an upgrade); both are remembered for ``ttl`` seconds only.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

Key = tuple[str, ...]


class ContentCache:
    """Digest-verified registry content, least recently used first out, bounded by the bytes it holds.

    ``max_bytes`` 0 keeps nothing. An entry older than ``ttl`` seconds is dropped on lookup when the
    caller asks for freshness (a manifest: does the registry still have it?); blobs are looked up
    without an age limit, since nothing reaches them except through a manifest fetched fresh.
    """

    def __init__(self, max_bytes: int, ttl: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries: OrderedDict[Key, tuple[bytes, str, float]] = OrderedDict()
        self._bytes = 0
        self._max = max(0, max_bytes)
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        # Registries known not to implement the referrers API, and when that was last seen.
        self._no_referrers: dict[str, float] = {}

    @property
    def enabled(self) -> bool:
        return self._max > 0

    def get(self, key: Key, *, fresh: bool) -> tuple[bytes, str] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            body, media_type, stored = entry
            if fresh and self._clock() - stored >= self._ttl:
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return body, media_type

    def put(self, key: Key, body: bytes, media_type: str = "") -> None:
        size = len(body)
        if not self.enabled or size > self._max:
            return
        with self._lock:
            if key in self._entries:
                self._drop(key)
            self._entries[key] = (body, media_type, self._clock())
            self._bytes += size
            while self._bytes > self._max:
                _, (dropped, _, _) = self._entries.popitem(last=False)
                self._bytes -= len(dropped)

    def _drop(self, key: Key) -> None:
        body, _, _ = self._entries.pop(key)
        self._bytes -= len(body)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def size(self) -> int:
        return self._bytes

    # -- the referrers API capability -------------------------------------------------------------

    def lacks_referrers_api(self, registry: str) -> bool:
        if not self.enabled:
            return False
        with self._lock:
            seen = self._no_referrers.get(registry)
            if seen is None:
                return False
            if self._clock() - seen >= self._ttl:
                del self._no_referrers[registry]
                return False
            return True

    def note_referrers_api(self, registry: str, *, supported: bool) -> None:
        if not self.enabled:
            return
        with self._lock:
            if supported:
                self._no_referrers.pop(registry, None)
            else:
                self._no_referrers[registry] = self._clock()
