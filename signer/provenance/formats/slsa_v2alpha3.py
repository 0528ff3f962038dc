"""Tekton Chains' ``slsa/v2alpha3`` format: a SLSA v1.0 predicate in an in-toto v1 statement.

Differs from ``slsa/v2alpha4`` in three places: subjects come from every type hint (Chains'
``SubjectDigests``), every result is a byproduct named ``taskRunResults/<result>`` or
``pipelineRunResults/<result>``, and StepActions contribute nothing beyond their images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from signer import result_hints
from signer.provenance import slsa_v1_0_predicate
from signer.run import Run

if TYPE_CHECKING:
    from signer.provenance import Options


def byproducts(run: Run) -> list[dict[str, Any]]:
    prefix = "taskRunResults" if run.kind == "TaskRun" else "pipelineRunResults"
    return slsa_v1_0_predicate.all_result_byproducts(run.results, prefix)


def build(run: Run, children: Sequence[Run], options: Options, warnings: list[str]) -> dict[str, Any]:
    return slsa_v1_0_predicate.build_statement(
        run,
        children,
        options,
        with_step_actions=False,
        subjects=lambda: result_hints.subjects_v1(
            run, children, deep_inspection=options.deep_inspection, warnings=warnings
        ),
        byproducts=lambda: byproducts(run),
        warnings=warnings,
    )
