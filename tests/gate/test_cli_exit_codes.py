"""The exit-code contract of DESIGN.md §3 for every ``--output`` (issue 10, finding 5): 0 allowed, 1 denied,
2 could not decide or unusable input, whatever is printed. Scripts check ``$?``; ``--output policy-input``
must not say 0 for an image nothing verified."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gate.cli import run
from tests.gate.conftest import BUILDER_ID, IMAGE, envelope_json, slsa02_statement, to_bytes
from tests.infra import free_port

OUTPUTS = ("text", "json", "policy-input")

# A policy whose evaluation fails at run time once there is something to look at (two values for one
# complete rule): the policy loads, the input is built, and only the verdict cannot be reached.
FAILING_POLICY = """\
package policy.release.conflict

import rego.v1

# METADATA
# title: Level
# description: Two values for one rule whenever an attestation reached the policy.
# custom:
#   short_name: level
#   failure_msg: level %s
#   solution: None.
deny contains result if {
\t_level > 0
\tresult := {"code": "conflict.level", "params": [_level]}
}

_level := n if {
\tsome n in [1, 2]
\tcount(input.attestations) > 0
}
"""


@pytest.fixture(scope="module")
def failing_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("failing")
    (root / "release").mkdir()
    (root / "release" / "conflict.rego").write_text(FAILING_POLICY)
    return root


def _other_builder() -> dict[str, Any]:
    statement = slsa02_statement()
    statement["predicate"]["builder"]["id"] = "https://ci.example/not-" + BUILDER_ID.split("//")[1]
    return statement


@dataclass(frozen=True)
class Outcome:
    """A way a user meets one verdict: what the attestations file holds, the extra arguments, the exit code,
    and how many statements the policy input carries (None: no input could be built)."""

    lines: tuple[str, ...]  # "good", "other-builder", "untrusted"; empty: an empty file
    extra: tuple[str, ...]
    code: int
    in_policy_input: int | None
    offline: bool = True


OUTCOMES = {
    "allowed": Outcome(("good",), (), 0, 1),
    "denied by the policy": Outcome(("other-builder",), (), 1, 1),
    "denied: nothing verified": Outcome(("untrusted",), (), 1, 0),
    "denied: no attestations": Outcome((), (), 1, 0),
    "undecided: registry unreachable": Outcome((), ("--timeout", "3"), 2, None, offline=False),
    "undecided: policy failed": Outcome(("good",), ("--policy", "FAILING"), 2, 1),
    "undecided: deadline passed": Outcome(("good",), ("--timeout", "0.000001"), 2, 1),
    "unusable input": Outcome(("good",), ("--key", "/nonexistent/cosign.pub"), 2, None),
}


@pytest.mark.parametrize("outcome", list(OUTCOMES))
@pytest.mark.parametrize("output", OUTPUTS)
def test_verify_exit_code_is_the_verdict_for_every_output(
    capsys,
    tmp_path: Path,
    sign,
    untrusted_signer,
    failing_policy: Path,
    policy_dir: Path,
    data_file: Path,
    key_file: Path,
    output: str,
    outcome: str,
) -> None:
    case = OUTCOMES[outcome]
    made = {
        "good": lambda: sign(slsa02_statement()),
        "other-builder": lambda: sign(_other_builder()),
        "untrusted": lambda: envelope_json(to_bytes(slsa02_statement()), untrusted_signer),
    }
    extra = [str(failing_policy) if a == "FAILING" else a for a in case.extra]
    args = ["--key", str(key_file), "--data", str(data_file), "--output", output]
    if "--policy" not in extra:
        args += ["--policy", str(policy_dir)]
    image = IMAGE
    if case.offline:
        path = tmp_path / "atts.jsonl"
        path.write_bytes(b"".join(made[line]() + b"\n" for line in case.lines))
        args += ["--attestations", str(path)]
    else:
        image = f"127.0.0.1:{free_port()}/team/app@sha256:{'a' * 64}"
    code = run(["verify", image, *args, *extra])
    out, err = capsys.readouterr()
    assert code == case.code, (out, err)
    assert "Traceback" not in out + err

    if outcome == "unusable input":
        assert out == "" and err.startswith("gate: error: ") and len(err.splitlines()) == 1
    elif output == "text":
        assert out.startswith({0: "ALLOWED: ", 1: "DENIED: ", 2: "COULD NOT DECIDE: "}[case.code])
    elif output == "json":
        doc = json.loads(out)
        assert doc["allowed"] is (case.code == 0) and doc["decided"] is (case.code != 2)
    else:
        # The policy's input whenever it was built, and the verdict on stderr: nothing for an allowed
        # image, the reasons for a denied one, the errors for an undecided one.
        if case.in_policy_input is None:
            assert out == ""
        else:
            doc = json.loads(out)
            assert set(doc) == {"image", "attestations"}
            assert len(doc["attestations"]) == case.in_policy_input
        if case.code == 0:
            assert err == ""
        elif case.code == 1:
            assert err.startswith("gate: denied: ") and err.splitlines()[1].startswith("gate:   [")
        else:
            assert err.startswith("gate: error: ")


@pytest.mark.parametrize("output", ["text", "json"])
@pytest.mark.parametrize(
    ("outcome", "expected"),
    [("allowed", 0), ("denied", 1), ("undecided: policy failed", 2), ("unusable input", 2)],
)
def test_eval_exit_code_is_the_verdict_for_every_output(
    capsys,
    tmp_path: Path,
    sign,
    failing_policy: Path,
    policy_dir: Path,
    data_file: Path,
    key_file: Path,
    output: str,
    outcome: str,
    expected: int,
) -> None:
    # The input as a policy author gets it: from gate verify --output policy-input.
    statement = slsa02_statement() if outcome != "denied" else _other_builder()
    lines = tmp_path / "atts.jsonl"
    lines.write_bytes(sign(statement) + b"\n")
    verify_args = ["--key", str(key_file), "--policy", str(policy_dir), "--data", str(data_file)]
    run(["verify", IMAGE, *verify_args, "--attestations", str(lines), "--output", "policy-input"])
    document = tmp_path / "input.json"
    document.write_text(capsys.readouterr().out)
    if outcome == "unusable input":
        document.write_text("[not an object]")
    policy = failing_policy if outcome.startswith("undecided") else policy_dir
    code = run(
        [
            "eval",
            "--input",
            str(document),
            "--policy",
            str(policy),
            "--data",
            str(data_file),
            "--output",
            output,
        ]
    )
    out, err = capsys.readouterr()
    assert code == expected, (out, err)
    if outcome == "unusable input":
        assert out == "" and err.startswith("gate: error: ")
    elif output == "json":
        doc = json.loads(out)
        assert doc["allowed"] is (expected == 0) and doc["decided"] is (expected != 2)
    else:
        assert out.startswith({0: "ALLOWED: ", 1: "DENIED: ", 2: "COULD NOT DECIDE: "}[expected])
