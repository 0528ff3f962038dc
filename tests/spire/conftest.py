"""Fixtures the SPIRE suites share: real registries, the gate's test policy, and the in-process signer CLI
runner. The SPIRE servers/agent and the TSA are session fixtures of tests/conftest.py (shared with the
keyless suites)."""

from tests.gate.conftest import data_file, policy_dir  # noqa: F401
from tests.infra.registry import registry_plain, registry_referrers  # noqa: F401
from tests.signer.test_cli import signer  # noqa: F401
