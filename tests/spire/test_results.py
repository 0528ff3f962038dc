"""signer.spire.results: Tekton's canonicalisation and the verification of SPIRE-signed results, with
SVIDs made in the test (the same checks against a real SPIRE agent are in test_spire_real.py)."""

from __future__ import annotations

import copy
import datetime as dt

import pytest

from attestation.errors import InputError
from attestation.spiffe import parse_trust_bundle
from signer.run import to_run
from signer.spire.nonfalsifiability import SpireConfig, check_nonfalsifiability
from signer.spire.results import entrypoint_value, signed_value, verify_run_results
from tests.spire.certs import NOW, make_ca, make_svid
from tests.spire.tekton import sign_like_entrypoint, taskrun, termination_results

TD = "example.org"
FILES = {"IMAGE_DIGEST": "sha256:" + "ab" * 32, "IMAGE_URL": "registry.local/app", "TAGS": '["v1","latest"]'}


# --- canonicalisation (expected texts worked out by hand from pkg/spire/verify.go getResultValue) ---


@pytest.mark.parametrize(
    ("raw", "stored", "signed"),
    [
        ("plain text", "plain text", "plain text"),
        ('"quoted"', "quoted", "quoted"),
        ("123", "123", "123"),
        ("", "", ""),
        ("null", "", ""),
        ('["a","b"]', ["a", "b"], "a,b"),
        ('["a,b"]', ["a,b"], "a,b"),
        ('["a",null]', ["a", ""], "a,"),
        ("[1,2]", "[1,2]", "[1,2]"),
        (' ["a"]', ' ["a"]', ' ["a"]'),
        ('{"b":"2","a":"1"}', {"b": "2", "a": "1"}, ",,,,a,1,b,2"),
        ('{"a":1}', '{"a":1}', '{"a":1}'),
        ("{not json", "{not json", "{not json"),
    ],
)
def test_value_decoded_and_signed_as_tekton_does(raw, stored, signed):
    assert entrypoint_value(raw) == stored
    assert signed_value(entrypoint_value(raw)) == signed


def test_canonicalisation_weakness_is_real():
    # Documented in docs/spire.md: two different arrays sign the same text.
    assert signed_value(["a,b"]) == signed_value(["a", "b"])


# --- verification ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pki():
    root = make_ca(TD)
    bundle = parse_trust_bundle(root.pem, source="bundle.pem")
    return root, bundle


def signed_run(root, name="build-1", ns="ci", files=FILES, uri=None, api="tekton.dev/v1"):
    svid = make_svid(root, [uri or f"spiffe://{TD}/ns/{ns}/taskrun/{name}"])
    results = termination_results(files, svid.key, svid.pem.decode())
    return taskrun(name, ns, results, api=api), svid


def set_result(obj, name, value):
    for r in obj["status"]["results"]:
        if r["name"] == name:
            r["value"] = value
            return
    raise KeyError(name)


def drop_result(obj, name):
    obj["status"]["results"] = [r for r in obj["status"]["results"] if r["name"] != name]


def test_signed_results_verify(pki):
    root, bundle = pki
    obj, _ = signed_run(root)
    verdict = verify_run_results(to_run(obj, source="t"), trust_domain=TD, bundle=bundle)
    assert verdict.verified, verdict.reasons
    assert verdict.spiffe_id == "spiffe://example.org/ns/ci/taskrun/build-1"
    assert set(verdict.verified_results) == set(FILES)


def test_v1beta1_task_results_verify(pki):
    root, bundle = pki
    obj, _ = signed_run(root, api="tekton.dev/v1beta1")
    assert verify_run_results(obj, trust_domain=TD, bundle=bundle).verified
    assert verify_run_results(to_run(obj, source="t"), trust_domain=TD, bundle=bundle).verified


def test_result_tampered_after_signing_is_not_verified(pki):
    root, bundle = pki
    obj, _ = signed_run(root)
    set_result(obj, "IMAGE_DIGEST", "sha256:" + "cd" * 32)
    verdict = verify_run_results(obj, trust_domain=TD, bundle=bundle)
    assert not verdict.verified
    assert verdict.reasons == (
        "result IMAGE_DIGEST: signature does not verify (value changed after signing?)",
    )
    assert verdict.verified_results == ()


def test_array_reshaped_with_same_canonical_text_still_verifies_documented_weakness(pki):
    root, bundle = pki
    obj, _ = signed_run(root)
    set_result(obj, "TAGS", ["v1,latest"])
    assert verify_run_results(obj, trust_domain=TD, bundle=bundle).verified


def test_missing_signature_is_not_verified(pki):
    root, bundle = pki
    obj, _ = signed_run(root)
    drop_result(obj, "IMAGE_URL.sig")
    verdict = verify_run_results(obj, trust_domain=TD, bundle=bundle)
    assert verdict.reasons == ("result IMAGE_URL has no signature (IMAGE_URL.sig is missing)",)


def test_unsigned_extra_result_is_not_verified(pki):
    root, bundle = pki
    obj, _ = signed_run(root)
    obj["status"]["results"].append({"name": "EXTRA", "type": "string", "value": "injected"})
    verdict = verify_run_results(obj, trust_domain=TD, bundle=bundle)
    assert verdict.reasons == ("result EXTRA has no signature (EXTRA.sig is missing)",)


def test_result_removed_with_manifest_entry_is_not_verified(pki):
    root, bundle = pki
    obj, _ = signed_run(root)
    drop_result(obj, "IMAGE_URL")
    verdict = verify_run_results(obj, trust_domain=TD, bundle=bundle)
    assert "result IMAGE_URL is named in RESULT_MANIFEST but missing" in verdict.reasons
    assert "signature IMAGE_URL.sig has no result IMAGE_URL (a result was removed?)" in verdict.reasons


def test_result_and_signature_both_removed_is_caught_by_the_manifest(pki):
    root, bundle = pki
    obj, _ = signed_run(root)
    drop_result(obj, "IMAGE_URL")
    drop_result(obj, "IMAGE_URL.sig")
    verdict = verify_run_results(obj, trust_domain=TD, bundle=bundle)
    assert verdict.reasons == ("result IMAGE_URL is named in RESULT_MANIFEST but missing",)


def test_manifest_tampered_is_not_verified(pki):
    root, bundle = pki
    obj, _ = signed_run(root)
    set_result(obj, "RESULT_MANIFEST", "IMAGE_DIGEST,IMAGE_URL")
    verdict = verify_run_results(obj, trust_domain=TD, bundle=bundle)
    assert verdict.reasons == (
        "result RESULT_MANIFEST: signature does not verify (value changed after signing?)",
    )


def test_svid_of_another_taskrun_is_not_verified(pki):
    root, bundle = pki
    obj, _ = signed_run(root, uri=f"spiffe://{TD}/ns/ci/taskrun/other-run")
    verdict = verify_run_results(obj, trust_domain=TD, bundle=bundle)
    assert not verdict.verified
    assert verdict.reasons[0].startswith(
        "SVID: SPIFFE ID spiffe://example.org/ns/ci/taskrun/other-run is not allowed"
    )


def test_results_copied_onto_another_taskrun_are_not_verified(pki):
    root, bundle = pki
    obj, _ = signed_run(root)
    copied = copy.deepcopy(obj)
    copied["metadata"]["name"] = "build-2"
    assert not verify_run_results(copied, trust_domain=TD, bundle=bundle).verified


def test_svid_from_rogue_ca_is_not_verified(pki):
    _, bundle = pki
    rogue = make_ca(TD)
    obj, _ = signed_run(rogue)
    verdict = verify_run_results(obj, trust_domain=TD, bundle=bundle)
    assert verdict.reasons[0].startswith("SVID: certificate chain does not verify")


def test_signature_by_another_key_is_not_verified(pki):
    root, bundle = pki
    obj, _ = signed_run(root)
    intruder = make_svid(root, [f"spiffe://{TD}/ns/ci/taskrun/build-1"])
    set_result(obj, "IMAGE_URL", "evil.local/app")
    set_result(obj, "IMAGE_URL.sig", sign_like_entrypoint(intruder.key, "evil.local/app"))
    verdict = verify_run_results(obj, trust_domain=TD, bundle=bundle)
    assert verdict.reasons == ("result IMAGE_URL: signature does not verify (value changed after signing?)",)


def test_expired_svid_is_not_verified_now_but_is_at_signing_time(pki):
    root, bundle = pki
    svid = make_svid(
        root,
        [f"spiffe://{TD}/ns/ci/taskrun/old"],
        not_before=NOW - dt.timedelta(minutes=50),
        not_after=NOW - dt.timedelta(minutes=20),
    )
    obj = taskrun("old", "ci", termination_results(FILES, svid.key, svid.pem.decode()))
    verdict = verify_run_results(obj, trust_domain=TD, bundle=bundle)
    assert verdict.reasons[0].startswith("SVID: certificate is not valid at")
    assert verify_run_results(obj, trust_domain=TD, bundle=bundle, at=NOW - dt.timedelta(minutes=30)).verified


def test_unsigned_run_is_not_verified(pki):
    _, bundle = pki
    obj = taskrun("plain", "ci", [{"name": "IMAGE_URL", "type": "string", "value": "x"}])
    verdict = verify_run_results(obj, trust_domain=TD, bundle=bundle)
    assert verdict.reasons == ("no SVID result: the results are not SPIRE-signed",)


def test_garbage_svid_and_signature_give_reasons_not_exceptions(pki):
    root, bundle = pki
    obj, _ = signed_run(root)
    set_result(obj, "IMAGE_URL.sig", "not base64 !")
    assert verify_run_results(obj, trust_domain=TD, bundle=bundle).reasons == (
        "IMAGE_URL.sig is not a base64 signature",
    )
    set_result(obj, "SVID", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    assert (
        verify_run_results(obj, trust_domain=TD, bundle=bundle)
        .reasons[0]
        .startswith("SVID: result SVID: malformed PEM")
    )


def test_duplicate_result_names_are_not_verified(pki):
    root, bundle = pki
    obj, _ = signed_run(root)
    obj["status"]["results"].append(dict(obj["status"]["results"][0]))
    assert (
        "result IMAGE_DIGEST appears twice" in verify_run_results(obj, trust_domain=TD, bundle=bundle).reasons
    )


def test_pipelinerun_and_missing_namespace_are_input_errors(pki):
    _, bundle = pki
    with pytest.raises(InputError, match="only on TaskRuns"):
        verify_run_results({"kind": "PipelineRun", "metadata": {"name": "p"}}, trust_domain=TD, bundle=bundle)
    with pytest.raises(InputError, match="namespace"):
        verify_run_results({"kind": "TaskRun", "metadata": {"name": "p"}}, trust_domain=TD, bundle=bundle)


# --- the enforce-nonfalsifiability switch -----------------------------------------------------------


def test_switch_off_processes_every_run(pki):
    root, _ = pki
    obj, _ = signed_run(root)
    set_result(obj, "IMAGE_DIGEST", "tampered")
    assert check_nonfalsifiability(obj, SpireConfig()).allowed


def test_switch_on_refuses_provenance_for_unverified_run_with_reason(pki):
    root, bundle = pki
    config = SpireConfig(enforce_nonfalsifiability="spire", trust_domain=TD, bundle=bundle)
    good, _ = signed_run(root)
    assert check_nonfalsifiability(good, config).allowed
    bad = copy.deepcopy(good)
    set_result(bad, "IMAGE_DIGEST", "tampered")
    verdict = check_nonfalsifiability(bad, config)
    assert not verdict.allowed
    assert verdict.reasons == (
        "TaskRun ci/build-1: result IMAGE_DIGEST: signature does not verify (value changed after signing?)",
    )


def test_switch_on_pipelinerun_needs_every_child_verified(pki):
    root, bundle = pki
    config = SpireConfig(enforce_nonfalsifiability="spire", trust_domain=TD, bundle=bundle)
    pr = {"apiVersion": "tekton.dev/v1", "kind": "PipelineRun", "metadata": {"name": "p", "namespace": "ci"}}
    a, _ = signed_run(root, name="p-a")
    b = taskrun("p-b", "ci", [{"name": "X", "type": "string", "value": "1"}])
    assert check_nonfalsifiability(pr, config, children=[a]).allowed
    verdict = check_nonfalsifiability(pr, config, children=[a, b])
    assert verdict.reasons == ("TaskRun ci/p-b: no SVID result: the results are not SPIRE-signed",)
    assert not check_nonfalsifiability(pr, config).allowed


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"enforce_nonfalsifiability": "yes"}, "is not one of none, spire"),
        ({"enforce_nonfalsifiability": "spire"}, "no SPIRE trust bundle"),
        ({"trust_domain": "spiffe://example.org"}, "spire-trust-domain"),
    ],
)
def test_bad_switch_configuration_is_an_input_error(kwargs, message):
    with pytest.raises(InputError, match=message):
        SpireConfig(**kwargs)
