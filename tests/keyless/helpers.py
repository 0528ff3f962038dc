"""Helpers of the keyless suites: the two CLIs as subprocesses, keyless signing into a file, and an
in-process gate with keyless trust."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from gate.config import GateConfig
from gate.decision import Decision
from gate.trust_keyless import KeylessEntry
from gate.verify import Gate
from tests.infra import require_binary
from tests.infra.sigstore import SigstoreStack
from tests.keyless.conftest import SIGNER_ID, Built


def cli(module: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120) -> Any:
    code = f"import sys; from {module}.cli import main; main(sys.argv[1:])"
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout, env=env
    )


def sign_args(stack: SigstoreStack, built: Built, spiffe_id: str = SIGNER_ID) -> list[str]:
    return [
        "sign",
        str(built.run_file),
        "--keyless",
        "--spiffe-socket",
        stack.spire.workload_socket,
        "--spiffe-id",
        spiffe_id,
        "--trust-config",
        str(stack.trust_config_file),
    ]


def sign_to_file(stack: SigstoreStack, built: Built, out: Path, *extra: str) -> bytes:
    """A keyless bundle for ``built``'s run, written by ``signer sign --keyless --out``."""
    args = sign_args(stack, built)
    if "--identity-token-file" in extra:
        args = [a for a in args if a not in ("--spiffe-socket", stack.spire.workload_socket)]
        args = [a for a in args if a not in ("--spiffe-id", SIGNER_ID)]
    done = cli("signer", *args, "--out", str(out), *extra)
    assert done.returncode == 0, done.stderr
    return out.read_bytes().strip()


def entry(stack: SigstoreStack, **kw: Any) -> KeylessEntry:
    values: dict[str, Any] = {
        "certificate_identity": SIGNER_ID,
        "certificate_oidc_issuer": stack.issuer,
        "trusted_root": str(stack.trusted_root_file),
    }
    values.update(kw)
    if "certificate_identity_regexp" in kw:
        values.pop("certificate_identity")
    if "certificate_oidc_issuer_regexp" in kw:
        values.pop("certificate_oidc_issuer")
    return KeylessEntry(**values)


def gate(policy_dir: Path, data_file: Path, *entries: KeylessEntry, keys: tuple[Path, ...] = ()) -> Gate:
    return Gate(
        GateConfig(
            policy_paths=(policy_dir,), data_paths=(data_file,), keyless=tuple(entries), key_files=keys
        )
    )


def decide(g: Gate, image: str, *bundles: bytes) -> Decision:
    return g.verify_sync(image, attestations=list(bundles))


def cosign_env(home: Path) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "HOME": str(home), "TUF_ROOT": str(home / "tuf")}


def cosign(home: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(require_binary("cosign")), *args],
        cwd=home,
        env=env or cosign_env(home),
        capture_output=True,
        text=True,
        timeout=180,
    )


def with_material(bundle: bytes, **changes: Any) -> bytes:
    """The bundle with verificationMaterial fields replaced (None: removed)."""
    doc = json.loads(bundle)
    for key, value in changes.items():
        if value is None:
            doc["verificationMaterial"].pop(key, None)
        else:
            doc["verificationMaterial"][key] = value
    return json.dumps(doc).encode()
