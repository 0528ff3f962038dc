"""Tekton Chains' ``slsa/v2alpha4`` format: a SLSA v1.0 predicate in an in-toto v1 statement.

Compared with ``slsa/v2alpha3``: subjects are only build artifacts (``IMAGES``, ``*IMAGE_URL`` pairs,
``*ARTIFACT_OUTPUTS`` marked ``isBuildArtifact``) including StepAction results; byproducts leave those
out and name the object (``taskRunResults/<taskrun>/<result>``, ``stepResults/<taskrun>/<result>``,
``pipelineRunResults/<pipelinerun>/<result>``); StepActions add ``inputs/result`` and
``stepAction/<step>`` resolved dependencies. Deep inspection also pulls in children's byproducts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from signer import result_hints
from signer.provenance import slsa_v1_0_predicate
from signer.run import Run, executed_taskruns

if TYPE_CHECKING:
    from signer.provenance import Options


def taskrun_byproducts(run: Run) -> list[dict[str, Any]]:
    return slsa_v1_0_predicate.filtered_result_byproducts(
        run.name, run.results, "taskRunResults"
    ) + slsa_v1_0_predicate.filtered_result_byproducts(run.name, run.step_results, "stepResults")


def byproducts(run: Run, children: Sequence[Run], *, deep_inspection: bool) -> list[dict[str, Any]]:
    if run.kind == "TaskRun":
        return taskrun_byproducts(run)
    out = slsa_v1_0_predicate.filtered_result_byproducts(run.name, run.results, "pipelineRunResults")
    if deep_inspection:
        for tr in executed_taskruns(run, children):
            out += taskrun_byproducts(tr)
    return out


def build(run: Run, children: Sequence[Run], options: Options, warnings: list[str]) -> dict[str, Any]:
    return slsa_v1_0_predicate.build_statement(
        run,
        children,
        options,
        with_step_actions=True,
        subjects=lambda: result_hints.subjects_build_artifacts(
            run, children, deep_inspection=options.deep_inspection, warnings=warnings
        ),
        byproducts=lambda: byproducts(run, children, deep_inspection=options.deep_inspection),
        warnings=warnings,
    )
