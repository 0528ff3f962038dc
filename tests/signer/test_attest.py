"""``signer.attest.attest`` as a library, against real registries and real failures: what it stored where,
that a second attestation of a run adds nothing, and that every failure says whether retrying can help
(transient) or not (permanent) and leaves nothing behind."""

from __future__ import annotations

import base64
import json
import logging
from pathlib import Path

import pytest

from attestation import bundle, dsse, keys
from attestation.errors import (
    InputError,
    KeyLoadError,
    RegistryError,
    ResultsNotVerified,
    TransientError,
    WorkloadApiUnavailable,
    WrongPasswordError,
)
from attestation.oci.reader import fetch_attestations_sync
from signer import samples
from signer.attest import ArtifactConfig, AttestConfig, attest
from signer.documents import load_documents
from signer.run import Run, child_taskruns, to_run
from signer.signing.key import KeySigning
from signer.signing.spire import SvidSigning
from signer.spire.nonfalsifiability import SpireConfig
from signer.storage import StorageConfig
from signer.storage.oci import OciStored
from tests.infra import free_port
from tests.infra.registry import registry_plain
from tests.oci.faults import Answer, fault_server
from tests.oci.helpers import push_small_image
from tests.spire.certs import make_ca, make_svid
from tests.spire.tekton import taskrun, termination_results

__all__ = ["registry_plain"]

TASKRUN_WITH_HINT_WARNING = Path(__file__).parent / "testdata" / "runs" / "taskrun-build.yaml"
TD = "example.org"


@pytest.fixture(scope="module")
def key_backends(tmp_path_factory) -> tuple[KeySigning, KeySigning]:
    d = tmp_path_factory.mktemp("keys")
    (d / "password").write_text("s3cret\n")
    one, _ = keys.write_key_pair(str(d / "one"), b"s3cret")
    two, _ = keys.write_key_pair(str(d / "two"), b"s3cret")
    return tuple(KeySigning.load(k, password_file=d / "password", prompt=False) for k in (one, two))


def pipeline(image_url: str, image_digest: str) -> tuple[Run, list[Run]]:
    pr, trs = samples.load("tep0084-pipelinerun", image_url=image_url, image_digest=image_digest)
    run = to_run(pr, source="sample")
    return run, child_taskruns(run, [to_run(t, source="sample") for t in trs])


def config(signing, *storage: str, name: str = "key", **kw) -> AttestConfig:
    artifact = ArtifactConfig(storage=tuple(storage), signer=name, format=kw.pop("format", "slsa/v1"))
    return AttestConfig(signers={name: signing}, taskrun=artifact, pipelinerun=artifact, **kw)


def stored_envelopes(ref: str) -> list[dsse.Envelope]:
    _, found = fetch_attestations_sync(ref)
    return [
        bundle.parse_bundle(a.data, source=a.source).envelope
        if a.media_type.startswith("application/vnd.dev.sigstore.bundle")
        else dsse.Envelope.from_json(a.data)
        for a in found
    ]


# ----------------------------------------------------------------------------- what was stored where


def test_outcome_says_what_was_stored_where(registry_plain, key_backends, tmp_path):
    repo, digest = push_small_image(registry_plain, "attest")
    run, children = pipeline(repo, digest)
    lines, notes = tmp_path / "att.jsonl", tmp_path / "notes.json"
    storage = StorageConfig(file_out=str(lines), annotations_out=str(notes))
    outcome = attest(run, children, config(key_backends[0], "oci", "tekton", "file", storage=storage))

    assert [str(s) for s in outcome.stored] == [
        f"oci (dsse): {repo}@{digest}",
        f"tekton: 4 annotations written to {notes}",
        f"file: appended to {lines}",
    ]
    assert outcome.oci == [OciStored(f"{repo}@{digest}", "dsse")]
    assert outcome.annotations == json.loads(notes.read_text())
    signature = outcome.annotations[f"chains.tekton.dev/signature-pipelinerun-{run.uid}"]
    assert dsse.Envelope.from_json(base64.b64decode(signature)) == outcome.signed.envelope
    assert lines.read_bytes() == outcome.signed.portable() + b"\n"
    [stored] = stored_envelopes(f"{repo}@{digest}")
    assert stored == outcome.signed.envelope
    assert dsse.verify(stored, [key_backends[0].signer.public_key])
    subject = {"name": repo, "digest": {"sha256": digest.removeprefix("sha256:")}}
    assert subject in outcome.statement["subject"]


def test_tekton_storage_without_a_file_returns_the_annotations_to_apply(key_backends):
    run, children = pipeline("registry.example/app", "sha256:" + "ab" * 32)
    outcome = attest(run, children, config(key_backends[0], "tekton"))
    [tekton] = outcome.stored
    assert str(tekton) == "tekton: 4 annotations to put on the run"
    assert set(outcome.annotations or {}) == {
        f"chains.tekton.dev/{k}-pipelinerun-{run.uid}" for k in ("payload", "signature", "cert", "chain")
    }


def test_hint_warnings_come_back_and_are_logged(key_backends, caplog):
    [obj] = load_documents(TASKRUN_WITH_HINT_WARNING)
    run = to_run(obj, source="tr.yaml")
    with caplog.at_level(logging.WARNING, logger="signer"):
        outcome = attest(run, [], config(key_backends[0]))
    expected = "TaskRun ci/build-app: result bad-IMAGE_URL has no matching bad-IMAGE_DIGEST; ignored"
    assert outcome.warnings == (expected,)
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("signer.attest", logging.WARNING, expected)
    ]
    assert outcome.stored == ()


# ----------------------------------------------------------------------------- idempotence


@pytest.mark.parametrize("encoding", ["dsse", "sigstore-bundle"])
def test_attesting_a_run_again_stores_nothing_new(registry_plain, key_backends, encoding):
    repo, digest = push_small_image(registry_plain, "attest")
    run, children = pipeline(repo, digest)
    cfg = config(key_backends[0], "oci", storage=StorageConfig(oci_encoding_format=encoding))

    first = attest(run, children, cfg)
    again = attest(run, children, cfg)

    # Signed twice (ECDSA signatures differ), stored once: the second run finds its statement there.
    assert first.signed.envelope.signatures != again.signed.envelope.signatures
    assert first.oci == [OciStored(f"{repo}@{digest}", encoding)]
    assert again.oci == [OciStored(f"{repo}@{digest}", encoding, already=True)]
    assert str(again.oci[0]) == f"oci ({encoding}): {repo}@{digest} (already stored)"
    assert stored_envelopes(f"{repo}@{digest}") == [first.signed.envelope]


def test_the_same_statement_signed_by_another_key_does_not_count_as_stored(registry_plain, key_backends):
    repo, digest = push_small_image(registry_plain, "attest")
    run, children = pipeline(repo, digest)
    theirs = attest(run, children, config(key_backends[1], "oci"))
    ours = attest(run, children, config(key_backends[0], "oci"))

    assert theirs.statement == ours.statement
    assert ours.oci == [OciStored(f"{repo}@{digest}", "dsse")]  # stored, not "already"
    stored = stored_envelopes(f"{repo}@{digest}")
    assert stored == [theirs.signed.envelope, ours.signed.envelope]


# ----------------------------------------------------------------------------- transient failures


def test_registry_down_is_transient_and_nothing_is_stored(key_backends, tmp_path):
    run, children = pipeline(f"127.0.0.1:{free_port()}/app", "sha256:" + "cd" * 32)
    lines = tmp_path / "att.jsonl"
    cfg = config(key_backends[0], "oci", "file", storage=StorageConfig(file_out=str(lines)))
    with pytest.raises(RegistryError, match=r"127\.0\.0\.1:\d+/app.*connection failed") as err:
        attest(run, children, cfg)
    assert isinstance(err.value, TransientError)
    assert not lines.exists()


def test_registry_answering_5xx_is_transient_after_retries(key_backends):
    with fault_server(lambda seen: Answer(503)) as server:
        run, children = pipeline(f"{server.host}/app", "sha256:" + "cd" * 32)
        with pytest.raises(RegistryError, match=r"giving up after 4 attempts, last: HTTP 503") as err:
            attest(run, children, config(key_backends[0], "oci"))
        assert server.count("/manifests/") == 4
    assert isinstance(err.value, TransientError)


def test_spire_agent_down_is_transient_and_nothing_is_signed(tmp_path):
    run, children = pipeline("registry.example/app", "sha256:" + "ab" * 32)
    lines = tmp_path / "att.jsonl"
    signing = SvidSigning(f"unix://{tmp_path}/agent.sock")
    cfg = config(signing, "file", name="spire", storage=StorageConfig(file_out=str(lines)))
    with pytest.raises(WorkloadApiUnavailable, match="is the SPIRE agent running") as err:
        attest(run, children, cfg)
    assert isinstance(err.value, TransientError) and isinstance(err.value, KeyLoadError)
    assert not lines.exists()


# ----------------------------------------------------------------------------- permanent failures


def test_registry_refusing_access_is_permanent(key_backends):
    with fault_server(lambda seen: Answer(403, b'{"errors":[{"message":"denied"}]}')) as server:
        run, children = pipeline(f"{server.host}/app", "sha256:" + "cd" * 32)
        with pytest.raises(RegistryError, match="403 denied") as err:
            attest(run, children, config(key_backends[0], "oci"))
        assert server.count("/manifests/") == 1  # not retried
    assert not isinstance(err.value, TransientError)


def test_an_image_the_registry_does_not_hold_is_permanent(registry_plain, key_backends):
    repo = registry_plain.repo("missing")
    run, children = pipeline(repo, "sha256:" + "cd" * 32)
    with pytest.raises(RegistryError, match="not found") as err:
        attest(run, children, config(key_backends[0], "oci"))
    assert not isinstance(err.value, TransientError)


def test_a_bad_key_is_permanent(tmp_path):
    key, _ = keys.write_key_pair(str(tmp_path / "k"), b"right")
    (tmp_path / "pw").write_text("wrong")
    with pytest.raises(WrongPasswordError) as err:
        KeySigning.load(key, password_file=tmp_path / "pw", prompt=False)
    assert not isinstance(err.value, TransientError)
    (tmp_path / "junk.key").write_text("not a key")
    with pytest.raises(KeyLoadError, match=r"junk\.key") as err2:
        KeySigning.load(tmp_path / "junk.key", prompt=False)
    assert not isinstance(err2.value, TransientError)


def test_an_incomplete_run_is_permanent_and_nothing_is_stored(key_backends, tmp_path):
    pr, trs = samples.load("tep0084-pipelinerun")
    del pr["status"]["completionTime"]
    run = to_run(pr, source="pr.yaml")
    lines = tmp_path / "att.jsonl"
    cfg = config(key_backends[0], "file", storage=StorageConfig(file_out=str(lines)))
    with pytest.raises(InputError, match="has not completed") as err:
        attest(run, [to_run(t, source="pr.yaml") for t in trs], cfg)
    assert not isinstance(err.value, TransientError)
    assert not lines.exists()


def test_a_signer_that_is_not_configured_is_refused_before_anything(key_backends):
    run, children = pipeline("registry.example/app", "sha256:" + "ab" * 32)
    cfg = AttestConfig(signers={"key": key_backends[0]}, pipelinerun=ArtifactConfig(signer="spire"))
    with pytest.raises(InputError, match=r"PipelineRuns are to be signed by 'spire'.*configured: key"):
        attest(run, children, cfg)


@pytest.fixture(scope="module")
def spire_runs(tmp_path_factory) -> tuple[SpireConfig, Run, Run]:
    """(enforcing SpireConfig, a TaskRun whose results verify, the same with a result changed)."""
    from attestation.spiffe import parse_trust_bundle

    root = make_ca(TD)
    svid = make_svid(root, [f"spiffe://{TD}/ns/ci/taskrun/build-1"])
    files = {"IMAGE_DIGEST": "sha256:" + "ab" * 32, "IMAGE_URL": "registry.local/app"}
    obj = taskrun("build-1", "ci", termination_results(files, svid.key, svid.pem.decode()))
    good = to_run(obj, source="good.json")
    for r in obj["status"]["results"]:
        if r["name"] == "IMAGE_DIGEST":
            r["value"] = "sha256:" + "cd" * 32
    tampered = to_run(obj, source="tampered.json")
    spire = SpireConfig("spire", trust_domain=TD, bundle=parse_trust_bundle(root.pem, source="bundle.pem"))
    return spire, good, tampered


def test_a_run_refused_by_nonfalsifiability_is_permanent_and_nothing_is_stored(
    spire_runs, key_backends, tmp_path
):
    spire, good, tampered = spire_runs
    lines, notes = tmp_path / "att.jsonl", tmp_path / "notes.json"
    storage = StorageConfig(file_out=str(lines), annotations_out=str(notes))
    cfg = config(key_backends[0], "tekton", "file", storage=storage, spire=spire)

    with pytest.raises(ResultsNotVerified, match=r"TaskRun ci/build-1 gets no provenance") as err:
        attest(tampered, [], cfg)
    assert not isinstance(err.value, TransientError)
    assert err.value.reasons == (
        "TaskRun ci/build-1: result IMAGE_DIGEST: signature does not verify (value changed after signing?)",
    )
    assert not lines.exists()  # nothing signed, nothing stored
    marked = json.loads(notes.read_text())  # the run marked failed as Chains marks it, nothing else
    assert marked == {
        "chains.tekton.dev/signed": "failed",
        "provgate.dev/not-verified": err.value.reasons[0],
    }

    outcome = attest(good, [], cfg)  # the untouched run is attested
    assert [s.backend for s in outcome.stored] == ["tekton", "file"]
