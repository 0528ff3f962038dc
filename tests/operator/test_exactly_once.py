"""Exactly once: the operator killed (SIGKILL) in the middle of a batch of 50 runs and started again, and
two replicas of which the leader is killed: afterwards every run is marked signed once and every image
carries exactly one attestation (counted in the registry, independently of the code under test)."""

from __future__ import annotations

import time

from tests.infra.kube import wait_until
from tests.infra.tekton import TASKRUNS, create_run, taskrun_status
from tests.operator.conftest import SIGNED, Setup, att_layers, image_results, push_image

CONFIG = {"artifacts.taskrun.format": "slsa/v1", "artifacts.taskrun.storage": "oci,tekton"}
RUNS = 50


def create_batch(setup: Setup, registry) -> dict[str, tuple[str, str]]:
    images = {f"run-{i:02d}": push_image(registry, f"app{i:02d}") for i in range(RUNS)}
    for name, (repo, digest) in images.items():
        body = {
            "apiVersion": "tekton.dev/v1",
            "kind": "TaskRun",
            "metadata": {"name": name},
            "spec": {"taskRef": {"name": "build"}},
            "status": taskrun_status(name, results=image_results(repo, digest)),
        }
        create_run(setup.kube.api, setup.runs, body)
    return images


def marks(setup: Setup) -> dict[str, str]:
    return {
        r["metadata"]["name"]: (r["metadata"].get("annotations") or {}).get(SIGNED, "")
        for r in TASKRUNS.list(setup.kube.api, setup.runs)
    }


def wait_some_signed(setup: Setup, least: int) -> None:
    wait_until(
        lambda: least <= sum(v == "true" for v in marks(setup).values()) < RUNS,
        what=f"at least {least} of {RUNS} runs signed, not all",
        timeout=120,
        interval=0.05,
    )


def check_exactly_once(setup: Setup, registry, images: dict[str, tuple[str, str]]) -> None:
    wait_until(
        lambda: all(v == "true" for v in marks(setup).values()),
        what="every run signed",
        timeout=180,
        interval=0.5,
    )
    counts = {name: len(att_layers(registry, repo, digest)) for name, (repo, digest) in images.items()}
    assert counts == dict.fromkeys(images, 1), setup.logs()


def test_a_kill_in_the_middle_of_a_batch_loses_and_duplicates_nothing(setup: Setup, registry_plain) -> None:
    # the writer's confirmation wait (a second between storing and marking) gives the test a window
    # to kill the operator in; what is tested, recognising the stored attestation, does not depend on it
    setup.configure({**CONFIG, "provgate.storage.oci.confirm-writes": "true"})
    first = setup.start("--workers", "8")
    images = create_batch(setup, registry_plain)
    wait_some_signed(setup, 5)

    def stored_not_marked() -> list[str]:
        now = marks(setup)
        return [n for n, image in images.items() if now[n] != "true" and att_layers(registry_plain, *image)]

    # kill while some attestation is in the registry and its run not marked yet: the restart must
    # recognise it instead of storing it again
    wait_until(stored_not_marked, what="a run stored but not marked", timeout=60, interval=0.02)
    first.kill()
    interrupted = stored_not_marked()
    assert interrupted, "the kill came too late to interrupt an attestation"
    setup.start("--workers", "8")
    check_exactly_once(setup, registry_plain, images)
    # what the kill interrupted between storing and marking was not stored a second time
    for name in interrupted:
        assert len(att_layers(registry_plain, *images[name])) == 1


def test_two_replicas_attest_each_run_once_also_when_the_leader_dies(setup: Setup, registry_plain) -> None:
    setup.configure(CONFIG)
    lease = ("--lease-duration", "4")
    one = setup.start(*lease, leader_election=True)
    two = setup.start(*lease, leader_election=True, wait=False)
    time.sleep(2)
    assert [one.ready(), two.ready()] == [True, False]  # the second waits for the Lease
    images = create_batch(setup, registry_plain)
    wait_some_signed(setup, 5)
    one.kill()
    two.wait_ready(timeout=60)  # takes over once the Lease expires
    check_exactly_once(setup, registry_plain, images)
    assert two.metric("watcher_taskrun_marked_signed_total") > 0
