"""The ``gate`` command as a user runs it: exit codes, what goes to stdout and stderr, the help text."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gate.cli import run
from tests.gate.conftest import IMAGE, REPO, slsa02_statement, slsa1_statement

REPO_ROOT = Path(__file__).resolve().parents[2]


def gate(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = run([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("gate: error: ")
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def att_file(tmp_path: Path, sign) -> Path:
    path = tmp_path / "atts.jsonl"
    path.write_bytes(sign(slsa02_statement()) + b"\n" + sign(slsa1_statement()) + b"\n")
    return path


@pytest.fixture
def base_args(policy_dir: Path, data_file: Path, key_file: Path) -> list[str | Path]:
    return ["--policy", policy_dir, "--data", data_file, "--key", key_file]


def test_verify_allowed_text(capsys, att_file, base_args) -> None:
    code, out, err = gate(capsys, "verify", IMAGE, *base_args, "--attestations", att_file)
    assert code == 0, out + err
    assert out.splitlines()[0] == f"ALLOWED: {IMAGE}"
    assert "attestations: 2 of 2 verified" in out
    assert err == ""


def test_verbose_says_what_it_did_on_stderr_only(capsys, att_file, base_args, trusted_signer) -> None:
    args = ["verify", IMAGE, *base_args, "--attestations", att_file, "--output", "json"]
    code, quiet_out, quiet_err = gate(capsys, *args)
    assert code == 0 and quiet_err == ""
    code, out, err = gate(capsys, "-v", *args)
    assert code == 0
    drop = ("elapsed_ms", "timings")
    assert {k: v for k, v in json.loads(out).items() if k not in drop} == {
        k: v for k, v in json.loads(quiet_out).items() if k not in drop
    }
    lines = err.splitlines()
    assert lines and all(line.startswith("gate: debug: ") for line in lines), err
    assert f"{att_file}:1: signature 0 verifies with key {trusted_signer.keyid}" in err
    # The handler goes with the command: the next command is quiet again.
    code, _, err = gate(capsys, *args)
    assert code == 0 and err == ""


def test_verify_json(capsys, att_file, base_args) -> None:
    code, out, _ = gate(capsys, "verify", IMAGE, *base_args, "--attestations", att_file, "--output", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc["allowed"] is True and doc["image"] == IMAGE
    assert [a["verified"] for a in doc["attestations"]] == [True, True]
    assert [a["source"] for a in doc["attestations"]] == [f"{att_file}:1", f"{att_file}:2"]


def test_verify_policy_input_feeds_eval(capsys, tmp_path, att_file, base_args, policy_dir, data_file) -> None:
    code, out, _ = gate(
        capsys, "verify", IMAGE, *base_args, "--attestations", att_file, "--output", "policy-input"
    )
    assert code == 0
    doc = json.loads(out)
    assert doc["image"]["ref"] == IMAGE
    assert [a["statement"] for a in doc["attestations"]] == [slsa02_statement(), slsa1_statement()]
    # The policy author's loop: the same document through `gate eval`, then a denying edit of it.
    input_file = tmp_path / "input.json"
    input_file.write_text(out)
    code, out, err = gate(capsys, "eval", "--input", input_file, "--policy", policy_dir, "--data", data_file)
    assert code == 0, out + err
    assert out.startswith("ALLOWED")
    for att in doc["attestations"]:
        att["statement"]["predicate"] = {}
    input_file.write_text(json.dumps(doc))
    code, out, _ = gate(capsys, "eval", "--input", input_file, "--policy", policy_dir, "--data", data_file)
    assert code == 1
    assert "provenance.trusted_builder" in out


def test_verify_denied_shows_title_message_solution(capsys, tmp_path, sign, base_args) -> None:
    statement = slsa02_statement()
    statement["predicate"]["builder"]["id"] = "https://ci.example/other"
    path = tmp_path / "a.jsonl"
    path.write_bytes(sign(statement) + b"\n")
    code, out, err = gate(capsys, "verify", IMAGE, *base_args, "--attestations", path)
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == f"DENIED: {IMAGE}"
    body = "\n".join(lines[1:])
    assert body.index("Provenance from the trusted builder") < body.index("no provenance from builder")
    assert "fix: Build the image in the Tekton pipeline watched by Chains." in body
    assert err == ""


def test_verify_tampered_line_is_reported(capsys, tmp_path, sign, untrusted_signer, base_args) -> None:
    from tests.gate.conftest import envelope_json, to_bytes

    path = tmp_path / "a.jsonl"
    path.write_bytes(envelope_json(to_bytes(slsa02_statement()), untrusted_signer) + b"\n")
    code, out, _ = gate(capsys, "verify", IMAGE, *base_args, "--attestations", path, "--output", "json")
    assert code == 1
    doc = json.loads(out)
    assert doc["allowed"] is False
    assert doc["violations"][0]["code"] == "builtin.attestation.signature_check"
    assert doc["attestations"][0]["verified"] is False
    assert f"{path}:1" in doc["errors"][0]


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["verify", f"{REPO}:v1", "--attestations", "ATT"], ["no digest", f"{REPO}:v1"]),
        (["verify", "Not/A/Valid/REF@sha256:zz", "--attestations", "ATT"], ["Not/A/Valid/REF"]),
        (["verify", IMAGE, "--attestations", "/nonexistent/a.jsonl"], ["cannot read attestations file"]),
    ],
    ids=["tag-offline", "bad-ref", "no-file"],
)
def test_bad_input_exit_2(capsys, att_file, base_args, args, needles) -> None:
    args = [str(att_file) if a == "ATT" else a for a in args]
    code, out, err = gate(capsys, *args, *base_args)
    assert code == 2
    one_line_error(err, *needles)
    assert out == ""


def test_missing_key_exit_2(capsys, att_file, policy_dir) -> None:
    code, _, err = gate(capsys, "verify", IMAGE, "--policy", policy_dir, "--attestations", att_file)
    assert code == 2
    one_line_error(err, "--key")


def test_unreadable_key_exit_2(capsys, tmp_path, att_file, policy_dir) -> None:
    bad = tmp_path / "cosign.pub"
    bad.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    code, _, err = gate(
        capsys, "verify", IMAGE, "--policy", policy_dir, "--key", bad, "--attestations", att_file
    )
    assert code == 2
    one_line_error(err, str(bad))


def test_bad_policy_exit_2(capsys, tmp_path, att_file, key_file) -> None:
    (tmp_path / "bad.rego").write_text("package policy.release.bad\n\ndeny contains {{{\n")
    code, _, err = gate(
        capsys, "verify", IMAGE, "--policy", tmp_path, "--key", key_file, "--attestations", att_file
    )
    assert code == 2
    one_line_error(err)


def test_bad_option_value_exit_2(capsys, att_file, base_args) -> None:
    code, _, err = gate(capsys, "verify", IMAGE, *base_args, "--attestations", att_file, "--output", "yaml")
    assert code == 2
    one_line_error(err, "--output")
    code, _, err = gate(capsys, "verify", IMAGE, *base_args, "--timeout", "0")
    assert code == 2
    one_line_error(err, "--timeout")


def test_eval_bad_input(capsys, tmp_path, policy_dir) -> None:
    path = tmp_path / "input.json"
    path.write_text("{not json")
    code, _, err = gate(capsys, "eval", "--input", path, "--policy", policy_dir)
    assert code == 2
    one_line_error(err, str(path), "not valid JSON")
    path.write_text('{"attestations": {}}')
    code, _, err = gate(capsys, "eval", "--input", path, "--policy", policy_dir)
    assert code == 2
    one_line_error(err, "attestations")
    code, _, err = gate(capsys, "eval", "--input", tmp_path / "nope.json", "--policy", policy_dir)
    assert code == 2
    one_line_error(err, "nope.json")


def test_policy_test(capsys, tmp_path, policy_dir) -> None:
    root = tmp_path / "p"
    (root / "release").mkdir(parents=True)
    (root / "release" / "provenance.rego").write_text(
        (policy_dir / "release" / "provenance.rego").read_text()
    )
    (root / "release" / "provenance_test.rego").write_text(
        "package policy.release.provenance_test\n\nimport rego.v1\n\n"
        'test_format if {\n\tconcat(" ", ["2", "task(s)"]) == "2 task(s)"\n}\n'
    )
    code, out, _ = gate(capsys, "policy", "test", root)
    assert code == 0, out
    assert out.splitlines()[-1] == "1 passed, 0 failed"
    (root / "release" / "more_test.rego").write_text(
        "package policy.release.more_test\n\nimport rego.v1\n\ntest_always_fails if {\n\tfalse\n}\n"
    )
    code, out, _ = gate(capsys, "policy", "test", root)
    assert code == 1
    assert out.splitlines()[-1] == "1 passed, 1 failed"
    assert "FAIL data.policy.release.more_test.test_always_fails" in out
    code, _, err = gate(capsys, "policy", "test", tmp_path / "missing")
    assert code == 2
    one_line_error(err, "missing")


def test_help_teaches(capsys) -> None:
    code, out, _ = gate(capsys, "verify", "--help")
    assert code == 0
    assert "Examples:" in out and "--attestations" in out and "Exit" not in out.split("Examples:")[0][:0]
    code, out, _ = gate(capsys, "--help")
    assert code == 0 and "0 allowed" in out


def test_console_script_never_tracebacks(tmp_path) -> None:
    # The real entry point in a fresh process: a bad image reference is one stderr line and exit 2.
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gate",
            "verify",
            "UPPER/case@sha256:1",
            "--key",
            "k.pub",
            "--attestations",
            "x",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 2
    one_line_error(proc.stderr, "UPPER/case")
