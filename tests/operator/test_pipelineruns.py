"""PipelineRuns: attested once their child TaskRuns (read from the API server through
``status.childReferences``) are complete and attested, with the pipeline's task list; a child that does
not exist, or is not a TaskRun, or never completes, does not keep the PipelineRun from being attested."""

from __future__ import annotations

import base64
import copy
import json
import time
from typing import Any

from signer import samples
from tests.infra.tekton import (
    PIPELINERUNS,
    TASKRUNS,
    complete_pipelinerun,
    create_run,
    new_pipelinerun,
    new_taskrun,
    set_status,
)
from tests.operator.conftest import SIGNED, Setup, att_layers, push_image

CONFIG = {
    "artifacts.taskrun.format": "slsa/v1",
    "artifacts.taskrun.storage": "oci,tekton",
    "artifacts.pipelinerun.format": "slsa/v1",
    "artifacts.pipelinerun.storage": "oci,tekton",
    "provgate.pipelinerun.child-timeout": "300",
}


def unmarked(obj: dict[str, Any]) -> dict[str, Any]:
    """A sample object without the Chains annotations the sample carries from where it was made."""
    out = copy.deepcopy(obj)
    notes = out["metadata"].get("annotations") or {}
    out["metadata"]["annotations"] = {
        k: v for k, v in notes.items() if not k.startswith("chains.tekton.dev/")
    }
    return out


def statement_of(run: dict[str, Any], kind: str) -> dict[str, Any]:
    notes = run["metadata"]["annotations"]
    envelope = json.loads(
        base64.b64decode(notes[f"chains.tekton.dev/signature-{kind}-{run['metadata']['uid']}"])
    )
    return json.loads(base64.b64decode(envelope["payload"]))


def test_a_pipelinerun_waits_for_its_children_then_is_attested_with_its_task_list(
    setup: Setup, registry_plain
) -> None:
    repo, digest = push_image(registry_plain)
    pipelinerun, taskruns = samples.load("tep0084-pipelinerun", image_url=repo, image_digest=digest)
    setup.configure(CONFIG)
    setup.start()
    for child in taskruns:  # running: created, no status yet
        create_run(setup.kube.api, setup.runs, unmarked(child), with_status=False)
    create_run(setup.kube.api, setup.runs, unmarked(pipelinerun))
    time.sleep(3)
    waiting = setup.pipelinerun(pipelinerun["metadata"]["name"])
    assert SIGNED not in (waiting["metadata"].get("annotations") or {}), "attested before its children"

    for child in taskruns:
        set_status(setup.kube.api, TASKRUNS, setup.runs, child["metadata"]["name"], child["status"])
    marked = setup.wait_marked(pipelinerun["metadata"]["name"], kind="PipelineRun")
    assert marked["metadata"]["annotations"][SIGNED] == "true", setup.logs()
    children = [setup.taskrun(c["metadata"]["name"]) for c in taskruns]
    assert all(c["metadata"]["annotations"][SIGNED] == "true" for c in children)
    statement = statement_of(marked, "pipelinerun")
    tasks = [t["name"] for t in statement["predicate"]["buildConfig"]["tasks"]]
    assert tasks == ["git-clone", "source-scan", "lint", "image-build", "image-scan"]
    # the image-build TaskRun's attestation and the PipelineRun's, each once
    assert len(att_layers(registry_plain, repo, digest)) == 2
    setup.wait_event(pipelinerun["metadata"]["name"], "Attested")


def test_a_missing_child_and_a_customrun_do_not_hang_the_pipelinerun(setup: Setup) -> None:
    setup.configure(CONFIG)
    setup.start()
    new_taskrun(setup.kube.api, setup.runs, "present")
    set_status(
        setup.kube.api,
        TASKRUNS,
        setup.runs,
        "present",
        {
            "podName": "present-pod",
            "startTime": "2026-01-01T00:00:00Z",
            "completionTime": "2026-01-01T00:01:00Z",
            "conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded"}],
        },
    )
    new_pipelinerun(setup.kube.api, setup.runs, "with-gaps")
    status = complete_pipelinerun(
        setup.kube.api, setup.runs, "with-gaps", children=[("build", "present"), ("deleted", "gone-taskrun")]
    )["status"]
    refs = [
        *status["childReferences"],
        {
            "apiVersion": "tekton.dev/v1beta1",
            "kind": "CustomRun",
            "name": "approval",
            "pipelineTaskName": "wait",
        },
    ]
    PIPELINERUNS.patch_status(setup.kube.api, setup.runs, "with-gaps", {"childReferences": refs})

    marked = setup.wait_marked("with-gaps", kind="PipelineRun")
    assert marked["metadata"]["annotations"][SIGNED] == "true", setup.logs()
    event = setup.wait_event("with-gaps", "ChildrenIncomplete")
    assert "gone-taskrun" in event["message"] and "CustomRun approval" in event["message"]


def test_a_child_that_never_completes_is_waited_for_at_most_the_bound(setup: Setup) -> None:
    setup.configure({**CONFIG, "provgate.pipelinerun.child-timeout": "4"})
    setup.start()
    new_taskrun(setup.kube.api, setup.runs, "stuck")  # never completes
    new_pipelinerun(setup.kube.api, setup.runs, "impatient")
    complete_pipelinerun(setup.kube.api, setup.runs, "impatient", children=[("build", "stuck")])
    started = time.monotonic()
    marked = setup.wait_marked("impatient", kind="PipelineRun", timeout=60)
    assert time.monotonic() - started >= 2  # it did wait
    assert marked["metadata"]["annotations"][SIGNED] == "true"
    assert "stuck" in setup.wait_event("impatient", "ChildrenIncomplete")["message"]
    assert SIGNED not in (setup.taskrun("stuck")["metadata"].get("annotations") or {})
