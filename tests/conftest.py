"""Session fixtures that stand for one thing per machine or per session, defined once for every suite.

A fixture imported into two suites' conftest files is two fixtures, each with its own session instance:
for the TSA (one per machine: its fixed metrics port, held by a machine-wide lock) the second instance
would wait forever for the lock its own process holds. So the SPIRE servers and the TSA, which the SPIRE,
keyless and operator suites share, are defined here only; so is the Kubernetes API server of the kube,
admission and operator suites (one per session instead of one per suite), and the private Sigstore of the
keyless and admission suites (its OIDC discovery providers listen on the SPIRE servers' fixed issuer ports,
and its workload entries can be registered once only).
"""

import pytest

from tests.infra.kube import kube, kube_namespace  # noqa: F401
from tests.infra.sigstore import SigstoreStack, sigstore_stack  # noqa: F401
from tests.infra.spire import spire, spire_other_domain, spire_rogue  # noqa: F401
from tests.infra.tsa import tsa  # noqa: F401
from tests.keyless.conftest import OTHER_ID, SIGNER_ID


@pytest.fixture(scope="session")
def keyless(sigstore_stack: SigstoreStack) -> SigstoreStack:  # noqa: F811
    """The stack with the signer's and a second workload's SPIFFE IDs issued to this process."""
    for spiffe_id in (SIGNER_ID, OTHER_ID):
        sigstore_stack.spire.issue(spiffe_id)
    return sigstore_stack
