"""``gate serve`` over HTTPS, called as the API server and release tools call it: real registries, the
signer's real provenance, the bundled policy library."""

from __future__ import annotations

import concurrent.futures
import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.infra import REPO, free_port
from tests.infra.kube import wait_until
from tests.infra.registry import RegistryServer
from tests.serve.conftest import (
    RULE_DATA,
    GateProcess,
    Signing,
    add_unusable_attestation,
    pod,
    push_signed,
    review,
)


@pytest.fixture
def gate(start_gate, tmp_path: Path, rule_data_file: Path) -> GateProcess:
    return start_gate(tmp_path, data=[str(rule_data_file)], cache={"ttl": 600})


def validate(gate: GateProcess, *images: str, **kwargs) -> dict:
    answer = gate.post("/validate?timeout=10s", review(pod(*images), **kwargs))
    assert answer.status_code == 200, answer.text
    return answer.json()["response"]


# -- decisions -------------------------------------------------------------------------------------------


def test_good_provenance_is_admitted_and_bad_is_denied_naming_image_and_rule(
    gate: GateProcess, registry_plain: RegistryServer, signing: Signing
) -> None:
    good, _ = push_signed(registry_plain, signing.trusted)
    no_scan, _ = push_signed(registry_plain, signing.trusted, sample="tep0084-no-scan")
    untrusted, _ = push_signed(registry_plain, signing.untrusted)
    tampered, _ = push_signed(registry_plain, signing.trusted, tamper=True)
    unsigned, _ = push_signed(registry_plain, None)

    assert validate(gate, good)["allowed"] is True
    for image, code in [
        (no_scan, "[tasks."),
        (untrusted, "[builtin.attestation.signature_check]"),
        (tampered, "[builtin.attestation.signature_check]"),
        (unsigned, "[builtin.attestation.signature_check] no attestations were found"),
    ]:
        answer = validate(gate, image)
        assert answer["allowed"] is False
        message = answer["status"]["message"]
        assert message.startswith("provgate denied 1 of 1 image(s):"), message
        assert f"- {image} (container c0): " in message and code in message, message
        assert answer["uid"] == "0f6c8f0e-0000-4000-8000-000000000001"


def test_every_image_is_decided_and_the_denial_lists_only_the_denied(
    gate: GateProcess, registry_plain: RegistryServer, signing: Signing
) -> None:
    good, _ = push_signed(registry_plain, signing.trusted)
    bad, _ = push_signed(registry_plain, signing.untrusted)
    answer = gate.post("/validate", review(pod(good, bad, init=(good,)))).json()["response"]
    message = answer["status"]["message"]
    assert answer["allowed"] is False and message.startswith("provgate denied 1 of 2 image(s):")
    assert f"- {bad} (container c1)" in message and good not in message


def test_delete_connect_and_a_label_only_update_decide_nothing(
    gate: GateProcess, registry_plain: RegistryServer
) -> None:
    # An image in a registry that is not there: deciding it would be "could not decide", a denial.
    gone = f"127.0.0.1:{free_port()}/app:v1"
    for operation in ("DELETE", "CONNECT"):
        assert gate.post("/validate", review(None, operation=operation)).json()["response"]["allowed"]
    before = pod(gone)
    after = pod(gone)
    after["metadata"]["labels"] = {"new": "label"}
    answer = gate.post("/validate", review(after, operation="UPDATE", old=before)).json()["response"]
    assert answer["allowed"] is True
    changed = pod(gone, f"127.0.0.1:{free_port()}/other:v1")
    answer = gate.post("/validate", review(changed, operation="UPDATE", old=before)).json()["response"]
    assert answer["allowed"] is False and "other:v1" in answer["status"]["message"]
    assert gone not in answer["status"]["message"]  # only the added image was decided


def test_mutate_pins_tags_to_the_digest_that_validate_decides(
    gate: GateProcess, registry_plain: RegistryServer, signing: Signing
) -> None:
    import base64

    image, digest = push_signed(registry_plain, signing.trusted)
    answer = gate.post("/mutate", review(pod(image, init=(image,)))).json()["response"]
    assert answer["allowed"] is True and answer["patchType"] == "JSONPatch"
    patch = json.loads(base64.b64decode(answer["patch"]))
    assert patch == [
        {"op": "replace", "path": "/spec/containers/0/image", "value": f"{image}@{digest}"},
        {"op": "replace", "path": "/spec/initContainers/0/image", "value": f"{image}@{digest}"},
    ]
    assert validate(gate, f"{image}@{digest}")["allowed"] is True
    # already pinned: nothing to patch
    answer = gate.post("/mutate", review(pod(f"{image}@{digest}"))).json()["response"]
    assert "patch" not in answer


def test_require_digest_refuses_a_tag(start_gate, tmp_path: Path, registry_plain, signing) -> None:
    gate = start_gate(tmp_path, images={"requireDigest": True})
    image, _ = push_signed(registry_plain, signing.trusted)
    answer = validate(gate, image)
    assert (
        answer["allowed"] is False
        and "[builtin.image.digest] not pinned by digest" in answer["status"]["message"]
    )


def test_images_outside_the_checked_globs_get_no_match(start_gate, tmp_path: Path, registry_plain) -> None:
    unsigned, _ = push_signed(registry_plain, None)
    outside = f"{registry_plain.host}/elsewhere/app:v1"
    checked = f"{registry_plain.host}/app-*"  # what push_signed names its repositories
    deny = start_gate(tmp_path / "deny", images={"check": [checked]})
    answer = validate(deny, outside)
    assert answer["allowed"] is False and "[builtin.image.no_policy]" in answer["status"]["message"]
    assert validate(deny, unsigned)["allowed"] is False  # inside: decided (and unsigned)
    allow = start_gate(tmp_path / "allow", images={"check": [checked], "noMatch": "allow"})
    assert validate(allow, outside)["allowed"] is True
    warn = start_gate(tmp_path / "warn", images={"check": [checked], "noMatch": "warn"})
    answer = validate(warn, outside)
    assert answer["allowed"] is True and "no policy applies" in answer["warnings"][0]


def test_exempt_namespaces_are_admitted_untouched(gate: GateProcess) -> None:
    gone = f"127.0.0.1:{free_port()}/app:v1"
    for path in ("/validate", "/mutate"):
        answer = gate.post(path, review(pod(gone), namespace="kube-system")).json()["response"]
        assert answer["allowed"] is True and "patch" not in answer


# -- failure: registry down ------------------------------------------------------------------------------


def test_registry_down_denies_in_enforce_mode_and_warns_in_warn_mode(start_gate, tmp_path: Path) -> None:
    gone = f"127.0.0.1:{free_port()}/app:v1"
    enforce = start_gate(tmp_path / "enforce")
    answer = validate(enforce, gone)
    assert answer["allowed"] is False
    assert f"- {gone} (container c0): could not decide: " in answer["status"]["message"]
    warn = start_gate(tmp_path / "warn", mode="warn")
    answer = validate(warn, gone)
    assert answer["allowed"] is True
    [warning] = answer["warnings"]
    assert warning.startswith(f"provgate (warn mode) would deny {gone}") and "could not decide" in warning
    # never cached: the next request asks again
    assert enforce.metric("provgate_verdict_cache_hits_total") == 0


def test_the_answer_comes_before_the_api_servers_timeout(start_gate, tmp_path: Path) -> None:
    # A registry that accepts connections and never answers.
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        image = f"127.0.0.1:{silent.getsockname()[1]}/app:v1"
        gate = start_gate(tmp_path)
        started = time.monotonic()
        answer = gate.post("/validate?timeout=2s", review(pod(image))).json()["response"]
        elapsed = time.monotonic() - started
        assert answer["allowed"] is False and "could not decide" in answer["status"]["message"]
        assert elapsed < 2.0, elapsed
    finally:
        silent.close()


# -- bad input -------------------------------------------------------------------------------------------


def test_bad_bodies_are_400_with_a_clear_message_never_500(gate: GateProcess) -> None:
    whole = json.dumps(review(pod("127.0.0.1:5000/app:v1"))).encode()
    wrong_version = review(pod("x"))
    wrong_version["apiVersion"] = "admission.k8s.io/v1beta1"
    cases = {
        whole[: len(whole) // 2]: "not valid JSON",
        b"<html>not json</html>": "not valid JSON",
        b"": "empty request body",
        b"[]": "must be a JSON object",
        json.dumps(wrong_version).encode(): "expected kind AdmissionReview, apiVersion admission.k8s.io/v1",
        json.dumps({**review(pod("x")), "request": {"uid": ""}}).encode(): "request.uid",
        b"{" * 100 + b"}" * 100: "",
    }
    for body, expected in cases.items():
        for path in ("/validate", "/mutate"):
            answer = gate.post(path, body)
            assert answer.status_code == 400, (body[:80], answer.text)
            assert expected in answer.json()["error"], answer.text
            assert "Traceback" not in answer.text
    oversized = b'{"pad": "' + b"x" * (9 * 1024 * 1024) + b'"}'
    answer = gate.post("/validate", oversized)
    assert answer.status_code == 400 and "larger than the limit" in answer.json()["error"]
    assert gate.proc.poll() is None
    assert "Traceback" not in gate.log()


def test_malformed_objects_and_hostile_references_are_denied_not_admitted(gate: GateProcess) -> None:
    bell = "127.0.0.1:5000/app\x07\x1b[31m:v1"
    answer = validate(gate, bell)
    message = answer["status"]["message"]
    assert answer["allowed"] is False and "[builtin.image.reference]" in message
    assert "\x1b" not in message and "\x07" not in message
    broken = pod("x")
    broken["spec"]["containers"] = {"not": "a list"}
    answer = gate.post("/validate", review(broken)).json()["response"]
    assert answer["allowed"] is False and "containers must be a list" in answer["status"]["message"]
    unknown = gate.post("/validate", review(pod("x"), kind=("tekton.dev", "v1", "TaskRun"))).json()[
        "response"
    ]
    assert unknown["allowed"] is False and "does not know where" in unknown["status"]["message"]


# -- /v1/verify ------------------------------------------------------------------------------------------


def _without_timing(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in ("elapsed_ms", "timings")}


def test_v1_verify_answers_what_gate_verify_prints(
    gate: GateProcess, registry_plain: RegistryServer, signing: Signing, rule_data_file: Path
) -> None:
    good, _ = push_signed(registry_plain, signing.trusted)
    bad, _ = push_signed(registry_plain, signing.trusted, sample="tep0084-injected-task")
    for image in (good, bad):
        cli = subprocess.run(
            [
                sys.executable,
                "-m",
                "gate",
                "verify",
                image,
                "--key",
                str(signing.public_key),
                "--data",
                str(rule_data_file),
                "--output",
                "json",
            ],
            capture_output=True,
            cwd=REPO,
            check=False,
        )
        api = gate.post("/v1/verify", {"image": image})
        assert api.status_code == 200
        assert _without_timing(api.json()) == _without_timing(json.loads(cli.stdout))
    both = gate.post("/v1/verify", {"images": [good, bad]}).json()
    assert [d["allowed"] for d in both["decisions"]] == [True, False]
    for body in ({"image": 3}, {"images": []}, {"imgs": [good]}, [good]):
        answer = gate.post("/v1/verify", body)
        assert answer.status_code == 400 and "expected" in answer.json()["error"]


def test_v1_verify_needs_the_bearer_token_when_one_is_configured(
    start_gate, tmp_path: Path, registry_plain, signing
) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    gate = start_gate(tmp_path, verifyApi={"bearerTokenFile": str(token)})
    image, _ = push_signed(registry_plain, signing.trusted)
    assert gate.post("/v1/verify", {"image": image}).status_code == 401
    wrong = gate.post("/v1/verify", {"image": image}, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    ok = gate.post("/v1/verify", {"image": image}, headers={"Authorization": "Bearer s3cret-token"})
    assert ok.status_code == 200 and ok.json()["image"].startswith(image.rsplit(":", 1)[0])


def test_v1_verify_refuses_without_authentication_beyond_loopback(start_gate, tmp_path: Path) -> None:
    gate = start_gate(tmp_path, listen="0.0.0.0:0")
    gate.url = gate.url.replace("0.0.0.0", "127.0.0.1")
    answer = gate.post("/v1/verify", {"image": "127.0.0.1:5000/app:v1"})
    assert answer.status_code == 403 and "needs authentication" in answer.json()["error"]


# -- the verdict cache -----------------------------------------------------------------------------------


def test_fifty_concurrent_admissions_of_a_new_digest_verify_once(
    gate: GateProcess, registry_plain: RegistryServer, signing: Signing
) -> None:
    image, digest = push_signed(registry_plain, signing.trusted)
    pinned = f"{image}@{digest}"
    barrier = threading.Barrier(50)

    def one(i: int) -> bool:
        with httpx.Client(base_url=gate.url, verify=gate.tls.context(), timeout=60) as client:
            body = json.dumps(review(pod(pinned), uid=f"uid-{i}")).encode()
            barrier.wait()
            answer = client.post("/validate", content=body).json()["response"]
            assert answer["uid"] == f"uid-{i}"
            return bool(answer["allowed"])

    with concurrent.futures.ThreadPoolExecutor(50) as pool:
        results = list(pool.map(one, range(50)))
    assert all(results)
    assert gate.metric("provgate_verifications_total") == 1
    assert gate.metric("provgate_verdict_cache_misses_total") == 1
    joined = gate.metric("provgate_verdict_cache_joined_total")
    hits = gate.metric("provgate_verdict_cache_hits_total")
    assert joined + hits == 49


def test_a_policy_reload_flips_a_cached_allow_to_deny_on_the_next_request(
    start_gate, tmp_path: Path, registry_plain, signing
) -> None:
    data = tmp_path / "data" / "rule_data.yaml"
    data.parent.mkdir()
    data.write_text(yaml.safe_dump(RULE_DATA))
    gate = start_gate(tmp_path, data=[str(data)], cache={"ttl": 3600})
    image, _ = push_signed(registry_plain, signing.trusted)
    assert validate(gate, image)["allowed"] and validate(gate, image)["allowed"]
    assert gate.metric("provgate_verdict_cache_hits_total") == 1
    policy_before = gate.client.get("/readyz").json()["policy"]
    data.write_text(yaml.safe_dump({"rule_data": {"allowed_source_repos": ["https://git.example/other"]}}))
    wait_until(lambda: gate.client.get("/readyz").json()["policy"] != policy_before, what="the reload")
    answer = validate(gate, image)
    assert answer["allowed"] is False and "source" in answer["status"]["message"]


def test_a_broken_reload_keeps_serving_the_last_good_set_and_is_not_ready(
    start_gate, tmp_path: Path, registry_plain, signing, rule_data_file
) -> None:
    policy = tmp_path / "policy"
    import shutil

    import policies

    shutil.copytree(policies.ROOT, policy, ignore=shutil.ignore_patterns("*_test.rego", "__pycache__"))
    gate = start_gate(tmp_path, policy=[str(policy)], data=[str(rule_data_file)], cache={"ttl": 0})
    image, _ = push_signed(registry_plain, signing.trusted)
    assert validate(gate, image)["allowed"]
    (policy / "release" / "broken.rego").write_text("package policy.release.broken\n\ndeny contains {")
    ready = wait_until(
        lambda: (r := gate.client.get("/readyz")).status_code == 503 and r.json(), what="/readyz to turn red"
    )
    assert "reload failed, still serving the previous configuration" in ready["reason"]
    assert "broken.rego" in ready["reason"]
    assert any("reload failed" in line for line in gate.lines)
    assert validate(gate, image)["allowed"]  # the last good set still decides (ttl 0: a fresh decision)
    (policy / "release" / "broken.rego").unlink()
    wait_until(lambda: gate.client.get("/readyz").status_code == 200, what="/readyz to turn green again")


def test_a_new_denying_attestation_is_seen_after_the_ttl(
    start_gate, tmp_path: Path, registry_plain, signing, rule_data_file
) -> None:
    gate = start_gate(tmp_path, data=[str(rule_data_file)], cache={"ttl": 2})
    image, digest = push_signed(registry_plain, signing.trusted)
    pinned = f"{image}@{digest}"
    assert validate(gate, pinned)["allowed"]
    add_unusable_attestation(registry_plain, pinned, signing.trusted)
    assert validate(gate, pinned)["allowed"]  # within the TTL: the cached verdict
    time.sleep(2.2)
    answer = validate(gate, pinned)
    assert (
        answer["allowed"] is False and "[builtin.attestation.statement_usable]" in answer["status"]["message"]
    )


# -- TLS, credentials, shutdown --------------------------------------------------------------------------


def test_a_rotated_certificate_is_served_without_a_restart(start_gate, tmp_path: Path, tls) -> None:
    from tests.infra.tls import make_ca, make_server_cert

    cert, key = tmp_path / "tls.crt", tmp_path / "tls.key"
    cert.write_bytes(tls.cert.read_bytes())
    key.write_bytes(tls.key.read_bytes())
    gate = start_gate(tmp_path, tls={"certFile": str(cert), "keyFile": str(key)})
    assert gate.client.get("/healthz").status_code == 200
    new_ca, ca_key, ca_cert = make_ca(tmp_path / "new-ca", "rotated CA")
    new_cert, new_key = make_server_cert(tmp_path, ca_key, ca_cert)
    key.write_bytes(new_key.read_bytes())
    cert.write_bytes(new_cert.read_bytes())
    import ssl

    def served_by_new_ca() -> bool:
        with httpx.Client(verify=ssl.create_default_context(cafile=str(new_ca)), timeout=5) as client:
            try:
                return client.get(f"{gate.url}/healthz").status_code == 200
            except httpx.ConnectError:
                return False

    wait_until(served_by_new_ca, what="the new certificate to be served")


def test_pulls_from_a_registry_with_auth_and_tls_and_never_shows_the_password(
    start_gate, tmp_path: Path, registry_tls_auth: RegistryServer, signing, rule_data_file
) -> None:
    image, _ = push_signed(registry_tls_auth, signing.trusted)
    gate = start_gate(
        tmp_path,
        data=[str(rule_data_file)],
        registry={"caFile": registry_tls_auth.ca_file, "dockerConfig": registry_tls_auth.docker_config},
    )
    answer = gate.post("/validate", review(pod(image))).json()
    assert answer["response"]["allowed"] is True
    decision = gate.post("/v1/verify", {"image": image}).text
    without = start_gate(
        tmp_path / "no-creds",
        registry={"caFile": registry_tls_auth.ca_file},
        env={"DOCKER_CONFIG": str(tmp_path / "empty")},
    )
    refused = without.post("/validate", review(pod(image))).json()["response"]
    assert refused["allowed"] is False and "could not decide" in refused["status"]["message"]
    password = registry_tls_auth.password
    assert password
    for text in (json.dumps(answer), decision, json.dumps(refused), gate.log(), without.log()):
        assert password not in text
    gate.stop()
    assert password not in gate.log()


def test_sigterm_finishes_requests_in_flight_then_exits(start_gate, tmp_path: Path) -> None:
    import socket

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    try:
        gate = start_gate(tmp_path)
        image = f"127.0.0.1:{silent.getsockname()[1]}/app:v1"
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            pending = pool.submit(gate.post, "/validate?timeout=3s", review(pod(image)))
            time.sleep(0.5)  # the request is in flight, waiting for the silent registry
            gate.proc.send_signal(signal.SIGTERM)
            answer = pending.result(timeout=30)
        assert answer.status_code == 200 and answer.json()["response"]["allowed"] is False
        assert gate.proc.wait(timeout=30) == 0
        assert any("stopped" in line for line in gate.lines)
    finally:
        silent.close()


def test_a_bad_configuration_stops_the_start_with_one_line(tmp_path: Path, tls, signing) -> None:
    from tests.serve.conftest import gate_config, write_config

    config = gate_config(tls, signing.public_key, mode="audit")
    path = write_config(tmp_path, config)
    done = subprocess.run(
        [sys.executable, "-m", "gate", "serve", "--config", str(path)],
        capture_output=True,
        cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 2
    err = done.stderr.decode()
    assert err.strip().count("\n") == 0 and "mode: 'audit' is not one of enforce, warn" in err
