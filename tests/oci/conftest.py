from tests.infra.registry import any_registry, registry_plain, registry_referrers, registry_tls_auth

__all__ = ["any_registry", "registry_plain", "registry_referrers", "registry_tls_auth"]
