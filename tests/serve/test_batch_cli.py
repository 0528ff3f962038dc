"""``gate verify IMAGE... --images FILE``: many images in one command, one decision each, the worst exit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from tests.infra import REPO
from tests.infra.registry import RegistryServer
from tests.serve.conftest import Signing, push_signed


def gate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gate", "verify", *args], capture_output=True, text=True, cwd=REPO, timeout=120
    )


def test_many_images_one_decision_each_and_the_worst_exit_code(
    tmp_path: Path, registry_plain: RegistryServer, signing: Signing, rule_data_file: Path
) -> None:
    good, _ = push_signed(registry_plain, signing.trusted)
    other, _ = push_signed(registry_plain, signing.trusted)
    bad, _ = push_signed(registry_plain, signing.untrusted)
    trust = ["--key", str(signing.public_key), "--data", str(rule_data_file)]
    both = gate(good, other, *trust, "--output", "json")
    assert both.returncode == 0, both.stderr
    assert [d["allowed"] for d in json.loads(both.stdout)["decisions"]] == [True, True]
    snapshot = tmp_path / "snapshot.yaml"
    snapshot.write_text(
        yaml.safe_dump(
            {
                "application": "demo",
                "components": [{"name": "a", "containerImage": good}, {"name": "b", "containerImage": bad}],
            }
        )
    )
    mixed = gate("--images", str(snapshot), *trust, "--output", "json")
    assert mixed.returncode == 1
    decisions = json.loads(mixed.stdout)["decisions"]
    assert [d["allowed"] for d in decisions] == [True, False]
    assert decisions[1]["violations"][0]["code"] == "builtin.attestation.signature_check"
    listed = tmp_path / "images.json"
    listed.write_text(json.dumps([good, "UPPER/case:bad"]))
    worst = gate("--images", str(listed), *trust)
    assert worst.returncode == 2
    assert "1 allowed, 1 could not decide (2 images)" in worst.stdout
    assert "UPPER/case:bad" in worst.stderr and "Traceback" not in worst.stderr


def test_bad_images_files_and_combinations_are_one_line_errors(tmp_path: Path, signing: Signing) -> None:
    key = ["--key", str(signing.public_key)]
    empty = tmp_path / "empty.yaml"
    empty.write_text("components: []\n")
    wrong = tmp_path / "wrong.yaml"
    wrong.write_text("components: [{name: a}]\n")
    cases = [
        (["--images", str(empty), *key], "no images in it"),
        (["--images", str(wrong), *key], "components[0].containerImage must be a non-empty string"),
        (["--images", str(tmp_path / "missing.yaml"), *key], "cannot read"),
        (
            ["a/b:v1", "c/d:v1", "--attestations", "x.jsonl", *key],
            "--attestations reads the attestations of one",
        ),
        (
            ["a/b:v1", "c/d:v1", "--output", "policy-input", *key],
            "policy-input shows what the policy sees for one",
        ),
        (key, "give an IMAGE, or --images FILE"),
    ]
    for args, expected in cases:
        done = gate(*args)
        assert done.returncode == 2, (args, done.stdout)
        assert expected in done.stderr and done.stderr.strip().count("\n") == 0, done.stderr
