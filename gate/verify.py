"""The verification pipeline: image -> attestations -> checklist -> policy -> :class:`Decision`.

A :class:`Gate` loads trust, policies and the engine once and is then called many times (the admission
webhook and the HTTP API keep one per process). It pins the image to its digest, fetches what is stored
for it (or takes attestations from the caller), checks each with :func:`gate.checklist.check_attestation`
(signature over the stored bytes before anything is parsed, then the statement, then the subject) and
evaluates the policy over the statements that passed; the others are listed in the decision with the
reason.

Nothing here raises for a per-call problem: a bad image reference, an unreachable registry or a failing
engine give an undecided decision (never allowed); only a bad configuration raises, from the constructor.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attestation.cosign import RawAttestation, StoredAttestationLike
from attestation.errors import InputError, PolicyError, RegistryError, VerificationError
from attestation.reference import ImageReference, InvalidReference, parse
from gate.checklist import MAX_ATTESTATIONS, Checked, check_attestation, findings
from gate.config import GateConfig
from gate.decision import Decision, Timings, from_evaluation, ms_since, policy_failed, undecided
from gate.memo import EvaluationMemo, VerifiedMemo
from gate.policy.loader import expand_data_paths
from gate.policy_input import VerifiedStatement, build_policy_input, build_policy_input_json
from gate.trust import load_trust_policy

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import asyncio

    from gate.policy.model import Evaluation, PolicyEngine


@dataclass
class Prepared:
    """Everything before policy evaluation: the pinned image and what its attestations proved."""

    image: ImageReference
    checked: list[Checked]
    timings: Timings
    started: float

    @property
    def verified(self) -> list[VerifiedStatement]:
        return [c.statement for c in self.checked if c.statement is not None]

    def policy_input(self) -> dict[str, Any]:
        return build_policy_input(self.image, self.verified)

    def policy_input_key(self) -> tuple[object, ...] | None:
        """What the policy input is a function of, given the gate's trust: the pinned image and the
        stored bytes of each verified statement, in order. None when a statement's bytes are not known."""
        keys = [c.key for c in self.checked if c.statement is not None]
        if any(k is None for k in keys):
            return None
        return (self.image.pinned, *keys)


def evaluate_prepared(engine: PolicyEngine, prepared: Prepared) -> Evaluation:
    """One policy evaluation over ``prepared``'s verified statements, handed to the engine as JSON
    assembled from the statements' remembered encodings (the document when a statement has none)."""
    raw = build_policy_input_json(prepared.image, prepared.verified)
    if raw is None:
        return engine.evaluate(build_policy_input(prepared.image, prepared.verified))
    return engine.evaluate_json(raw)


class Gate:
    """Trust, policy set and engine, loaded once; :meth:`verify` many times.

    Use ``async with Gate(config) as gate`` in a server to keep one registry client (connections, tokens)
    for all calls; without it each registry verification opens its own client. Leaving the block closes
    what the gate opened, the client and the policy engine; ``with Gate(config) as gate`` (or
    :meth:`close`) closes the engine.
    """

    def __init__(
        self, config: GateConfig, *, registry_observer: Callable[[str, str], None] | None = None
    ) -> None:
        """``registry_observer(registry, outcome)`` is told of every registry request (metrics)."""
        from gate.policy import load_policy_set, make_engine

        self.config = config
        self._registry_observer = registry_observer
        self.trust = load_trust_policy(
            config.key_files,
            trust_bundles=config.trust_bundles,
            spiffe_ids=config.spiffe_ids,
            tsa_cert_files=config.tsa_cert_files,
            keyless=config.keyless,
        )
        if self.trust.empty:
            raise InputError(
                "no trust configured: give at least one --key (a PEM public key file), "
                "--trust-bundle with --spiffe-id, or --certificate-identity with --certificate-oidc-issuer"
            )
        paths = list(config.policy_paths)
        if not paths:
            import policies

            paths = [Path(policies.ROOT)]
        self.policy_set = load_policy_set(paths, list(expand_data_paths(config.data_paths)))
        self.engine = make_engine(
            self.policy_set, engine=config.engine, opa_url=config.opa_url, options=config.engine_options
        )
        self._client: Any = None
        self._verified = VerifiedMemo(config.verified_memo_bytes)
        self._evaluations = (
            EvaluationMemo(config.evaluation_memo_bytes)
            if config.evaluation_memo_bytes > 0 and self.engine.pure
            else None
        )
        self._closed = False

    # --- lifecycle ---------------------------------------------------------------------------------------

    def _new_client(self) -> Any:
        from attestation.oci.registry import RegistryClient

        return RegistryClient(
            insecure_registries=list(self.config.insecure_registries),
            ca_file=str(self.config.ca_file) if self.config.ca_file else None,
            docker_config=str(self.config.docker_config) if self.config.docker_config else None,
            cache_bytes=self.config.registry_cache_bytes,
            cache_ttl=self.config.registry_cache_ttl,
            observer=self._registry_observer,
            transport=self.config.registry_transport,
        )

    async def __aenter__(self) -> Gate:
        self._client = await self._new_client().__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> Gate:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def aclose(self) -> None:
        """Close the registry client (if ``async with`` opened one) and the policy engine."""
        client, self._client = self._client, None
        try:
            if client is not None:
                await client.__aexit__(None, None, None)
        finally:
            self.close()

    def close(self) -> None:
        """Close the policy engine; a second call does nothing. Decisions after it are undecided."""
        if not self._closed:
            self._closed = True
            self.engine.close()

    # --- pipeline ----------------------------------------------------------------------------------------

    def prepare_offline(
        self, image: str, attestations: Sequence[bytes | StoredAttestationLike]
    ) -> Prepared | Decision:
        """Check attestations given by the caller for ``image``, which must carry a digest."""
        started = time.perf_counter()
        try:
            ref = parse(image, require_digest=True)
        except InvalidReference as err:
            return undecided(image, [str(err)])
        if len(attestations) > MAX_ATTESTATIONS:
            return undecided(
                ref.pinned, [f"{len(attestations)} attestations given, the limit is {MAX_ATTESTATIONS}"]
            )
        raws = [
            a
            if not isinstance(a, bytes | bytearray)
            else RawAttestation(data=bytes(a), source=f"attestation {i}")
            for i, a in enumerate(attestations, 1)
        ]
        return self._check(ref, raws, Timings(), started)

    async def prepare(self, image: str, *, deadline: float | None = None) -> Prepared | Decision:
        """Resolve ``image`` in its registry and check every attestation stored for it."""
        started = time.perf_counter()
        if deadline is None:
            deadline = time.monotonic() + self.config.timeout
        try:
            ref = parse(image)
        except InvalidReference as err:
            return undecided(image, [str(err)])
        # What the decision names: the digest as soon as it is known, the reference as given until then.
        named = [ref.pinned if ref.digest else str(ref)]
        try:
            if self._client is not None:
                return await self._fetch_and_check(self._client, ref, deadline, started, named)
            async with self._new_client() as client:
                return await self._fetch_and_check(client, ref, deadline, started, named)
        except (RegistryError, InputError, VerificationError) as err:
            return undecided(named[0], [str(err)], elapsed_ms=ms_since(started))
        except TimeoutError:
            return undecided(
                named[0],
                [f"timed out after {self.config.timeout:g}s talking to {ref.registry}"],
                elapsed_ms=ms_since(started),
            )
        except Exception as err:  # fail closed on anything the registry layer did not anticipate
            return undecided(
                named[0],
                [f"fetching attestations of {ref} failed: {type(err).__name__}: {err}"],
                elapsed_ms=ms_since(started),
            )

    async def resolve(self, image: ImageReference, *, deadline: float) -> ImageReference:
        """``image`` pinned to the digest its tag names in the registry now (a digest is checked).
        Raises :class:`RegistryError`; needs ``async with`` (the gate's own registry client)."""
        from attestation.oci import reader

        if self._client is None:
            raise RegistryError("the gate has no registry client open (use `async with Gate(...)`)")
        resolved = await reader.resolve(self._client, image, deadline=deadline)
        return resolved.reference

    async def _fetch_and_check(
        self, client: Any, ref: ImageReference, deadline: float, started: float, named: list[str]
    ) -> Prepared:
        import asyncio

        from attestation.oci import reader

        t0 = time.perf_counter()
        if ref.digest is None:
            resolved = await reader.resolve(client, ref, deadline=deadline)
            named[0] = resolved.pinned
            t1 = time.perf_counter()
            stored = await reader.fetch_attestations(client, resolved, deadline=deadline)
            t2 = time.perf_counter()
        else:
            # The digest is known: look for the attestations while the manifest is checked, one round
            # trip less. Both must succeed; the manifest's answer comes first, so an image that is not in
            # the registry is "not found" whatever attestations exist for its digest.
            # The attestations' requests go out first, since their answers lead to the next round trip
            # (the layers) and the manifest's to none: fetch_attestations starts its lookups as tasks of
            # their own, so one turn of the loop lets them send before the manifest task is made.
            provisional = reader.ResolvedImage(reference=ref, media_type="")
            fetching = asyncio.ensure_future(
                reader.fetch_attestations(client, provisional, deadline=deadline)
            )
            resolving: asyncio.Future[reader.ResolvedImage] | None = None
            try:
                await asyncio.sleep(0)
                resolving = asyncio.ensure_future(reader.resolve(client, ref, deadline=deadline))
                resolved = await resolving
                t1 = time.perf_counter()
                stored = await fetching
            finally:
                await _settle(fetching, resolving)
            t2 = time.perf_counter()
            if resolved.digest != ref.digest:  # resolve checks this already; never evaluate a mismatch
                raise RegistryError(f"{ref}: the registry returned manifest {resolved.digest}")
        # Only the digest is evaluated from here on, whatever tag was asked for.
        pinned: ImageReference = resolved.reference
        if len(stored) > MAX_ATTESTATIONS:
            raise InputError(
                f"{pinned.pinned} has {len(stored)} attestations, the limit is {MAX_ATTESTATIONS}"
            )
        fetch_started = t0 if ref.digest is not None else t1  # concurrent with resolve for a digest
        timings = Timings(resolve_ms=(t1 - t0) * 1000, fetch_ms=(t2 - fetch_started) * 1000)
        return self._check(pinned, stored, timings, started)

    def _check(
        self, ref: ImageReference, raws: Sequence[StoredAttestationLike], timings: Timings, started: float
    ) -> Prepared:
        t0 = time.perf_counter()
        checked = [self._check_one(raw, ref) for raw in raws]
        return Prepared(
            image=ref, checked=checked, timings=replace(timings, verify_ms=ms_since(t0)), started=started
        )

    def _check_one(self, raw: StoredAttestationLike, ref: ImageReference) -> Checked:
        key = VerifiedMemo.key(raw, ref)
        found = self._verified.get(key, raw.source)
        if found is not None:
            log.debug("%s: verified before for %s (the same bytes): remembered", raw.source, ref.pinned)
            return found
        checked = replace(check_attestation(raw, ref, self.trust), key=key)
        if checked.statement is not None and all(_timeless(s) for s in checked.statement.signers):
            # The memo keeps the statement's encoding and the report (a few small objects): the
            # encoding and 1 KiB is the estimate.
            self._verified.put(key, checked, len(checked.statement.encoded or b"") + 1024)
        return checked

    def _evaluate(self, prepared: Prepared) -> Evaluation:
        if self._closed:  # not even from memory: a closed gate decides nothing
            raise PolicyError("policy engine is closed")
        key = prepared.policy_input_key() if self._evaluations is not None else None
        if key is not None:
            assert self._evaluations is not None
            found = self._evaluations.get(key)
            if found is not None:
                log.debug("%s: policy result remembered (same statements)", prepared.image.pinned)
                return found
        evaluation = evaluate_prepared(self.engine, prepared)
        if key is not None:
            assert self._evaluations is not None
            self._evaluations.put(key, evaluation)
        return evaluation

    def decide(self, prepared: Prepared | Decision, *, deadline: float | None = None) -> Decision:
        """Evaluate the policy over the verified statements and build the decision."""
        if isinstance(prepared, Decision):
            return prepared
        image = prepared.image.pinned
        reports = tuple(c.report for c in prepared.checked)
        errors = tuple(c.report.error for c in prepared.checked if c.report.error)
        if deadline is not None and time.monotonic() > deadline:
            return undecided(
                image,
                [*errors, "deadline passed before the policy was evaluated"],
                attestations=reports,
                elapsed_ms=ms_since(prepared.started),
                timings=prepared.timings,
            )
        t0 = time.perf_counter()
        try:
            evaluation = self._evaluate(prepared)
        except Exception as err:  # any engine failure is "could not decide", never allow
            return policy_failed(
                image,
                err,
                errors=errors,
                attestations=reports,
                elapsed_ms=ms_since(prepared.started),
                timings=replace(prepared.timings, policy_ms=ms_since(t0)),
            )
        before, after = findings(prepared.image, prepared.checked)
        return from_evaluation(
            image,
            evaluation,
            before=before,
            after=after,
            attestations=reports,
            errors=errors,
            elapsed_ms=ms_since(prepared.started),
            timings=replace(prepared.timings, policy_ms=ms_since(t0)),
        )

    async def verify(
        self, image: str, *, attestations: Sequence[bytes] | None = None, deadline: float | None = None
    ) -> Decision:
        """The decision for ``image``: from its registry, or from ``attestations`` (then the image must
        carry a digest). ``deadline`` is a :func:`time.monotonic` instant; default now + config timeout."""
        if deadline is None:
            deadline = time.monotonic() + self.config.timeout
        if attestations is not None:
            prepared = self.prepare_offline(image, attestations)
        else:
            prepared = await self.prepare(image, deadline=deadline)
        return self.decide(prepared, deadline=deadline)

    def verify_sync(
        self, image: str, *, attestations: Sequence[bytes] | None = None, deadline: float | None = None
    ) -> Decision:
        """:meth:`verify` for callers without an event loop; the offline path runs no event loop at all."""
        if attestations is not None:
            return self.decide(self.prepare_offline(image, attestations), deadline=deadline)
        import asyncio  # here: the offline path above runs no event loop and need not import it

        return asyncio.run(self.verify(image, deadline=deadline))


def _timeless(signer: Any) -> bool:
    """Whether a verified signature verifies the same way for the same bytes at any later time, so it
    may be remembered: a key signature, a keyless one (checked at the time its log entry or timestamp
    proves, never "now"), an X.509 one checked at a trusted timestamp. An X.509 signature checked at the
    current time can expire between two calls."""
    return signer.kind in ("key", "keyless") or (signer.kind == "x509" and signer.signed_at is not None)


async def _settle(*futures: asyncio.Future[Any] | None) -> None:
    """Cancel what is still running and wait for it, so nothing outlives the registry client it uses;
    the failures are seen here (the first one has already been raised). None: not started."""
    import asyncio

    tasks = [f for f in futures if f is not None]
    for task in tasks:
        task.cancel()  # no-op for a finished task
    await asyncio.gather(*tasks, return_exceptions=True)


__all__ = [
    "MAX_ATTESTATIONS",
    "Checked",
    "Gate",
    "GateConfig",
    "Prepared",
    "check_attestation",
]
