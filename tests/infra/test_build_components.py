"""tests/infra/build-components.sh: a second run is a no-op that needs no Go at all, groups pick their
components, and a failed build says which component failed, shows the end of its log and leaves nothing
half-built in the cache. (That each recipe really builds is shown by every test that runs a component.)
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from tests.infra import BUILD_SCRIPT, build_components

VERSIONS = dict(re.findall(r"^\s+\[([a-z-]+)\]=(v[0-9.]+)", BUILD_SCRIPT.read_text(), re.MULTILINE))


def _run(cache: Path, *args: str, path: str = "/usr/bin:/bin") -> subprocess.CompletedProcess[str]:
    env = {"PROVGATE_BIN_CACHE": str(cache), "PATH": path, "HOME": str(cache.parent)}
    return subprocess.run(
        ["bash", str(BUILD_SCRIPT), *args], env=env, capture_output=True, text=True, timeout=60
    )


def _prebuilt(cache: Path, *names: str) -> None:
    cache.mkdir(parents=True, exist_ok=True)
    for name in names:
        binary = cache / f"{name}-{VERSIONS[name]}"
        binary.write_text("#!/bin/sh\n")
        binary.chmod(0o755)


def test_a_built_group_is_a_no_op_without_go_and_gets_stable_names(tmp_path: Path) -> None:
    cache = tmp_path / "bin"
    _prebuilt(cache, "opa", "registry")
    done = _run(cache, "demo")  # PATH has no go: nothing may need it
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.strip().splitlines()[-1] == str(cache)
    assert os.readlink(cache / "opa") == f"opa-{VERSIONS['opa']}"
    assert os.readlink(cache / "registry") == f"registry-{VERSIONS['registry']}"


def test_the_test_group_builds_what_the_tests_run_and_no_peers(tmp_path: Path) -> None:
    cache = tmp_path / "bin"
    _prebuilt(cache, "opa", "registry")
    done = _run(cache, "test")  # no go on PATH: it says what it would build, and stops
    assert done.returncode == 2
    needed = set(re.search(r"needed to build (.*) \(not found on PATH\)", done.stderr).group(1).split())
    assert needed == {
        "ggcr-registry", "cosign", "timestamp-server", "spire-server", "spire-agent",
        "oidc-discovery-provider", "etcd", "kube-apiserver", "tekton-crds", "kustomize", "fulcio",
        "tesseract", "rekor-tiles",
    }  # fmt: skip
    assert not any((cache / name).exists() for name in needed)


def test_an_unknown_name_is_refused_with_the_known_ones(tmp_path: Path) -> None:
    done = _run(tmp_path / "bin", "kube-apiservr")
    assert done.returncode == 2
    assert "unknown group or component 'kube-apiservr'" in done.stderr
    assert "kube-apiserver" in done.stderr and "demo" in done.stderr


def test_a_failed_build_names_it_shows_its_log_and_leaves_nothing(tmp_path: Path) -> None:
    fake_bin = tmp_path / "fakebin"
    fake_bin.mkdir()
    fake_go = fake_bin / "go"
    fake_go.write_text(
        "#!/bin/sh\necho 'go: downloading something'\necho 'compile: the reason it failed' >&2\nexit 1\n"
    )
    fake_go.chmod(0o755)
    cache = tmp_path / "bin"
    done = _run(cache, "vegeta", path=f"{fake_bin}:/usr/bin:/bin")
    assert done.returncode != 0
    log = cache / "logs" / f"vegeta-{VERSIONS['vegeta']}.log"
    assert f"[1/1] building vegeta {VERSIONS['vegeta']}" in done.stderr
    assert "compile: the reason it failed" in done.stderr
    assert str(log) in done.stderr
    assert "go: downloading something" in log.read_text()
    assert sorted(p.name for p in cache.iterdir()) == [".lock", "logs"]


def test_benchmarks_build_through_the_script_and_get_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "bin"
    _prebuilt(cache, "opa", "registry")
    monkeypatch.setenv("PROVGATE_BIN_CACHE", str(cache))
    assert build_components("demo") == cache
    assert (cache / "opa").is_symlink()
