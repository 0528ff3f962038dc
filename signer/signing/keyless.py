"""Keyless signing: a short-lived Fulcio certificate for the workload's identity token (a SPIFFE JWT-SVID
from the Workload API, or a token file), the signature recorded in a transparency log and timestamped,
all of it in one Sigstore bundle v0.3.

The Sigstore side (the Fulcio exchange, the log entry, the timestamps, the bundle) is the ``sigstore``
library's; what is ours: where the token comes from and the check of its claims before it leaves the
process, the choice of services (a ``--trust-config`` file or the public-good instance, with Chains'
``signers.x509.fulcio.address`` and ``transparency.url`` as overrides), a deadline on the whole exchange,
and failures that are never silent: a service that cannot be reached is a
:class:`~attestation.errors.SigningServiceUnavailable` (transient), a refused token an
:class:`~attestation.errors.IdentityTokenRefused` naming the claim (permanent), and a bundle comes back only
when it holds a log entry and a signing time a verifier can trust, so nothing is stored otherwise.

The configuration (:class:`KeylessConfig`) is shaped after Chains' keys so the operator maps them one to
one (:meth:`KeylessConfig.from_chains`).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar, cast

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding

from attestation import intoto
from attestation.errors import (
    IdentityTokenRefused,
    InputError,
    ProvgateError,
    SigningServiceUnavailable,
    WorkloadApiUnavailable,
)
from attestation.files import read_bounded
from attestation.keyless import BundleFacts, bundle_facts, load_client_trust_config_json
from signer.signing import Sign
from signer.storage import SignedProvenance

if TYPE_CHECKING:
    from sigstore.models import Bundle, ClientTrustConfig
    from sigstore.sign import SigningContext

log = logging.getLogger(__name__)

DEFAULT_AUDIENCE = "sigstore"
DEFAULT_TIMEOUT = 60.0  # Rekor v2 answers once a checkpoint covers the entry: seconds, not milliseconds
MAX_TOKEN_BYTES = 64 * 1024
# The claims sigstore and Fulcio need; checked here so a bad token fails naming the claim.
REQUIRED_CLAIMS = ("iss", "sub", "aud", "iat", "exp")
CLOCK_SKEW = 30  # seconds of leeway on iat/nbf/exp, as OIDC clients allow

T = TypeVar("T")


@dataclass(frozen=True)
class KeylessConfig:
    """How keyless signing gets its identity and which Sigstore services it uses.

    ``trust_config``: a Sigstore ClientTrustConfig JSON file (trusted root + signing config) for a private
    instance; None: the public-good instance (its configuration fetched through TUF at start).
    ``fulcio_url`` / ``rekor_url`` replace the signing config's CA / log URL (Chains'
    ``signers.x509.fulcio.address`` / ``transparency.url``). ``issuer``: the token's ``iss`` must be this
    (``signers.x509.fulcio.issuer``). The identity token comes from ``token_file``
    (``signers.x509.identity.token.file``, read for every signature: such files are rotated) or else from
    the SPIFFE Workload API at ``spiffe_socket`` (else ``SPIFFE_ENDPOINT_SOCKET``) as a JWT-SVID for
    ``audience``, of ``spiffe_id`` when the workload holds several.
    """

    trust_config: str | None = None
    fulcio_url: str | None = None
    rekor_url: str | None = None
    issuer: str | None = None
    token_file: str | None = None
    spiffe_socket: str | None = None
    spiffe_id: str | None = None
    audience: str = DEFAULT_AUDIENCE
    timeout: float = DEFAULT_TIMEOUT
    # Chains' transparency.enabled; None: not said. A keyless signature must be in a log, so only an
    # explicit False is refused (Chains' default for the key is false, but it means "no log for keys").
    transparency: bool | None = None

    @classmethod
    def from_chains(cls, data: Mapping[str, str], **overrides: Any) -> KeylessConfig:
        """From Chains' ``chains-config`` keys: ``signers.x509.fulcio.address``, ``.issuer``,
        ``signers.x509.identity.token.file``, ``transparency.enabled``, ``transparency.url``; provgate's
        ``provgate.keyless.trust-config`` for a private instance. ``overrides`` set any field."""
        enabled = data.get("transparency.enabled")
        transparency = None if enabled is None else enabled.strip().lower() in ("true", "manual")
        values: dict[str, Any] = {
            "trust_config": data.get("provgate.keyless.trust-config") or None,
            "fulcio_url": data.get("signers.x509.fulcio.address") or None,
            "issuer": data.get("signers.x509.fulcio.issuer") or None,
            "token_file": data.get("signers.x509.identity.token.file") or None,
            "rekor_url": data.get("transparency.url") or None,
            "transparency": transparency,
        }
        values.update(overrides)
        return cls(**values)

    def check(self) -> None:
        """Refuse what cannot give a verifiable signature, before any run is looked at."""
        if self.transparency is False:
            raise InputError(
                "keyless signing records every signature in a transparency log: transparency.enabled "
                "'false' cannot go with keyless signing (a keyless signature in no log is not trusted)"
            )
        if self.timeout <= 0:
            raise InputError("the keyless signing timeout must be positive")
        if not self.audience:
            raise InputError("the identity token audience must not be empty")


# --------------------------------------------------------------------------------------------- identity


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def token_claims(token: str, *, source: str) -> dict[str, Any]:
    """The (unverified) claims of a JWT: only to check them before Fulcio does, never to trust them."""
    parts = token.split(".")
    if len(parts) != 3:
        raise IdentityTokenRefused(f"{source}: identity token is not a JWT (three dot-separated parts)")
    try:
        claims = json.loads(_b64url(parts[1]))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise IdentityTokenRefused(f"{source}: identity token claims are not base64url JSON") from None
    if not isinstance(claims, dict):
        raise IdentityTokenRefused(f"{source}: identity token claims are not a JSON object")
    return claims


def check_claims(
    claims: Mapping[str, Any], *, audience: str, issuer: str | None, source: str, now: float | None = None
) -> None:
    """:class:`IdentityTokenRefused` naming the first claim Fulcio would refuse (or a configured issuer
    the token is not from)."""
    for name in REQUIRED_CLAIMS:
        if name not in claims:
            raise IdentityTokenRefused(f"{source}: identity token has no {name!r} claim")
    aud = claims["aud"]
    audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if audience not in audiences:
        raise IdentityTokenRefused(
            f"{source}: identity token claim 'aud' ({aud!r}) does not contain {audience!r}"
        )
    if not isinstance(claims["iss"], str) or not claims["iss"]:
        raise IdentityTokenRefused(f"{source}: identity token claim 'iss' is not a URL")
    if issuer is not None and claims["iss"] != issuer:
        raise IdentityTokenRefused(
            f"{source}: identity token claim 'iss' is {claims['iss']!r}, the configured issuer is {issuer!r}"
        )
    if not isinstance(claims["sub"], str) or not claims["sub"]:
        raise IdentityTokenRefused(f"{source}: identity token claim 'sub' is empty")
    at = time.time() if now is None else now
    for name in ("iat", "exp", "nbf"):
        if name in claims and not isinstance(claims[name], int | float):
            raise IdentityTokenRefused(f"{source}: identity token claim {name!r} is not a number")
    if claims["exp"] + CLOCK_SKEW < at:
        raise IdentityTokenRefused(f"{source}: identity token has expired (claim 'exp')")
    if claims.get("nbf", claims["iat"]) - CLOCK_SKEW > at:
        raise IdentityTokenRefused(f"{source}: identity token is not valid yet (claim 'nbf'/'iat')")


def read_token_file(path: str) -> str:
    data = read_bounded(path, MAX_TOKEN_BYTES, "identity token file")
    try:
        return data.decode("ascii").strip()
    except UnicodeDecodeError:
        raise IdentityTokenRefused(f"identity token file {path} is not an ASCII JWT") from None


def fetch_jwt_svid(
    socket: str | None, *, audience: str, spiffe_id: str | None = None, timeout: float = 10.0
) -> str:
    """A JWT-SVID for ``audience`` from the SPIFFE Workload API; transient failures as
    :class:`WorkloadApiUnavailable` (the agent is down, or not issuing the identity yet)."""
    from spiffe import SpiffeId, WorkloadApiClient
    from spiffe.errors import PySpiffeError

    from attestation.spiffe import parse_spiffe_id
    from signer.signing.spire import workload_socket

    address = workload_socket(socket)
    wanted = parse_spiffe_id(spiffe_id, what="--spiffe-id") if spiffe_id else None
    path = address.removeprefix("unix://").removeprefix("unix:")
    if not os.path.exists(path):
        raise WorkloadApiUnavailable(
            f"SPIFFE Workload API socket {address} does not exist (is the SPIRE agent running?)"
        )

    def fetch() -> str:
        with WorkloadApiClient(socket_path=address) as client:
            subject = SpiffeId(wanted) if wanted else None
            svid = client.fetch_jwt_svid(audience={audience}, subject=subject)
            return str(svid.token)

    try:
        token = _within(fetch, timeout, f"the SPIFFE Workload API at {address}", WorkloadApiUnavailable)
    except PySpiffeError as err:
        raise WorkloadApiUnavailable(
            f"cannot fetch a JWT-SVID from {address}: {' '.join(str(err).split())}"
        ) from None
    except ProvgateError:
        raise
    except Exception as err:  # grpc raises its own types (deadline, unavailable, permission denied)
        raise WorkloadApiUnavailable(
            f"cannot fetch a JWT-SVID from {address}: {type(err).__name__}: {' '.join(str(err).split())}"
        ) from None
    log.debug("fetched a JWT-SVID for audience %s from %s", audience, address)
    return token


def identity_token(config: KeylessConfig) -> tuple[str, str]:
    """(token, where it came from), its claims checked."""
    if config.token_file:
        token, source = read_token_file(config.token_file), f"identity token file {config.token_file}"
    else:
        token = fetch_jwt_svid(config.spiffe_socket, audience=config.audience, spiffe_id=config.spiffe_id)
        source = "JWT-SVID"
    check_claims(
        token_claims(token, source=source), audience=config.audience, issuer=config.issuer, source=source
    )
    return token, source


# --------------------------------------------------------------------------------------------- services


def load_trust_config(config: KeylessConfig) -> ClientTrustConfig:
    """The ClientTrustConfig to sign with: the file, or public-good's through TUF; then the overrides."""
    from sigstore.models import ClientTrustConfig

    if config.trust_config:
        trust = load_client_trust_config_json(config.trust_config)
    else:
        try:
            trust = ClientTrustConfig.production()
        except Exception as err:  # TUF: network, metadata
            raise SigningServiceUnavailable(
                f"cannot get the public-good Sigstore configuration through TUF: {_one_line(err)}"
            ) from None
    if config.fulcio_url or config.rekor_url:
        trust = _with_service_urls(trust, fulcio_url=config.fulcio_url, rekor_url=config.rekor_url)
    return trust


def _with_service_urls(
    trust: ClientTrustConfig, *, fulcio_url: str | None, rekor_url: str | None
) -> ClientTrustConfig:
    """The trust config with its CA and log URLs replaced; the API versions and the trusted root stay."""
    from sigstore.models import ClientTrustConfig

    doc = json.loads(trust._inner.to_json())  # the JSON is the public format; the object has no setters
    signing = doc.get("signingConfig") or {}
    for key, url in (("caUrls", fulcio_url), ("rekorTlogUrls", rekor_url)):
        if url is None:
            continue
        services = signing.get(key) or []
        if not services:
            raise InputError(f"the signing config lists no {key} whose URL {url} could replace")
        signing[key] = [{**s, "url": url.rstrip("/")} for s in services]
    return ClientTrustConfig.from_json(json.dumps(doc))


def _uses_rekor_v2(trust: ClientTrustConfig) -> bool:
    return any(s.major_api_version == 2 for s in trust._inner.signing_config.rekor_tlog_urls)


def signing_context(config: KeylessConfig) -> SigningContext:
    """A sigstore SigningContext for ``config``; :class:`InputError` when it could not give a verifiable
    bundle (a Rekor v2 log gives no signing time: a TSA is then required)."""
    from sigstore.sign import SigningContext

    trust = load_trust_config(config)
    signing = trust._inner.signing_config
    if not signing.rekor_tlog_urls:
        raise InputError("the signing config lists no transparency log (rekorTlogUrls)")
    if _uses_rekor_v2(trust) and not signing.tsa_urls:
        raise InputError(
            "the signing config's transparency log is Rekor v2, which records no signing time: "
            "it needs a timestamp authority (tsaUrls)"
        )
    try:
        context = SigningContext.from_trust_config(trust)
    except Exception as err:
        raise InputError(f"unusable Sigstore signing config: {_one_line(err)}") from None
    # See _StrictTsa. The context is this backend's alone.
    context._tsa_clients = [cast(Any, _StrictTsa(c)) for c in context._tsa_clients]
    return context


# --------------------------------------------------------------------------------------------- signing


class _StrictTsa:
    """A TSA client that fails the signature instead of being skipped.

    sigstore's signer logs a warning and goes on without the timestamp when a TSA fails; with Rekor v2
    the bundle would then have no signing time at all and stop verifying when the 10-minute certificate
    expires. Raising something other than its ``TimestampError`` stops the signature before the log
    entry is made.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.url = getattr(inner, "url", "?")

    def request_timestamp(self, signature: bytes) -> Any:
        from sigstore._internal.timestamp import TimestampError

        try:
            return self._inner.request_timestamp(signature)
        except TimestampError as err:
            raise SigningServiceUnavailable(
                f"timestamp authority {self.url} failed: {_one_line(err)}"
            ) from None


def _within(call: Callable[[], T], timeout: float, what: str, error: type[ProvgateError]) -> T:
    """``call()`` with a deadline: sigstore's HTTP clients set no timeout, so a service that accepts the
    connection and never answers would block the operator forever. The call runs in a daemon thread (it
    cannot hold up the process's exit); when it is abandoned, it ends when the service answers or the
    connection drops, and its result is dropped."""
    import queue
    import threading

    results: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)

    def run() -> None:
        try:
            results.put((True, call()))
        except BaseException as err:
            results.put((False, err))

    threading.Thread(target=run, name="keyless-signing", daemon=True).start()
    try:
        ok, value = results.get(timeout=timeout)
    except queue.Empty:
        raise error(f"{what} did not answer within {timeout:g}s") from None
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


def _service_error(err: BaseException, service: str) -> ProvgateError:
    """A sigstore/requests failure talking to ``service`` as our error: transient when the service did
    not answer or answered 429/5xx, permanent otherwise."""
    import requests

    cause: BaseException | None = err
    response = None
    while cause is not None and response is None:
        response = getattr(cause, "response", None)
        cause = cause.__cause__ or cause.__context__
    if isinstance(err, requests.ConnectionError | requests.Timeout):
        return SigningServiceUnavailable(f"{service} unreachable: {_one_line(err)}")
    if response is not None:
        status = response.status_code
        detail = _message(response)
        if status == 429 or status >= 500:
            return SigningServiceUnavailable(f"{service} answered HTTP {status}{detail}")
        if service.startswith("Fulcio") and status in (400, 401, 403):
            return IdentityTokenRefused(f"{service} refused the identity token: HTTP {status}{detail}")
        return InputError(f"{service} answered HTTP {status}{detail}")
    if isinstance(err, requests.RequestException):
        return SigningServiceUnavailable(f"{service} failed: {_one_line(err)}")
    return InputError(f"{service} failed: {_one_line(err)}")


def _message(response: Any) -> str:
    try:
        doc = response.json()
    except ValueError:
        return ""
    text = doc.get("message") if isinstance(doc, dict) else None
    return f": {_one_line(text)[:300]}" if isinstance(text, str) and text else ""


def _url_of(trust: ClientTrustConfig, key: str) -> str:
    services = getattr(trust._inner.signing_config, key)
    return str(services[0].url) if services else "?"


@dataclass
class KeylessSigning:
    """The keyless backend. The Sigstore configuration is read once (a public-good one through TUF, at
    the first signature); the identity token and the certificate are new for every run: certificates live
    10 minutes and JWT-SVIDs about as long."""

    config: KeylessConfig = field(default_factory=KeylessConfig)
    _context: Any = field(default=None, repr=False, compare=False)

    @property
    def label(self) -> str:
        where = self.config.trust_config or "the public-good Sigstore"
        who = f"token file {self.config.token_file}" if self.config.token_file else "a JWT-SVID"
        return f"keyless ({who}, {where})"

    def context(self) -> SigningContext:
        if self._context is None:
            self.config.check()
            self._context = signing_context(self.config)
        return cast("SigningContext", self._context)

    def ready(self) -> Sign:
        context = self.context()
        token, source = identity_token(self.config)
        return lambda statement: sign_statement(statement, context, token, source=source, config=self.config)


def sign_statement(
    statement: Mapping[str, Any],
    context: SigningContext,
    token: str,
    *,
    source: str,
    config: KeylessConfig,
) -> SignedProvenance:
    """The statement (serialised as Chains does) signed keyless: the bundle, the certificate chain, the log
    entry. Raises before returning anything when a step failed or the bundle lacks a log entry or a
    signing time."""
    from sigstore.errors import Error as SigstoreError
    from sigstore.oidc import IdentityError, IdentityToken

    payload = intoto.serialize(statement)
    try:
        sigstore_statement = _statement(payload)
    except Exception as err:
        raise InputError(f"the statement is not one sigstore signs: {_one_line(err)}") from None
    try:
        identity = IdentityToken(token, client_id=config.audience)
    except IdentityError as err:
        raise IdentityTokenRefused(f"{source}: {_one_line(err)}") from None
    fulcio = f"Fulcio at {getattr(context._fulcio, 'url', '?')}"
    rekor = f"the transparency log at {getattr(context._rekor, 'url', '?')}"
    deadline = time.monotonic() + config.timeout

    def left() -> float:
        return max(0.1, deadline - time.monotonic())

    # Fulcio: the Signer asks for the certificate when it is made (cache=True).
    def certify() -> Any:
        with context.signer(identity, cache=True) as signer:
            return signer

    try:
        signer = _within(certify, left(), fulcio, SigningServiceUnavailable)
    except ProvgateError:
        raise
    except SigstoreError as err:
        raise _fulcio_error(err, fulcio) from None
    except Exception as err:
        raise _service_error(err, fulcio) from None
    try:
        bundle = _within(
            lambda: signer.sign_dsse(sigstore_statement), left(), rekor, SigningServiceUnavailable
        )
    except ProvgateError:
        raise
    except Exception as err:
        raise _service_error(err, rekor) from None
    return signed_provenance(
        statement,
        bundle,
        expect_timestamp=bool(context._tsa_clients),
        log_url=getattr(context._rekor, "url", None),
        ca_certificates=context._trusted_root.get_fulcio_certs(),
    )


def _statement(payload: bytes) -> Any:
    """sigstore's Statement for ``payload``, signed byte for byte as given.

    sigstore accepts only ``_type`` ``https://in-toto.io/Statement/v1``, while Chains' slsa/v1 and
    slsa/v0.2 formats write ``.../Statement/v0.1``: the same layout (subject, predicateType,
    predicate), which cosign and the gate accept. The statement's shape is checked as v1; the bytes
    signed (and logged) are the ones given, unchanged.
    """
    from sigstore.dsse import Statement

    doc = json.loads(payload)
    if doc.get("_type") != intoto.STATEMENT_V01:
        return Statement(payload)
    checked = Statement(json.dumps({**doc, "_type": intoto.STATEMENT_V1}).encode())
    checked._contents = payload  # what _pae() and the envelope use
    return checked


def _fulcio_error(err: BaseException, fulcio: str) -> ProvgateError:
    cause = err.__cause__ or err.__context__
    if cause is not None:
        mapped = _service_error(cause, fulcio)
        if not isinstance(mapped, InputError) or getattr(cause, "response", None) is not None:
            return mapped
    # sigstore refuses a certificate whose SCT does not verify with the trusted CT keys, and so on.
    return InputError(f"{fulcio}: {_one_line(err)}")


def signed_provenance(
    statement: Mapping[str, Any],
    bundle: Bundle,
    *,
    expect_timestamp: bool,
    log_url: str | None = None,
    ca_certificates: Sequence[x509.Certificate] = (),
) -> SignedProvenance:
    """What storage needs from a keyless bundle, after checking it holds a log entry and a signing time
    (a timestamp when TSAs were asked, else the log's inclusion promise). ``log_url`` (the log's API
    base) names the entry as Chains does; ``ca_certificates`` (the trusted Fulcio CAs) give the chain the
    ``.att``/run annotations carry beside the leaf."""
    from attestation import dsse
    from attestation.keys import PublicKey

    raw = bundle.to_json().encode("utf-8")
    facts: BundleFacts = bundle_facts(raw, source="keyless bundle", log_url=log_url)
    if facts.log_index is None:
        raise InputError("the keyless bundle holds no transparency log entry")
    if expect_timestamp and not facts.timestamps:
        raise SigningServiceUnavailable("no timestamp authority timestamped the signature")
    if not facts.timestamps and not facts.integrated_time:
        raise InputError("the keyless bundle proves no signing time (no timestamp, no inclusion promise)")
    envelope = dsse.Envelope.from_dict(facts.envelope, source="keyless bundle")
    leaf = facts.certificate
    chain = [c.public_bytes(Encoding.DER) for c in issuing_chain(leaf, ca_certificates)]
    return SignedProvenance(
        statement,
        envelope,
        public_key=PublicKey(leaf.public_key(), source="Fulcio certificate"),
        certificate_chain_der=(facts.certificate_chain_der[0], *chain),
        rfc3161_timestamps=facts.timestamps,
        sigstore_bundle=raw,
        transparency=facts.entry_reference,
    )


def issuing_chain(leaf: x509.Certificate, pool: Sequence[x509.Certificate]) -> list[x509.Certificate]:
    """The CA certificates of ``pool`` above ``leaf``, nearest first, each checked to have signed the one
    below it."""
    out: list[x509.Certificate] = []
    current = leaf
    for _ in range(8):
        parent = None
        for candidate in pool:
            if candidate.subject != current.issuer:
                continue
            try:
                current.verify_directly_issued_by(candidate)
            except (ValueError, TypeError, InvalidSignature):
                continue
            parent = candidate
            break
        if parent is None or parent in out:
            break
        out.append(parent)
        if parent.subject == parent.issuer:
            break
        current = parent
    return out


def _one_line(err: object) -> str:
    text = " ".join(str(err).split())
    return text or type(err).__name__
