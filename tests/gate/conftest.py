"""Keys, statements, envelopes and a small policy for the gate's tests.

Statements are written out by hand in the shapes Tekton Chains produces (SLSA v0.2 in an in-toto v0.1
statement, SLSA v1.0 in an in-toto v1 statement), so a test reads what the gate is fed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from attestation import dsse
from attestation.keys import PrivateKeySigner

DIGEST_HEX = "a" * 63 + "1"
OTHER_HEX = "b" * 63 + "2"
REPO = "localhost:5000/team/app"
IMAGE = f"{REPO}@sha256:{DIGEST_HEX}"
BUILDER_ID = "https://tekton.dev/chains/v2"
PAYLOAD_TYPE = "application/vnd.in-toto+json"


def slsa02_statement(digest_hex: str = DIGEST_HEX, *, name: str = REPO, tasks: int = 2) -> dict[str, Any]:
    return {
        "_type": "https://in-toto.io/Statement/v0.1",
        "predicateType": "https://slsa.dev/provenance/v0.2",
        "subject": [{"name": name, "digest": {"sha256": digest_hex}}],
        "predicate": {
            "builder": {"id": BUILDER_ID},
            "buildType": "tekton.dev/v1beta1/PipelineRun",
            "invocation": {"configSource": {}, "parameters": {}},
            "buildConfig": {
                "tasks": [
                    {"name": f"task-{i}", "ref": {"name": f"task-{i}", "kind": "Task"}, "results": []}
                    for i in range(tasks)
                ]
            },
            "materials": [{"uri": "git+https://git.example/app.git", "digest": {"sha1": "c" * 40}}],
        },
    }


def slsa1_statement(digest_hex: str = DIGEST_HEX, *, name: str = REPO) -> dict[str, Any]:
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": name, "digest": {"sha256": digest_hex}}],
        "predicateType": "https://slsa.dev/provenance/v1",
        "predicate": {
            "buildDefinition": {
                "buildType": "https://tekton.dev/chains/v2/slsa",
                "externalParameters": {"runSpec": {}},
                "internalParameters": {},
                "resolvedDependencies": [],
            },
            "runDetails": {"builder": {"id": BUILDER_ID}, "metadata": {"invocationID": "run-1"}},
        },
    }


def to_bytes(statement: dict[str, Any]) -> bytes:
    return json.dumps(statement, separators=(",", ":")).encode()


def envelope_json(
    payload: bytes, signer: PrivateKeySigner, *, payload_type: str = PAYLOAD_TYPE, keyid: str | None = None
) -> bytes:
    env = dsse.sign(payload, signer, payload_type=payload_type)
    doc = env.to_dict()
    if keyid is not None:
        doc["signatures"][0]["keyid"] = keyid
    return json.dumps(doc).encode()


def raw_envelope(payload: bytes, sigs: list[bytes], *, payload_type: str = PAYLOAD_TYPE) -> bytes:
    """An envelope assembled field by field, for signatures that dsse.sign would never make."""
    return json.dumps(
        {
            "payloadType": payload_type,
            "payload": base64.b64encode(payload).decode(),
            "signatures": [{"keyid": "", "sig": base64.b64encode(s).decode()} for s in sigs],
        }
    ).encode()


@pytest.fixture(scope="session")
def trusted_signer() -> PrivateKeySigner:
    return PrivateKeySigner(ec.generate_private_key(ec.SECP256R1()), source="trusted")


@pytest.fixture(scope="session")
def untrusted_signer() -> PrivateKeySigner:
    return PrivateKeySigner(ec.generate_private_key(ec.SECP256R1()), source="untrusted")


@pytest.fixture(scope="session")
def key_file(tmp_path_factory: pytest.TempPathFactory, trusted_signer: PrivateKeySigner) -> Path:
    path = tmp_path_factory.mktemp("keys") / "cosign.pub"
    path.write_bytes(trusted_signer.public_key.to_pem())
    return path


@pytest.fixture(scope="session")
def sign(trusted_signer: PrivateKeySigner) -> Callable[[dict[str, Any]], bytes]:
    """A statement as one envelope line signed by the trusted key."""

    def make(statement: dict[str, Any]) -> bytes:
        return envelope_json(to_bytes(statement), trusted_signer)

    return make


# A policy that accepts Chains provenance from the expected builder; each rule has METADATA like the
# bundled library, so tests see titles, messages and solutions pass through the pipeline.
TEST_POLICY = """\
package policy.release.provenance

import rego.v1

# METADATA
# title: Provenance from the trusted builder
# description: The image must have SLSA provenance produced by Tekton Chains.
# custom:
#   short_name: trusted_builder
#   failure_msg: no provenance from builder %s
#   solution: Build the image in the Tekton pipeline watched by Chains.
deny contains result if {
\tnot _has_trusted_builder
\tresult := {"code": "provenance.trusted_builder", "params": [data.rule_data.builder_id]}
}

# METADATA
# title: Several tasks
# description: Pipelines with a single task are unusual.
# custom:
#   short_name: several_tasks
#   failure_msg: pipeline has %s task(s)
#   solution: Check the pipeline definition.
warn contains result if {
\tsome att in input.attestations
\tn := count(att.statement.predicate.buildConfig.tasks)
\tn < 2
\tresult := {"code": "provenance.several_tasks", "params": [n]}
}

_has_trusted_builder if {
\tsome att in input.attestations
\tatt.statement.predicate.builder.id == data.rule_data.builder_id
}

_has_trusted_builder if {
\tsome att in input.attestations
\tatt.statement.predicate.runDetails.builder.id == data.rule_data.builder_id
}
"""

TEST_DATA = {"rule_data": {"builder_id": BUILDER_ID}}


@pytest.fixture(scope="session")
def policy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("policy")
    (root / "release").mkdir()
    (root / "release" / "provenance.rego").write_text(TEST_POLICY)
    return root


@pytest.fixture(scope="session")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "rule_data.json"
    path.write_text(json.dumps(TEST_DATA))
    return path
