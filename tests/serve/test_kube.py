"""``gate serve`` behind the real API server: webhook configurations with ``clientConfig.url`` at the
gate on loopback, objects created through the API exactly as ``kubectl apply`` sends them."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.infra import free_port
from tests.infra.kube import (
    KubeCluster,
    api_message,
    dry_run_pod,
    registered_webhook,
    wait_for_webhook,
    wait_until,
    webhook_configuration,
)
from tests.infra.registry import RegistryServer
from tests.serve.conftest import RULE_DATA, GateProcess, Signing, deployment, push_signed

pytestmark = pytest.mark.slow


def register(stack: ExitStack, kube: KubeCluster, gate_url: str, ca_pem: bytes, namespace: str) -> str:
    """Both webhooks of ``gate_url`` for ``namespace`` only (the API server is shared by the worker's
    tests); returns the validating webhook's name, which its denials quote."""
    mutating = webhook_configuration(
        "mutating", f"m-{namespace}", f"{gate_url}/mutate", ca_pem, namespaces=[namespace]
    )
    validating = webhook_configuration(
        "validating", f"v-{namespace}", f"{gate_url}/validate", ca_pem, namespaces=[namespace]
    )
    stack.enter_context(registered_webhook(kube.api, mutating))
    name = stack.enter_context(registered_webhook(kube.api, validating))
    # Ready once a dry run reaches the gate: a denied unresolvable image says "could not decide".
    probe = f"127.0.0.1:{free_port()}/probe:v1"
    wait_for_webhook(
        lambda: dry_run_pod(kube.api, namespace, probe),
        lambda outcome: isinstance(outcome, ApiException) and "provgate denied" in api_message(outcome),
    )
    return name


@pytest.fixture
def webhooks(kube: KubeCluster, kube_namespace: str) -> Iterator[Callable[[GateProcess], str]]:
    with ExitStack() as stack:
        yield lambda gate: register(stack, kube, gate.url, gate.tls.ca_pem, kube_namespace)


@pytest.fixture
def gate(start_gate, tmp_path: Path, rule_data_file: Path) -> GateProcess:
    return start_gate(tmp_path, data=[str(rule_data_file)])


def apps(kube: KubeCluster) -> Any:
    return client.AppsV1Api(kube.api)


def denial(call: Callable[[], Any]) -> str:
    with pytest.raises(ApiException) as refused:
        call()
    return api_message(refused.value)


def test_a_deployment_with_good_provenance_is_admitted_and_pinned_and_bad_ones_are_denied(
    kube: KubeCluster,
    kube_namespace: str,
    gate: GateProcess,
    webhooks,
    registry_plain: RegistryServer,
    signing: Signing,
) -> None:
    name = webhooks(gate)
    ns = kube_namespace
    good, digest = push_signed(registry_plain, signing.trusted)
    created = apps(kube).create_namespaced_deployment(ns, deployment(good, name="good"))
    assert created.spec.template.spec.containers[0].image == f"{good}@{digest}"

    cases = {
        "no-scan": (push_signed(registry_plain, signing.trusted, sample="tep0084-no-scan"), "[tasks."),
        "untrusted": (
            push_signed(registry_plain, signing.untrusted),
            "[builtin.attestation.signature_check]",
        ),
        "tampered": (
            push_signed(registry_plain, signing.trusted, tamper=True),
            "[builtin.attestation.signature_check]",
        ),
        "unsigned": (push_signed(registry_plain, None), "[builtin.attestation.signature_check]"),
    }
    for label, ((image, image_digest), code) in cases.items():
        body = deployment(image, name=label)
        message = denial(lambda body=body: apps(kube).create_namespaced_deployment(ns, body))
        assert message.startswith(f'admission webhook "{name}" denied the request: provgate denied 1 of 1'), (
            message
        )
        assert f"- {image}@{image_digest} (container c0): " in message and code in message, message
    assert [d.metadata.name for d in apps(kube).list_namespaced_deployment(ns).items] == ["good"]


def test_gate_down_is_denied_by_failure_policy_fail(kube: KubeCluster, kube_namespace: str, tls) -> None:
    url = f"https://127.0.0.1:{free_port()}/validate"
    configuration = webhook_configuration(
        "validating", f"down-{kube_namespace}", url, tls.ca_pem, namespaces=[kube_namespace]
    )
    with registered_webhook(kube.api, configuration) as name:
        outcome = wait_for_webhook(
            lambda: dry_run_pod(kube.api, kube_namespace, "127.0.0.1:5000/app:v1"),
            lambda o: isinstance(o, ApiException) and "failed calling webhook" in api_message(o),
        )
        assert f'failed calling webhook "{name}"' in api_message(outcome) and outcome.status == 500


def test_an_exempt_namespace_is_admitted_untouched(
    kube: KubeCluster, kube_namespace: str, start_gate, tmp_path: Path, registry_plain, tls
) -> None:
    gate = start_gate(tmp_path, namespaces={"exempt": [kube_namespace]})
    configuration = webhook_configuration(
        "validating", f"ex-{kube_namespace}", f"{gate.url}/validate", tls.ca_pem, namespaces=[kube_namespace]
    )
    unsigned, _ = push_signed(registry_plain, None)
    with registered_webhook(kube.api, configuration):
        # the webhook is called (a dry run reaches it) and admits
        def reached() -> bool:
            assert not isinstance(dry_run_pod(kube.api, kube_namespace, unsigned), ApiException)
            return gate.metric("provgate_admission_requests_total", decision="exempt") > 0

        wait_until(reached, what="the webhook to reach the gate", retry_on=())
        created = apps(kube).create_namespaced_deployment(kube_namespace, deployment(unsigned))
    assert created.spec.template.spec.containers[0].image == unsigned


def test_an_update_that_changes_only_a_label_is_not_verified_again(
    kube: KubeCluster, kube_namespace: str, start_gate, tmp_path: Path, webhooks, registry_plain, signing
) -> None:
    data = tmp_path / "data.yaml"
    data.write_text(yaml.safe_dump(RULE_DATA))
    gate = start_gate(tmp_path, data=[str(data)])
    webhooks(gate)
    good, _ = push_signed(registry_plain, signing.trusted)
    apps(kube).create_namespaced_deployment(kube_namespace, deployment(good))
    # From now on every new verification denies: the source repository is no longer allowed.
    policy = gate.client.get("/readyz").json()["policy"]
    data.write_text(yaml.safe_dump({"rule_data": {"allowed_source_repos": ["https://git.example/none"]}}))
    wait_until(lambda: gate.client.get("/readyz").json()["policy"] != policy, what="the reload")
    verifications = gate.metric("provgate_verifications_total")
    patched = apps(kube).patch_namespaced_deployment(
        "app", kube_namespace, {"metadata": {"labels": {"x": "y"}}}
    )
    assert patched.metadata.labels["x"] == "y"
    assert gate.metric("provgate_verifications_total") == verifications
    other, _ = push_signed(registry_plain, signing.trusted)
    message = denial(
        lambda: apps(kube).patch_namespaced_deployment(
            "app",
            kube_namespace,
            {"spec": {"template": {"spec": {"containers": [{"name": "c0", "image": other}]}}}},
        )
    )
    assert "provgate denied 1 of 1" in message and other in message


def _pod_template(image: str) -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": "x"}},
        "spec": {"restartPolicy": "Never", "containers": [{"name": "c0", "image": image}]},
    }


def _workloads(image: str) -> dict[str, tuple[Callable[..., Any], dict[str, Any], Callable[[Any], str]]]:
    selector = {"matchLabels": {"app": "x"}}
    template = _pod_template(image)
    always = {**template, "spec": {**template["spec"], "restartPolicy": "Always"}}
    batch = client.BatchV1Api
    return {
        "CronJob": (
            lambda api: batch(api).create_namespaced_cron_job,
            {
                "apiVersion": "batch/v1",
                "kind": "CronJob",
                "metadata": {"name": "cj"},
                "spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": template}}},
            },
            lambda o: o.spec.job_template.spec.template.spec.containers[0].image,
        ),
        "Job": (
            lambda api: batch(api).create_namespaced_job,
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "metadata": {"name": "job"},
                "spec": {"template": template},
            },
            lambda o: o.spec.template.spec.containers[0].image,
        ),
        "StatefulSet": (
            lambda api: client.AppsV1Api(api).create_namespaced_stateful_set,
            {
                "apiVersion": "apps/v1",
                "kind": "StatefulSet",
                "metadata": {"name": "sts"},
                "spec": {"selector": selector, "serviceName": "sts", "template": always},
            },
            lambda o: o.spec.template.spec.containers[0].image,
        ),
        "DaemonSet": (
            lambda api: client.AppsV1Api(api).create_namespaced_daemon_set,
            {
                "apiVersion": "apps/v1",
                "kind": "DaemonSet",
                "metadata": {"name": "ds"},
                "spec": {"selector": selector, "template": always},
            },
            lambda o: o.spec.template.spec.containers[0].image,
        ),
    }


def test_cronjob_job_statefulset_daemonset_and_ephemeral_containers(
    kube: KubeCluster, kube_namespace: str, gate: GateProcess, webhooks, registry_plain, signing
) -> None:
    webhooks(gate)
    ns = kube_namespace
    good, digest = push_signed(registry_plain, signing.trusted)
    bad, _ = push_signed(registry_plain, signing.untrusted)
    for kind, (create, body, image_of) in _workloads(good).items():
        created = create(kube.api)(ns, body)
        assert image_of(created) == f"{good}@{digest}", kind
    for kind, (create, body, _) in _workloads(bad).items():
        body["metadata"]["name"] += "-bad"
        message = denial(lambda create=create, body=body: create(kube.api)(ns, body))
        assert "provgate denied 1 of 1" in message and bad in message, kind
    core = client.CoreV1Api(kube.api)
    core.create_namespaced_pod(
        ns,
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c0", "image": f"{good}@{digest}"}]},
        },
    )

    def debug(image: str, name: str) -> Any:
        return core.patch_namespaced_pod_ephemeralcontainers(
            "p", ns, {"spec": {"ephemeralContainers": [{"name": name, "image": image}]}}
        )

    message = denial(lambda: debug(bad, "debug-bad"))
    assert (
        "provgate denied 1 of 1" in message
        and f"{bad}" in message
        and "ephemeral container debug-bad" in message
    )
    patched = debug(good, "debug")
    assert patched.spec.ephemeral_containers[0].image == f"{good}@{digest}"


def test_private_images_use_the_pods_and_service_accounts_pull_secrets(
    kube: KubeCluster,
    kube_namespace: str,
    start_gate,
    tmp_path: Path,
    webhooks,
    registry_tls_auth: RegistryServer,
    signing,
    rule_data_file,
) -> None:
    ns = kube_namespace
    rbac, core = client.RbacAuthorizationV1Api(kube.api), client.CoreV1Api(kube.api)
    # The gate reads them as its own ServiceAccount, with only get on secrets and serviceaccounts.
    role = f"provgate-gate-{ns}"
    rbac.create_cluster_role(
        {
            "metadata": {"name": role},
            "rules": [{"apiGroups": [""], "resources": ["secrets", "serviceaccounts"], "verbs": ["get"]}],
        }
    )
    rbac.create_cluster_role_binding(
        {
            "metadata": {"name": role},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"kind": "ServiceAccount", "name": "provgate-gate", "namespace": ns}],
        }
    )
    kubeconfig = kube.write_kubeconfig(kube.service_account_token(ns, "provgate-gate"))
    gate = start_gate(
        tmp_path,
        data=[str(rule_data_file)],
        registry={"caFile": registry_tls_auth.ca_file, "imagePullSecrets": True},
        kubeconfig=str(kubeconfig),
        env={"DOCKER_CONFIG": str(tmp_path / "no-docker-config")},
    )
    webhooks(gate)
    auth = base64.b64encode(f"{registry_tls_auth.username}:{registry_tls_auth.password}".encode()).decode()
    config_json = json.dumps({"auths": {registry_tls_auth.host: {"auth": auth}}})
    core.create_namespaced_secret(
        ns,
        {
            "metadata": {"name": "pull"},
            "type": "kubernetes.io/dockerconfigjson",
            "stringData": {".dockerconfigjson": config_json},
        },
    )
    image, digest = push_signed(registry_tls_auth, signing.trusted)
    spec = deployment(image, name="without")
    message = denial(lambda: apps(kube).create_namespaced_deployment(ns, spec))
    assert "could not decide" in message and registry_tls_auth.password not in message
    with_secret = deployment(image, name="with-secret")
    with_secret["spec"]["template"]["spec"]["imagePullSecrets"] = [{"name": "pull"}]
    created = apps(kube).create_namespaced_deployment(ns, with_secret)
    assert created.spec.template.spec.containers[0].image == f"{image}@{digest}"
    # The ServiceAccount's pull secrets count too: a second image, so nothing comes from the cache.
    core.create_namespaced_service_account(
        ns, {"metadata": {"name": "builder"}, "imagePullSecrets": [{"name": "pull"}]}
    )
    other, _ = push_signed(registry_tls_auth, signing.trusted)
    by_account = deployment(other, name="by-account")
    by_account["spec"]["template"]["spec"]["serviceAccountName"] = "builder"
    apps(kube).create_namespaced_deployment(ns, by_account)
    assert registry_tls_auth.password not in gate.log()
