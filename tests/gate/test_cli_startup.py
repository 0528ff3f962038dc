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
NEVER_WITH_KEYS = ("grpc", "spiffe", "attestation.spiffe", "attestation.timestamp", "rich", "pygments")

PROBE = """
import json, sys
from gate.cli import main
try:
    main(sys.argv[1:])
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
