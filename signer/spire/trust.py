"""The SPIRE trust bundles from the Workload API (the operator's own agent), bound to their trust domains."""

from __future__ import annotations

from typing import Any

from attestation.errors import InputError, WorkloadApiUnavailable
from attestation.spiffe import TrustBundle, TrustBundles, validate_trust_domain


def _fetch(socket: str | None, timeout: float) -> tuple[str, Any]:
    from spiffe import WorkloadApiClient

    from signer.signing.spire import workload_socket

    address = workload_socket(socket)
    try:
        with WorkloadApiClient(socket_path=address) as client:
            return address, client.fetch_x509_bundles(timeout=timeout)
    except Exception as err:  # py-spiffe and grpc errors alike: one line for the user
        reason = " ".join(str(err).split())
        raise WorkloadApiUnavailable(f"cannot fetch the trust bundle from {address}: {reason}") from None


def bundle_from_workload_api(socket: str | None, trust_domain: str, *, timeout: float = 10.0) -> TrustBundle:
    """The X.509 authorities of ``trust_domain`` as the local SPIRE agent serves them now.

    Only the live bundle: SPIRE drops a CA a day after it expires, so checking old signatures needs a
    bundle file that keeps retired CAs (see docs/spire.md).
    """
    return bundles_from_workload_api(socket, trust_domain, timeout=timeout).bundles[0]


def bundles_from_workload_api(
    socket: str | None, trust_domain: str, *, timeout: float = 10.0, federated: bool = False
) -> TrustBundles:
    """The bundle of ``trust_domain`` as the local SPIRE agent serves it now, and with ``federated`` those of
    the trust domains it federates with, each bound to its own trust domain (never merged)."""
    from spiffe import TrustDomain

    validate_trust_domain(trust_domain)
    address, found = _fetch(socket, timeout)
    own = found.get_bundle_for_trust_domain(TrustDomain(trust_domain))
    # py-spiffe >= 0.3: a property returning a copy of the set, not a method.
    if own is None or not own.x509_authorities:
        raise InputError(f"the SPIRE agent at {address} has no X.509 bundle for trust domain {trust_domain}")
    bundles = [TrustBundle(tuple(own.x509_authorities), f"Workload API {address}", trust_domain)]
    if federated:
        for other in found.bundles:
            name = str(other.trust_domain.name)
            if name != trust_domain and other.x509_authorities:
                bundles.append(TrustBundle(tuple(other.x509_authorities), f"Workload API {address}", name))
    return TrustBundles.bind(bundles)
