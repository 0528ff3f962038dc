"""``config/signer`` renders with kustomize, applies to the real API server, and its RBAC is enough: the
operator running as the manifests' ServiceAccount (a token of it, least privilege) takes its Lease and
attests a run. The SPIFFE CSI overlay mounts the Workload API as Chains' authentication doc describes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, utils

from tests.infra import free_port, require_binary
from tests.infra.kube import KubeCluster, wait_until
from tests.infra.tekton import TASKRUNS, complete_taskrun, new_taskrun
from tests.operator.conftest import REPO, SIGNED, OperatorProcess, SigningKey, b64

NAMESPACE = "provgate-signer"


def render(path: str) -> list[dict[str, Any]]:
    done = subprocess.run(
        [str(require_binary("kustomize")), "build", str(REPO / path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def by_kind(objects: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    [found] = [o for o in objects if o["kind"] == kind]
    return found


def test_the_deployment_runs_non_root_read_only_with_probes() -> None:
    objects = render("config/signer/base")
    deployment = by_kind(objects, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["args"][:2] == ["run", "--configmap=$(POD_NAMESPACE)/chains-config"]
    assert not any(o["kind"] == "Secret" for o in objects)  # the signing key is never committed


def test_the_spiffe_csi_overlay_mounts_the_workload_api() -> None:
    deployment = by_kind(render("config/signer/overlays/spiffe-csi"), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "spiffe-workload-api"]
    assert volume["csi"] == {"driver": "csi.spiffe.io", "readOnly": True}
    [container] = pod["containers"]
    assert {
        "name": "spiffe-workload-api",
        "mountPath": "/spiffe-workload-api",
        "readOnly": True,
    } in container["volumeMounts"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["SPIFFE_ENDPOINT_SOCKET"] == "unix:///spiffe-workload-api/spire-agent.sock"


@pytest.mark.xdist_group("manifests")  # the base's namespace and ClusterRole are fixed names
def test_the_base_applies_and_its_rbac_is_enough_to_attest(
    kube: KubeCluster, kube_namespace: str, signing_key: SigningKey, tmp_path: Path
) -> None:
    objects = render("config/signer/base")
    utils.create_from_yaml(kube.api, yaml_objects=objects)
    core = client.CoreV1Api(kube.api)
    core.create_namespaced_secret(
        NAMESPACE,
        {
            "metadata": {"name": "signing-secrets"},
            "data": {
                "cosign.key": b64(signing_key.private_pem),
                "cosign.password": b64(signing_key.password),
            },
        },
    )
    core.patch_namespaced_config_map(
        "chains-config", NAMESPACE, {"data": {"artifacts.taskrun.storage": "tekton"}}
    )
    token = kube.service_account_token(NAMESPACE, "provgate-signer")
    log = tmp_path / "operator.log"
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "signer.cli",
                "run",
                f"--configmap={NAMESPACE}/chains-config",
                f"--namespace={NAMESPACE}",
                f"--watch-namespace={kube_namespace}",
                f"--http-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={
                "KUBECONFIG": str(kube.write_kubeconfig(token)),
                "PATH": "/usr/bin:/bin",
                "HOME": str(tmp_path),
            },
            cwd=REPO,
        )
    operator = OperatorProcess(proc, log, f"127.0.0.1:{port}")
    try:
        operator.wait_ready()  # it read its ConfigMap and Secret and took its Lease, as itself
        new_taskrun(kube.api, kube_namespace, "build")
        complete_taskrun(kube.api, kube_namespace, "build", results={"X": "y"})

        def marked() -> str:
            notes = TASKRUNS.get(kube.api, kube_namespace, "build")["metadata"].get("annotations") or {}
            return notes.get(SIGNED, "")

        assert wait_until(marked, what="the run marked", timeout=60) == "true", operator.tail()
        lease = client.CoordinationV1Api(kube.api).read_namespaced_lease("provgate-signer", NAMESPACE)
        assert lease.spec.holder_identity
        assert "Forbidden" not in operator.tail() and "forbidden" not in operator.tail()
    finally:
        operator.stop()
