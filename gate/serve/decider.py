"""The server's gate: one :class:`~gate.verify.Gate` at a time (rebuilt when its files change), the
verdict cache in front of it, tag resolution with its own short memory, and the deadline of each call.

A reload builds the new gate beside the running one (in a thread: compiling a policy takes a moment) and
swaps it in only once it loaded completely; a broken reload keeps the last good gate serving, turns
``/readyz`` red and logs why. Verdicts are keyed by what they were decided under (:mod:`.verdicts`), so
none made by the old gate is served by the new one.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import gc
import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attestation.errors import ProvgateError, RegistryError
from attestation.oci.auth import CredentialLookup, scoped_credentials
from attestation.reference import ImageReference, InvalidReference, parse
from gate.decision import Decision, ms_since, undecided
from gate.serve.config import ServeConfig, load_config
from gate.serve.verdicts import SingleFlight, TtlCache, decision_cost
from gate.verify import Gate, Prepared

if TYPE_CHECKING:
    from gate.serve.metrics import Metrics
    from gate.serve.peers import Peers

log = logging.getLogger(__name__)

# Tag resolutions remembered (a few hundred bytes each).
TAG_CACHE_ENTRIES = 16_384
# Seconds an old gate is kept open after a reload, so verifications it started can finish.
RETIRE_AFTER = 30.0


@dataclass
class Generation:
    """One loaded configuration: the gate and the key its verdicts are stored under."""

    config: ServeConfig
    gate: Gate
    key: tuple[str, ...]
    files: tuple[tuple[str, int, int, int], ...]


def file_state(paths: tuple[Path, ...]) -> tuple[tuple[str, int, int, int], ...]:
    """What the files under ``paths`` are now (mtime, size, inode of each, following symlinks, as a
    ConfigMap volume swaps them): a change in any is a reason to reload."""
    out: list[tuple[str, int, int, int]] = []
    for root in paths:
        try:
            found = sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else [root]
        except OSError:
            found = [root]
        for path in found:
            try:
                st = os.stat(path)
                out.append((str(path), st.st_mtime_ns, st.st_size, st.st_ino))
            except OSError:
                out.append((str(path), -1, -1, -1))
    return tuple(out)


def _cert_deadline(prepared: Prepared) -> float | None:
    """Seconds until the first certificate that an allowed verdict's signatures were checked against
    "now" (no trusted timestamp) expires; a verdict must not outlive it."""
    soonest: dt.datetime | None = None
    for checked in prepared.checked:
        if checked.statement is None:
            continue
        for signer in checked.statement.signers:
            if not signer.certificate or signer.signed_at:
                continue
            from cryptography import x509

            for pem in (signer.certificate, *signer.chain):
                try:
                    after = x509.load_pem_x509_certificate(pem.encode()).not_valid_after_utc
                except ValueError:
                    return 0.0
                soonest = after if soonest is None or after < soonest else soonest
    if soonest is None:
        return None
    return max(0.0, (soonest - dt.datetime.now(dt.UTC)).total_seconds())


class Decider:
    """Decisions for the server: cached, collapsed, bounded by each caller's deadline."""

    def __init__(self, config: ServeConfig, metrics: Metrics) -> None:
        self.metrics = metrics
        self.current: Generation | None = None
        self.ready = False
        self.reason = "starting"
        self._verdicts: TtlCache[tuple[str, ...], Decision] = TtlCache(
            config.cache.max_bytes, on_evict=metrics.cache_evictions.inc
        )
        self._tags: TtlCache[str, str] = TtlCache(TAG_CACHE_ENTRIES)
        self._flight: SingleFlight[tuple[str, ...], Decision] = SingleFlight()
        self._resolving: SingleFlight[str, ImageReference] = SingleFlight()
        self._config = config
        self._retiring: set[asyncio.Task[None]] = set()
        self.peers: Peers | None = None  # the other workers (workers: N), set by the server
        # An OPA server's answers are awaited here, beside the event loop, never on it. The in-process
        # (pure) engines evaluate on the loop itself: on a thread, each of the many ctypes calls of one
        # wasm evaluation gives up the GIL and then waits for the busy loop to hand it back, which made
        # first looks slower, not faster (docs/performance.md).
        self._policy_threads = ThreadPoolExecutor(
            max_workers=config.gate.engine_options.pool_size, thread_name_prefix="policy"
        )

    @property
    def config(self) -> ServeConfig:
        return self.current.config if self.current is not None else self._config

    # -- loading --------------------------------------------------------------------------------------

    async def _build(self, config: ServeConfig) -> Generation:
        files = file_state(config.watched_files())

        def build() -> Gate:
            return Gate(config.gate, registry_observer=self.metrics.registry_request)

        gate = await asyncio.to_thread(build)
        try:
            await gate.__aenter__()
        except BaseException:
            gate.close()
            raise
        key = (gate.policy_set.digest, gate.trust.digest, f"engine={config.gate.engine}")
        return Generation(config=config, gate=gate, key=key, files=files)

    async def start(self) -> None:
        """Load the configuration given at start; raises what is wrong with it (the server exits)."""
        self.current = await self._build(self._config)
        self.ready, self.reason = True, ""
        self.metrics.ready.set(1)
        log.info(
            "gate loaded: policy %s, trust %s, %d rule(s)",
            self.current.key[0],
            self.current.key[1],
            len(self.current.gate.policy_set.rules),
        )

    def changed(self) -> bool:
        current = self.current
        return current is not None and file_state(current.config.watched_files()) != current.files

    async def reload(self) -> bool:
        """Load the configuration file and everything it names again; True when the new one serves."""
        old = self.current
        assert old is not None
        # What the files were before any was read: a file written again while this reload read it (not
        # atomically: truncated, then written) differs from this, so the next look tries again.
        seen = file_state(old.config.watched_files())
        try:
            config = await asyncio.to_thread(load_config, old.config.path)
            for what in ("listen", "tls", "verify_api", "workers"):
                if getattr(config, what) != getattr(old.config, what):
                    log.warning(
                        "reload: %s changed in %s; it takes effect at the next start", what, config.path
                    )
                    config = replace(config, **{what: getattr(old.config, what)})
            new = await self._build(config)
        except Exception as err:  # a broken reload keeps the last good gate: any failure, any type
            reason = f"reload failed, still serving the previous configuration: {err}"
            if not isinstance(err, ProvgateError):
                reason = (
                    f"reload failed, still serving the previous configuration: {type(err).__name__}: {err}"
                )
            old.files = seen  # try again on the next change
            self.ready, self.reason = False, " ".join(reason.split())
            self.metrics.ready.set(0)
            self.metrics.reloads.labels("failed").inc()
            log.error("%s", self.reason)
            return False
        self.current = new
        self.ready, self.reason = True, ""
        self.metrics.ready.set(1)
        self.metrics.reloads.labels("ok").inc()
        if new.key != old.key:
            self._verdicts.clear()
            self.metrics.cache_bytes.set(0)
        log.info("reloaded: policy %s, trust %s", new.key[0], new.key[1])
        self._retire(old.gate)
        return True

    def _retire(self, gate: Gate) -> None:
        async def later() -> None:
            await asyncio.sleep(RETIRE_AFTER)
            await gate.aclose()
            # The server froze what it loaded at start (gate.serve.server); the retired gate's cycles
            # would never be collected among frozen objects. One full collection per reload frees them,
            # and what serves now is frozen in their place.
            gc.unfreeze()
            gc.collect()
            gc.freeze()

        task = asyncio.ensure_future(later())
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def aclose(self) -> None:
        for task in list(self._retiring):
            task.cancel()
        if self.current is not None:
            await self.current.gate.aclose()
        self._policy_threads.shutdown(wait=False, cancel_futures=True)

    # -- deciding -------------------------------------------------------------------------------------

    async def pin(
        self, ref: ImageReference, deadline: float, *, credentials: CredentialLookup | None = None
    ) -> ImageReference:
        """``ref`` with the digest its tag names (from memory for ``cache.tag_ttl`` seconds); a digest
        reference as it is. Raises :class:`RegistryError` / :class:`TimeoutError`."""
        if ref.digest is not None:
            return ref
        generation = self.current
        assert generation is not None
        name = str(ref)
        known = self._tags.get(name)
        if known is not None:
            return ref.with_digest(known)
        gate = generation.gate
        ttl = generation.config.cache.tag_ttl

        async def resolve() -> ImageReference:
            pinned = await gate.resolve(ref, deadline=time.monotonic() + generation.config.verify_timeout)
            assert pinned.digest is not None
            self._tags.put(name, pinned.digest, cost=1, ttl=ttl)
            return pinned

        token = scoped_credentials.set(credentials) if credentials is not None else None
        try:
            task, _ = self._resolving.run(name, resolve)
        finally:
            if token is not None:
                scoped_credentials.reset(token)
        async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
            return await asyncio.shield(task)

    async def decide(
        self,
        ref: ImageReference,
        deadline: float,
        *,
        credentials: CredentialLookup | None = None,
        share: bool = True,
    ) -> tuple[Decision, str]:
        """The decision for ``ref`` and where it came from (``cache``, ``verified``, ``joined``: another
        request's verification); undecided when the deadline passes first (never cached). With
        ``workers: N``, a first look may be decided by a less busy worker (:mod:`gate.serve.peers`),
        unless ``share`` is false or the Pod's pull secrets are in ``credentials``."""
        started = time.perf_counter()
        generation = self.current
        if generation is None:
            return undecided(str(ref), ["the gate is not loaded yet"]), "none"
        token = scoped_credentials.set(credentials)
        try:
            try:
                pinned = await self.pin(ref, deadline)
            except TimeoutError:
                return undecided(
                    str(ref), [f"deadline passed resolving {ref}"], elapsed_ms=ms_since(started)
                ), "none"
            except (RegistryError, ProvgateError) as err:
                return undecided(str(ref), [str(err)], elapsed_ms=ms_since(started)), "none"
            key = (pinned.pinned, *generation.key)
            found = self._verdicts.get(key)
            if found is not None:
                self.metrics.cache_hits.inc()
                return replace(found, elapsed_ms=ms_since(started)), "cache"
            other: int | None = None
            if self.peers is not None and key not in self._flight:
                if share and credentials is None:
                    other = self.peers.pick()
                else:
                    self.peers.start()
            task, started_here = self._flight.run(
                key, lambda: self._verify_at(other, generation, pinned.pinned, key)
            )
        finally:
            scoped_credentials.reset(token)
        (self.metrics.cache_misses if started_here else self.metrics.cache_joined).inc()
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                decision = await asyncio.shield(task)
        except TimeoutError:
            return (
                undecided(
                    pinned.pinned,
                    [f"no decision within the request's deadline ({ms_since(started) / 1000:.1f}s)"],
                    elapsed_ms=ms_since(started),
                ),
                "none",
            )
        return replace(decision, elapsed_ms=ms_since(started)), "verified" if started_here else "joined"

    async def _verify_at(
        self, other: int | None, generation: Generation, pinned: str, key: tuple[str, ...]
    ) -> Decision:
        """Worker ``other``'s decision (:meth:`Peers.pick`), or this worker's when there is none or it
        has no answer; with peers, this worker's verification is counted as started already."""
        peers = self.peers
        if peers is None:
            return await self._verify(generation, pinned, key)
        if other is not None:
            got = await peers.ask(other, pinned, generation.key, generation.config.verify_timeout)
            if not isinstance(got, str):
                self.metrics.peer_requests.labels("answered").inc()
                decision, ttl = got
                if decision.decided:
                    self._keep(generation, key, decision, min(ttl, generation.config.cache.ttl))
                return decision
            self.metrics.peer_requests.labels("refused" if got.startswith("refused") else "failed").inc()
            log.info("worker %d did not decide %s (%s); deciding it here", other + 1, pinned, got)
            peers.start()
        try:
            return await self._verify(generation, pinned, key)
        finally:
            peers.finish()

    async def answer_peer(self, image: str, key: tuple[str, ...], seconds: float) -> dict[str, Any]:
        """Another worker's question (:mod:`gate.serve.peers`): this worker's decision for ``image``, made
        as for a request of its own but never passed on, and how long it may be kept."""
        generation = self.current
        if generation is None or key != generation.key:
            return {"refused": "this worker's policies, data or trust differ (a reload under way)"}
        try:
            ref = parse(image)
        except InvalidReference as err:
            return {"refused": str(err)}
        if ref.digest is None:
            return {"refused": "not pinned to a digest"}
        decision, _ = await self.decide(ref, time.monotonic() + seconds, share=False)
        ttl = self._verdicts.remaining((ref.pinned, *generation.key)) if decision.decided else 0.0
        return {"decision": decision.to_dict(), "ttl": ttl}

    def _keep(self, generation: Generation, key: tuple[str, ...], decision: Decision, ttl: float) -> None:
        if self.current is generation:  # not stored under a gate that was replaced meanwhile
            self._verdicts.put(key, decision, cost=decision_cost(key, decision), ttl=ttl)
            self.metrics.cache_bytes.set(self._verdicts.cost)

    async def _verify(self, generation: Generation, pinned: str, key: tuple[str, ...]) -> Decision:
        gate = generation.gate
        config = generation.config
        deadline = time.monotonic() + config.verify_timeout
        prepared = await gate.prepare(pinned, deadline=deadline)
        if gate.engine.pure:
            decision = gate.decide(prepared, deadline=deadline)
        else:
            decision = await asyncio.get_running_loop().run_in_executor(
                self._policy_threads, functools.partial(gate.decide, prepared, deadline=deadline)
            )
        outcome = decision.verdict if decision.decided else "undecided"
        self.metrics.verifications.labels(outcome.replace("could not decide", "undecided")).inc()
        if decision.timings.policy_ms:
            self.metrics.policy_seconds.observe(decision.timings.policy_ms / 1000)
        if not decision.decided:
            return decision  # never cached: the next request tries again
        ttl = config.cache.ttl
        if isinstance(prepared, Prepared):
            expiry = _cert_deadline(prepared)
            if expiry is not None:
                ttl = min(ttl, expiry)
        self._keep(generation, key, decision, ttl)
        return decision

    def cached(self) -> int:
        return len(self._verdicts)


Clock = Callable[[], float]
