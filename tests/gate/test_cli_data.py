"""``--data PATH`` with a directory: every JSON/YAML file in it, in sorted order, for verify and eval."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.gate.conftest import BUILDER_ID, IMAGE, slsa02_statement
from tests.gate.test_cli import gate, one_line_error

WRONG = "https://ci.example/not-chains"


@pytest.fixture
def input_file(tmp_path: Path) -> Path:
    path = tmp_path / "input.json"
    doc = {
        "image": {"ref": IMAGE, "digest": IMAGE.split("@")[1]},
        "attestations": [{"statement": slsa02_statement(), "signatures": [{"keyid": "k", "sig": "AA=="}]}],
    }
    path.write_text(json.dumps(doc))
    return path


def builder(value: str) -> str:
    return json.dumps({"rule_data": {"builder_id": value}})


def test_directory_files_are_merged_in_sorted_order(capsys, tmp_path, input_file, policy_dir) -> None:
    data = tmp_path / "data"
    data.mkdir()
    # Written in the opposite order to their names, so the file system's order is not the sorted one.
    (data / "20-right.yaml").write_text(f"rule_data:\n  builder_id: {BUILDER_ID}\n")
    (data / "10-wrong.json").write_text(builder(WRONG))
    code, out, err = gate(capsys, "eval", "--input", input_file, "--policy", policy_dir, "--data", data)
    assert code == 0, out + err

    (data / "30-wrong-again.yml").write_text(f"rule_data:\n  builder_id: {WRONG}\n")
    code, out, _ = gate(capsys, "eval", "--input", input_file, "--policy", policy_dir, "--data", data)
    assert code == 1
    assert f"no provenance from builder {WRONG}" in out


def test_subdirectories_are_read_and_hidden_entries_and_other_files_skipped(
    capsys, tmp_path, input_file, policy_dir
) -> None:
    data = tmp_path / "data"
    (data / "team").mkdir(parents=True)
    (data / ".git").mkdir()
    (data / "team" / "builder.json").write_text(builder(BUILDER_ID))
    (data / ".git" / "zz.json").write_text(builder(WRONG))
    (data / ".zz-hidden.json").write_text(builder(WRONG))
    (data / "README.md").write_text("not data {")
    code, out, err = gate(capsys, "eval", "--input", input_file, "--policy", policy_dir, "--data", data)
    assert code == 0, out + err


def test_verify_takes_a_data_directory(capsys, tmp_path, sign, policy_dir, key_file) -> None:
    atts = tmp_path / "a.jsonl"
    atts.write_bytes(sign(slsa02_statement()) + b"\n")
    data = tmp_path / "data"
    data.mkdir()
    args = [
        "verify",
        IMAGE,
        "--key",
        key_file,
        "--policy",
        policy_dir,
        "--attestations",
        atts,
        "--data",
        data,
    ]
    (data / "wrong.json").write_text(builder(WRONG))
    code, out, _ = gate(capsys, *args)
    assert code == 1 and out.startswith("DENIED")
    (data / "wrong.json").write_text(builder(BUILDER_ID))
    code, out, err = gate(capsys, *args)
    assert code == 0, out + err


def test_directory_without_data_files_is_an_error(capsys, tmp_path, input_file, policy_dir) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "notes.txt").write_text("rule_data: {}")
    code, out, err = gate(capsys, "eval", "--input", input_file, "--policy", policy_dir, "--data", data)
    assert code == 2 and out == ""
    one_line_error(err, f"--data {data}", "no .json, .yaml or .yml file")


def test_bad_file_in_directory_is_named(capsys, tmp_path, input_file, policy_dir, sign, key_file) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.json").write_text(builder(BUILDER_ID))
    (data / "b.yaml").write_text("rule_data: [unclosed\n")
    code, out, err = gate(capsys, "eval", "--input", input_file, "--policy", policy_dir, "--data", data)
    assert code == 2 and out == ""
    one_line_error(err, str(data / "b.yaml"), "not valid YAML")
    # the same on the verify path: nothing is admitted
    atts = tmp_path / "a.jsonl"
    atts.write_bytes(sign(slsa02_statement()) + b"\n")
    code, out, err = gate(
        capsys,
        "verify",
        IMAGE,
        "--key",
        key_file,
        "--policy",
        policy_dir,
        "--attestations",
        atts,
        "--data",
        data,
    )
    assert code == 2 and out == ""
    one_line_error(err, str(data / "b.yaml"))
