"""Fixtures of the keyless suites: the private Sigstore on loopback (with the session's SPIRE servers and
TSA, tests/conftest.py), a referrers registry, an image in it, and a TaskRun that built it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.gate.conftest import data_file, policy_dir  # noqa: F401
from tests.infra.registry import RegistryServer, registry_referrers  # noqa: F401
from tests.infra.sigstore import SigstoreStack, sigstore_stack  # noqa: F401
from tests.oci.helpers import push_small_image
from tests.spire.tekton import taskrun

SIGNER_ID = "spiffe://example.org/ns/tekton-chains/sa/tekton-chains-controller"
OTHER_ID = "spiffe://example.org/ns/ci/sa/someone-else"


@dataclass(frozen=True)
class Built:
    """An image in the registry and the completed TaskRun (a file) that says it built it."""

    repo: str
    digest: str
    run_file: Path

    @property
    def image(self) -> str:
        return f"{self.repo}@{self.digest}"


def build_run(server: RegistryServer, directory: Path, name: str = "app") -> Built:
    repo, digest = push_small_image(server, name)
    results = [
        {"name": "IMAGE_URL", "type": "string", "value": repo},
        {"name": "IMAGE_DIGEST", "type": "string", "value": digest},
    ]
    obj = taskrun(f"build-{name}", "ci", results)
    run_file = directory / f"{name}-taskrun.json"
    run_file.write_text(json.dumps(obj))
    return Built(repo, digest, run_file)


@pytest.fixture(scope="session")
def keyless(sigstore_stack: SigstoreStack) -> SigstoreStack:  # noqa: F811
    """The stack with the signer's and a second workload's SPIFFE IDs issued to this process."""
    for spiffe_id in (SIGNER_ID, OTHER_ID):
        sigstore_stack.spire.issue(spiffe_id)
    return sigstore_stack
