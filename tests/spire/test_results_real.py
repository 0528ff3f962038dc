"""TaskRun results signed with the TaskRun's real SVID exactly as Tekton's entrypoint signs them
(``tests/spire/tekton.py``), checked by ``signer verify-results`` against the real SPIRE trust bundle:
from a bundle file and from the Workload API."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from signer.spire.results import taskrun_spiffe_id
from tests.infra.spire import Spire
from tests.spire.tekton import sign_like_entrypoint, taskrun, termination_results

pytestmark = pytest.mark.xdist_group("spire")

TD = "example.org"
NS = "ci"
FILES = {
    "IMAGE_DIGEST": "sha256:" + "ab" * 32,
    "IMAGE_URL": "registry.local/team/app",
    "CHAINS-GIT_URL": '"https://git.example/app.git"',  # a JSON string literal, decoded before signing
    "TAGS": '["v1","latest"]',  # an array: signed comma-joined
}


def svid_of(spire: Spire, spiffe_id: str):
    """(private key, leaf PEM) of the agent's SVID for ``spiffe_id``, as the entrypoint gets it."""
    from spiffe import WorkloadApiClient

    with WorkloadApiClient(socket_path=spire.workload_socket) as client:
        svids = client.fetch_x509_svids(timeout=10)
    [svid] = [s for s in svids if str(s.spiffe_id) == spiffe_id]
    return svid.private_key, svid.leaf.public_bytes(Encoding.PEM).decode("ascii")


@pytest.fixture(scope="module")
def keys(spire: Spire) -> dict[str, tuple]:
    out = {}
    for name in ("build-1", "build-2"):
        spiffe_id = taskrun_spiffe_id(TD, NS, name)
        spire.issue(spiffe_id)
        out[name] = svid_of(spire, spiffe_id)
    return out


@pytest.fixture(scope="module")
def bundle_file(spire: Spire, tmp_path_factory) -> Path:
    return spire.server.write_bundle(tmp_path_factory.mktemp("results") / "bundle.pem")


def signed_run(keys, name: str = "build-1", signed_by: str | None = None) -> dict:
    key, leaf = keys[signed_by or name]
    return taskrun(name, NS, termination_results(FILES, key, leaf))


def write(tmp_path: Path, obj: dict) -> Path:
    path = tmp_path / "taskrun.json"
    path.write_text(json.dumps(obj))
    return path


def results_of(obj: dict) -> list[dict]:
    return obj["status"]["results"]


def verify(signer, path: Path, spire: Spire, bundle_file: Path, via: str = "file"):
    source = (
        ["--trust-bundle", str(bundle_file)] if via == "file" else ["--spiffe-socket", spire.workload_socket]
    )
    return signer("verify-results", str(path), *source, "--trust-domain", TD)


@pytest.mark.parametrize("via", ["file", "workload-api"])
def test_results_signed_with_the_taskruns_svid_verify(signer, keys, spire, bundle_file, tmp_path, via):
    proc = verify(signer, write(tmp_path, signed_run(keys)), spire, bundle_file, via)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == f"verified: 4 results signed by {taskrun_spiffe_id(TD, NS, 'build-1')}\n"


def test_the_signed_text_is_tektons_canonical_form(keys):
    # What the entrypoint stores and signs for the array and JSON-string results, checked by hand.
    values = {r["name"]: r["value"] for r in results_of(signed_run(keys))}
    assert values["TAGS"] == ["v1", "latest"]
    assert values["CHAINS-GIT_URL"] == "https://git.example/app.git"
    assert values["RESULT_MANIFEST"] == "IMAGE_DIGEST,IMAGE_URL,CHAINS-GIT_URL,TAGS"
    assert values["SVID"].startswith("-----BEGIN CERTIFICATE-----") and values["SVID"].count("BEGIN") == 1


def _reasons(proc) -> list[str]:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert all(line.startswith("not verified: ") for line in lines)
    return [line.removeprefix("not verified: ") for line in lines]


@pytest.mark.parametrize("via", ["file", "workload-api"])
def test_tampered_missing_and_unsigned_results_fail_one_line_each(
    signer, keys, spire, bundle_file, tmp_path, via
):
    obj = signed_run(keys)
    results = results_of(obj)
    for r in results:
        if r["name"] == "IMAGE_DIGEST":
            r["value"] = "sha256:" + "cd" * 32  # changed after signing
    obj["status"]["results"] = [r for r in results if r["name"] != "IMAGE_URL.sig"]
    obj["status"]["results"].append({"name": "EXTRA", "type": "string", "value": "unsigned"})
    assert sorted(_reasons(verify(signer, write(tmp_path, obj), spire, bundle_file, via))) == [
        "result EXTRA has no signature (EXTRA.sig is missing)",
        "result IMAGE_DIGEST: signature does not verify (value changed after signing?)",
        "result IMAGE_URL has no signature (IMAGE_URL.sig is missing)",
    ]


def test_an_array_rewritten_to_the_same_canonical_text_still_verifies(
    signer, keys, spire, bundle_file, tmp_path
):
    # Tekton's documented lossiness (docs/spire.md): ["v1","latest"] and ["v1,latest"] sign the same text.
    obj = signed_run(keys)
    for r in results_of(obj):
        if r["name"] == "TAGS":
            r["value"] = ["v1,latest"]
    assert verify(signer, write(tmp_path, obj), spire, bundle_file).returncode == 0


def test_svid_of_another_taskrun_fails(signer, keys, spire, bundle_file, tmp_path):
    # Correctly signed, chains to the bundle, but by build-2's identity: not this TaskRun's results.
    obj = signed_run(keys, name="build-1", signed_by="build-2")
    assert _reasons(verify(signer, write(tmp_path, obj), spire, bundle_file)) == [
        "SVID: SPIFFE ID spiffe://example.org/ns/ci/taskrun/build-2 is not allowed "
        "(allowed: spiffe://example.org/ns/ci/taskrun/build-1)"
    ]


def test_results_moved_between_taskruns_fail(signer, keys, spire, bundle_file, tmp_path):
    # build-2's signed results pasted, SVID and all, into build-1's status.
    obj = signed_run(keys, name="build-1")
    obj["status"]["results"] = copy.deepcopy(results_of(signed_run(keys, name="build-2")))
    [reason] = _reasons(verify(signer, write(tmp_path, obj), spire, bundle_file))
    assert reason.startswith("SVID: SPIFFE ID spiffe://example.org/ns/ci/taskrun/build-2 is not allowed")


def test_svid_from_a_rogue_spire_server_fails(signer, keys, spire, spire_rogue, bundle_file, tmp_path):
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    leaf, key_pem = spire_rogue.mint(taskrun_spiffe_id(TD, NS, "build-1"), tmp_path / "mint")
    key = load_pem_private_key(key_pem, None)
    obj = taskrun("build-1", NS, termination_results(FILES, key, leaf.decode()))
    [reason] = _reasons(verify(signer, write(tmp_path, obj), spire, bundle_file))
    assert reason.startswith("SVID: certificate chain does not verify")


def test_signature_by_another_key_under_a_genuine_svid_fails(signer, keys, spire, bundle_file, tmp_path):
    # The genuine leaf of build-1 with every signature made by build-2's key.
    obj = signed_run(keys)
    other_key, _ = keys["build-2"]
    for r in results_of(obj):
        if r["name"].endswith(".sig"):
            base = r["name"].removesuffix(".sig")
            value = next(x["value"] for x in results_of(obj) if x["name"] == base)
            text = ",".join(value) if isinstance(value, list) else value
            r["value"] = sign_like_entrypoint(other_key, text)
    reasons = _reasons(verify(signer, write(tmp_path, obj), spire, bundle_file))
    assert len(reasons) == 5 and all("signature does not verify" in r for r in reasons)


def test_workload_api_bundle_for_another_trust_domain_is_a_clear_error(signer, keys, spire, tmp_path):
    proc = signer(
        "verify-results",
        str(write(tmp_path, signed_run(keys))),
        "--spiffe-socket",
        spire.workload_socket,
        "--trust-domain",
        "other.org",
    )
    assert proc.returncode == 2 and proc.stdout == ""
    assert "has no X.509 bundle for trust domain other.org" in proc.stderr


def test_workload_api_down_is_a_clear_error(signer, keys, tmp_path):
    proc = signer(
        "verify-results",
        str(write(tmp_path, signed_run(keys))),
        "--spiffe-socket",
        f"unix://{tmp_path}/agent.sock",
        "--trust-domain",
        TD,
    )
    assert proc.returncode == 2 and proc.stdout == ""
    [line] = proc.stderr.splitlines()
    assert line.startswith(f"error: cannot fetch the trust bundle from unix://{tmp_path}/agent.sock")
