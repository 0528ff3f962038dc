"""Fixtures the SPIRE suites share: the other real SPIRE servers (the server and agent and the real TSA
come from tests/conftest.py), real registries, the gate's test policy, and the in-process signer CLI
runner."""

from tests.gate.conftest import data_file, policy_dir  # noqa: F401
from tests.infra.registry import registry_plain, registry_referrers  # noqa: F401
from tests.infra.spire import spire_other_domain, spire_rogue  # noqa: F401
from tests.signer.test_cli import signer  # noqa: F401
