"""The SPIRE trust bundle from the Workload API (the operator's own agent), as a TrustBundle."""

from __future__ import annotations

from attestation.errors import InputError, WorkloadApiUnavailable
from attestation.spiffe import TrustBundle, validate_trust_domain


def bundle_from_workload_api(socket: str | None, trust_domain: str, *, timeout: float = 10.0) -> TrustBundle:
    """The X.509 authorities of ``trust_domain`` as the local SPIRE agent serves them now.

    Only the live bundle: SPIRE drops a CA a day after it expires, so checking old signatures needs a
    bundle file that keeps retired CAs (see docs/spire.md).
    """
    from spiffe import TrustDomain, WorkloadApiClient

    from signer.signing.spire import workload_socket

    validate_trust_domain(trust_domain)
    address = workload_socket(socket)
    try:
        with WorkloadApiClient(socket_path=address) as client:
            bundles = client.fetch_x509_bundles(timeout=timeout)
    except Exception as err:  # py-spiffe and grpc errors alike: one line for the user
        reason = " ".join(str(err).split())
        raise WorkloadApiUnavailable(f"cannot fetch the trust bundle from {address}: {reason}") from None
    bundle = bundles.get_bundle_for_trust_domain(TrustDomain(trust_domain))
    # py-spiffe >= 0.3: a property returning a copy of the set, not a method.
    authorities = bundle.x509_authorities if bundle is not None else set()
    if not authorities:
        raise InputError(f"the SPIRE agent at {address} has no X.509 bundle for trust domain {trust_domain}")
    return TrustBundle(authorities=tuple(authorities), source=f"Workload API {address}")
