"""The policy author's paths: ``gate eval`` (a policy-input document, no registry and no crypto) and the
``--attestations`` file of ``gate verify`` (attestations read from a file instead of the registry)."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from attestation.errors import InputError, LimitExceeded
from gate.config import EngineOptions
from gate.decision import Decision, Timings, from_evaluation, ms_since, policy_failed
from gate.policy.loader import expand_data_paths

if TYPE_CHECKING:
    # Imported where used: `gate eval` reads no attestations, and these modules (with the envelope,
    # bundle and trust code they import) are a measurable part of its start (docs/performance.md).
    from attestation.cosign import RawAttestation


def evaluate_document(
    doc: Mapping[str, Any],
    policy_paths: Sequence[Path],
    data_paths: Sequence[Path] = (),
    *,
    engine: str = "embedded",
    opa_url: str | None = None,
    engine_options: EngineOptions | None = None,
) -> Decision:
    """``gate eval``: a policy-input document against a policy, no registry and no crypto.

    Loading errors raise (:class:`InputError`/:class:`PolicyError` naming the file); an engine failure is
    an undecided decision; zero rules evaluated is a denial.
    """
    from gate.policy import evaluate_input, load_policy_set, make_engine

    started = time.perf_counter()
    image_doc = doc.get("image")
    image = str(image_doc.get("ref", "")) if isinstance(image_doc, dict) else ""
    policy_set = load_policy_set(list(policy_paths), list(expand_data_paths(data_paths)))
    policy_engine = make_engine(policy_set, engine=engine, opa_url=opa_url, options=engine_options)
    try:
        t0 = time.perf_counter()
        try:
            evaluation = evaluate_input(doc, policy_set, policy_engine)
        except InputError:
            raise
        except Exception as err:
            return policy_failed(image, err, elapsed_ms=ms_since(started))
        return from_evaluation(
            image, evaluation, elapsed_ms=ms_since(started), timings=Timings(policy_ms=ms_since(t0))
        )
    finally:
        policy_engine.close()


# A file of attestations holds at most MAX_ATTESTATIONS envelopes of at most MAX_ENVELOPE_BYTES each, but
# we refuse to read more than this in total.
MAX_ATTESTATIONS_FILE_BYTES = 64 * 1024 * 1024


def read_attestations_file(path: str | os.PathLike[str]) -> list[RawAttestation]:
    """The ``--attestations`` file: one JSON document (DSSE envelope or Sigstore bundle) per line; blank
    lines are skipped. Each line is named ``FILE:LINE`` in the decision. Raises :class:`InputError`."""
    from attestation.cosign import RawAttestation
    from attestation.files import read_bounded
    from gate.checklist import MAX_ATTESTATIONS

    name = os.fspath(path)
    data = read_bounded(path, MAX_ATTESTATIONS_FILE_BYTES, "attestations file")
    out: list[RawAttestation] = []
    for number, line in enumerate(data.split(b"\n"), 1):
        if not line.strip():
            continue
        if len(out) == MAX_ATTESTATIONS:
            raise LimitExceeded(f"attestations file {name} has more than {MAX_ATTESTATIONS} attestations")
        out.append(RawAttestation(data=line.rstrip(b"\r"), source=f"{name}:{number}"))
    return out
