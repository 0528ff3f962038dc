"""The signer CLI: every error is one line on stderr with exit code 2, never a traceback."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from attestation import dsse, keys
from signer.cli import main

DATA = Path(__file__).parent / "testdata"
SAMPLES = Path(__file__).parents[2] / "signer" / "samples"
TASKRUN = DATA / "runs" / "taskrun-build.yaml"
PIPELINERUN = SAMPLES / "tep0084-pipelinerun.yaml"


@dataclass
class Outcome:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def signer(monkeypatch, capsys) -> Callable[..., Outcome]:
    """Run the CLI in-process (fast); one test below runs the installed console script."""

    def run(*args: str, env: dict | None = None) -> Outcome:
        monkeypatch.delenv("COSIGN_PASSWORD", raising=False)
        for k, v in (env or {}).items():
            monkeypatch.setenv(k, v)
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            main(list(args))
        out, err = capsys.readouterr()
        return Outcome(exc.value.code, out, err)

    return run


def assert_error(proc: Outcome, *fragments: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in proc.stderr
    for f in fragments:
        assert f in lines[0]
    assert proc.stdout == ""


@pytest.fixture(scope="module")
def key_pair(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("keys")
    return keys.write_key_pair(str(d / "cosign"), b"s3cret")


def test_provenance_prints_statement_and_warnings(signer):
    proc = signer("provenance", str(TASKRUN), "--builder-id", "https://b.example/x")
    assert proc.returncode == 0, proc.stderr
    st = json.loads(proc.stdout)
    assert st["predicate"]["builder"]["id"] == "https://b.example/x"
    assert (
        proc.stderr.strip()
        == "warning: TaskRun ci/build-app: result bad-IMAGE_URL has no matching bad-IMAGE_DIGEST; ignored"
    )


def test_provenance_in_toto_alias_and_separate_taskrun_files(signer, tmp_path):
    # Split the List: the PipelineRun alone, its TaskRuns via --taskrun.
    import yaml

    items = yaml.safe_load((SAMPLES / "tep0084-pipelinerun.yaml").read_text())["items"]
    (tmp_path / "pr.yaml").write_text(yaml.safe_dump(items[0]))
    (tmp_path / "trs.yaml").write_text(yaml.safe_dump({"kind": "List", "items": items[1:3]}))
    (tmp_path / "more.json").write_text(json.dumps({"kind": "List", "items": items[3:]}))
    proc = signer(
        "provenance",
        str(tmp_path / "pr.yaml"),
        "--taskrun",
        str(tmp_path / "trs.yaml"),
        "--taskrun",
        str(tmp_path / "more.json"),
        "--format",
        "in-toto",
    )
    assert proc.returncode == 0, proc.stderr
    combined = signer("provenance", str(PIPELINERUN))
    assert json.loads(proc.stdout) == json.loads(combined.stdout)


def test_missing_children_are_named(signer, tmp_path):
    import yaml

    items = yaml.safe_load(PIPELINERUN.read_text())["items"]
    (tmp_path / "pr.yaml").write_text(yaml.safe_dump(items[0]))
    proc = signer("provenance", str(tmp_path / "pr.yaml"))
    assert_error(proc, "pr.yaml", "missing child TaskRun(s) tep0084-build-run-git-clone", "--taskrun")


def test_not_a_run(signer, tmp_path):
    (tmp_path / "pod.yaml").write_text("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\n")
    assert_error(
        signer("provenance", str(tmp_path / "pod.yaml")), "pod.yaml", "Pod p is not a TaskRun or PipelineRun"
    )


def test_run_not_completed(signer, tmp_path):
    text = TASKRUN.read_text().replace('  completionTime: "2024-03-01T13:00:05+01:00"\n', "")
    (tmp_path / "tr.yaml").write_text(text)
    assert_error(signer("provenance", str(tmp_path / "tr.yaml")), "TaskRun ci/build-app has not completed")


def test_unreadable_and_malformed_input(signer, tmp_path):
    assert_error(signer("provenance", str(tmp_path / "nope.yaml")), "nope.yaml", "cannot read")
    (tmp_path / "bad.json").write_text("{not json")
    assert_error(signer("provenance", str(tmp_path / "bad.json")), "bad.json", "not valid YAML or JSON")


def test_unknown_format_and_build_type(signer):
    assert_error(
        signer("provenance", str(TASKRUN), "--format", "slsa/v9"), "unknown provenance format 'slsa/v9'"
    )
    assert_error(signer("provenance", str(TASKRUN), "--build-type", "https://x"), "unsupported build type")


def test_sign_writes_verifiable_envelope(signer, key_pair, tmp_path):
    key, pub = key_pair
    out = tmp_path / "env.json"
    proc = signer(
        "sign", str(TASKRUN), "--key", str(key), "--out", str(out), env={"COSIGN_PASSWORD": "s3cret"}
    )
    assert proc.returncode == 0, proc.stderr
    env = json.loads(out.read_text())
    assert env["payloadType"] == "application/vnd.in-toto+json"
    payload = base64.b64decode(env["payload"])
    public = keys.load_public_key_file(pub)
    sig = base64.b64decode(env["signatures"][0]["sig"])
    assert public.verify(sig, dsse.pae(env["payloadType"], payload))
    assert json.loads(payload)["predicate"]["buildType"] == "tekton.dev/v1/TaskRun"


def test_sign_with_password_file_to_stdout(signer, key_pair, tmp_path):
    key, _ = key_pair
    (tmp_path / "pw").write_text("s3cret\n")
    proc = signer("sign", str(PIPELINERUN), "--key", str(key), "--key-password-file", str(tmp_path / "pw"))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["payloadType"] == "application/vnd.in-toto+json"


def test_sign_wrong_password_writes_nothing(signer, key_pair, tmp_path):
    key, _ = key_pair
    out = tmp_path / "env.json"
    proc = signer("sign", str(TASKRUN), "--key", str(key), "--out", str(out), env={"COSIGN_PASSWORD": "nope"})
    assert_error(proc, "wrong password", str(key))
    assert not out.exists()


def test_sign_unreadable_key(signer, tmp_path):
    proc = signer("sign", str(TASKRUN), "--key", str(tmp_path / "none.key"), env={"COSIGN_PASSWORD": "x"})
    assert_error(proc, "none.key")
    (tmp_path / "junk.key").write_text("not a key")
    assert_error(signer("sign", str(TASKRUN), "--key", str(tmp_path / "junk.key")), "junk.key")


def test_sign_requires_key(signer):
    assert_error(signer("sign", str(TASKRUN)), "--key")


def test_generate_key_pair_refuses_overwrite_and_needs_password(signer, key_pair, tmp_path):
    key, _ = key_pair
    prefix = str(key).removesuffix(".key")
    assert_error(
        signer("generate-key-pair", "--output-key-prefix", prefix, env={"COSIGN_PASSWORD": "x"}),
        "already exists",
    )
    assert_error(signer("generate-key-pair", "--output-key-prefix", str(tmp_path / "k")), "COSIGN_PASSWORD")
    assert not (tmp_path / "k.key").exists()
    made = signer(
        "generate-key-pair", "--output-key-prefix", str(tmp_path / "new"), env={"COSIGN_PASSWORD": "pw"}
    )
    assert made.returncode == 0, made.stderr
    (tmp_path / "pw").write_text("pw")
    assert keys.load_private_key_file(tmp_path / "new.key", password_file=tmp_path / "pw", prompt=False)


@pytest.mark.parametrize("command", [[], ["provenance"], ["sign"], ["generate-key-pair"]])
def test_help_explains_with_examples(signer, command):
    proc = signer(*command, "--help")
    assert proc.returncode == 0
    assert "Example" in proc.stdout
    if command in (["provenance"], ["sign"]):
        for opt in ("--taskrun", "--format", "--deep-inspection", "--builder-id", "--build-type"):
            assert opt in proc.stdout


def test_internal_error_is_one_line(monkeypatch, capsys):
    from signer import cli

    def boom(*a, **k):
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(cli, "load_run_input", boom)
    with pytest.raises(SystemExit) as exc:
        cli.main(["provenance", str(TASKRUN)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err == "error: internal error: RuntimeError: boom second line\n"


def test_console_script_end_to_end(tmp_path):
    """The installed entry point, as users and the demo call it: statement on stdout, exit 0."""
    script = Path(sys.executable).with_name("signer")
    cmd = [str(script)] if script.exists() else [sys.executable, "-c", "from signer.cli import main; main()"]
    ok = subprocess.run([*cmd, "provenance", str(PIPELINERUN)], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["predicate"]["buildType"] == "tekton.dev/v1/PipelineRun"
    bad = subprocess.run(
        [*cmd, "provenance", str(tmp_path / "x.yaml")], capture_output=True, text=True, timeout=120
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
