"""Registry credentials as Chains finds them (a registry with htpasswd and TLS), retries with Chains'
``chains.tekton.dev/retries``, registry outages, and bad runs: every failure ends in an Event and either
one attestation or ``signed: failed``, never a crash loop; credentials never leave the registry client."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from tests.infra.kube import wait_until
from tests.infra.registry import PASSWORD
from tests.infra.tekton import complete_taskrun, create_run, new_taskrun, taskrun_status
from tests.operator.conftest import SIGNED, Setup, att_layers, image_results, push_image
from tests.operator.proxy import proxy

CONFIG = {
    "artifacts.taskrun.format": "slsa/v1",
    "artifacts.taskrun.storage": "oci,tekton",
    "provgate.retry.delay": "0.2",
}


def docker_secret(name: str, host: str, username: str, password: str, *, legacy: bool = False) -> dict:
    auth = base64.b64encode(f"{username}:{password}".encode()).decode()
    if legacy:
        kind, key, doc = "kubernetes.io/dockercfg", ".dockercfg", {host: {"auth": auth}}
    else:
        kind, key, doc = (
            "kubernetes.io/dockerconfigjson",
            ".dockerconfigjson",
            {"auths": {host: {"auth": auth}}},
        )
    return {
        "metadata": {"name": name},
        "type": kind,
        "data": {key: base64.b64encode(json.dumps(doc).encode()).decode()},
    }


def tls_config(registry) -> dict[str, str]:
    return {**CONFIG, "provgate.registry.ca-file": registry.ca_file}


def test_credentials_from_the_service_accounts_secret_push_to_a_registry_with_tls_and_htpasswd(
    setup: Setup, registry_tls_auth
) -> None:
    repo, digest = push_image(registry_tls_auth)
    core = setup.core
    core.create_namespaced_secret(
        setup.runs, docker_secret("push", registry_tls_auth.host, registry_tls_auth.username, PASSWORD)
    )
    core.create_namespaced_service_account(
        setup.runs, {"metadata": {"name": "builder"}, "secrets": [{"name": "push"}]}
    )
    setup.configure(tls_config(registry_tls_auth))
    setup.start()
    run = {
        "apiVersion": "tekton.dev/v1",
        "kind": "TaskRun",
        "metadata": {"name": "build"},
        "spec": {"taskRef": {"name": "build"}, "serviceAccountName": "builder"},
        "status": taskrun_status("build", results=image_results(repo, digest)),
    }
    create_run(setup.kube.api, setup.runs, run)
    marked = setup.wait_marked("build")
    assert marked["metadata"]["annotations"][SIGNED] == "true", setup.logs()
    assert len(att_layers(registry_tls_auth, repo, digest)) == 1
    assert PASSWORD not in setup.logs()


def test_a_dockercfg_pull_secret_of_the_pod_template_is_used_too(setup: Setup, registry_tls_auth) -> None:
    repo, digest = push_image(registry_tls_auth)
    setup.core.create_namespaced_secret(
        setup.runs,
        docker_secret("legacy", registry_tls_auth.host, registry_tls_auth.username, PASSWORD, legacy=True),
    )
    setup.configure(tls_config(registry_tls_auth))
    setup.start()
    run = {
        "apiVersion": "tekton.dev/v1",
        "kind": "TaskRun",
        "metadata": {"name": "build"},
        "spec": {"taskRef": {"name": "build"}, "podTemplate": {"imagePullSecrets": [{"name": "legacy"}]}},
        "status": taskrun_status("build", results=image_results(repo, digest)),
    }
    create_run(setup.kube.api, setup.runs, run)
    assert setup.wait_marked("build")["metadata"]["annotations"][SIGNED] == "true", setup.logs()
    assert len(att_layers(registry_tls_auth, repo, digest)) == 1


def test_without_credentials_it_retries_then_marks_the_run_failed_with_a_clear_event(
    setup: Setup, registry_tls_auth
) -> None:
    repo, digest = push_image(registry_tls_auth)
    # a secret with a wrong password, so the Event can name where it looked; never its content
    setup.core.create_namespaced_secret(
        setup.runs, docker_secret("stale", registry_tls_auth.host, registry_tls_auth.username, "not-it")
    )
    setup.core.create_namespaced_service_account(
        setup.runs, {"metadata": {"name": "builder"}, "imagePullSecrets": [{"name": "stale"}]}
    )
    setup.configure(tls_config(registry_tls_auth))
    setup.start()
    run = {
        "apiVersion": "tekton.dev/v1",
        "kind": "TaskRun",
        "metadata": {"name": "build"},
        "spec": {"taskRef": {"name": "build"}, "serviceAccountName": "builder"},
        "status": taskrun_status("build", results=image_results(repo, digest)),
    }
    create_run(setup.kube.api, setup.runs, run)
    marked = setup.wait_marked("build", timeout=90)
    notes = marked["metadata"]["annotations"]
    assert notes[SIGNED] == "failed"
    assert notes["chains.tekton.dev/retries"] == "3"
    assert "gave up after 4 attempts" in notes["provgate.dev/failure"]
    retries = [e for e in setup.events("build") if e["reason"] == "RegistryCredentials"]
    assert len(retries) == 4
    assert "ServiceAccount builder" in retries[0]["message"] and "stale" in retries[0]["message"]
    assert att_layers(registry_tls_auth, repo, digest) == []
    for text in (json.dumps(notes), json.dumps(setup.events("build")), setup.logs()):
        assert "not-it" not in text and base64.b64encode(b"provgate:not-it").decode() not in text


def test_a_registry_down_for_a_while_is_retried_and_the_run_signed_once(setup: Setup, registry_plain) -> None:
    repo, digest = push_image(registry_plain)
    with proxy(registry_plain.host) as front:
        front.up.clear()
        image = repo.replace(registry_plain.host, front.host)
        setup.configure(CONFIG)
        setup.start()
        new_taskrun(setup.kube.api, setup.runs, "build")
        complete_taskrun(setup.kube.api, setup.runs, "build", results=image_results(image, digest))
        setup.wait_event("build", "AttestationRetry")
        front.up.set()
        marked = setup.wait_marked("build", timeout=90)
    assert marked["metadata"]["annotations"][SIGNED] == "true", setup.logs()
    assert len(att_layers(registry_plain, repo, digest)) == 1


def test_a_registry_that_stays_down_ends_in_failed_after_the_retries(setup: Setup, registry_plain) -> None:
    repo, digest = push_image(registry_plain)
    with proxy(registry_plain.host) as front:
        front.up.clear()
        image = repo.replace(registry_plain.host, front.host)
        setup.configure(CONFIG)
        operator = setup.start()
        new_taskrun(setup.kube.api, setup.runs, "build")
        complete_taskrun(setup.kube.api, setup.runs, "build", results=image_results(image, digest))
        marked = setup.wait_marked("build", timeout=120)
    notes = marked["metadata"]["annotations"]
    assert notes[SIGNED] == "failed" and notes["chains.tekton.dev/retries"] == "3"
    assert setup.wait_event("build", "AttestationFailed")["type"] == "Warning"
    assert operator.metric("watcher_taskrun_signing_failures_total", error_type="storage") == 5
    assert operator.proc.poll() is None


def test_bad_runs_are_marked_failed_with_an_event_and_the_operator_carries_on(setup: Setup) -> None:
    # slsa/v2alpha3 carries every result in the provenance: a 1.2 MB one cannot go into annotations
    setup.configure({**CONFIG, "artifacts.taskrun.format": "slsa/v2alpha3"})
    operator = setup.start()
    # what Tekton's schema lets through but no run Tekton writes looks like: a timeout that is no Go
    # duration, and a digest result that is no digest
    malformed = {
        "apiVersion": "tekton.dev/v1",
        "kind": "TaskRun",
        "metadata": {"name": "malformed"},
        "spec": {"taskRef": {"name": "build"}, "timeout": "until lunch"},
        "status": taskrun_status(
            "malformed", results={"IMAGE_URL": "registry.example/app", "IMAGE_DIGEST": "sha256:not-hex"}
        ),
    }
    create_run(setup.kube.api, setup.runs, malformed)
    huge = "x" * 1_200_000
    new_taskrun(setup.kube.api, setup.runs, "huge")
    complete_taskrun(setup.kube.api, setup.runs, "huge", results={"LOG": huge})
    new_taskrun(setup.kube.api, setup.runs, "fine")
    complete_taskrun(setup.kube.api, setup.runs, "fine", results={"X": "y"})

    for name in ("malformed", "huge"):
        notes = setup.wait_marked(name)["metadata"]["annotations"]
        assert notes[SIGNED] == "failed", (name, setup.logs())
        event = setup.wait_event(name, "AttestationFailed")
        assert event["type"] == "Warning" and len(event["message"]) <= 1024
    assert (
        "spec.timeout must be a Go duration" in setup.wait_event("malformed", "AttestationFailed")["message"]
    )
    assert setup.wait_marked("fine")["metadata"]["annotations"][SIGNED] == "true"
    assert operator.proc.poll() is None and operator.ready()


def test_the_operator_never_reads_credentials_from_its_own_docker_config(
    setup: Setup, registry_tls_auth, tmp_path: Path
) -> None:
    repo, digest = push_image(registry_tls_auth)
    own = tmp_path / "docker"
    own.mkdir()
    auth = base64.b64encode(f"{registry_tls_auth.username}:{PASSWORD}".encode()).decode()
    (own / "config.json").write_text(json.dumps({"auths": {registry_tls_auth.host: {"auth": auth}}}))
    setup.configure({**tls_config(registry_tls_auth), "provgate.retry.delay": "0.1"})
    setup.start(env={"DOCKER_CONFIG": str(own)})
    new_taskrun(setup.kube.api, setup.runs, "build")
    complete_taskrun(setup.kube.api, setup.runs, "build", results=image_results(repo, digest))
    assert setup.wait_marked("build", timeout=90)["metadata"]["annotations"][SIGNED] == "failed"
    assert att_layers(registry_tls_auth, repo, digest) == []
    wait_until(lambda: setup.events("build"), what="events")
