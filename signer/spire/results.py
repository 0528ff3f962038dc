"""Verify TaskRun results signed by Tekton's entrypoint with the TaskRun's SPIRE SVID (TEP-0089).

What the entrypoint adds to the results (tektoncd/pipeline ``pkg/spire/sign.go``): ``SVID`` (PEM of the
leaf), ``<name>.sig`` for every result (base64 of an ECDSA-DER / RSA-PKCS#1v1.5 signature over SHA-256 of
the *canonical value*), ``RESULT_MANIFEST`` (the comma-joined result names) and ``RESULT_MANIFEST.sig``.

The canonical value is not the bytes the step wrote: the entrypoint decodes them as Tekton's
``ParamValue`` and joins arrays with ``,`` (and objects in a peculiar way, see :func:`signed_value`).
That is lossy (``["a,b"]`` and ``["a","b"]`` sign the same text), so a verified result proves its
canonical text, not its JSON shape; ``docs/spire.md`` explains what we do about it.

Everything here is pure: the caller supplies the trust bundles and the validation time. An SVID is
checked only against the bundle of its own trust domain; a bundle that does not name its trust domain is
taken as the TaskRun's (``trust_domain``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cryptography import x509

from attestation.errors import InputError, VerificationError
from attestation.spiffe import TrustBundle, TrustBundles, load_pem_certificates, validate_trust_domain
from attestation.x509 import VerifiedSvid, verify_svid
from signer.run import ParamValue

KEY_SVID = "SVID"
KEY_MANIFEST = "RESULT_MANIFEST"
SIG_SUFFIX = ".sig"
# Bounds: Tekton caps the termination message at 4 KiB per container (results can be larger only with
# the sidecar logs mode, 1 MiB in total); these are generous for honest runs.
MAX_RESULTS = 1024
MAX_SIGNATURE_TEXT = 8 * 1024


# ----------------------------------------------------------------------------- canonicalisation


def signed_value(value: Any) -> str:
    """The text Tekton's entrypoint signs for a result value (``getResultValue`` in ``pkg/spire``).

    * string: itself;
    * array: elements joined with ``,``;
    * object: Go builds a key list that starts with ``len(obj)`` empty strings, appends the real keys,
      sorts it, then emits ``key,value`` for every entry (``""`` for the empty keys). So
      ``{"b": "2", "a": "1"}`` signs ``",,,,a,1,b,2"``. Reproduced exactly, oddity included.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return ",".join(value)
    if isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        # Go sorts strings bytewise in UTF-8; code-point order of Python strings is the same order.
        keys = sorted([""] * len(value) + list(value))
        parts: list[str] = []
        for key in keys:
            parts.extend((key, value.get(key, "")))
        return ",".join(parts)
    raise InputError(f"result value of type {type(value).__name__} is not a Tekton string, array or object")


def entrypoint_value(raw: str) -> ParamValue:
    """Decode the text a step wrote to a result file as Tekton's ``ParamValue.UnmarshalJSON`` does.

    This is the value the controller stores in ``status.results`` and the one the entrypoint signs
    (through :func:`signed_value`). Used to produce test data exactly as the entrypoint would.
    """
    if raw == "":
        return ""
    if raw[0] == "[":
        decoded = _go_json(raw)
        if isinstance(decoded, list) and all(v is None or isinstance(v, str) for v in decoded):
            return ["" if v is None else v for v in decoded]
    if raw[0] == "{":
        decoded = _go_json(raw)
        if isinstance(decoded, dict) and all(v is None or isinstance(v, str) for v in decoded.values()):
            return {k: "" if v is None else v for k, v in decoded.items()}
    decoded = _go_json(raw)
    if isinstance(decoded, str):
        return decoded
    if decoded is None and raw.strip() == "null":
        return ""  # Go leaves the string empty when unmarshalling JSON null into it
    return raw


_NOT_JSON = object()


def _go_json(raw: str) -> Any:
    try:
        return json.loads(raw, parse_constant=lambda _c: _NOT_JSON)
    except (ValueError, RecursionError):
        return _NOT_JSON


# ----------------------------------------------------------------------------- verification


def taskrun_spiffe_id(trust_domain: str, namespace: str, name: str) -> str:
    """The SPIFFE ID Tekton gives a TaskRun: ``spiffe://<td>/ns/<namespace>/taskrun/<name>``."""
    return f"spiffe://{trust_domain}/ns/{namespace}/taskrun/{name}"


@dataclass(frozen=True)
class ResultsVerdict:
    """Outcome of checking a TaskRun's signed results. ``reasons`` has one line per problem."""

    verified: bool
    reasons: tuple[str, ...] = ()
    spiffe_id: str | None = None
    verified_results: tuple[str, ...] = ()  # names whose signature verified (RESULT_MANIFEST excluded)
    unlisted: tuple[str, ...] = field(default=())  # signed and verified, but not named in the manifest


def verify_results(
    results: Sequence[Any],
    *,
    namespace: str,
    name: str,
    trust_domain: str,
    bundle: TrustBundle | TrustBundles,
    at: dt.datetime | None = None,
) -> ResultsVerdict:
    """Check the SPIRE signatures on a TaskRun's results (``Result`` objects or ``{name, value}`` dicts).

    One checklist, top to bottom; every step that finds something wrong adds one line to the reasons,
    and the results are verified only when no step did. Steps 1 and 3 end the check: without bounded
    input or a trusted SVID nothing else can be judged. The trust bundle and the time (``at``, default
    now) come from the caller.
    """
    validate_trust_domain(trust_domain)
    bundles = TrustBundles.of(bundle, default_trust_domain=trust_domain)
    when = at or dt.datetime.now(dt.UTC)
    reasons: list[str] = []

    # 1. Bounded: no more results than an honest TaskRun carries.
    if len(results) > MAX_RESULTS:
        return ResultsVerdict(False, (f"{len(results)} results, the limit is {MAX_RESULTS}",))

    # 2. Every result has a name, and no name twice: a second value under a name would be one that the
    #    signature check and a reader of the run could each take differently.
    values: dict[str, Any] = {}
    for r in results:
        key, value = (r.name, r.value) if hasattr(r, "name") else (r.get("name"), r.get("value"))
        if not isinstance(key, str) or not key:
            reasons.append("a result has no name")
        elif key in values:
            reasons.append(f"result {key} appears twice")
        else:
            values[key] = value

    # 3. The SVID result is a certificate whose only URI SAN is exactly this TaskRun's SPIFFE ID and that
    #    chains at that time to the bundle of that ID's trust domain (Tekton ships the leaf alone; any
    #    further certificates are untrusted path-building hints).
    if KEY_SVID not in values:
        return ResultsVerdict(False, (*reasons, "no SVID result: the results are not SPIRE-signed"))
    try:
        leaf, intermediates = _svid_certificates(values[KEY_SVID])
        expected_id = taskrun_spiffe_id(trust_domain, namespace, name)
        svid: VerifiedSvid = verify_svid(leaf, intermediates, bundles, at=when, allowed_ids={expected_id})
    except (InputError, VerificationError) as err:
        return ResultsVerdict(False, (*reasons, f"SVID: {err}"))

    # 4. The manifest (the comma-joined names the entrypoint signed) is there, names each result once,
    #    names only results that are present, and no reserved one (SVID, the manifest, a signature).
    manifest: list[str] = []
    if KEY_MANIFEST not in values:
        reasons.append(f"no {KEY_MANIFEST} result")
    else:
        try:
            manifest_text = signed_value(values[KEY_MANIFEST])
        except InputError as err:
            reasons.append(f"{KEY_MANIFEST}: {err}")
            manifest_text = ""
        manifest = [k for k in manifest_text.split(",") if k]
        if len(set(manifest)) != len(manifest):
            reasons.append(f"{KEY_MANIFEST} names a result more than once")
        for key in manifest:
            if key not in values:
                reasons.append(f"result {key} is named in {KEY_MANIFEST} but missing")
            elif key in (KEY_SVID, KEY_MANIFEST) or key.endswith(SIG_SUFFIX):
                reasons.append(f"{KEY_MANIFEST} names the reserved result {key}")

    # 5. Every result, listed in the manifest or not (the manifest included), has a ``.sig`` that verifies
    #    with the SVID's key over the result's canonical value (:func:`signed_value`).
    verified: list[str] = []
    for key, value in values.items():
        if key == KEY_SVID or key.endswith(SIG_SUFFIX):
            continue
        sig_text = values.get(key + SIG_SUFFIX)
        if sig_text is None:
            reasons.append(f"result {key} has no signature ({key}{SIG_SUFFIX} is missing)")
            continue
        sig = _base64_signature(sig_text)
        if sig is None:
            reasons.append(f"{key}{SIG_SUFFIX} is not a base64 signature")
            continue
        try:
            text = signed_value(value)
        except InputError as err:
            reasons.append(f"result {key}: {err}")
            continue
        if not svid.public_key.verify(sig, text.encode("utf-8")):
            reasons.append(f"result {key}: signature does not verify (value changed after signing?)")
            continue
        if key != KEY_MANIFEST:
            verified.append(key)

    # 6. No signature is left over without its result: a result removed after signing leaves its .sig.
    for key in values:
        if key.endswith(SIG_SUFFIX) and key[: -len(SIG_SUFFIX)] not in values:
            reasons.append(f"signature {key} has no result {key[: -len(SIG_SUFFIX)]} (a result was removed?)")

    # 7. Verified when no step found anything; results signed but not in the manifest are reported.
    unlisted = tuple(k for k in verified if k not in manifest)
    return ResultsVerdict(
        verified=not reasons,
        reasons=tuple(reasons),
        spiffe_id=svid.spiffe_id,
        verified_results=tuple(verified) if not reasons else (),
        unlisted=unlisted,
    )


def _svid_certificates(value: Any) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """The SVID result's PEM as (leaf, the certificates after it)."""
    if not isinstance(value, str):
        raise InputError("result SVID is not a string")
    certs = load_pem_certificates(value.encode("utf-8", "replace"), source="result SVID", max_count=8)
    if not certs:
        raise InputError("result SVID holds no PEM certificate")
    return certs[0], certs[1:]


def _base64_signature(text: Any) -> bytes | None:
    if not isinstance(text, str) or len(text) > MAX_SIGNATURE_TEXT:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


def verify_run_results(
    run: Any,
    *,
    trust_domain: str,
    bundle: TrustBundle | TrustBundles,
    at: dt.datetime | None = None,
    require_status_signature: bool = False,
    controller_spiffe_ids: Collection[str] | None = None,
) -> ResultsVerdict:
    """:func:`verify_results` for a ``signer.run.Run`` (or a raw TaskRun object dict, v1 or v1beta1).

    With ``require_status_signature`` the controller's signature over the status must verify too
    (:func:`signer.spire.status.verify_status_signature`, identity pinned to ``controller_spiffe_ids``
    when given); its reasons are added to the verdict's.
    """
    if isinstance(run, Mapping):
        meta = run.get("metadata") or {}
        status = run.get("status") or {}
        results = status.get("results")
        if results is None:
            results = status.get("taskResults") or []
        kind, name, namespace = run.get("kind"), meta.get("name", ""), meta.get("namespace", "")
    else:
        kind, name, namespace, results = run.kind, run.name, run.namespace, run.results
    if kind != "TaskRun":
        raise InputError(f"{kind or 'object'} {name}: SPIRE-signed results exist only on TaskRuns")
    if not isinstance(results, list):
        raise InputError(f"TaskRun {name}: status.results must be a list")
    if not name or not namespace:
        raise InputError("TaskRun has no metadata.name or metadata.namespace (both are in its SPIFFE ID)")
    verdict = verify_results(
        results, namespace=namespace, name=name, trust_domain=trust_domain, bundle=bundle, at=at
    )
    if not require_status_signature:
        return verdict
    from signer.spire.status import verify_status_signature

    status_reasons = verify_status_signature(
        run, bundle=bundle, at=at, controller_spiffe_ids=controller_spiffe_ids, trust_domain=trust_domain
    )
    if not status_reasons:
        return verdict
    return replace(
        verdict,
        verified=False,
        reasons=(*verdict.reasons, *(f"status signature: {r}" for r in status_reasons)),
        verified_results=(),
    )
