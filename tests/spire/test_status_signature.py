"""The Tekton controller's status signature (``status.annotations`` ``tekton.dev/status-hash``, ``-sig``,
``controller-svid``; tektoncd/pipeline ``pkg/spire/sign.go: AppendStatusInternalAnnotation``): a
known-answer test of the Go-marshalled status, then statuses signed as the controller signs them, with a
real SVID from the SPIRE agent and with test-CA certificates."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from attestation.errors import InputError
from attestation.spiffe import TrustBundle
from signer.spire.nonfalsifiability import SpireConfig, check_nonfalsifiability
from signer.spire.results import taskrun_spiffe_id, verify_run_results
from signer.spire.status import status_hash, verify_status_signature
from tests.infra.spire import Spire
from tests.spire.certs import make_ca, make_svid
from tests.spire.tekton import taskrun, termination_results
from tests.spire.test_results_real import svid_of

pytestmark = pytest.mark.xdist_group("spire")

TD = "example.org"
NS = "ci"
CONTROLLER_ID = "spiffe://example.org/tekton-pipelines/controller-f3"

# A status written in an order Go does not use, with keys outside TaskRunStatusFields (conditions,
# observedGeneration, annotations belong to knative's duck.Status and are not hashed).
STATUS = {
    "conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded"}],
    "observedGeneration": 1,
    "annotations": {"example.com/note": "not hashed"},
    "spanContext": {"traceparent": "00-ab", "b3": "x"},
    "results": [
        {"value": ["v1", "latest"], "type": "array", "name": "TAGS"},
        {"name": "URL", "value": "https://x/?a=1&b=<2>"},
    ],
    "steps": [
        {
            "name": "build",
            "container": "step-build",
            "terminated": {"reason": "Completed", "exitCode": 0, "finishedAt": "2026-08-20T12:01:00.5+02:00"},
        }
    ],
    "completionTime": "2026-08-20T10:01:00Z",
    "startTime": "2026-08-20T10:00:00Z",
    "podName": "build-1-pod",
}

# Written out by hand from the Go types (pkg/apis/pipeline/v1/taskrun_types.go, k8s core/v1):
# TaskRunStatusFields order podName, startTime, completionTime, steps, (retriesStatus), results,
# (artifacts, sidecars, taskSpec, provenance), spanContext; StepState inlines ContainerState first
# (waiting/running nil: omitted) then name, container; ContainerStateTerminated: exitCode (no omitempty,
# 0 kept), reason, startedAt (a metav1.Time struct: omitempty does not drop it, zero marshals as null),
# finishedAt (UTC, RFC 3339 seconds: the fraction is dropped); TaskRunResult: name, type (omitempty),
# value; map keys sorted; &, <, > escaped as Go's HTMLEscape does.
EXPECTED_JSON = (
    b'{"podName":"build-1-pod","startTime":"2026-08-20T10:00:00Z","completionTime":"2026-08-20T10:01:00Z",'
    b'"steps":[{"terminated":{"exitCode":0,"reason":"Completed","startedAt":null,'
    b'"finishedAt":"2026-08-20T10:01:00Z"},"name":"build","container":"step-build"}],'
    b'"results":[{"name":"TAGS","type":"array","value":["v1","latest"]},'
    b'{"name":"URL","value":"https://x/?a=1\\u0026b=\\u003c2\\u003e"}],'
    b'"spanContext":{"b3":"x","traceparent":"00-ab"}}'
)


def _obj(status: dict, api: str = "tekton.dev/v1") -> dict:
    return {
        "apiVersion": api,
        "kind": "TaskRun",
        "metadata": {"name": "build-1", "namespace": NS},
        "spec": {"taskRef": {"name": "build"}},
        "status": copy.deepcopy(status),
    }


def test_status_hash_is_sha256_of_go_marshalled_status_fields():
    assert status_hash(_obj(STATUS)) == hashlib.sha256(EXPECTED_JSON).hexdigest()


def test_v1beta1_taskrun_hashes_as_its_v1_form():
    # The v1 form, as Tekton's StepState.convertTo makes it: terminationReason = terminated.reason.
    beta = copy.deepcopy(STATUS)
    beta["taskResults"] = beta.pop("results")
    expected = EXPECTED_JSON.replace(
        b'"container":"step-build"', b'"container":"step-build","terminationReason":"Completed"'
    )
    assert expected != EXPECTED_JSON
    assert status_hash(_obj(beta, api="tekton.dev/v1beta1")) == hashlib.sha256(expected).hexdigest()


# ----------------------------------------------------------------------------- signing like the controller


def sign_status(obj: dict, key, leaf_pem: str, *, sign_bytes: bytes | None = None) -> dict:
    """``AppendStatusInternalAnnotation``: hash, sign SHA-256 of the hex text, store leaf PEM + both."""
    out = copy.deepcopy(obj)
    digest = status_hash(out)
    sig = key.sign(sign_bytes if sign_bytes is not None else digest.encode(), ec.ECDSA(hashes.SHA256()))
    ann = out["status"].setdefault("annotations", {})
    ann["tekton.dev/controller-svid"] = leaf_pem
    ann["tekton.dev/status-hash"] = digest
    ann["tekton.dev/status-hash-sig"] = base64.b64encode(sig).decode()
    return out


@pytest.fixture(scope="module")
def test_ca():
    ca = make_ca(TD)
    controller = make_svid(ca, [CONTROLLER_ID])
    return ca, controller, TrustBundle((ca.cert,), trust_domain=TD)


def signed_with_test_ca(test_ca) -> dict:
    _, controller, _ = test_ca
    return sign_status(_obj(STATUS), controller.key, controller.pem.decode())


def test_status_signed_by_controller_verifies(test_ca):
    assert verify_status_signature(signed_with_test_ca(test_ca), bundle=test_ca[2]) == []


def _set_result(o: dict) -> None:
    o["status"]["results"][0]["value"] = ["v1", "evil"]


def _set_step(o: dict) -> None:
    o["status"]["steps"][0]["terminated"]["exitCode"] = 1


def _set_time(o: dict) -> None:
    o["status"]["completionTime"] = "2026-08-20T10:02:00Z"


@pytest.mark.parametrize("change", [_set_result, _set_step, _set_time], ids=["result", "step", "time"])
def test_status_changed_after_signing_is_not_verified(test_ca, change):
    obj = signed_with_test_ca(test_ca)
    change(obj)
    reasons = verify_status_signature(obj, bundle=test_ca[2])
    assert len(reasons) == 1 and "status changed after the controller signed it" in reasons[0]


def test_condition_change_is_outside_the_hash(test_ca):
    # Tekton hashes TaskRunStatusFields only; conditions live in duck.Status. Documented limit: a
    # status signed by Tekton must still verify, so this stays undetected.
    obj = signed_with_test_ca(test_ca)
    obj["status"]["conditions"][0]["status"] = "False"
    assert verify_status_signature(obj, bundle=test_ca[2]) == []


def test_edited_hash_annotation_is_not_verified(test_ca):
    obj = signed_with_test_ca(test_ca)
    _set_result(obj)
    obj["status"]["annotations"]["tekton.dev/status-hash"] = status_hash(obj)
    reasons = verify_status_signature(obj, bundle=test_ca[2])
    assert reasons == [
        "tekton.dev/status-hash-sig does not verify over tekton.dev/status-hash with the controller SVID"
    ]


def test_signature_over_status_bytes_instead_of_hex_is_not_verified(test_ca):
    _, controller, bundle = test_ca
    obj = sign_status(_obj(STATUS), controller.key, controller.pem.decode(), sign_bytes=EXPECTED_JSON)
    reasons = verify_status_signature(obj, bundle=bundle)
    assert len(reasons) == 1 and "status-hash-sig does not verify" in reasons[0]


def test_controller_cert_from_rogue_ca_is_not_verified(test_ca):
    rogue = make_svid(make_ca(TD), [CONTROLLER_ID])
    obj = sign_status(_obj(STATUS), rogue.key, rogue.pem.decode())
    reasons = verify_status_signature(obj, bundle=test_ca[2])
    assert len(reasons) == 1 and reasons[0].startswith("controller SVID: certificate chain does not verify")


def test_pinned_controller_spiffe_id(test_ca):
    obj = signed_with_test_ca(test_ca)
    assert verify_status_signature(obj, bundle=test_ca[2], controller_spiffe_ids={CONTROLLER_ID}) == []
    reasons = verify_status_signature(
        obj, bundle=test_ca[2], controller_spiffe_ids={"spiffe://example.org/someone-else"}
    )
    assert len(reasons) == 1 and f"SPIFFE ID {CONTROLLER_ID} is not allowed" in reasons[0]


def test_spire_verified_flag_means_not_verified(test_ca):
    obj = signed_with_test_ca(test_ca)
    obj["status"]["annotations"]["tekton.dev/spire-verified"] = "no"
    reasons = verify_status_signature(obj, bundle=test_ca[2])
    assert reasons == ["status carries tekton.dev/spire-verified='no': the controller's own check failed"]


@pytest.mark.parametrize(
    "drop", ["tekton.dev/controller-svid", "tekton.dev/status-hash", "tekton.dev/status-hash-sig"]
)
def test_missing_annotation_is_not_verified(test_ca, drop):
    obj = signed_with_test_ca(test_ca)
    del obj["status"]["annotations"][drop]
    reasons = verify_status_signature(obj, bundle=test_ca[2])
    assert reasons == [f"status annotation {drop} missing: the status is not signed"]


def test_unsigned_status_is_not_verified(test_ca):
    reasons = verify_status_signature(_obj({"podName": "p"}), bundle=test_ca[2])
    assert reasons == ["status has no annotations: the status is not signed by the controller"]


def test_oversized_signature_and_bad_hash_are_rejected(test_ca):
    obj = signed_with_test_ca(test_ca)
    obj["status"]["annotations"]["tekton.dev/status-hash-sig"] = "A" * 100_000
    assert verify_status_signature(obj, bundle=test_ca[2]) == [
        "tekton.dev/status-hash-sig is not a base64 signature"
    ]
    obj = signed_with_test_ca(test_ca)
    obj["status"]["annotations"]["tekton.dev/status-hash"] = "AB" * 32
    assert verify_status_signature(obj, bundle=test_ca[2]) == [
        "tekton.dev/status-hash is not a lowercase hex SHA-256"
    ]


def test_not_a_taskrun_is_unusable_input(test_ca):
    obj = _obj(STATUS)
    obj["kind"] = "PipelineRun"
    with pytest.raises(InputError, match="only TaskRun statuses"):
        verify_status_signature(obj, bundle=test_ca[2])


# ----------------------------------------------------------------------------- real SPIRE


@pytest.fixture(scope="module")
def real_keys(spire: Spire) -> dict[str, tuple]:
    out = {}
    for spiffe_id in (taskrun_spiffe_id(TD, NS, "status-1"), CONTROLLER_ID):
        spire.issue(spiffe_id)
        out[spiffe_id] = svid_of(spire, spiffe_id)
    return out


def real_run(real_keys) -> dict:
    """A TaskRun whose results the entrypoint signed and whose status the controller signed."""
    key, leaf = real_keys[taskrun_spiffe_id(TD, NS, "status-1")]
    obj = taskrun("status-1", NS, termination_results({"IMAGE_DIGEST": "sha256:" + "cd" * 32}, key, leaf))
    ckey, cleaf = real_keys[CONTROLLER_ID]
    return sign_status(obj, ckey, cleaf)


def test_real_controller_svid_signature_verifies(spire, real_keys):
    obj = real_run(real_keys)
    bundle = spire.server.bundle()
    assert verify_status_signature(obj, bundle=bundle, controller_spiffe_ids={CONTROLLER_ID}) == []
    verdict = verify_run_results(
        obj,
        trust_domain=TD,
        bundle=bundle,
        require_status_signature=True,
        controller_spiffe_ids={CONTROLLER_ID},
    )
    assert verdict.verified, verdict.reasons
    obj["status"]["results"][0]["value"] = "sha256:" + "ef" * 32
    reasons = verify_status_signature(obj, bundle=bundle)
    # The entrypoint's result signature catches it too; the status hash catches it independently.
    assert len(reasons) == 1 and "status changed after the controller signed it" in reasons[0]


def test_nonfalsifiability_option_requires_the_status_signature(spire, real_keys):
    bundle = spire.server.bundle()
    unsigned = real_run(real_keys)
    del unsigned["status"]["annotations"]
    base = SpireConfig(enforce_nonfalsifiability="spire", trust_domain=TD, bundle=bundle)
    assert check_nonfalsifiability(unsigned, base).allowed  # default: results only, as before
    strict = SpireConfig(
        enforce_nonfalsifiability="spire",
        trust_domain=TD,
        bundle=bundle,
        require_status_signature=True,
        controller_spiffe_ids=(CONTROLLER_ID,),
    )
    verdict = check_nonfalsifiability(unsigned, strict)
    assert not verdict.allowed
    assert verdict.reasons == (
        "TaskRun ci/status-1: status signature: status has no annotations: the status is not signed by the "
        "controller",
    )
    assert check_nonfalsifiability(real_run(real_keys), strict).allowed


@pytest.fixture(scope="module")
def real_bundle_file(spire: Spire, tmp_path_factory) -> Path:
    return spire.server.write_bundle(tmp_path_factory.mktemp("status") / "bundle.pem")


def _cli(signer, tmp_path: Path, obj: dict, bundle_file: Path, *extra: str):
    path = tmp_path / "taskrun.json"
    path.write_text(json.dumps(obj))
    return signer(
        "verify-results", str(path), "--trust-bundle", str(bundle_file), "--trust-domain", TD, *extra
    )


def test_cli_require_status_signature(signer, real_keys, real_bundle_file, tmp_path):
    obj = real_run(real_keys)
    ok = _cli(
        signer,
        tmp_path,
        obj,
        real_bundle_file,
        "--require-status-signature",
        "--controller-spiffe-id",
        CONTROLLER_ID,
    )
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "status signed by the controller" in ok.stdout

    pinned_wrong = _cli(
        signer,
        tmp_path,
        obj,
        real_bundle_file,
        "--require-status-signature",
        "--controller-spiffe-id",
        "spiffe://example.org/not-the-controller",
    )
    assert pinned_wrong.returncode == 1
    assert f"not verified: status signature: controller SVID: SPIFFE ID {CONTROLLER_ID} is not allowed" in (
        pinned_wrong.stdout
    )

    del obj["status"]["annotations"]
    assert _cli(signer, tmp_path, obj, real_bundle_file).returncode == 0  # not asked for: as before
    missing = _cli(signer, tmp_path, obj, real_bundle_file, "--require-status-signature")
    assert missing.returncode == 1
    assert "not verified: status signature: status has no annotations" in missing.stdout


def test_cli_controller_id_needs_the_flag(signer, real_keys, real_bundle_file, tmp_path):
    obj = real_run(real_keys)
    proc = _cli(signer, tmp_path, obj, real_bundle_file, "--controller-spiffe-id", CONTROLLER_ID)
    assert proc.returncode == 2
    assert "--controller-spiffe-id goes with --require-status-signature" in proc.stderr
