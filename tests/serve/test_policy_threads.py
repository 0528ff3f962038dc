"""An OPA server's answers are awaited beside the event loop, never on it: one image whose evaluation
waits on the server holds up neither the other images of the same request nor other requests. (The
in-process engine evaluates on the loop itself; docs/performance.md says why.)"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import yaml

from attestation.reference import parse
from gate.serve.config import load_config
from gate.serve.decider import Decider
from gate.serve.metrics import Metrics
from tests.infra.opa import opa_server, opa_url  # noqa: F401
from tests.infra.registry import RegistryServer, registry_plain  # noqa: F401
from tests.serve.conftest import RULE_DATA, Signing, gate_config, push_signed, write_config


def test_a_slow_opa_server_answer_does_not_hold_up_other_images(
    tmp_path: Path,
    tls,
    signing: Signing,
    registry_plain: RegistryServer,  # noqa: F811
    opa_url: str,  # noqa: F811
) -> None:
    data = tmp_path / "rule_data.yaml"
    data.write_text(yaml.safe_dump(RULE_DATA))
    path = write_config(
        tmp_path, gate_config(tls, signing.public_key, data=[str(data)], engine="opa", opaUrl=opa_url)
    )
    slow_name, slow_digest = push_signed(registry_plain, signing.trusted)
    fast_name, fast_digest = push_signed(registry_plain, signing.trusted)
    entered, release = threading.Event(), threading.Event()
    finished: list[str] = []

    async def scenario() -> None:
        decider = Decider(load_config(path), Metrics())
        await decider.start()
        try:
            assert decider.current is not None
            engine = decider.current.gate.engine
            assert not engine.pure  # the OPA server engine
            evaluate_json = engine.evaluate_json

            def held(raw: bytes):  # the slow image's evaluation waits until the other is decided
                if slow_digest.encode() in raw:
                    entered.set()
                    release.wait(timeout=10)
                return evaluate_json(raw)

            engine.evaluate_json = held  # type: ignore[method-assign]

            async def decide(name: str, digest: str) -> bool:
                decision, source = await decider.decide(
                    parse(f"{name.rsplit(':', 1)[0]}@{digest}"), time.monotonic() + 30
                )
                finished.append(name)
                if name == fast_name:
                    release.set()
                return decision.allowed and source == "verified"

            slow = asyncio.ensure_future(decide(slow_name, slow_digest))
            assert await asyncio.to_thread(entered.wait, 10)  # the slow image's evaluation is under way
            assert await asyncio.wait_for(decide(fast_name, fast_digest), timeout=8)
            assert await slow
        finally:
            release.set()
            await decider.aclose()

    asyncio.run(scenario())
    assert finished == [fast_name, slow_name]
