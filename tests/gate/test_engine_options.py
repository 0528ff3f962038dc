"""The engines' knobs (gate.config.EngineOptions) reach the engine from a GateConfig."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from attestation.errors import PolicyError
from gate.config import EngineOptions
from gate.verify import Gate, GateConfig

# A rule that keeps the evaluation busy for longer than the evaluation timeout below.
SLOW = """package policy.release.slow

import rego.v1

# METADATA
# title: Slow
# description: Loops for a while.
# custom:
#   short_name: slow
#   failure_msg: slow %s
#   solution: None.
deny contains result if {
\tn := count([1 | some a in numbers.range(1, 3000); some b in numbers.range(1, 3000); a == b])
\tn < 0
\tresult := {"code": "slow.slow", "params": [n]}
}
"""


def test_the_wasm_pool_size_comes_from_the_config(policy_dir: Path, key_file: Path) -> None:
    for size in (1, 3):
        options = EngineOptions(pool_size=size)
        with Gate(GateConfig(policy_paths=(policy_dir,), key_files=(key_file,), engine_options=options)) as g:
            assert g.engine.pool_size == size


def test_the_wasm_evaluation_timeout_comes_from_the_config(tmp_path: Path, key_file: Path) -> None:
    (tmp_path / "slow.rego").write_text(SLOW)
    options = EngineOptions(eval_timeout=0.05)
    # The engine evaluates once while it starts, so a policy that cannot finish in time fails the start.
    with pytest.raises(PolicyError, match="time limit"):
        Gate(GateConfig(policy_paths=(tmp_path,), key_files=(key_file,), engine_options=options))


@pytest.fixture
def silent_server() -> Iterator[str]:
    """An address that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


def test_the_opa_request_timeout_comes_from_the_config(
    silent_server: str, policy_dir: Path, key_file: Path
) -> None:
    config = GateConfig(
        policy_paths=(policy_dir,),
        key_files=(key_file,),
        engine="opa",
        opa_url=silent_server,
        engine_options=EngineOptions(opa_timeout=0.2),
    )
    with pytest.raises(PolicyError, match=r"read timeout=0\.2\b"):
        Gate(config)
