"""``--engine``: every engine of ``gate.policy`` is offered; the in-process ones decide alike from the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gate import cli
from gate.policy import ENGINES
from tests.gate.conftest import IMAGE, slsa02_statement
from tests.gate.test_cli import gate, one_line_error


def test_cli_offers_exactly_the_engines_of_gate_policy() -> None:
    commands = {"verify": cli.verify_cmd, "eval": cli.eval_cmd, "policy test": cli.policy_test_cmd}
    for name, command in commands.items():
        [option] = [p for p in command.params if p.name == "engine"]
        assert tuple(option.type.choices) == ENGINES, name


@pytest.fixture
def lines(tmp_path: Path, sign) -> dict[str, Path]:
    other = slsa02_statement()
    other["predicate"]["builder"]["id"] = "https://ci.example/other"
    out = {}
    for name, statement in (("good", slsa02_statement()), ("other-builder", other)):
        out[name] = tmp_path / f"{name}.jsonl"
        out[name].write_bytes(sign(statement) + b"\n")
    return out


@pytest.mark.parametrize("engine", ["embedded", "wasm"])
def test_in_process_engines_decide_alike(capsys, engine, lines, key_file, policy_dir, data_file) -> None:
    args = [
        "verify",
        IMAGE,
        "--key",
        key_file,
        "--policy",
        policy_dir,
        "--data",
        data_file,
        "--engine",
        engine,
    ]
    code, out, err = gate(capsys, *args, "--attestations", lines["good"], "--output", "json")
    assert code == 0, out + err
    assert json.loads(out)["rules_evaluated"] == 2
    code, out, _ = gate(capsys, *args, "--attestations", lines["other-builder"], "--output", "json")
    assert code == 1
    assert [v["code"] for v in json.loads(out)["violations"]] == ["provenance.trusted_builder"]


def test_opa_engine_without_url_is_a_usage_error(capsys, lines, key_file, policy_dir) -> None:
    code, out, err = gate(
        capsys, "verify", IMAGE, "--key", key_file, "--policy", policy_dir, "--engine", "opa",
        "--attestations", lines["good"],
    )  # fmt: skip
    assert code == 2 and out == ""
    one_line_error(err, "--opa-url")


def test_unknown_engine_is_a_usage_error(capsys, key_file) -> None:
    code, out, err = gate(capsys, "verify", IMAGE, "--key", key_file, "--engine", "regopy")
    assert code == 2 and out == ""
    one_line_error(err, "--engine", "regopy")
