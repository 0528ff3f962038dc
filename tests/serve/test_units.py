"""The server's pure parts: the verdict memory's bounds, the deadline taken from ?timeout=, image globs."""

from __future__ import annotations

import asyncio

from attestation.reference import parse
from gate.serve.app import parse_go_duration, request_budget
from gate.serve.verdicts import SingleFlight, TtlCache
from gate.serve.webhook import in_scope


def test_the_cache_is_bounded_by_cost_least_recently_used_out_first_and_entries_expire() -> None:
    now = [0.0]
    evicted: list[int] = []
    cache: TtlCache[str, str] = TtlCache(100, clock=lambda: now[0], on_evict=evicted.append)
    cache.put("a", "A", cost=40, ttl=10)
    cache.put("b", "B", cost=40, ttl=10)
    assert cache.get("a") == "A"  # a is now the most recently used
    cache.put("c", "C", cost=40, ttl=10)  # 120 > 100: b goes
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == ("A", None, "C")
    assert evicted == [1] and cache.cost == 80
    cache.put("huge", "H", cost=101, ttl=10)  # larger than the bound: not kept, nothing dropped
    assert cache.get("huge") is None and len(cache) == 2
    cache.put("none", "N", cost=1, ttl=0)  # ttl 0: the cache is off
    assert cache.get("none") is None
    now[0] = 10.0
    assert cache.get("a") is None and cache.get("c") is None and cache.cost == 0


def test_concurrent_calls_for_one_key_share_one_computation_and_a_failure_is_not_kept() -> None:
    calls: list[str] = []

    async def main() -> None:
        flight: SingleFlight[str, int] = SingleFlight()

        async def compute() -> int:
            calls.append("x")
            await asyncio.sleep(0.01)
            return 7

        runs = [flight.run("k", compute) for _ in range(10)]
        assert [started for _, started in runs] == [True] + [False] * 9
        assert await asyncio.gather(*(task for task, _ in runs)) == [7] * 10

        async def fail() -> int:
            raise RuntimeError("registry down")

        task, _ = flight.run("k", fail)
        assert isinstance((await asyncio.gather(task, return_exceptions=True))[0], RuntimeError)
        again, started = flight.run("k", compute)
        assert started and await again == 7

    asyncio.run(main())
    assert len(calls) == 2


def test_the_deadline_is_the_api_servers_timeout_less_a_margin() -> None:
    assert parse_go_duration("10s") == 10.0 and parse_go_duration("1m30s") == 90.0
    assert parse_go_duration("500ms") == 0.5
    for bad in (None, "", "10", "s", "10x", "1e9s", "10s;rm"):
        assert parse_go_duration(bad) is None
    assert request_budget("10s", 25.0) == 9.0
    assert request_budget("2s", 25.0) == 1.75
    assert request_budget("10s", 5.0) == 5.0  # never more than the configured timeout
    assert request_budget("1h", 100.0) == 27.0  # the API server allows 30 s at most
    assert request_budget(None, 25.0) == 25.0


def test_image_globs_match_the_normalised_name() -> None:
    ref = parse("registry.example/team/app:v1")
    assert in_scope(ref, ["**"]) and in_scope(ref, ["registry.example/team/*"])
    assert not in_scope(ref, ["registry.example/*"]) and in_scope(ref, ["registry.example/**"])
    assert in_scope(parse("nginx:1.25"), ["docker.io/library/*"])
    assert not in_scope(parse("registry.example.evil/team/app"), ["registry.example/**"])
