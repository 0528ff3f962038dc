"""config/gate renders with the real kustomize, its gate.yaml is a valid configuration, and what it
renders applies to the real API server: the webhook configurations as the API server stores them, fail
closed while no gate answers."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, utils
from kubernetes.client.exceptions import ApiException

from gate.serve.config import parse_config
from tests.infra import REPO, require_binary
from tests.infra.kube import KubeCluster, api_message, dry_run_pod, wait_until

pytestmark = pytest.mark.slow

CONFIG = REPO / "config"
# What needs a controller or CRDs the test API server does not have.
NOT_APPLIED = {"Issuer", "Certificate"}


def render(overlay: str) -> list[dict[str, Any]]:
    kustomize = require_binary("kustomize")
    out = subprocess.run(
        [str(kustomize), "build", str(CONFIG / "gate" / overlay)], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def by_kind(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["kind"]: d for d in docs}


def test_the_base_renders_what_the_gate_needs() -> None:
    docs = by_kind(render("base"))
    deployment = docs["Deployment"]
    assert deployment["spec"]["replicas"] == 2
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["requests"] and container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert docs["PodDisruptionBudget"]["spec"]["minAvailable"] == 1
    [rule] = docs["ClusterRole"]["rules"]
    assert rule == {"apiGroups": [""], "resources": ["secrets", "serviceaccounts"], "verbs": ["get"]}
    gate_yaml = next(d for d in render("base") if d["metadata"]["name"] == "provgate-gate-config")
    config = parse_config(
        yaml.safe_load(gate_yaml["data"]["gate.yaml"]), Path("/etc/provgate/config/gate.yaml")
    )
    assert set(config.exempt_namespaces) == {"kube-system", "provgate-system"}
    # a set count, never auto: a pod without a CPU limit would start one worker per CPU of the node
    assert not config.workers_auto and config.workers == 2
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        [hook] = docs[kind]["webhooks"]
        assert hook["admissionReviewVersions"] == ["v1"] and hook["sideEffects"] == "None"
        assert hook["failurePolicy"] == "Fail" and hook["matchPolicy"] == "Equivalent"
        # the gate's own deadline is shorter than the API server's
        assert config.verify_timeout < hook["timeoutSeconds"]
        [expr] = hook["namespaceSelector"]["matchExpressions"]
        assert expr["operator"] == "NotIn" and set(expr["values"]) == set(config.exempt_namespaces)


def test_the_cert_manager_overlay_injects_the_ca() -> None:
    docs = render("cert-manager")
    kinds = by_kind(docs)
    assert kinds["Certificate"]["spec"]["secretName"] == "provgate-gate-tls"
    for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
        annotations = kinds[kind]["metadata"]["annotations"]
        assert annotations["cert-manager.io/inject-ca-from"] == "provgate-system/provgate-gate"


def test_the_rendered_manifests_apply_and_the_webhooks_fail_closed(kube: KubeCluster) -> None:
    docs = [d for d in render("cert-manager") if d["kind"] not in NOT_APPLIED]
    admission = client.AdmissionregistrationV1Api(kube.api)
    hooks = [d for d in docs if d["kind"].endswith("WebhookConfiguration")]
    try:
        for doc in docs:
            utils.create_from_dict(kube.api, doc)
        stored = admission.read_validating_webhook_configuration("provgate-gate")
        assert stored.webhooks[0].client_config.service.name == "provgate-gate"
        assert client.AppsV1Api(kube.api).read_namespaced_deployment("provgate-gate", "provgate-system")
        # No gate runs behind the Service: failurePolicy Fail refuses every Pod outside the exempt ones.
        ns = kube.create_namespace("manifests")

        def refused_pod() -> ApiException | None:
            outcome = dry_run_pod(kube.api, ns, "registry.example/app:v1")
            failed = isinstance(outcome, ApiException) and "failed calling webhook" in api_message(outcome)
            return outcome if failed else None

        refused = wait_until(refused_pod, what="the rendered webhooks to refuse a Pod")
        assert "gate.provgate.dev" in api_message(refused)
        assert not isinstance(dry_run_pod(kube.api, "kube-system", "registry.example/app:v1"), ApiException)
    finally:
        for doc in hooks:
            delete = (
                admission.delete_validating_webhook_configuration
                if doc["kind"].startswith("Validating")
                else admission.delete_mutating_webhook_configuration
            )
            with contextlib.suppress(ApiException):
                delete(doc["metadata"]["name"])
    # Gone again for the other tests of this API server.
    wait_until(
        lambda: not isinstance(dry_run_pod(kube.api, ns, "registry.example/app:v1"), ApiException),
        what="the webhooks to be gone",
    )
