"""Session fixtures that stand for one thing per machine or per session, defined once for every suite.

A fixture imported into two suites' conftest files is two fixtures, each with its own session instance:
for the TSA (one per machine: its fixed metrics port, held by a machine-wide lock) the second instance
would wait forever for the lock its own process holds. So the SPIRE servers and the TSA, which the SPIRE,
keyless and operator suites share, are defined here only; so is the Kubernetes API server of the kube,
admission and operator suites (one per session instead of one per suite).
"""

from tests.infra.kube import kube, kube_namespace  # noqa: F401
from tests.infra.spire import spire, spire_other_domain, spire_rogue  # noqa: F401
from tests.infra.tsa import tsa  # noqa: F401
