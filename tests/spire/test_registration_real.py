"""Per-TaskRun SPIRE registration (signer.spire.registration) against the real SPIRE server.

What a test sees of the server comes from ``spire-server entry show -output json`` run by the fixture,
not from the module under test.
"""

from __future__ import annotations

import copy
import os
import time

import pytest

from attestation.errors import InputError, LimitExceeded
from signer.spire.registration import (
    SpireServerCli,
    SpireServerError,
    TaskRunEntry,
    deregister_taskrun,
    register_taskrun,
    taskrun_entry,
)
from tests.infra.spire import SpireServer, run_spire_server

pytestmark = pytest.mark.xdist_group("spire")

TD = "example.org"
TASKRUN = {
    "apiVersion": "tekton.dev/v1",
    "kind": "TaskRun",
    "metadata": {"name": "build-7", "namespace": "ci", "uid": "11111111-2222-3333-4444-555555555555"},
    "status": {"podName": "build-7-pod"},
}
POD_UID = "0b7c1a5e-1111-2222-3333-444455556666"


@pytest.fixture(scope="module")
def server() -> SpireServer:
    # Only the server is needed; a private one keeps these entries out of the agent tests' way.
    with run_spire_server(TD) as (running, _):
        yield running


@pytest.fixture(scope="module")
def cli(server: SpireServer) -> SpireServerCli:
    return SpireServerCli(server.socket, binary=str(server.binary), timeout=30)


def run(name: str, pod: str | None = None) -> dict:
    obj = copy.deepcopy(TASKRUN)
    obj["metadata"]["name"] = name
    obj["status"]["podName"] = pod if pod is not None else f"{name}-pod"
    return obj


def entry_for(name: str, **kw) -> TaskRunEntry:
    entry = taskrun_entry(run(name), trust_domain=TD, node_name="node-a", **kw)
    assert entry is not None
    return entry


def selectors(shown: dict) -> set[str]:
    return {f"{s['type']}:{s['value']}" for s in shown["selectors"]}


def test_entry_is_what_tekton_designed():
    entry = taskrun_entry(TASKRUN, trust_domain=TD, node_name="node-a.zone-1", pod_uid=POD_UID)
    assert entry == TaskRunEntry(
        spiffe_id="spiffe://example.org/ns/ci/taskrun/build-7",
        parent_id="spiffe://example.org/tekton-node/node-a.zone-1",
        selectors=("k8s:ns:ci", "k8s:pod-name:build-7-pod", f"k8s:pod-uid:{POD_UID}"),
    )
    other = taskrun_entry(TASKRUN, trust_domain=TD, node_name="n1", node_alias_prefix="/nodes/x/")
    assert other is not None and other.parent_id == "spiffe://example.org/nodes/x/n1"


def test_no_entry_before_the_pod_exists():
    assert taskrun_entry(run("early", pod=""), trust_domain=TD, node_name="node-a") is None


def test_register_creates_the_entry_and_deregister_removes_it(server, cli):
    entry = entry_for("build-1", pod_uid=POD_UID)
    assert server.show(entry.spiffe_id) == []

    registered = register_taskrun(cli, entry)
    assert registered.created
    [shown] = server.show(entry.spiffe_id)
    assert shown["id"] == registered.entry_id
    assert shown["parent_id"] == {"trust_domain": TD, "path": "/tekton-node/node-a"}
    assert selectors(shown) == {"k8s:ns:ci", "k8s:pod-name:build-1-pod", f"k8s:pod-uid:{POD_UID}"}

    assert deregister_taskrun(cli, entry.spiffe_id) == 1
    assert server.show(entry.spiffe_id) == []


def test_registering_twice_keeps_one_entry(server, cli):
    entry = entry_for("build-2")
    first = register_taskrun(cli, entry)
    second = register_taskrun(cli, entry)
    assert first.created and not second.created
    assert second.entry_id == first.entry_id
    assert [e["id"] for e in server.show(entry.spiffe_id)] == [first.entry_id]


def test_concurrent_registrations_leave_one_entry(server, cli):
    # Two operator replicas (or retries) racing: whoever loses the create finds the winner's entry.
    from concurrent.futures import ThreadPoolExecutor

    entry = entry_for("build-race")
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: register_taskrun(cli, entry), range(4)))
    [shown] = server.show(entry.spiffe_id)
    assert {r.entry_id for r in results} == {shown["id"]}
    assert sum(r.created for r in results) == 1


def test_an_entry_left_by_an_earlier_pod_of_the_same_name_is_replaced(server, cli):
    old = taskrun_entry(run("build-3", pod="build-3-old"), trust_domain=TD, node_name="node-b")
    new = entry_for("build-3")
    assert old is not None and old.spiffe_id == new.spiffe_id
    old_id = register_taskrun(cli, old).entry_id

    registered = register_taskrun(cli, new)
    [shown] = server.show(new.spiffe_id)
    assert shown["id"] == registered.entry_id != old_id
    assert "k8s:pod-name:build-3-pod" in selectors(shown)
    assert shown["parent_id"]["path"] == "/tekton-node/node-a"


def test_deregistering_a_missing_entry_is_fine(server, cli):
    entry = entry_for("never-registered")
    assert deregister_taskrun(cli, entry.spiffe_id) == 0
    registered = register_taskrun(cli, entry)
    assert cli.delete(registered.entry_id) is True
    assert cli.delete(registered.entry_id) is False  # already gone: not an error
    assert server.show(entry.spiffe_id) == []


def test_svid_ttl_and_expiry_reach_the_entry(server, cli):
    expires = int(time.time()) + 3600
    entry = entry_for("build-4", x509_svid_ttl=120, expires_at=expires)
    register_taskrun(cli, entry)
    [shown] = server.show(entry.spiffe_id)
    assert shown["x509_svid_ttl"] == 120
    assert int(shown["expires_at"]) == expires


def test_server_refusal_is_a_clear_error_and_nothing_is_registered(server, cli):
    # The CLI exits 0 when the server refuses an entry of a batch; the per-entry status must be read.
    refused = TaskRunEntry(
        spiffe_id="spiffe://example.org/ns/ci/taskrun/refused",
        parent_id="spiffe://other.org/tekton-node/node-a",
        selectors=("k8s:ns:ci",),
    )
    with pytest.raises(SpireServerError, match=r"entry create spiffe://example.org/ns/ci/taskrun/refused: "):
        register_taskrun(cli, refused)
    assert server.show(refused.spiffe_id) == []


def test_identity_outside_the_servers_trust_domain_is_a_clear_error(cli):
    with pytest.raises(SpireServerError, match=r'is not a member of trust domain "example\.org"'):
        register_taskrun(cli, taskrun_entry(run("x"), trust_domain="other.org", node_name="node-a"))


def test_missing_admin_socket_is_a_clear_error(server, tmp_path):
    cli = SpireServerCli(str(tmp_path / "api.sock"), binary=str(server.binary))
    expected = r"admin socket does not exist \(is the SPIRE server running\?\)"
    with pytest.raises(SpireServerError, match=expected):
        register_taskrun(cli, entry_for("build-5"))


def test_server_gone_behind_its_socket_is_a_clear_error():
    # A server that stopped after the CLI was configured: its socket path is gone or refuses.
    with run_spire_server(TD) as (server, _):
        cli = SpireServerCli(server.socket, binary=str(server.binary), timeout=30)
        socket = server.socket
    assert not os.path.exists(socket)
    with pytest.raises(SpireServerError, match="admin socket does not exist"):
        deregister_taskrun(cli, "spiffe://example.org/ns/ci/taskrun/x")


def test_missing_cli_binary_is_an_input_error(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(InputError, match="spire-server CLI not found"):
        SpireServerCli("/tmp/x.sock")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"metadata": {"name": "Build_1", "namespace": "ci"}}, "TaskRun metadata.name 'Build_1'"),
        ({"metadata": {"name": "b", "namespace": "ci/../x"}}, "metadata.namespace"),
        ({"metadata": {"name": "b"}}, "TaskRun metadata.namespace is missing"),
        ({"status": {"podName": "pod:x"}}, "status.podName 'pod:x'"),
        ({"kind": "PipelineRun"}, "for TaskRun objects"),
    ],
)
def test_bad_taskrun_fields_are_refused(change, message):
    obj = {**copy.deepcopy(TASKRUN), **change}
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        taskrun_entry(obj, trust_domain=TD, node_name="node-a")


def test_bad_settings_are_refused():
    with pytest.raises(InputError, match="node of TaskRun ci/build-7"):
        taskrun_entry(TASKRUN, trust_domain=TD, node_name="")
    with pytest.raises(InputError, match="must start with /"):
        taskrun_entry(TASKRUN, trust_domain=TD, node_name="n", node_alias_prefix="tekton-node/")
    with pytest.raises(InputError, match="spire-trust-domain"):
        taskrun_entry(TASKRUN, trust_domain="Example.org", node_name="n")
    with pytest.raises(InputError, match="pod UID"):
        taskrun_entry(TASKRUN, trust_domain=TD, node_name="n", pod_uid="x; rm")
    with pytest.raises(InputError, match="TTL"):
        taskrun_entry(TASKRUN, trust_domain=TD, node_name="n", x509_svid_ttl=0)
    with pytest.raises(InputError, match="entry expiry"):
        taskrun_entry(TASKRUN, trust_domain=TD, node_name="n", expires_at=-1)
    with pytest.raises(LimitExceeded):
        taskrun_entry(run("a" * 254), trust_domain=TD, node_name="n")
