"""Tekton Chains' ``slsa/v2alpha3`` format: a SLSA v1.0 predicate in an in-toto v1 statement.

Differs from ``slsa/v2alpha4`` in three places: subjects come from every type hint (Chains'
``SubjectDigests``), every result is a byproduct named ``taskRunResults/<result>`` or
``pipelineRunResults/<result>``, and StepActions contribute nothing beyond their images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from signer import typehints
from signer.provenance import slsa1_0
from signer.run import Run

if TYPE_CHECKING:
    from signer.provenance import Options


def byproducts(run: Run) -> list[dict[str, Any]]:
    prefix = "taskRunResults" if run.kind == "TaskRun" else "pipelineRunResults"
    return slsa1_0.all_result_byproducts(run.results, prefix)


def build(run: Run, children: Sequence[Run], options: Options, warnings: list[str]) -> dict[str, Any]:
    build_type = slsa1_0.resolve_build_type(options.build_type)
    if run.kind == "TaskRun":
        deps = slsa1_0.taskrun_dependencies(run, with_step_actions=False, warnings=warnings)
    else:
        deps = slsa1_0.pipelinerun_dependencies(
            run,
            children,
            build_type=build_type,
            deep_inspection=options.deep_inspection,
            with_step_actions=False,
            warnings=warnings,
        )
    subjects = typehints.subjects_v1(
        run, children, deep_inspection=options.deep_inspection, warnings=warnings
    )
    return slsa1_0.statement(
        run,
        subjects=subjects,
        build_type=build_type,
        builder_id=options.builder_id,
        dependencies=deps,
        byproducts=byproducts(run),
        warnings=warnings,
    )
