"""The suites that need a Kubernetes API server use the real one of tests/infra/kube.py, through the
``kube`` and ``kube_namespace`` fixtures of tests/conftest.py (one API server per test session)."""
