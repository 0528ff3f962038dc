"""Fixtures more than one suite uses whose servers should exist once per test session (per xdist
worker): the Kubernetes API server, the SPIRE server and agent, and the timestamp authority (one per
machine: its metrics port is fixed, tests/infra/tsa.py). A fixture imported into two suites' conftests
would be two fixtures, each starting its own server; here there is one."""

from tests.infra.kube import kube, kube_namespace  # noqa: F401
from tests.infra.spire import spire  # noqa: F401
from tests.infra.tsa import tsa  # noqa: F401
