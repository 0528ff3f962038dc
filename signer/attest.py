"""A run -> a signed, stored attestation, as one library call: :func:`attest`.

The flow: check the run's SPIRE-signed results (when ``enforce-nonfalsifiability`` is ``spire``) ->
build the provenance statement in the run kind's format -> sign it with the run kind's signing backend ->
store it in the run kind's storage backends. What it stored where comes back as an
:class:`AttestOutcome`; a failure is a :class:`attestation.errors.ProvgateError` with a one-line message,
transient when it is also a :class:`attestation.errors.TransientError` (retry later) and permanent
otherwise (never retry). Nothing is signed before the run is known to be complete, verified as required
and turned into a statement, and nothing is stored before it is signed.

The configuration is shaped after Tekton Chains' ``chains-config`` keys, so an operator maps them one to
one: ``artifacts.taskrun.{format,storage,signer}`` and ``artifacts.pipelinerun.*`` are the two
:class:`ArtifactConfig` (``artifacts.pipelinerun.enable-deep-inspection`` is ``deep_inspection``),
``storage.oci.*`` is :class:`signer.storage.StorageConfig`, ``builder.id`` and
``builddefinition.buildtype`` are ``builder_id`` and ``build_type``, the signing backends are named in
``signers`` (Chains' ``x509`` signer with a ``cosign.key`` secret is the ``key`` backend), and provgate's
own SPIRE keys are :class:`signer.spire.nonfalsifiability.SpireConfig`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from attestation.errors import InputError, ResultsNotVerified
from signer.provenance import DEFAULT_BUILDER_ID, Options, canonical_format, check_build_type, generate
from signer.run import Run, require_completed
from signer.signing import SigningBackend
from signer.spire.nonfalsifiability import SpireConfig, check_nonfalsifiability
from signer.storage import SignedProvenance, StorageConfig, Stored, store, write_annotations
from signer.storage.oci import OciStored
from signer.storage.tekton import TektonStored, failure_annotations

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ArtifactConfig:
    """How one kind of run is attested (Chains' ``artifacts.taskrun.*`` or ``artifacts.pipelinerun.*``)."""

    format: str = "slsa/v1"  # "in-toto" is accepted as Chains' alias of slsa/v1
    storage: tuple[str, ...] = ()  # backend names of signer.storage.BACKENDS, stored in this order
    signer: str = "key"  # a name in AttestConfig.signers
    deep_inspection: bool = False  # PipelineRuns: subjects and materials from the children's results too


@dataclass(frozen=True)
class AttestConfig:
    """Everything :func:`attest` needs besides the run; made once, used for every run. ``signers`` are
    the signing backends by name (``key``: :class:`signer.signing.key.KeySigning`, ``spire``:
    :class:`signer.signing.spire.SvidSigning`)."""

    signers: Mapping[str, SigningBackend] = field(default_factory=dict)
    taskrun: ArtifactConfig = field(default_factory=ArtifactConfig)
    pipelinerun: ArtifactConfig = field(default_factory=ArtifactConfig)
    builder_id: str = DEFAULT_BUILDER_ID
    build_type: str | None = None
    storage: StorageConfig = field(default_factory=StorageConfig)
    spire: SpireConfig = field(default_factory=SpireConfig)

    def for_kind(self, kind: str) -> ArtifactConfig:
        return self.taskrun if kind == "TaskRun" else self.pipelinerun

    def check(self) -> None:
        """Refuse a configuration that cannot attest, before any run is looked at."""
        for kind, artifact in (("TaskRun", self.taskrun), ("PipelineRun", self.pipelinerun)):
            canonical_format(artifact.format)
            self.storage.check(artifact.storage)
            if artifact.signer not in self.signers:
                configured = ", ".join(sorted(self.signers)) or "none"
                raise InputError(
                    f"{kind}s are to be signed by {artifact.signer!r}, a signing backend that is not "
                    f"configured (configured: {configured})"
                )
        check_build_type(self.build_type)


@dataclass(frozen=True)
class AttestOutcome:
    """What :func:`attest` signed and where it stored it (in storage order), with the type-hint warnings
    met on the way (one line each, for the person who looks at the run)."""

    signed: SignedProvenance
    stored: tuple[Stored, ...] = ()
    warnings: tuple[str, ...] = ()

    @property
    def statement(self) -> Mapping[str, Any]:
        return self.signed.statement

    @property
    def oci(self) -> list[OciStored]:
        return [s for s in self.stored if isinstance(s, OciStored)]

    @property
    def annotations(self) -> Mapping[str, str] | None:
        """The run annotations of the ``tekton`` storage, to apply to the run (None without it)."""
        return next((s.annotations for s in self.stored if isinstance(s, TektonStored)), None)


def attest(run: Run, children: Sequence[Run], config: AttestConfig) -> AttestOutcome:
    """Attest a completed TaskRun or PipelineRun (``children``: the PipelineRun's child TaskRuns).

    Raises :class:`attestation.errors.ResultsNotVerified` (permanent) when ``enforce-nonfalsifiability``
    is ``spire`` and the results of the run, or of any child TaskRun, do not verify; with the ``tekton``
    storage the run is first marked failed as Chains marks it (written to ``annotations_out`` when set;
    :func:`signer.storage.tekton.failure_annotations` of the reasons otherwise).
    """
    config.check()
    artifact = config.for_kind(run.kind)
    require_completed(run)
    backend = config.signers[artifact.signer]
    log.debug(
        "%s: %s, signed with %s, stored in %s",
        run.display,
        artifact.format,
        backend.label,
        ",".join(artifact.storage) or "nothing",
    )
    sign = backend.ready()
    _check_results(run, children, config, artifact)
    options = Options(
        format=artifact.format,
        builder_id=config.builder_id,
        build_type=config.build_type,
        deep_inspection=artifact.deep_inspection,
    )
    provenance = generate(run, children, options)
    for line in provenance.warnings:
        log.warning("%s", line)
    signed = sign(provenance.statement)
    stored = store(signed, kind=run.kind, uid=run.uid, backends=artifact.storage, config=config.storage)
    return AttestOutcome(signed, tuple(stored), tuple(provenance.warnings))


def _check_results(run: Run, children: Sequence[Run], config: AttestConfig, artifact: ArtifactConfig) -> None:
    if config.spire.enforce_nonfalsifiability == "none":
        return
    verdict = check_nonfalsifiability(run, config.spire, children=children)
    if verdict.allowed:
        log.debug("%s: SPIRE-signed results verified", run.display)
        return
    if "tekton" in artifact.storage and config.storage.annotations_out:
        write_annotations(config.storage.annotations_out, failure_annotations(verdict.reasons))
    raise ResultsNotVerified(
        f"{run.kind} {run.namespace}/{run.name} gets no provenance: its SPIRE-signed results do not verify "
        "(enforce-nonfalsifiability: spire)",
        verdict.reasons,
    )
