"""The operator's pure core without a cluster: configuration in Chains' keys, Chains' retry and annotation
rules, registry credentials from Secret objects, the work queue's order and the API token bucket."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time

import pytest

from attestation.keys import generate_cosign_key_pair
from signer.operator import chains, credentials
from signer.operator.config import ConfigError, SigningSecrets, parse_config, parse_data_document
from signer.operator.queue import BACKLOG, FRESH, RUNNING, TokenBucket, WorkQueue

PASSWORD = b"pw"


@pytest.fixture(scope="module")
def secrets() -> SigningSecrets:
    private, _ = generate_cosign_key_pair(PASSWORD)
    return SigningSecrets({"cosign.key": private, "cosign.password": PASSWORD}, source="test secrets")


# -- configuration ---------------------------------------------------------------------------------


def test_chains_defaults_attest_both_kinds_in_in_toto_to_the_tekton_storage(secrets) -> None:
    config = parse_config({}, secrets)
    assert config.taskrun is not None and config.pipelinerun is not None
    assert (config.taskrun.taskrun.format, config.taskrun.taskrun.storage) == ("slsa/v1", ("tekton",))
    assert config.taskrun.builder_id == "https://tekton.dev/chains/v2"
    assert config.warnings == ()


def test_chains_keys_map_one_to_one(secrets) -> None:
    config = parse_config(
        {
            "artifacts.taskrun.format": "slsa/v2alpha4",
            "artifacts.taskrun.storage": "oci, tekton",
            "artifacts.pipelinerun.format": "in-toto",
            "artifacts.pipelinerun.storage": "oci",
            "artifacts.pipelinerun.enable-deep-inspection": "true",
            "storage.oci.repository": "registry.example/attestations",
            "storage.oci.repository.insecure": "true",
            "storage.oci.encoding-format": "sigstore-bundle",
            "builder.id": "https://ci.example/builder",
            "builddefinition.buildtype": "https://tekton.dev/chains/v2/slsa-tekton",
        },
        secrets,
    )
    tr, pr = config.taskrun, config.pipelinerun
    assert tr is not None and pr is not None
    assert tr.taskrun.storage == ("oci", "tekton") and tr.taskrun.format == "slsa/v2alpha4"
    assert pr.pipelinerun.deep_inspection and pr.pipelinerun.format == "slsa/v1"
    assert tr.storage.oci_repository == "registry.example/attestations"
    assert tr.storage.insecure_registries == ("registry.example",)
    assert tr.storage.oci_encoding_format == "sigstore-bundle"
    assert tr.builder_id == "https://ci.example/builder"
    assert tr.build_type == "https://tekton.dev/chains/v2/slsa-tekton"


def test_signer_none_or_no_storage_disables_a_kind(secrets) -> None:
    config = parse_config({"artifacts.taskrun.signer": "none", "artifacts.pipelinerun.storage": ""}, secrets)
    assert config.taskrun is None and config.pipelinerun is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (
            {"artifacts.taskrun.format": "slsa/v2alpha2"},
            "artifacts.taskrun.format: unknown provenance format",
        ),
        ({"artifacts.taskrun.storage": "gcs"}, "the gcs storage is not supported by provgate"),
        ({"artifacts.taskrun.storage": "s3"}, "unknown storage backend 's3'"),
        ({"artifacts.taskrun.signer": "kms"}, "KMS signing (kms) is not supported"),
        ({"artifacts.taskrun.signer": "pgp"}, "unknown signer 'pgp'"),
        ({"artifacts.pipelinerun.enable-deep-inspection": "yes"}, "is not a boolean"),
        ({"builddefinition.buildtype": "https://example/other"}, "builddefinition.buildtype"),
        ({"storage.oci.encoding-format": "protobuf"}, "storage.oci.encoding-format"),
        ({"transparency.enabled": "true"}, "not signatures made with a key"),
        (
            {"signers.x509.fulcio.enabled": "true", "transparency.enabled": "false"},
            "transparency.enabled 'false' cannot go with keyless signing",
        ),
        ({"artifacts.taskrun.storage": "file"}, "provgate.storage.file.path"),
        ({"provgate.spire.enforce-nonfalsifiability": "spire"}, "no trust bundle is configured"),
        ({"provgate.spire.enforce-nonfalsifiability": "tpm"}, "is not one of none, spire"),
        ({"provgate.retry.delay": "-1"}, "provgate.retry.delay"),
        ({"provgate.spire.registration.enabled": "true"}, "server-socket"),
    ],
)
def test_an_unusable_value_names_its_key(secrets, data, message) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(data, secrets)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_the_x509_signer_needs_a_key(secrets) -> None:
    with pytest.raises(ConfigError, match=r"needs cosign\.key"):
        parse_config({}, SigningSecrets(source="Secret ns/signing-secrets"))
    with pytest.raises(ConfigError, match="wrong password"):
        parse_config({}, SigningSecrets({**secrets.files, "cosign.password": b"nope"}))
    assert parse_config(
        {"artifacts.taskrun.signer": "none", "artifacts.pipelinerun.signer": "none"}, SigningSecrets()
    )


def test_unknown_keys_are_warnings_and_image_signing_is_noted(secrets) -> None:
    config = parse_config({"artifacts.taskrun.fromat": "x", "artifacts.oci.storage": "oci"}, secrets)
    assert any(
        w.startswith("artifacts.oci.*: provgate does not sign images (cosign .sig)") for w in config.warnings
    )
    assert "unknown configuration key 'artifacts.taskrun.fromat' (ignored)" in config.warnings


def test_a_config_file_is_the_map_or_a_whole_configmap() -> None:
    assert parse_data_document("builder.id: x\n", source="f") == {"builder.id": "x"}
    configmap = "kind: ConfigMap\napiVersion: v1\ndata:\n  builder.id: y\n"
    assert parse_data_document(configmap, source="f") == {"builder.id": "y"}
    with pytest.raises(ConfigError, match="write the boolean as a string"):
        parse_data_document("storage.oci.repository.insecure: true\n", source="f")
    with pytest.raises(ConfigError, match="not valid YAML"):
        parse_data_document("a: [\n", source="f")


# -- Chains' rules -----------------------------------------------------------------------------------


def run(notes: dict[str, str] | None = None, **extra) -> dict:
    return {
        "apiVersion": "tekton.dev/v1",
        "kind": "TaskRun",
        "metadata": {"name": "r", "namespace": "n", "annotations": notes or {}, **extra},
        "status": {"conditions": [{"type": "Succeeded", "status": "False"}]},
    }


def test_retries_count_as_chains_counts() -> None:
    assert chains.retry_available(run()) and chains.next_retry(run()) == "0"
    assert chains.next_retry(run({chains.RETRIES: "2"})) == "3"
    assert chains.retry_available(run({chains.RETRIES: "2"}))
    assert not chains.retry_available(run({chains.RETRIES: "3"}))
    assert not chains.retry_available(run({chains.RETRIES: "three"}))  # unreadable: used up, as Chains
    assert (
        chains.retry_delay(run(), 1.0) == 1.0 and chains.retry_delay(run({chains.RETRIES: "2"}), 1.0) == 8.0
    )


def test_done_reconciled_and_opted_out() -> None:
    assert chains.is_done(run())
    assert not chains.is_done({"status": {"conditions": [{"type": "Succeeded", "status": "Unknown"}]}})
    assert chains.reconciled(run({chains.SIGNED: "failed"})) and not chains.reconciled(
        run({chains.SIGNED: "no"})
    )
    assert chains.opted_out(run({chains.SKIP: "true"}))
    assert chains.opted_out(run(labels={chains.SKIP: "true"}))
    assert not chains.managed({"spec": {"managedBy": "other.example/controller"}})
    assert chains.managed(
        {"spec": {"managedBy": "other.example/controller"}}, frozenset({"other.example/controller"})
    )


def test_the_apply_body_keeps_chains_annotations_and_drops_the_operators_bookkeeping() -> None:
    obj = run({chains.RETRIES: "1", "team": "a", "signer.provgate.dev/attest": "{}"}, finalizers=["x"])
    body = chains.apply_body(
        obj, chains.signed({"chains.tekton.dev/payload-taskrun-1": "p"}), keep_finalizer=False
    )
    assert body["metadata"]["annotations"] == {
        chains.RETRIES: "1",
        chains.SIGNED: "true",
        "chains.tekton.dev/payload-taskrun-1": "p",
    }
    assert "finalizers" not in body["metadata"]
    kept = chains.apply_body(obj, {chains.RETRIES: "2"}, keep_finalizer=True)
    assert kept["metadata"]["finalizers"] == ["chains.tekton.dev/taskrun"]
    clean = chains.for_provenance({**obj, "metadata": {**obj["metadata"], "managedFields": [{}]}})
    assert clean["metadata"]["annotations"] == {chains.RETRIES: "1", "team": "a"}
    assert "managedFields" not in clean["metadata"]
    assert len(chains.failed("x" * 5000)[chains.FAILURE]) == chains.MAX_REASON_CHARS


# -- credentials ------------------------------------------------------------------------------------


def secret(name: str, kind: str, doc: dict) -> dict:
    key = ".dockerconfigjson" if kind.endswith("dockerconfigjson") else ".dockercfg"
    return {
        "metadata": {"name": name, "namespace": "ci"},
        "type": kind,
        "data": {key: base64.b64encode(json.dumps(doc).encode()).decode()},
    }


def auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_credentials_come_from_both_secret_types_first_secret_wins() -> None:
    first = secret(
        "a",
        credentials.DOCKERCONFIGJSON,
        {"auths": {"https://reg.example:5000/v1/": {"auth": auth("u1", "p1")}}},
    )
    second = secret(
        "b",
        credentials.DOCKERCFG,
        {"reg.example:5000": {"auth": auth("u2", "p2")}, "docker.io": {"username": "hub", "password": "h"}},
    )
    other = {"metadata": {"name": "c"}, "type": "kubernetes.io/service-account-token", "data": {}}
    found = credentials.merge(
        "builder", ["a", "b", "c", "gone"], {"a": first, "b": second, "c": other, "gone": None}
    )
    assert found.by_registry["reg.example:5000"].username == "u1"
    assert found.by_registry["index.docker.io"].username == "hub"
    assert found.missing == ("gone",)
    assert "p1" not in repr(found) and "p1" not in found.describe()
    assert "ServiceAccount builder" in found.describe()


def test_where_credentials_are_looked_for() -> None:
    taskrun = {"spec": {"serviceAccountName": "sa", "podTemplate": {"imagePullSecrets": [{"name": "pod"}]}}}
    sa = {"secrets": [{"name": "s1"}], "imagePullSecrets": [{"name": "pull"}, {"name": "s1"}]}
    assert credentials.secret_names(taskrun, sa) == ["pod", "s1", "pull"]
    assert credentials.service_account({"spec": {"taskRunTemplate": {"serviceAccountName": "p"}}}) == "p"
    assert credentials.service_account({"spec": {}}) == "default"


def test_a_broken_pull_secret_yields_nothing_rather_than_an_error() -> None:
    broken = {
        "metadata": {"name": "x"},
        "type": credentials.DOCKERCONFIGJSON,
        "data": {".dockerconfigjson": "%%%"},
    }
    assert credentials.credentials_from_secret(broken) == {}
    bad_auth = secret("y", credentials.DOCKERCONFIGJSON, {"auths": {"r": {"auth": "bm9jb2xvbg=="}}})
    assert credentials.credentials_from_secret(bad_auth) == {}


# -- queue and token bucket --------------------------------------------------------------------------


def test_running_runs_then_new_runs_newest_first_then_the_backlog() -> None:
    order: list[str] = []
    gate = threading.Event()

    async def main() -> None:
        queue = WorkQueue(1)
        blocker = asyncio.ensure_future(queue.submit(gate.wait, klass=RUNNING))
        await asyncio.sleep(0.05)  # the one worker is busy: the rest queue up
        jobs = [
            queue.submit(lambda: order.append("backlog-old"), klass=BACKLOG, newest=1.0),
            queue.submit(lambda: order.append("backlog-new"), klass=BACKLOG, newest=2.0),
            queue.submit(lambda: order.append("fresh-old"), klass=FRESH, newest=10.0),
            queue.submit(lambda: order.append("fresh-new"), klass=FRESH, newest=20.0),
            queue.submit(lambda: order.append("running"), klass=RUNNING),
        ]
        tasks = [asyncio.ensure_future(j) for j in jobs]
        await asyncio.sleep(0.05)
        gate.set()
        await asyncio.gather(blocker, *tasks)
        queue.close()

    asyncio.run(main())
    assert order == ["running", "fresh-new", "fresh-old", "backlog-new", "backlog-old"]


def test_an_error_in_work_reaches_the_awaiting_handler() -> None:
    async def main() -> None:
        queue = WorkQueue(2)
        with pytest.raises(ZeroDivisionError):
            await queue.submit(lambda: 1 / 0, klass=FRESH)
        queue.close()

    asyncio.run(main())


def test_the_token_bucket_paces_calls_after_the_burst() -> None:
    bucket = TokenBucket(qps=20, burst=5)
    started = time.monotonic()
    for _ in range(15):
        bucket.acquire()
    elapsed = time.monotonic() - started
    assert elapsed >= 0.45  # 5 at once, then 10 at 20 per second: never faster


def test_the_sample_configuration_parses_without_warnings(secrets) -> None:
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "config" / "samples" / "signer.yaml"
    data = parse_data_document(path.read_text(), source=str(path))
    config = parse_config(data, secrets)
    assert config.warnings == ()
    assert config.taskrun is not None and config.taskrun.taskrun.storage == ("oci", "tekton")


def test_fulcio_enabled_makes_the_x509_signer_keyless(secrets) -> None:
    from signer.signing.keyless import KeylessSigning

    config = parse_config(
        {
            "signers.x509.fulcio.enabled": "true",
            "signers.x509.fulcio.address": "https://fulcio.example",
            "transparency.enabled": "true",
            "transparency.url": "https://rekor.example",
            "provgate.spire.socket": "unix:///run/spire/agent.sock",
            "provgate.keyless.trust-config": "/etc/provgate/trust-config.json",
        },
        SigningSecrets(),  # no key needed
    )
    assert config.taskrun is not None and config.warnings == ()
    backend = config.taskrun.signers["x509"]
    assert isinstance(backend, KeylessSigning)
    assert backend.config.fulcio_url == "https://fulcio.example"
    assert backend.config.rekor_url == "https://rekor.example"
    assert backend.config.spiffe_socket == "unix:///run/spire/agent.sock"
