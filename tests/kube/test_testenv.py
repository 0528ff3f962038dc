"""The shared Kubernetes test environment does what the operator and admission tests rely on: a real API
server that enforces RBAC and token authentication, Tekton's real schemas (runs completed through the
status subresource, v1beta1 readable), and admission webhooks at loopback HTTPS URLs that it really calls.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from signer import samples
from tests.infra import LoopbackHTTPServer
from tests.infra.kube import (
    USER,
    KubeCluster,
    Resource,
    api_message,
    denied_by,
    dry_run_pod,
    registered_webhook,
    wait_for_condition,
    wait_for_webhook,
    wait_until,
    webhook_configuration,
)
from tests.infra.tekton import (
    PIPELINERUNS,
    TASKRUNS,
    complete_pipelinerun,
    complete_taskrun,
    create_run,
    new_pipelinerun,
    new_taskrun,
    set_status,
    taskrun_status,
)
from tests.infra.tls import make_ca, make_server_cert

DIGEST = "sha256:" + "a" * 64


def _results(obj: dict[str, Any]) -> dict[str, Any]:
    return {r["name"]: r["value"] for r in obj["status"].get("results") or []}


# -- authentication and RBAC ---------------------------------------------------------------------------


def test_a_user_without_a_role_is_refused_until_one_is_bound(kube: KubeCluster, kube_namespace: str) -> None:
    ns = kube_namespace
    as_user = client.CoreV1Api(kube.client(kube.user_token))
    with pytest.raises(ApiException) as refused:
        as_user.list_namespaced_config_map(ns)
    assert refused.value.status == 403
    assert f'User "{USER}" cannot list resource "configmaps"' in api_message(refused.value)

    rbac = client.RbacAuthorizationV1Api(kube.api)
    rbac.create_namespaced_role(
        ns,
        {
            "metadata": {"name": "read-configmaps"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list"]}],
        },
    )
    rbac.create_namespaced_role_binding(
        ns,
        {
            "metadata": {"name": "user-reads-configmaps"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-configmaps"},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}],
        },
    )
    wait_until(lambda: as_user.list_namespaced_config_map(ns), what="the role binding to take effect")
    # ... and only what was bound: not writes, not other namespaces
    with pytest.raises(ApiException) as write:
        as_user.create_namespaced_config_map(ns, {"metadata": {"name": "x"}})
    with pytest.raises(ApiException) as elsewhere:
        as_user.list_namespaced_config_map("default")
    assert (write.value.status, elsewhere.value.status) == (403, 403)
    assert client.CoreV1Api(kube.api).list_namespaced_config_map(ns).items == []


def test_a_service_account_token_authenticates_as_that_service_account(
    kube: KubeCluster, kube_namespace: str
) -> None:
    token = kube.service_account_token(kube_namespace, "operator")
    api = kube.client(token)
    review = client.AuthenticationV1Api(api).create_self_subject_review(
        {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    )
    assert review.status.user_info.username == f"system:serviceaccount:{kube_namespace}:operator"
    with pytest.raises(ApiException) as refused:
        TASKRUNS.list(api, kube_namespace)
    assert refused.value.status == 403


def test_an_unknown_token_is_unauthorized(kube: KubeCluster) -> None:
    with pytest.raises(ApiException) as refused:
        client.CoreV1Api(kube.client("not-a-token-the-server-knows")).list_namespace()
    assert refused.value.status == 401


def test_the_kubeconfig_is_json_for_the_admin(kube: KubeCluster) -> None:
    config = json.loads(kube.kubeconfig.read_text())
    assert config["clusters"][0]["cluster"]["server"] == kube.url
    assert config["users"][0]["user"]["token"] == kube.admin_token
    names = {n.metadata.name for n in client.CoreV1Api(kube.api).list_namespace().items}
    assert {"default", "kube-system"} <= names


# -- Tekton's real CRDs ------------------------------------------------------------------------------


def test_a_taskrun_is_completed_through_the_status_subresource(
    kube: KubeCluster, kube_namespace: str
) -> None:
    new_taskrun(kube.api, kube_namespace, "build-1", params={"revision": "main"})
    complete_taskrun(
        kube.api,
        kube_namespace,
        "build-1",
        results={"IMAGE_URL": "registry.example/app", "IMAGE_DIGEST": DIGEST},
    )
    stored = wait_for_condition(kube.api, TASKRUNS, kube_namespace, "build-1", "Succeeded", "True")
    assert stored["status"]["podName"] == "build-1-pod"
    assert _results(stored) == {"IMAGE_URL": "registry.example/app", "IMAGE_DIGEST": DIGEST}
    assert stored["spec"]["params"] == [{"name": "revision", "value": "main"}]


def test_a_status_sent_with_the_create_is_dropped(kube: KubeCluster, kube_namespace: str) -> None:
    run = {
        "apiVersion": "tekton.dev/v1",
        "kind": "TaskRun",
        "metadata": {"name": "with-status"},
        "spec": {"taskRef": {"name": "build"}},
        "status": taskrun_status("with-status"),
    }
    created = TASKRUNS.create(kube.api, kube_namespace, run)
    assert not (created.get("status") or {}).get("conditions")


def test_a_taskrun_status_without_pod_name_is_refused_and_nothing_is_written(
    kube: KubeCluster, kube_namespace: str
) -> None:
    new_taskrun(kube.api, kube_namespace, "no-pod")
    status = taskrun_status("no-pod")
    del status["podName"]
    with pytest.raises(ApiException) as refused:
        set_status(kube.api, TASKRUNS, kube_namespace, "no-pod", status)
    assert refused.value.status == 422
    assert "podName" in api_message(refused.value)
    stored = TASKRUNS.get(kube.api, kube_namespace, "no-pod")
    assert not (stored.get("status") or {}).get("conditions")


def test_unknown_status_fields_are_pruned(kube: KubeCluster, kube_namespace: str) -> None:
    new_taskrun(kube.api, kube_namespace, "pruned")
    stored = complete_taskrun(kube.api, kube_namespace, "pruned", handlerResult={"done": True})
    assert "handlerResult" not in stored["status"]
    assert stored["status"]["podName"] == "pruned-pod"


def test_runs_are_readable_at_v1beta1(kube: KubeCluster, kube_namespace: str) -> None:
    new_taskrun(kube.api, kube_namespace, "old-client")
    complete_taskrun(kube.api, kube_namespace, "old-client", results={"IMAGE_DIGEST": DIGEST})
    new_pipelinerun(kube.api, kube_namespace, "old-pipeline")
    got = Resource("tekton.dev", "v1beta1", "taskruns").get(kube.api, kube_namespace, "old-client")
    assert got["apiVersion"] == "tekton.dev/v1beta1"
    assert got["metadata"]["name"] == "old-client"
    listed = Resource("tekton.dev", "v1beta1", "pipelineruns").list(kube.api, kube_namespace)
    assert [p["metadata"]["name"] for p in listed] == ["old-pipeline"]


def test_the_bundled_tep0084_sample_is_accepted_by_the_real_schema(
    kube: KubeCluster, kube_namespace: str
) -> None:
    pipelinerun, taskruns = samples.load(
        "tep0084-pipelinerun", image_url="registry.example/app", image_digest=DIGEST
    )
    for taskrun in taskruns:
        stored = create_run(kube.api, kube_namespace, taskrun)
        assert stored["status"]["podName"] == taskrun["status"]["podName"]
        assert _results(stored) == _results(taskrun)
    stored = create_run(kube.api, kube_namespace, pipelinerun)
    assert stored["status"]["childReferences"] == pipelinerun["status"]["childReferences"]
    assert _results(stored)["IMAGE_DIGEST"] == DIGEST
    assert stored["metadata"]["annotations"] == pipelinerun["metadata"]["annotations"]


def test_a_pipelinerun_is_completed_with_its_children(kube: KubeCluster, kube_namespace: str) -> None:
    new_pipelinerun(kube.api, kube_namespace, "release")
    for task in ("clone", "build"):
        new_taskrun(kube.api, kube_namespace, f"release-{task}")
        complete_taskrun(kube.api, kube_namespace, f"release-{task}")
    complete_pipelinerun(
        kube.api, kube_namespace, "release", children=[("clone", "release-clone"), ("build", "release-build")]
    )
    stored = wait_for_condition(kube.api, PIPELINERUNS, kube_namespace, "release")
    assert [c["name"] for c in stored["status"]["childReferences"]] == ["release-clone", "release-build"]


# -- admission webhooks ----------------------------------------------------------------------------


@dataclass
class AdmissionServer:
    """A minimal validating webhook: denies Pods whose image contains "denied", records every review."""

    url: str
    ca_pem: bytes
    reviews: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def _handler(server: AdmissionServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # TCP_NODELAY: headers and body go out in separate writes; with Nagle's algorithm and the API
        # server's delayed ACK the body would wait ~40 ms.
        disable_nagle_algorithm = True

        def do_POST(self) -> None:
            review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            server.reviews.append((self.path, review))
            request = review["request"]
            images = [c["image"] for c in request["object"]["spec"]["containers"]]
            response: dict[str, Any] = {
                "uid": request["uid"],
                "allowed": not any("denied" in i for i in images),
            }
            if not response["allowed"]:
                response["status"] = {"code": 403, "message": f"image {images[0]} is not allowed"}
            body = json.dumps(
                {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@pytest.fixture
def admission_server(tmp_path: Path) -> Iterator[AdmissionServer]:
    import ssl

    ca_file, ca_key, ca_cert = make_ca(tmp_path / "ca", "webhook CA")
    cert, key = make_server_cert(tmp_path, ca_key, ca_cert)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    state = AdmissionServer(url="", ca_pem=ca_file.read_bytes())
    httpd = LoopbackHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    state.url = f"https://127.0.0.1:{httpd.server_address[1]}/validate"
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield state
    httpd.shutdown()
    httpd.server_close()


def test_a_webhook_at_a_loopback_https_url_is_called(
    kube: KubeCluster, kube_namespace: str, admission_server: AdmissionServer
) -> None:
    core = client.CoreV1Api(kube.api)
    config = webhook_configuration(
        "validating",
        f"smoke-{kube_namespace}",
        admission_server.url,
        admission_server.ca_pem,
        namespaces=[kube_namespace],
    )
    with registered_webhook(kube.api, config) as webhook:
        probe = wait_for_webhook(
            lambda: dry_run_pod(kube.api, kube_namespace, "probe/denied:1"), denied_by(webhook)
        )
        assert api_message(probe).endswith("denied the request: image probe/denied:1 is not allowed")
        path, review = admission_server.reviews[-1]
        assert path.startswith("/validate?timeout=")
        assert review["request"]["dryRun"] is True

        core.create_namespaced_pod(
            kube_namespace,
            {
                "metadata": {"name": "ok"},
                "spec": {"containers": [{"name": "app", "image": "registry.example/ok:1"}]},
            },
        )
        _, review = admission_server.reviews[-1]
        assert (review["request"]["operation"], review["request"]["name"]) == ("CREATE", "ok")
        assert review["request"]["dryRun"] is False

        with pytest.raises(ApiException) as denied:
            core.create_namespaced_pod(
                kube_namespace,
                {
                    "metadata": {"name": "bad"},
                    "spec": {"containers": [{"name": "app", "image": "x/denied:2"}]},
                },
            )
        assert denied.value.status == 403
        assert (
            f'admission webhook "{webhook}" denied the request: image x/denied:2 is not allowed'
            in api_message(denied.value)
        )
        names = [p.metadata.name for p in core.list_namespaced_pod(kube_namespace).items]
        assert names == ["ok"]
    # deleted on exit: the API server stops calling it
    wait_until(
        lambda: not isinstance(dry_run_pod(kube.api, kube_namespace, "y/denied:3"), ApiException),
        what="the webhook configuration's removal to take effect",
    )
    calls = len(admission_server.reviews)
    core.create_namespaced_pod(
        kube_namespace,
        {"metadata": {"name": "after"}, "spec": {"containers": [{"name": "app", "image": "z/denied:4"}]}},
    )
    assert len(admission_server.reviews) == calls
