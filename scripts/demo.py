"""provgate end to end on embedded defaults (README command 1).

Starts a local OCI registry from the component cache, pushes three small images, signs the
provenance of the bundled TEP-0084 PipelineRun (and of two tampered variants) with a fresh cosign key,
pushes it to the registry, and asks the gate about each image with the bundled policy library.
Every step prints the command a user would type. Exits non-zero if any verdict is not the expected one.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

# The demo starts the registry with the test infrastructure's launcher (tests/infra), so the repository
# root must be importable when this file is run as a script.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from attestation.oci.registry import RegistryClient
from attestation.oci.writer import push_image
from signer import samples
from tests.infra import stop
from tests.infra.registry import start_distribution

VENV_BIN = Path(sys.executable).parent
BOLD, DIM, GREEN, RED, RESET = (
    ("\033[1m", "\033[2m", "\033[32m", "\033[31m", "\033[0m") if sys.stdout.isatty() else ("",) * 5
)

SOURCE_REPO = "https://github.com/example/demo-app"  # the git-clone source of the bundled samples
CASES = [
    # (sample, tag, what it shows, expected gate exit code)
    ("tep0084-pipelinerun", "v1", "the TEP-0084 pipeline as designed: clone, scan, build", 0),
    ("tep0084-injected-task", "injected", "someone added a task 'inject-miner' from an untrusted bundle", 1),
    ("tep0084-no-scan", "no-scan", "someone removed the vulnerability scan before the build", 1),
]


def step(text: str) -> None:
    print(f"\n{BOLD}== {text}{RESET}", flush=True)


def run(cmd: list[str], *, env: dict[str, str] | None = None, show_output: bool = True) -> int:
    shown = " ".join(shlex.quote(Path(c).name if i == 0 else c) for i, c in enumerate(cmd))
    print(f"{DIM}$ {shown}{RESET}", flush=True)
    proc = subprocess.run(cmd, env={**os.environ, **(env or {})}, capture_output=True, text=True)
    if show_output:
        for stream in (proc.stdout, proc.stderr):
            if stream.strip():
                print("  " + stream.rstrip().replace("\n", "\n  "), flush=True)
    return proc.returncode


async def push_images(host: str) -> dict[str, str]:
    """Push one tiny image per case; distinct layers give distinct digests."""
    images = {}
    async with RegistryClient() as client:
        for sample, tag, _, _ in CASES:
            deadline = time.monotonic() + 30
            image = await push_image(
                client,
                f"{host}/demo/app",
                [f"provgate demo layer for {sample}\n".encode()],
                tag=tag,
                deadline=deadline,
            )
            images[tag] = image.reference.digest
    return images


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="provgate-demo-"))
    step("1. Start a local OCI registry (distribution v3, from the component cache)")
    proc, server = start_distribution(work / "registry")
    failures = 0
    try:
        host = server.host
        print(f"  registry listening on {host}")

        step("2. Push the images our pretend pipelines built")
        digests = asyncio.run(push_images(host))
        for tag, digest in digests.items():
            print(f"  {host}/demo/app:{tag} -> {digest}")

        step("3. Make a signing key (cosign-compatible), and say where builds may take their source from")
        env = {"COSIGN_PASSWORD": "demo-password"}
        prefix = work / "demo"
        if run([str(VENV_BIN / "signer"), "generate-key-pair", "--output-key-prefix", str(prefix)], env=env):
            return 2
        # The bundled rule data leaves allowed_source_repos empty (every gate then warns that sources
        # are not checked); this file adds the sample pipeline's repository to the bundled defaults.
        rule_data = work / "rule-data.yaml"
        rule_data.write_text(yaml.safe_dump({"rule_data": {"allowed_source_repos": [SOURCE_REPO]}}))
        print(f"  {rule_data.name}: allowed_source_repos: [{SOURCE_REPO}]")

        for n, (sample, tag, story, expected) in enumerate(CASES, start=4):
            image = f"{host}/demo/app:{tag}"
            step(f"{n}. {story}")
            pipelinerun, taskruns = samples.load(
                sample, image_url=f"{host}/demo/app", image_digest=digests[tag]
            )
            run_file = work / f"{sample}.yaml"
            run_file.write_text(yaml.safe_dump_all([pipelinerun, *taskruns], sort_keys=False))
            print("  sign the PipelineRun's provenance and push it next to the image:")
            if run(
                [
                    str(VENV_BIN / "signer"),
                    "sign",
                    str(run_file),
                    "--key",
                    f"{prefix}.key",
                    "--storage",
                    "oci",
                ],
                env=env,
            ):
                return 2
            print("  ask the gate whether the image may run:")
            code = run(
                [str(VENV_BIN / "gate"), "verify", image, "--key", f"{prefix}.pub", "--data", str(rule_data)]
            )
            verdict = {0: f"{GREEN}ALLOWED{RESET}", 1: f"{RED}DENIED{RESET}"}.get(code, f"ERROR ({code})")
            ok = code == expected
            failures += not ok
            print(f"  => {verdict}{'' if ok else f'  (expected exit {expected}, got {code})'}")

        step("Done")
        print(
            "  Provenance was built from the PipelineRun, signed, pushed to the registry as a cosign\n"
            "  attestation, and verified by the gate against the bundled Rego policy library.\n"
            f"  Work files are in {work}."
        )
    finally:
        stop(proc)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
