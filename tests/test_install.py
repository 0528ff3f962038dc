"""A normal (non-editable) install, as the Dockerfile's `pip install .` makes it, decides like the checkout.

The package is built from a copy of the checkout (so no `build/` directory appears in it and concurrent
runs do not share one) and installed with --no-deps into a scratch venv that takes its dependencies from
this venv through a .pth line. Only the build backend (setuptools, wheel) comes from pip's configured index.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path
from typing import Any

import pytest

from policies import ROOT
from tests.gate.test_policy_library import tep0084_input
from tests.infra import require_binary

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("attestation", "signer", "gate", "policies")
# What the gate prints that depends on when and how long, not on what was decided.
TIMING_KEYS = ("elapsed_ms", "timings")
NO_BUILD_BACKEND = (
    "No matching distribution found for setuptools",
    "Could not find a version that satisfies the requirement setuptools",
    "No matching distribution found for wheel",
)


def _run(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kwargs)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The scratch venv with provgate installed non-editable from a copy of the checkout."""
    base = tmp_path_factory.mktemp("install")
    src = base / "src"
    src.mkdir()
    shutil.copy2(REPO / "pyproject.toml", src)
    shutil.copy2(REPO / "README.md", src)
    for package in PACKAGES:
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))

    venv = base / "venv"
    proc = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)])
    assert proc.returncode == 0, proc.stderr
    python = venv / "bin" / "python"
    purelib = Path(
        _run([str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]).stdout.strip()
    )
    # The dependencies: this venv's site-packages as a plain path entry (its own .pth files, among them the
    # editable install's import hook, are not processed, so `gate` can only come from the new install).
    ours = {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    (purelib / "provgate-test-deps.pth").write_text("".join(f"{p}\n" for p in sorted(ours)))

    proc = _run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "--no-deps",
            "--no-cache-dir",
            str(src),
        ]
    )
    if proc.returncode != 0 and any(text in proc.stdout + proc.stderr for text in NO_BUILD_BACKEND):
        pytest.skip(f"pip cannot get the build backend (no index reachable): {proc.stderr[-500:]}")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return venv


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, **extra}


def _installed_root(venv: Path, module: str) -> Path:
    # Run from the venv: `python -c` puts the working directory first on sys.path, and from the checkout
    # that would import the checkout's packages.
    proc = _run(
        [str(venv / "bin" / "python"), "-c", f"import {module}; print({module}.__file__)"],
        cwd=venv,
        env=_clean_env(),
    )
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip()).parent


def _decision(cmd: list[str], input_file: Path, policy: Path, env: dict[str, str]) -> dict[str, Any]:
    proc = _run(
        [*cmd, "eval", "--input", str(input_file), "--policy", str(policy), "--output", "json"],
        env=env,
        cwd=input_file.parent,
    )
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr  # 0 allowed, 1 denied; 2 is unusable input
    doc = json.loads(proc.stdout)
    assert doc["decided"] is True and doc["rules_evaluated"] > 0, doc
    assert proc.returncode == (0 if doc["allowed"] else 1)
    return {k: v for k, v in doc.items() if k not in TIMING_KEYS}


@pytest.mark.slow
def test_the_installed_package_is_the_installed_copy_not_the_checkout(installed: Path) -> None:
    for module in PACKAGES:
        root = _installed_root(installed, module)
        assert root.is_relative_to(installed), f"{module} imported from {root}, not from the install"


@pytest.mark.slow
def test_the_installed_package_ships_the_rule_data_and_every_rego_file(installed: Path) -> None:
    installed_policies = _installed_root(installed, "policies")
    expected = sorted(p.relative_to(ROOT) for p in ROOT.rglob("*.rego"))
    assert expected, "the checkout has no .rego files?"
    shipped = sorted(p.relative_to(installed_policies) for p in installed_policies.rglob("*.rego"))
    assert shipped == expected
    for rel in [*expected, Path("rule_data.yml")]:
        assert (installed_policies / rel).read_bytes() == (ROOT / rel).read_bytes(), rel


@pytest.mark.slow
def test_installed_gate_eval_decides_like_the_checkout(installed: Path, tmp_path: Path) -> None:
    opa = require_binary("opa")
    input_file = tmp_path / "input.json"
    input_file.write_text(json.dumps(tep0084_input()))

    def env(name: str) -> dict[str, str]:
        # Each run with its own empty caches: neither can read what the other computed.
        return _clean_env(XDG_CACHE_HOME=str(tmp_path / f"cache-{name}"), PROVGATE_OPA=str(opa))

    checkout = _decision(
        [sys.executable, "-m", "gate"], input_file, ROOT, {**env("checkout"), "PYTHONPATH": str(REPO)}
    )
    gate_script = installed / "bin" / "gate"
    assert gate_script.is_file()
    installed_policies = _installed_root(installed, "policies")
    assert installed_policies != ROOT
    result = _decision([str(gate_script)], input_file, installed_policies, env("installed"))

    assert result == checkout
    assert checkout["violations"], "the sample should be denied, so a decision with no rules is not a match"
