"""The suites that need a Kubernetes API server: the real one of tests/infra/kube.py."""

from tests.infra.kube import kube, kube_namespace  # noqa: F401
