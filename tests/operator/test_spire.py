"""TEP-0089 in the operator, on the real SPIRE server and agent: with ``enforce-nonfalsifiability: spire``
a TaskRun whose results were signed with its own SVID is attested and one whose results were changed
afterwards never is (marked failed with the reason and an Event); with registration on, the TaskRun's
SPIRE entry appears when its pod does and goes when the run completes."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from signer.spire.results import taskrun_spiffe_id
from tests.infra.kube import wait_until
from tests.infra.spire import NODE_ALIAS_PREFIX, NODE_NAME, Spire
from tests.infra.tekton import (
    TASKRUNS,
    complete_taskrun,
    create_run,
    new_taskrun,
    set_status,
    succeeded_condition,
)
from tests.operator.conftest import SIGNED, Setup, image_results, push_image
from tests.spire.tekton import taskrun, termination_results
from tests.spire.test_results_real import svid_of

pytestmark = pytest.mark.xdist_group("spire")

TD = "example.org"
FILES = {"IMAGE_URL": "registry.example/team/app", "IMAGE_DIGEST": "sha256:" + "ab" * 32}


def enforcing(bundle: Path) -> dict[str, str]:
    return {
        "artifacts.taskrun.storage": "tekton",
        "provgate.spire.enforce-nonfalsifiability": "spire",
        "provgate.spire.trust-domain": TD,
        "provgate.spire.trust-bundle": str(bundle),
    }


def signed_taskrun(spire: Spire, namespace: str, name: str) -> dict:
    spiffe_id = taskrun_spiffe_id(TD, namespace, name)
    spire.issue(spiffe_id)
    key, leaf = svid_of(spire, spiffe_id)
    run = taskrun(name, namespace, termination_results(FILES, key, leaf))
    del run["metadata"]["uid"]
    return run


def test_results_signed_by_the_taskrun_are_attested_and_changed_ones_never(
    setup: Setup, spire: Spire, tmp_path: Path
) -> None:
    bundle = spire.server.write_bundle(tmp_path / "bundle.pem")
    good = signed_taskrun(spire, setup.runs, "honest")
    bad = signed_taskrun(spire, setup.runs, "edited")
    for result in bad["status"]["results"]:
        if result["name"] == "IMAGE_DIGEST":
            result["value"] = "sha256:" + "cd" * 32  # someone with status write access swapped the image
    setup.configure(enforcing(bundle))
    setup.start()
    create_run(setup.kube.api, setup.runs, good)
    create_run(setup.kube.api, setup.runs, bad)

    assert setup.wait_marked("honest")["metadata"]["annotations"][SIGNED] == "true", setup.logs()
    edited = setup.wait_marked("edited")["metadata"]["annotations"]
    assert edited[SIGNED] == "failed"
    assert "IMAGE_DIGEST" in edited["provgate.dev/not-verified"]
    assert not any(k.startswith("chains.tekton.dev/signature-") for k in edited)
    event = setup.wait_event("edited", "ResultsNotVerified")
    assert event["type"] == "Warning" and "IMAGE_DIGEST" in event["message"]


def test_a_taskruns_spire_entry_is_registered_when_its_pod_appears_and_deleted_when_it_completes(
    setup: Setup, spire: Spire
) -> None:
    setup.configure(
        {
            "artifacts.taskrun.storage": "tekton",
            "provgate.spire.registration.enabled": "true",
            "provgate.spire.registration.server-socket": spire.server.socket,
            "provgate.spire.registration.cli": str(spire.server.binary),
            "provgate.spire.trust-domain": TD,
            "provgate.spire.registration.node-alias-prefix": NODE_ALIAS_PREFIX,
        }
    )
    setup.start()
    name = "registered"
    spiffe_id = taskrun_spiffe_id(TD, setup.runs, name)
    new_taskrun(setup.kube.api, setup.runs, name)
    pod = setup.core.create_namespaced_pod(
        setup.runs,
        {
            "metadata": {"name": f"{name}-pod", "labels": {"tekton.dev/taskRun": name}},
            "spec": {"nodeName": NODE_NAME, "containers": [{"name": "step-build", "image": "busybox"}]},
        },
    )
    running = {
        "podName": f"{name}-pod",
        "startTime": "2026-01-01T00:00:00Z",
        "conditions": [{"type": "Succeeded", "status": "Unknown", "reason": "Running"}],
    }
    set_status(setup.kube.api, TASKRUNS, setup.runs, name, running)

    entries = wait_until(lambda: spire.server.show(spiffe_id), what="the TaskRun's SPIRE entry", timeout=60)
    [entry] = entries
    selectors = {f"{s['type']}:{s['value']}" for s in entry["selectors"]}
    assert f"k8s:pod-uid:{pod.metadata.uid}" in selectors
    parent = entry["parent_id"]
    assert (
        f"spiffe://{parent['trust_domain']}{parent['path']}" == f"spiffe://{TD}{NODE_ALIAS_PREFIX}{NODE_NAME}"
    )

    done = copy.deepcopy(running)
    done["completionTime"] = "2026-01-01T00:05:00Z"
    done["conditions"] = [succeeded_condition(True)]
    set_status(setup.kube.api, TASKRUNS, setup.runs, name, done)
    assert setup.wait_marked(name)["metadata"]["annotations"][SIGNED] == "true", setup.logs()
    wait_until(lambda: spire.server.show(spiffe_id) == [], what="the entry deleted", timeout=30)


def test_the_operator_signs_with_its_own_svid_and_a_timestamp_the_gate_admits(
    setup: Setup, spire: Spire, tsa, registry_plain, policy_dir, data_file, tmp_path: Path
) -> None:
    operator_id = f"spiffe://{TD}/ns/{setup.namespace}/sa/provgate-signer"
    spire.issue(operator_id)  # the test process's uid: the operator process gets it from the agent too
    repo, digest = push_image(registry_plain)
    setup.configure(
        {
            "artifacts.taskrun.storage": "oci",
            "artifacts.taskrun.signer": "spire",
            "artifacts.pipelinerun.signer": "none",
            "provgate.spire.socket": spire.workload_socket,
            "provgate.signers.spire.spiffe-id": operator_id,
            "provgate.signers.spire.tsa-url": tsa.url,
        }
    )
    setup.start()
    new_taskrun(setup.kube.api, setup.runs, "svid-signed")
    complete_taskrun(setup.kube.api, setup.runs, "svid-signed", results=image_results(repo, digest))
    assert setup.wait_marked("svid-signed")["metadata"]["annotations"][SIGNED] == "true", setup.logs()

    bundle = spire.server.write_bundle(tmp_path / "bundle.pem")
    gate = subprocess.run(
        [
            str(Path(sys.executable).parent / "gate"),
            "verify",
            f"{repo}@{digest}",
            "--trust-bundle",
            str(bundle),
            "--spiffe-id",
            operator_id,
            "--tsa-certs",
            str(tsa.chain_file),
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
