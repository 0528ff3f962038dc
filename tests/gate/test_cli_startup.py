"""What a ``gate verify`` process loads: start-up time is mostly imports, so the command must not pull in
modules its path never uses (checked by module, never by the clock)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from pathlib import Path

from attestation.oci.writer import push_attestation_legacy, push_image
from tests.gate.conftest import IMAGE, envelope_json, slsa02_statement, to_bytes
from tests.infra.registry import RegistryServer, registry_plain  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[2]
# The X.509/SPIFFE stack (grpc via the spiffe package, the TSA client) and httpx's own command-line
# client (rich, pygments) are only for paths other than key-based verification.
# Nor is the certificate code (cryptography.x509, a measurable import: docs/performance.md), and reading a
# PEM public key needs none of what decrypts cosign's private keys (nacl, scrypt) or asks for their
# password (getpass).
NEVER_WITH_KEYS = (
    "grpc",
    "spiffe",
    "attestation.spiffe",
    "attestation.timestamp",
    "rich",
    "pygments",
    "cryptography.x509",
    "attestation.x509",
    "nacl",
    "cryptography.hazmat.primitives.kdf.scrypt",
    "getpass",
    # opapywasm imports it only for its __version__ (gate.policy.wasm._import_opapywasm).
    "importlib.metadata",
)

PROBE = """
import json, sys
import gate.cli

def report_instead_of_exiting(code):
    raise SystemExit(code)

gate.cli._exit_now = report_instead_of_exiting
try:
    gate.cli.main(sys.argv[1:])
except SystemExit as exit:
    code = exit.code
print(json.dumps({"code": code, "modules": sorted(k for k, v in sys.modules.items() if v is not None)}))
"""


def _gate_process(*argv: str | Path) -> tuple[int, set[str]]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *map(str, argv)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=120,
    )
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    return report["code"], set(report["modules"])


def test_offline_verify_with_a_key_loads_no_network_or_x509_stack(
    tmp_path: Path, sign, key_file: Path, policy_dir: Path, data_file: Path
) -> None:
    atts = tmp_path / "a.jsonl"
    atts.write_bytes(sign(slsa02_statement()) + b"\n")
    code, modules = _gate_process(
        "verify",
        IMAGE,
        "--key",
        key_file,
        "--policy",
        policy_dir,
        "--data",
        data_file,
        "--attestations",
        atts,
    )
    assert code == 0
    loaded = sorted(m for m in modules if m.split(".")[0] in {"httpx", "httpcore"} or m in NEVER_WITH_KEYS)
    assert loaded == []


# `gate eval` checks no signature and reads no attestation: the code that does is not even imported.
NEVER_IN_EVAL = (
    "attestation.cosign",
    "attestation.bundle",
    "attestation.dsse",
    "attestation.keys",
    "gate.checklist",
    "gate.trust",
    "cryptography",
)


def test_eval_loads_no_signature_or_attestation_code(
    tmp_path: Path, policy_dir: Path, data_file: Path
) -> None:
    doc = tmp_path / "input.json"
    digest = IMAGE.split("@")[1]
    doc.write_text(
        json.dumps(
            {"image": {"ref": IMAGE, "digest": digest}, "attestations": [{"statement": slsa02_statement()}]}
        )
    )
    code, modules = _gate_process("eval", "--input", doc, "--policy", policy_dir, "--data", data_file)
    assert code == 0
    assert sorted(m for m in modules if m.split(".")[0] in NEVER_IN_EVAL or m in NEVER_IN_EVAL) == []


def test_registry_verify_loads_httpx_without_its_cli(
    registry_plain: RegistryServer,  # noqa: F811
    trusted_signer,
    key_file: Path,
    policy_dir: Path,
    data_file: Path,
) -> None:
    async def push() -> str:
        deadline = time.monotonic() + 30
        async with registry_plain.client() as client:
            image = await push_image(client, registry_plain.repo(), [b"startup"], deadline=deadline)
            statement = slsa02_statement(image.digest.split(":")[1], name=image.reference.name)
            envelope = envelope_json(to_bytes(statement), trusted_signer)
            await push_attestation_legacy(client, image, envelope, deadline=deadline)
            return image.pinned

    pinned = asyncio.run(push())
    code, modules = _gate_process(
        "verify", pinned, "--key", key_file, "--policy", policy_dir, "--data", data_file
    )
    assert code == 0
    assert "httpx" in modules  # the registry was really reached through it
    assert sorted(m for m in NEVER_WITH_KEYS if m in modules) == []
    # aiohttp is gate serve's transport; a one-shot command would pay its longer import for nothing.
    assert sorted(m for m in modules if m.split(".")[0] == "aiohttp") == []


def _console(*argv: str | Path) -> subprocess.CompletedProcess[bytes]:
    """``gate`` exactly as the console script runs it, output through pipes."""
    return subprocess.run(
        [sys.executable, "-m", "gate", *map(str, argv)], capture_output=True, cwd=REPO_ROOT, timeout=120
    )


def test_console_script_delivers_all_output_and_the_exit_code(
    tmp_path: Path, sign, key_file: Path, policy_dir: Path, data_file: Path
) -> None:
    # The one-shot commands leave without the interpreter's teardown; what they print and their exit
    # code must still all arrive. A large policy input (~0.5 MB) goes through the pipe whole.
    big = slsa02_statement(tasks=2000)
    other = slsa02_statement()
    other["predicate"]["builder"]["id"] = "https://ci.example/other"
    args = ["--key", key_file, "--policy", policy_dir, "--data", data_file]
    for name, statement in (("big", big), ("other", other)):
        (tmp_path / f"{name}.jsonl").write_bytes(sign(statement) + b"\n")

    proc = _console(
        "verify", IMAGE, *args, "--attestations", tmp_path / "big.jsonl", "--output", "policy-input"
    )
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout) > 400_000
    [att] = json.loads(proc.stdout)["attestations"]
    assert att["statement"] == big

    proc = _console("verify", IMAGE, *args, "--attestations", tmp_path / "other.jsonl")
    assert proc.returncode == 1 and proc.stdout.startswith(b"DENIED")
    assert proc.stdout.rstrip().endswith(b"ms")  # the last line of the text report

    proc = _console("verify", IMAGE.split("@")[0], *args, "--attestations", tmp_path / "other.jsonl")
    assert proc.returncode == 2 and proc.stdout == b""
    assert proc.stderr.startswith(b"gate: error: ") and proc.stderr.count(b"\n") == 1

    proc = _console("eval", "--input", tmp_path / "missing.json", "--policy", policy_dir)
    assert proc.returncode == 2 and b"missing.json" in proc.stderr


def test_the_wasm_engine_reads_wasmtime_s_version_as_importlib_metadata_does() -> None:
    # The version keys the cache of native code (gate.policy.wasm._native_path); it is read from the
    # dist-info without importlib.metadata, and importlib.metadata still imports afterwards.
    probe = (
        "import sys, gate.policy.wasm as w\n"
        "assert 'importlib.metadata' not in sys.modules\n"
        "import importlib.metadata\n"
        "print(w._WASMTIME_VERSION, importlib.metadata.version('wasmtime'))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    ours, theirs = proc.stdout.split()
    assert ours == theirs


def test_console_script_verbose_log_reaches_stderr(
    tmp_path: Path, sign, key_file: Path, policy_dir: Path, data_file: Path
) -> None:
    # The one-shot exit skips the interpreter's teardown; the debug lines written before it still arrive,
    # and only on stderr.
    atts = tmp_path / "a.jsonl"
    atts.write_bytes(sign(slsa02_statement()) + b"\n")
    args = ["verify", IMAGE, "--key", key_file, "--policy", policy_dir, "--data", data_file]
    proc = _console("-v", *args, "--attestations", atts, "--output", "json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["allowed"] is True
    lines = proc.stderr.decode().splitlines()
    assert lines and all(line.startswith("gate: debug: ") for line in lines)
    assert any("signature 0 verifies with key" in line for line in lines)
