"""``workers: auto``: one worker per CPU this process may use, the cgroup's CPU limit included, so the
gate uses the cores a pod is given and no more."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from attestation.errors import InputError
from gate.serve.config import AUTO_WORKERS_MAX, parse_config
from gate.serve.cpus import cgroup_cpu_limit, usable_cpus


def _cgroup(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.mark.parametrize(
    ("files", "limit"),
    [
        ({"cpu.max": "150000 100000\n"}, 1.5),  # cgroup v2: limits.cpu 1500m
        ({"cpu.max": "max 100000\n"}, None),  # v2, no limit
        ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 0.5),  # v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),  # v1, no limit
        ({"cpu.max": "lots 100000\n"}, None),  # unreadable: no limit, never a crash
        ({}, None),  # no cgroup files at all (not Linux, or not mounted)
    ],
)
def test_the_cgroup_cpu_limit_is_read_from_v2_or_v1(tmp_path: Path, files: dict[str, str], limit) -> None:
    assert cgroup_cpu_limit(_cgroup(tmp_path, files)) == limit


def test_a_cpu_limit_lowers_the_count_rounded_up_and_never_below_one(tmp_path: Path) -> None:
    unlimited = usable_cpus(tmp_path / "none")
    assert unlimited >= 1
    assert usable_cpus(_cgroup(tmp_path / "a", {"cpu.max": "150000 100000"})) == min(unlimited, 2)
    assert usable_cpus(_cgroup(tmp_path / "b", {"cpu.max": "10000 100000"})) == 1
    assert usable_cpus(_cgroup(tmp_path / "c", {"cpu.max": "6400000 100000"})) == unlimited


def _config(tmp_path: Path, **keys) -> dict:
    return {"tls": {"certFile": "tls.crt", "keyFile": "tls.key"}, "trust": {"keys": ["cosign.pub"]}, **keys}


def test_workers_default_to_auto_one_per_usable_cpu_at_most_four(tmp_path: Path) -> None:
    expected = min(usable_cpus(), AUTO_WORKERS_MAX)
    for doc in (_config(tmp_path), _config(tmp_path, workers="auto")):
        config = parse_config(doc, tmp_path / "gate.yaml")
        assert config.workers == expected and config.workers_auto
    config = parse_config(_config(tmp_path, workers=3), tmp_path / "gate.yaml")
    assert config.workers == 3 and not config.workers_auto


def test_a_workers_value_that_is_neither_a_count_nor_auto_names_both(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r'workers: must be a whole number or "auto"'):
        parse_config(_config(tmp_path, workers="automatic"), tmp_path / "gate.yaml")


def test_auto_workers_that_cannot_share_metrics_serve_as_one_and_a_set_count_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """workers: auto is a default, so a machine where several workers cannot run (no writable directory
    for their shared metrics) still gets a server; a count the user set stops the start instead."""
    import gate.serve.server as server
    import gate.serve.workers as workers

    def no_directory(*_args, **_kwargs):
        raise InputError("workers: 2 needs a writable directory for the workers' shared metrics")

    served: list[int] = []
    monkeypatch.setattr(workers, "Supervisor", no_directory)
    monkeypatch.setattr(server, "_run_loop", lambda config, sockets, slot: served.append(config.workers))
    base = parse_config(_config(tmp_path, listen="127.0.0.1:0", workers=2), tmp_path / "gate.yaml")
    assert server.serve(replace(base, workers_auto=True)) == 0
    assert served == [1]
    with pytest.raises(InputError, match="writable directory"):
        server.serve(base)
    assert served == [1]
