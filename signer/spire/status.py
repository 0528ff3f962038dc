"""Verify the Tekton controller's signature over a TaskRun's status (TEP-0089, tektoncd/pipeline
``pkg/spire/sign.go: AppendStatusInternalAnnotation`` and ``verify.go: VerifyStatusInternalAnnotation``).

The controller writes three entries into ``status.annotations`` (not ``metadata.annotations``):

* ``tekton.dev/controller-svid``: PEM of its leaf X509-SVID;
* ``tekton.dev/status-hash``: lowercase hex of SHA-256 over ``json.Marshal(tr.Status.TaskRunStatusFields)``;
* ``tekton.dev/status-hash-sig``: std base64 of a signature over SHA-256 of that *hex text*.

and ``tekton.dev/spire-verified`` when its own check of the status failed (absent means fine).

Only ``TaskRunStatusFields`` is hashed: the conditions, ``observedGeneration`` and the annotations
themselves (knative's ``duck.Status``) are outside the hash, so a changed condition is not detected.
The hash is computed over the ``tekton.dev/v1`` struct (a v1beta1 object is converted to v1 first).

Pure: the caller supplies the trust bundle and the validation time.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import re
from collections.abc import Collection, Mapping
from typing import Any

from attestation.errors import InputError, LimitExceeded, VerificationError
from attestation.spiffe import TrustBundle, TrustBundles, load_pem_certificates
from attestation.x509 import verify_svid

ANN_CONTROLLER_SVID = "tekton.dev/controller-svid"
ANN_STATUS_HASH = "tekton.dev/status-hash"
ANN_STATUS_HASH_SIG = "tekton.dev/status-hash-sig"
ANN_NOT_VERIFIED = "tekton.dev/spire-verified"

STATUS_FIELDS_TYPE = "tekton.TaskRunStatusFields"
# Bounds. An object in etcd is at most ~1.5 MiB, so its re-encoded status cannot honestly be larger
# than a few MiB; a leaf PEM is ~1 KiB; a P-256 / RSA-4096 signature is < 600 bytes of base64.
MAX_STATUS_BYTES = 4 * 1024 * 1024
MAX_SVID_PEM = 16 * 1024
MAX_SIGNATURE_TEXT = 2 * 1024
MAX_CERTIFICATES = 8

_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")


def _taskrun_object(run: Any) -> dict[str, Any]:
    """The run as a ``tekton.dev/v1`` TaskRun object dict (``signer.run.Run`` already is one)."""
    from signer.tekton_v1beta1 import API_V1BETA1, convert_v1beta1

    obj = run if isinstance(run, Mapping) else getattr(run, "obj", None)
    if not isinstance(obj, Mapping):
        raise InputError("status signature: the run is not a TaskRun object")
    if obj.get("kind") != "TaskRun":
        raise InputError(f"{obj.get('kind') or 'object'}: the controller signs only TaskRun statuses")
    if obj.get("apiVersion") == API_V1BETA1:
        obj = convert_v1beta1(dict(obj))
    if not isinstance(obj.get("status"), Mapping):
        raise InputError("TaskRun has no status object to check the status signature of")
    return dict(obj)


def status_fields_json(taskrun_obj: Any) -> bytes:
    """``json.Marshal(tr.Status.TaskRunStatusFields)`` as Go writes it, for a TaskRun object or Run."""
    from signer.golang import go_json
    from signer.provenance import gojson

    status = _taskrun_object(taskrun_obj)["status"]
    try:
        # Struct field order comes from the encoder (maps inside are already sorted): keep it.
        data = go_json(gojson.encode(STATUS_FIELDS_TYPE, status), sort_keys=False)
    except RecursionError:
        raise InputError("TaskRun status is nested too deeply to hash") from None
    except (TypeError, ValueError) as err:
        raise InputError(f"TaskRun status cannot be encoded as Go does: {err}") from None
    if len(data) > MAX_STATUS_BYTES:
        raise LimitExceeded(f"TaskRun status encodes to {len(data)} bytes, the limit is {MAX_STATUS_BYTES}")
    return data


def status_hash(taskrun_obj: Any) -> str:
    """The ``tekton.dev/status-hash`` value the controller would write for this TaskRun's status."""
    return hashlib.sha256(status_fields_json(taskrun_obj)).hexdigest()


def _annotations(status: Mapping[str, Any]) -> dict[str, str] | None:
    ann = status.get("annotations")
    if not isinstance(ann, Mapping):
        return None
    return {k: v for k, v in ann.items() if isinstance(k, str) and isinstance(v, str)}


def verify_status_signature(
    run: Any,
    *,
    bundle: TrustBundle | TrustBundles,
    at: dt.datetime | None = None,
    controller_spiffe_ids: Collection[str] | None = None,
    trust_domain: str | None = None,
) -> list[str]:
    """Reasons the controller's status signature does not hold (empty: verified).

    Verified only when: ``tekton.dev/spire-verified`` is absent; ``tekton.dev/controller-svid`` is a
    certificate that chains at ``at`` (default now) to the bundle of its own SPIFFE ID's trust domain
    (a lone bundle that names none is ``trust_domain``'s) and, when ``controller_spiffe_ids`` is given,
    has one of those SPIFFE IDs (Tekton itself checks no identity); ``tekton.dev/status-hash-sig``
    verifies over the stored hash text with that certificate's key; and the stored hash equals the hash
    recomputed from the status as it is now. :class:`InputError` when ``run`` is not a TaskRun or the
    bundle names no trust domain and none is given.
    """
    bundles = TrustBundles.of(bundle, default_trust_domain=trust_domain)
    obj = _taskrun_object(run)
    when = at or dt.datetime.now(dt.UTC)
    ann = _annotations(obj["status"])
    if not ann:
        return ["status has no annotations: the status is not signed by the controller"]
    reasons: list[str] = []
    if ANN_NOT_VERIFIED in ann:
        reasons.append(
            f"status carries {ANN_NOT_VERIFIED}={ann[ANN_NOT_VERIFIED]!r}: the controller's own check failed"
        )
    missing = [k for k in (ANN_CONTROLLER_SVID, ANN_STATUS_HASH, ANN_STATUS_HASH_SIG) if k not in ann]
    if missing:
        return [*reasons, f"status annotation {', '.join(missing)} missing: the status is not signed"]

    stored_hash = ann[ANN_STATUS_HASH]
    if not _HEX_SHA256.fullmatch(stored_hash):
        return [*reasons, f"{ANN_STATUS_HASH} is not a lowercase hex SHA-256"]

    svid_pem = ann[ANN_CONTROLLER_SVID]
    try:
        if len(svid_pem) > MAX_SVID_PEM:
            raise LimitExceeded(f"{ANN_CONTROLLER_SVID} is larger than {MAX_SVID_PEM} bytes")
        certs = load_pem_certificates(
            svid_pem.encode("utf-8", "replace"), source=ANN_CONTROLLER_SVID, max_count=MAX_CERTIFICATES
        )
        if not certs:
            raise InputError(f"{ANN_CONTROLLER_SVID} holds no PEM certificate")
        # Tekton stores only the leaf; anything after it is an untrusted path-building hint.
        allowed = set(controller_spiffe_ids) if controller_spiffe_ids is not None else None
        svid = verify_svid(certs[0], certs[1:], bundles, at=when, allowed_ids=allowed)
    except (InputError, VerificationError) as err:
        return [*reasons, f"controller SVID: {err}"]

    sig_text = ann[ANN_STATUS_HASH_SIG]
    sig = _decode_b64(sig_text) if len(sig_text) <= MAX_SIGNATURE_TEXT else None
    if sig is None:
        return [*reasons, f"{ANN_STATUS_HASH_SIG} is not a base64 signature"]
    # The controller signs the hex text (signWithKey hashes it again), not the status bytes.
    if not svid.public_key.verify(sig, stored_hash.encode("ascii")):
        reasons.append(
            f"{ANN_STATUS_HASH_SIG} does not verify over {ANN_STATUS_HASH} with the controller SVID"
        )

    current = status_hash(obj)
    if current != stored_hash:
        reasons.append(
            f"status changed after the controller signed it ({ANN_STATUS_HASH} {stored_hash[:16]}..., "
            f"status now hashes to {current[:16]}...)"
        )
    return reasons


def _decode_b64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
