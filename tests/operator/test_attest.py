"""What a user sees of ``signer run`` on one run: a completed TaskRun gets its attestation next to its
image, Chains' annotations, an Event, and the gate admits the image; failed runs are attested as Chains
does; runs without an image, v1beta1 runs, opted-out runs; the finalizer while a run runs, and a run
deleted before it was attested."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

from kubernetes import client

from tests.gate.conftest import BUILDER_ID
from tests.infra.kube import Resource, wait_until
from tests.infra.tekton import TASKRUNS, complete_taskrun, create_run, new_taskrun, taskrun_status
from tests.operator.conftest import SIGNED, Setup, att_layers, image_results, push_image

CONFIG = {
    "builder.id": BUILDER_ID,
    "artifacts.taskrun.format": "slsa/v1",
    "artifacts.taskrun.storage": "oci,tekton",
    "artifacts.pipelinerun.storage": "tekton",
}
FINALIZER = "chains.tekton.dev/taskrun"


def statement_of(run: dict, kind: str = "taskrun") -> dict:
    notes = run["metadata"]["annotations"]
    envelope = json.loads(
        base64.b64decode(notes[f"chains.tekton.dev/signature-{kind}-{run['metadata']['uid']}"])
    )
    return json.loads(base64.b64decode(envelope["payload"]))


def test_a_completed_taskrun_is_attested_next_to_its_image_and_the_gate_admits_it(
    setup: Setup, registry_plain, policy_dir, data_file
) -> None:
    repo, digest = push_image(registry_plain)
    setup.configure(CONFIG)
    operator = setup.start()
    new_taskrun(setup.kube.api, setup.runs, "build-1")
    complete_taskrun(setup.kube.api, setup.runs, "build-1", results=image_results(repo, digest))

    run = setup.wait_marked("build-1")
    notes = run["metadata"]["annotations"]
    assert notes[SIGNED] == "true", setup.logs()
    statement = statement_of(run)
    assert statement["subject"] == [{"name": repo, "digest": {"sha256": digest.removeprefix("sha256:")}}]
    assert statement["predicate"]["buildType"] == "tekton.dev/v1/TaskRun"
    assert not any(k.startswith("signer.provgate.dev/") for k in notes)
    assert len(att_layers(registry_plain, repo, digest)) == 1
    assert FINALIZER not in (run["metadata"].get("finalizers") or [])
    managers = {m["manager"] for m in run["metadata"]["managedFields"]}
    assert "provgate-signer" in managers
    event = setup.wait_event("build-1", "Attested")
    assert event["type"] == "Normal" and repo in event["message"]
    assert f"[{setup.runs}/build-1] attested: https://slsa.dev/provenance/v0.2" in operator.tail()
    assert operator.metric("watcher_taskrun_marked_signed_total") == 1
    assert operator.metric("watcher_taskrun_sign_created_total") == 1
    assert operator.metric("watcher_taskrun_payload_stored_total") == 2  # oci and tekton
    assert operator.metric("provgate_signer_completion_to_signed_seconds_count", kind="taskrun") == 1

    gate = subprocess.run(
        [
            str(Path(sys.executable).parent / "gate"),
            "verify",
            f"{repo}@{digest}",
            "--key",
            str(setup.key.public_file),
            "--policy",
            str(policy_dir),
            "--data",
            str(data_file),
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert gate.returncode == 0, gate.stdout + gate.stderr
    decision = json.loads(gate.stdout)
    assert decision["allowed"] and [a["verified"] for a in decision["attestations"]] == [True]


def test_a_failed_taskrun_is_attested_too_and_a_run_without_an_image_to_the_tekton_storage(
    setup: Setup, registry_plain
) -> None:
    repo, digest = push_image(registry_plain)
    setup.configure(CONFIG)
    setup.start()
    new_taskrun(setup.kube.api, setup.runs, "failing")
    complete_taskrun(
        setup.kube.api, setup.runs, "failing", results=image_results(repo, digest), succeeded=False
    )
    new_taskrun(setup.kube.api, setup.runs, "lint")
    complete_taskrun(setup.kube.api, setup.runs, "lint", results={"REPORT": "clean"})

    failing = setup.wait_marked("failing")
    assert failing["metadata"]["annotations"][SIGNED] == "true"
    assert len(att_layers(registry_plain, repo, digest)) == 1
    lint = setup.wait_marked("lint")
    assert lint["metadata"]["annotations"][SIGNED] == "true"
    assert "subject" not in statement_of(lint)
    assert "no image subject" in setup.wait_event("lint", "Attested")["message"]


def test_a_v1beta1_taskrun_is_attested(setup: Setup, registry_plain) -> None:
    repo, digest = push_image(registry_plain)
    setup.configure(CONFIG)
    setup.start()
    v1beta1 = Resource("tekton.dev", "v1beta1", "taskruns")
    v1beta1.create(
        setup.kube.api,
        setup.runs,
        {
            "apiVersion": "tekton.dev/v1beta1",
            "kind": "TaskRun",
            "metadata": {"name": "old-api"},
            "spec": {"taskRef": {"name": "build"}},
        },
    )
    status = taskrun_status("old-api", results=image_results(repo, digest))
    status["taskResults"] = status.pop("results")
    v1beta1.patch_status(setup.kube.api, setup.runs, "old-api", status)
    assert setup.wait_marked("old-api")["metadata"]["annotations"][SIGNED] == "true"


def test_an_opted_out_run_is_left_alone(setup: Setup, registry_plain) -> None:
    repo, digest = push_image(registry_plain)
    setup.configure(CONFIG)
    setup.start()
    new_taskrun(setup.kube.api, setup.runs, "old", labels={"provgate.dev/skip": "true"})
    complete_taskrun(setup.kube.api, setup.runs, "old", results=image_results(repo, digest))
    new_taskrun(setup.kube.api, setup.runs, "new")
    complete_taskrun(setup.kube.api, setup.runs, "new", results={"X": "y"})
    setup.wait_marked("new")  # the operator is working; the opted-out run was seen before it
    old = setup.taskrun("old")
    assert SIGNED not in (old["metadata"].get("annotations") or {})
    assert att_layers(registry_plain, repo, digest) == []
    assert setup.events("old") == []


def test_a_running_run_carries_the_finalizer_until_it_is_attested(setup: Setup, registry_plain) -> None:
    setup.configure(CONFIG)
    setup.start()
    new_taskrun(setup.kube.api, setup.runs, "slow")
    wait_until(
        lambda: FINALIZER in (setup.taskrun("slow")["metadata"].get("finalizers") or []),
        what="the finalizer on a running TaskRun",
        timeout=30,
    )
    complete_taskrun(setup.kube.api, setup.runs, "slow", results={"X": "y"})
    run = setup.wait_marked("slow")
    wait_until(
        lambda: FINALIZER not in (setup.taskrun("slow")["metadata"].get("finalizers") or []),
        what="the finalizer released",
        timeout=30,
    )
    assert run["metadata"]["annotations"][SIGNED] == "true"


def test_a_run_deleted_before_it_was_attested_is_attested_then_released(setup: Setup, registry_plain) -> None:
    repo, digest = push_image(registry_plain)
    setup.configure(CONFIG)
    first = setup.start()
    new_taskrun(setup.kube.api, setup.runs, "pruned")
    wait_until(
        lambda: FINALIZER in (setup.taskrun("pruned")["metadata"].get("finalizers") or []),
        what="the finalizer on a running TaskRun",
        timeout=30,
    )
    first.stop()  # the operator is away while the run completes and a pruner deletes it
    complete_taskrun(setup.kube.api, setup.runs, "pruned", results=image_results(repo, digest))
    TASKRUNS_API = client.CustomObjectsApi(setup.kube.api)
    TASKRUNS_API.delete_namespaced_custom_object("tekton.dev", "v1", setup.runs, "taskruns", "pruned")
    assert setup.taskrun("pruned")["metadata"].get("deletionTimestamp")  # held by the finalizer

    setup.start()

    def gone() -> bool:
        try:
            TASKRUNS.get(setup.kube.api, setup.runs, "pruned")
        except client.exceptions.ApiException as err:
            return err.status == 404
        return False

    wait_until(gone, what="the deleted run to go once attested", timeout=60, retry_on=())
    assert len(att_layers(registry_plain, repo, digest)) == 1


def test_a_run_created_already_marked_is_never_attested(setup: Setup, registry_plain) -> None:
    repo, digest = push_image(registry_plain)
    setup.configure(CONFIG)
    setup.start()
    run = {
        "apiVersion": "tekton.dev/v1",
        "kind": "TaskRun",
        "metadata": {"name": "done-before", "annotations": {SIGNED: "true"}},
        "spec": {"taskRef": {"name": "build"}},
        "status": taskrun_status("done-before", results=image_results(repo, digest)),
    }
    create_run(setup.kube.api, setup.runs, run)
    new_taskrun(setup.kube.api, setup.runs, "after")
    complete_taskrun(setup.kube.api, setup.runs, "after", results={"X": "y"})
    setup.wait_marked("after")
    assert att_layers(registry_plain, repo, digest) == []
    assert TASKRUNS.get(setup.kube.api, setup.runs, "done-before")["metadata"]["annotations"] == {
        SIGNED: "true"
    }


def test_json_logs_name_the_run(setup: Setup) -> None:
    setup.configure(CONFIG)
    operator = setup.start("--log-format", "json")
    new_taskrun(setup.kube.api, setup.runs, "logged")
    complete_taskrun(setup.kube.api, setup.runs, "logged", results={"X": "y"})
    setup.wait_marked("logged")

    def attested_line() -> dict | None:
        for line in operator.tail(20000).splitlines():
            if line.startswith("{") and '"attested: ' in line:
                return json.loads(line)
        return None

    line = wait_until(attested_line, what="the JSON log line of the attestation", timeout=10)
    assert line["object"] == {"kind": "TaskRun", "namespace": setup.runs, "name": "logged"}
    assert line["severity"] == "info"
