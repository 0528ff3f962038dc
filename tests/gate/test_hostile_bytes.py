"""Unverified hostile bytes next to a well-attested image (issue 10, finding 4): whatever someone who can push
a layer or a referrer puts there, the gate neither crashes nor changes its verdict on the good attestation,
reports the hostile one as unverified with a reason, and prints only valid UTF-8 with nothing hostile.

Property tests (hypothesis) drive the decoder, the checklist and the whole decision with arbitrary bytes and
arbitrary JSON holding lone surrogates, control characters, NULs and bidi overrides; fixed cases pin each
place such a string can sit; the console script and a real registry close the loop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from attestation import bundle, dsse
from attestation.cosign import RawAttestation, decode_attestation, material_from_annotations
from attestation.errors import ProvgateError, RegistryError
from attestation.oci import layout
from attestation.oci.writer import push_attestation_legacy, push_attestation_referrer, push_image
from gate.checklist import check_attestation
from gate.cli import run
from gate.decision import Decision, render_text
from gate.render import HOSTILE, to_json
from gate.verify import Gate, GateConfig
from tests.gate.conftest import IMAGE, PAYLOAD_TYPE, envelope_json, slsa02_statement, to_bytes
from tests.gate.test_render import hostile_text, json_values
from tests.infra.registry import RegistryServer, registry_plain, registry_referrers  # noqa: F401

REPO_ROOT = Path(__file__).resolve().parents[2]
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SIG = base64.b64encode(b"\x30" * 70).decode()
BUNDLE_TYPE = bundle.BUNDLE_MEDIA_TYPE


@pytest.fixture(scope="module")
def gate(policy_dir: Path, data_file: Path, key_file: Path) -> Gate:
    g = Gate(GateConfig(policy_paths=(policy_dir,), data_paths=(data_file,), key_files=(key_file,)))
    yield g
    g.close()


@pytest.fixture(scope="module")
def good(sign) -> bytes:
    return sign(slsa02_statement())


def _ascii_json(doc: Any) -> bytes:
    # json.dumps writes a lone surrogate as the escape "\ud800": valid UTF-8 bytes, as an attacker sends.
    return json.dumps(doc).encode("ascii")


def assert_safe_output(decision: Decision) -> None:
    """What every surface prints for ``decision``: valid UTF-8, and nothing hostile outside line breaks."""
    text = render_text(decision)
    text.encode("utf-8")  # strict
    assert HOSTILE.search(text.replace("\n", "")) is None
    doc = to_json(decision.to_dict(), indent=2)
    doc.encode("utf-8")
    assert HOSTILE.search(doc.replace("\n", "")) is None
    assert json.loads(doc) == decision.to_dict()


def assert_good_verdict_stands(decision: Decision, hostile: int = 1) -> None:
    assert decision.decided and decision.allowed and decision.exit_code == 0, decision.to_dict()
    assert [a.verified for a in decision.attestations] == [True] + [False] * hostile
    for report in decision.attestations[1:]:
        assert report.error  # one reason each
    assert_safe_output(decision)


# --- each place a hostile string can sit ----------------------------------------------------------------

ENVELOPE = {
    "payloadType": PAYLOAD_TYPE,
    "payload": base64.b64encode(b"{}").decode(),
    "signatures": [{"sig": SIG}],
}
BUNDLE = {
    "mediaType": BUNDLE_TYPE,
    "verificationMaterial": {"publicKey": {"hint": "k"}, "tlogEntries": []},
    "dsseEnvelope": ENVELOPE,
}


def _with(doc: dict[str, Any], path: tuple[str | int, ...], value: Any, *, as_key: bool = False) -> bytes:
    doc = json.loads(json.dumps(doc))
    target: Any = doc
    for step in path[:-1]:
        target = target[step]
    if as_key:
        target[value] = target.pop(path[-1]) if path[-1] in target else 1
    else:
        target[path[-1]] = value
    return _ascii_json(doc)


HOSTILE_LINES = {
    # The review's case: a lone surrogate as a key of a bundle that does not verify.
    "bundle-key-surrogate": _with(BUNDLE, ("extra",), "\ud800", as_key=True),
    "bundle-value-surrogate": _with(BUNDLE, ("mediaType",), BUNDLE_TYPE + "\udc00"),
    "bundle-material-key": _with(BUNDLE, ("verificationMaterial", "x"), "\udfff\x1b[2J", as_key=True),
    "bundle-hint": _with(BUNDLE, ("verificationMaterial", "publicKey", "hint"), "\ud800\u202e"),
    "envelope-key-surrogate": _with(ENVELOPE, ("payload",), "\udbff", as_key=True),
    "envelope-payload-type": _with(ENVELOPE, ("payloadType",), "\ud800"),
    "envelope-keyid": _with(ENVELOPE, ("signatures", 0, "keyid"), "\udc00\x00"),
    "envelope-controls": _with(ENVELOPE, ("payloadType",), "\x00\x1b]0;owned\x07\u202e\u2028FAKE"),
    "nul-and-bidi-keys": _with(ENVELOPE, ("x",), "\x00\u202e\u2066", as_key=True),
    "surrogate-utf8-bytes": b'{"payloadType": "\xed\xa0\x80"}',  # an encoded surrogate: not UTF-8
    "invalid-utf8": b'{"payloadType": "\xff\xfe"}',
    "not-json": b"\x00\x1b[2J\xe2\x80\xae",
}


@pytest.mark.parametrize("name", sorted(HOSTILE_LINES))
def test_hostile_line_next_to_a_good_one_changes_nothing(gate: Gate, good: bytes, name: str) -> None:
    decision = gate.verify_sync(IMAGE, attestations=[good, HOSTILE_LINES[name]])
    assert_good_verdict_stands(decision)


@pytest.mark.parametrize("name", ["bundle-key-surrogate", "envelope-keyid", "surrogate-utf8-bytes"])
def test_hostile_line_alone_is_a_clear_denial(gate: Gate, name: str) -> None:
    decision = gate.verify_sync(IMAGE, attestations=[HOSTILE_LINES[name]])
    assert decision.decided and not decision.allowed and decision.exit_code == 1
    [report] = decision.attestations
    assert not report.verified and report.error
    assert_safe_output(decision)


def test_lone_surrogate_is_named_in_the_reason(gate: Gate, good: bytes) -> None:
    decision = gate.verify_sync(IMAGE, attestations=[good, HOSTILE_LINES["bundle-key-surrogate"]])
    assert "unpaired surrogate \\ud800" in decision.attestations[1].error


def test_hostile_annotations_and_media_types_change_nothing(gate: Gate, good: bytes) -> None:
    hostile = [
        # the good envelope again: with key trust its certificate annotation is never read, so it verifies
        RawAttestation(good, "layer 1", dsse.MEDIA_TYPE, {"dev.sigstore.cosign/certificate": "\ud800"}),
        RawAttestation(good, "layer 2", dsse.MEDIA_TYPE, {"dev.sigstore.cosign/rfc3161timestamp": "\udfff"}),
        RawAttestation(good, "layer 3", dsse.MEDIA_TYPE + "\ud800"),
        RawAttestation(good, "\x1b[2J\ud800 layer 4", BUNDLE_TYPE),
        RawAttestation(b"", "layer 5", problem="referrer \x1b]0;x\x07: not JSON \ud800"),
    ]
    decision = gate.verify_sync(IMAGE, attestations=[good, *hostile])
    assert decision.decided and decision.allowed and decision.exit_code == 0, decision.to_dict()
    assert [a.verified for a in decision.attestations] == [True, True, False, False, False, False]
    assert all(a.error for a in decision.attestations[2:])
    assert_safe_output(decision)


def test_an_unexpected_error_in_one_attestation_is_its_reason_only(
    gate: Gate, good: bytes, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Whatever a decoder might raise that nobody foresaw, for bytes that did not verify, stays with them.
    from gate import checklist

    real = checklist.decode_attestation

    def decode(raw: Any) -> Any:
        if raw.source == "attestation 2":
            raise RuntimeError("boom \ud800\x1b[2J")
        return real(raw)

    monkeypatch.setattr(checklist, "decode_attestation", decode)
    decision = gate.verify_sync(IMAGE, attestations=[good, HOSTILE_LINES["envelope-keyid"]])
    assert_good_verdict_stands(decision)
    assert "attestation 2: could not be checked (RuntimeError: boom" in decision.attestations[1].error


def test_an_unexpected_error_after_the_signature_verified_denies(
    gate: Gate, good: bytes, sign, monkeypatch: pytest.MonkeyPatch
) -> None:
    # After a trusted signature, the same surprise makes the attestation unusable: the image is denied.
    from attestation import intoto
    from gate.checklist import UNUSABLE_STATEMENT

    other = sign(slsa02_statement(tasks=3))
    real = intoto.from_dict

    def from_dict(doc: Any, *, source: str) -> Any:
        if source.startswith("attestation 2"):
            raise KeyError("boom")
        return real(doc, source=source)

    monkeypatch.setattr(intoto, "from_dict", from_dict)
    decision = gate.verify_sync(IMAGE, attestations=[good, other])
    assert decision.decided and not decision.allowed and decision.exit_code == 1
    assert [v.code for v in decision.violations] == [UNUSABLE_STATEMENT]
    assert "could not be checked (KeyError" in decision.attestations[1].error


def test_a_reason_quoting_megabytes_is_cut_short(gate: Gate, good: bytes) -> None:
    fields = {f"field-{i}-" + "x" * 100_000: 1 for i in range(20)}
    decision = gate.verify_sync(IMAGE, attestations=[good, _ascii_json({**BUNDLE, **fields})])
    assert_good_verdict_stands(decision)
    assert len(decision.attestations[1].error) < 1200


# --- properties ---------------------------------------------------------------------------------------

signature_like = st.fixed_dictionaries(
    {}, optional={"sig": st.just(SIG) | hostile_text, "keyid": hostile_text}
)
envelope_like = st.fixed_dictionaries(
    {},
    optional={
        "payloadType": st.just(PAYLOAD_TYPE) | hostile_text,
        "payload": st.just(ENVELOPE["payload"]) | hostile_text,
        "signatures": st.lists(signature_like | json_values, max_size=3),
    },
)
material_like = st.dictionaries(
    st.sampled_from(["publicKey", "certificate", "x509CertificateChain", "tlogEntries"]) | hostile_text,
    json_values,
    max_size=3,
)
bundle_like = st.fixed_dictionaries(
    {"mediaType": st.just(BUNDLE_TYPE) | hostile_text},
    optional={"verificationMaterial": material_like, "dsseEnvelope": envelope_like | json_values},
)
hostile_documents = envelope_like | bundle_like | json_values
# As an attacker sends them: JSON with \u escapes, raw UTF-8, or bytes that are not UTF-8 at all.
hostile_encodings = st.sampled_from(["ascii", "utf-8", "surrogatepass"])


def _encode(doc: Any, how: str) -> bytes:
    if how == "ascii":
        return json.dumps(doc).encode("ascii")
    text = json.dumps(doc, ensure_ascii=False)
    return text.encode("utf-8", "surrogatepass" if how == "surrogatepass" else "backslashreplace")


@SETTINGS
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_change_the_verdict(gate: Gate, good: bytes, data: bytes) -> None:
    assert_good_verdict_stands(gate.verify_sync(IMAGE, attestations=[good, data]))


@SETTINGS
@given(hostile_documents, hostile_encodings)
def test_arbitrary_hostile_json_never_changes_the_verdict(
    gate: Gate, good: bytes, doc: Any, how: str
) -> None:
    assert_good_verdict_stands(gate.verify_sync(IMAGE, attestations=[good, _encode(doc, how)]))


@SETTINGS
@given(
    st.binary(max_size=200) | hostile_documents.map(_ascii_json),
    st.none() | st.sampled_from([dsse.MEDIA_TYPE, BUNDLE_TYPE]) | hostile_text,
    st.dictionaries(
        st.sampled_from(
            [
                "dev.sigstore.cosign/certificate",
                "dev.sigstore.cosign/chain",
                "dev.sigstore.cosign/rfc3161timestamp",
            ]
        )
        | hostile_text,
        hostile_text,
        max_size=3,
    ),
    hostile_text,
)
def test_the_decoder_and_the_checklist_only_ever_report(
    gate: Gate, data: bytes, media_type: str | None, annotations: dict[str, str], source: str
) -> None:
    raw = RawAttestation(data, source or "x", media_type, annotations)
    # ProvgateError is the documented failure; anything else fails the test.
    with contextlib.suppress(ProvgateError):
        decode_attestation(raw)
    with contextlib.suppress(ProvgateError):
        material_from_annotations(annotations, source)
    checked = check_attestation(raw, gate.prepare_offline(IMAGE, []).image, gate.trust)
    assert checked.statement is None and not checked.report.verified and checked.report.error
    assert "could not be checked" not in checked.report.error  # every failure was foreseen


@SETTINGS
@given(st.binary(max_size=300) | hostile_documents.map(_ascii_json))
def test_manifest_parser_only_raises_registry_errors(data: bytes) -> None:
    with contextlib.suppress(RegistryError):
        layout.parse_manifest(data, what="referrer")


@SETTINGS
@given(json_values)
def test_a_trusted_signer_signing_hostile_json_is_decided_and_printable(
    gate: Gate, good: bytes, trusted_signer, doc: Any
) -> None:
    # Not unverified this time: the signature holds, so whatever the payload, the decision is reached
    # (a payload that is not a usable statement denies) and prints safely.
    signed = envelope_json(_ascii_json(doc), trusted_signer)
    decision = gate.verify_sync(IMAGE, attestations=[good, signed])
    assert decision.decided
    assert_safe_output(decision)


# --- the console script: the bytes it writes -------------------------------------------------------------


@pytest.mark.parametrize("output", ["text", "json", "policy-input"])
def test_console_script_prints_utf8_and_keeps_the_verdict(
    tmp_path: Path, good: bytes, key_file: Path, policy_dir: Path, data_file: Path, output: str
) -> None:
    lines = tmp_path / "atts.jsonl"
    lines.write_bytes(b"\n".join([good, *HOSTILE_LINES.values()]) + b"\n")
    args = ["--key", key_file, "--policy", policy_dir, "--data", data_file, "--attestations", lines]
    proc = subprocess.run(
        [sys.executable, "-m", "gate", "-v", "verify", IMAGE, *map(str, args), "--output", output],
        capture_output=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "LC_ALL": "C", "PYTHONIOENCODING": "latin-1"},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")[-2000:]
    out, err = proc.stdout.decode("utf-8"), proc.stderr.decode("utf-8")  # strict: valid UTF-8 only
    for text in (out, err):
        assert HOSTILE.search(text.replace("\n", "")) is None
        assert "Traceback" not in text
    if output == "text":
        assert out.startswith("ALLOWED: ") and f"1 of {1 + len(HOSTILE_LINES)} verified" in out
    else:
        json.loads(out)


def test_in_process_cli_output_is_utf8(
    capsys, tmp_path: Path, good: bytes, key_file: Path, policy_dir: Path, data_file: Path
) -> None:
    lines = tmp_path / "atts.jsonl"
    lines.write_bytes(b"\n".join([good, *HOSTILE_LINES.values()]) + b"\n")
    args = ["--key", key_file, "--policy", policy_dir, "--data", data_file, "--attestations", lines]
    for output in ("text", "json", "policy-input"):
        code = run(["verify", IMAGE, *map(str, args), "--output", output])
        out, err = capsys.readouterr()
        assert code == 0
        out.encode("utf-8"), err.encode("utf-8")


# --- a real registry -------------------------------------------------------------------------------------


@pytest.fixture(params=["registry_plain", "registry_referrers"])
def server(request: pytest.FixtureRequest) -> RegistryServer:
    return request.getfixturevalue(request.param)


async def _push_raw_referrer(client: Any, image: Any, manifest: bytes, deadline: float) -> None:
    """Push manifest bytes exactly as given as a referrer of ``image`` (listed in the tag-schema index
    on a registry without the referrers API), as any client with push access can."""
    repo = image.reference
    digest = await client.put_manifest(
        repo, layout.sha256_digest(manifest), manifest, layout.OCI_MANIFEST, deadline=deadline
    )
    if await client.get_referrers(repo, image.digest, deadline=deadline) is not None:
        return
    tag = layout.referrers_fallback_tag(image.digest)
    got = await client.get_manifest(repo, tag, deadline=deadline, accept=(layout.OCI_INDEX,), missing_ok=True)
    old = layout.parse_manifest(got[0], what=tag).layers if got else ()
    entry = layout.Descriptor(layout.OCI_MANIFEST, digest, len(manifest), artifact_type=BUNDLE_TYPE)
    body = layout.fallback_index(old, entry)
    assert body is not None
    await client.put_manifest(repo, tag, body, layout.OCI_INDEX, deadline=deadline)


def test_good_verdict_stands_next_to_hostile_layers_and_referrers_in_a_registry(
    server: RegistryServer, trusted_signer, policy_dir: Path, data_file: Path, key_file: Path, capsys
) -> None:
    async def setup() -> str:
        deadline = time.monotonic() + 60
        async with server.client() as client:
            image = await push_image(
                client, server.repo(), [b"layer %d" % time.monotonic_ns()], tag="v1", deadline=deadline
            )
            name, hex_digest = image.reference.name, image.digest.split(":")[1]
            good = envelope_json(to_bytes(slsa02_statement(hex_digest, name=name)), trusted_signer)
            await push_attestation_legacy(client, image, good, deadline=deadline)
            # 1. an .att layer whose envelope has a lone surrogate as a key
            await push_attestation_legacy(
                client, image, HOSTILE_LINES["envelope-key-surrogate"], deadline=deadline
            )
            # 2. a referrer bundle with a lone surrogate in its verification material
            await push_attestation_referrer(
                client,
                image,
                HOSTILE_LINES["bundle-material-key"],
                predicate_type="x\x1b[2J\u202e",
                deadline=deadline,
            )
            # 3. a referrer manifest the gate cannot parse (a lone surrogate in an annotation)
            blob = HOSTILE_LINES["bundle-hint"]
            await client.upload_blob(image.reference, blob, deadline=deadline)
            await client.upload_blob(image.reference, layout.EMPTY_JSON, deadline=deadline)
            subject = layout.Descriptor(image.media_type, image.digest, image.size or 0)
            manifest = json.loads(
                layout.referrer_manifest(
                    subject,
                    layout.Descriptor.of(blob, BUNDLE_TYPE),
                    artifact_type=BUNDLE_TYPE,
                    annotations={},
                )
            )
            manifest["annotations"] = {"note": "\ud800\x1b[2J\u202e"}
            await _push_raw_referrer(client, image, _ascii_json(manifest), deadline)
            return f"{name}:v1"

    tag_ref = asyncio.run(setup())
    args = ["--key", key_file, "--policy", policy_dir, "--data", data_file]
    for output in ("text", "json", "policy-input"):
        code = run(["verify", tag_ref, *map(str, args), "--output", output])
        out, err = capsys.readouterr()
        assert code == 0, (out, err)
        out.encode("utf-8"), err.encode("utf-8")
        assert HOSTILE.search(out.replace("\n", "") + err.replace("\n", "")) is None
    code = run(["verify", tag_ref, *map(str, args), "--output", "json"])
    decision = json.loads(capsys.readouterr().out)
    reports = decision["attestations"]
    assert decision["allowed"] is True and [a["verified"] for a in reports] == [True, False, False, False]
    assert all(a["error"] for a in reports[1:])
    assert any("unpaired surrogate" in a["error"] for a in reports[1:])
