from collections.abc import Iterator
from typing import Any

import pytest

from attestation.oci.registry import RegistryClient
from attestation.oci.transport import TRANSPORTS
from tests.infra.registry import any_registry, registry_plain, registry_referrers, registry_tls_auth

__all__ = ["any_registry", "registry_plain", "registry_referrers", "registry_tls_auth", "transport"]


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Runs a test once per registry transport: every RegistryClient made in it uses this one (unless the
    test names another), so one test says the same of both."""
    original = RegistryClient.__init__
    kind: str = request.param

    def init(self: RegistryClient, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("transport", kind)
        original(self, *args, **kwargs)

    monkeypatch.setattr(RegistryClient, "__init__", init)
    yield kind
