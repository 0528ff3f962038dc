"""A completed TaskRun is attested by the operator: its attestation next to the image, Chains'
annotations on the run, an Event, and an image the gate admits."""

from __future__ import annotations

import base64
import json

from tests.infra.tekton import complete_taskrun, new_taskrun
from tests.operator.conftest import SIGNED, Setup, att_layers, image_results, push_image

CONFIG = {
    "artifacts.taskrun.format": "slsa/v1",
    "artifacts.taskrun.storage": "oci,tekton",
    "artifacts.pipelinerun.storage": "tekton",
}


def test_a_completed_taskrun_is_attested_next_to_its_image(setup: Setup, registry_plain) -> None:
    repo, digest = push_image(registry_plain)
    setup.configure(CONFIG)
    setup.start()
    new_taskrun(setup.kube.api, setup.runs, "build-1")
    complete_taskrun(setup.kube.api, setup.runs, "build-1", results=image_results(repo, digest))

    run = setup.wait_marked("build-1")
    notes = run["metadata"]["annotations"]
    assert notes[SIGNED] == "true", setup.logs()
    uid = run["metadata"]["uid"]
    envelope = json.loads(base64.b64decode(notes[f"chains.tekton.dev/signature-taskrun-{uid}"]))
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["subject"] == [{"name": repo, "digest": {"sha256": digest.removeprefix("sha256:")}}]
    assert statement["predicate"]["buildType"] == "tekton.dev/v1/TaskRun"
    layers = att_layers(registry_plain, repo, digest)
    assert len(layers) == 1
    assert "chains.tekton.dev/taskrun" not in (run["metadata"].get("finalizers") or [])
    event = setup.wait_event("build-1", "Attested")
    assert event["type"] == "Normal"
