"""Fixtures of the keyless suites: a referrers registry, an image in it, and a TaskRun that built it. The
private Sigstore on loopback (``sigstore_stack``, and ``keyless``: with :data:`SIGNER_ID` and
:data:`OTHER_ID` issued) is a session fixture of tests/conftest.py, shared with the admission suite."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tests.gate.conftest import data_file, policy_dir  # noqa: F401
from tests.infra.registry import RegistryServer, registry_referrers  # noqa: F401
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
