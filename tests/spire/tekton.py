"""Test data: TaskRun results signed the way Tekton's entrypoint signs them (TEP-0089,
tektoncd/pipeline ``pkg/spire/sign.go``), with whatever SVID key the test has (a real one from the SPIRE
agent, or one made with ``cryptography``)."""

from __future__ import annotations

import base64
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from signer.spire.results import entrypoint_value, signed_value


def sign_like_entrypoint(key: Any, text: str) -> str:
    """``signWithKey``: SHA-256 of the text, ECDSA (ASN.1 DER) or RSA PKCS#1 v1.5, std base64."""
    data = text.encode("utf-8")
    if isinstance(key, ec.EllipticCurvePrivateKey):
        sig = key.sign(data, ec.ECDSA(hashes.SHA256()))
    elif isinstance(key, rsa.RSAPrivateKey):
        sig = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    else:
        raise TypeError(type(key))
    return base64.b64encode(sig).decode("ascii")


def termination_results(files: dict[str, str], key: Any, leaf_pem: str) -> list[dict[str, Any]]:
    """The results the controller stores for a step that wrote ``files`` (name -> raw file text).

    Order of the extra entries as in ``Sign``: SVID, the ``.sig`` of each result, RESULT_MANIFEST and
    its ``.sig``. Each value is then decoded as the controller does (``ParamValue.UnmarshalJSON``).
    """
    entries: list[tuple[str, str]] = list(files.items())
    extra: list[tuple[str, str]] = [("SVID", leaf_pem)]
    for name, raw in files.items():
        extra.append((f"{name}.sig", sign_like_entrypoint(key, signed_value(entrypoint_value(raw)))))
    manifest = ",".join(files)
    extra.append(("RESULT_MANIFEST", manifest))
    extra.append(("RESULT_MANIFEST.sig", sign_like_entrypoint(key, manifest)))
    out = []
    for name, raw in entries + extra:
        value = entrypoint_value(raw)
        kind = "array" if isinstance(value, list) else "object" if isinstance(value, dict) else "string"
        out.append({"name": name, "type": kind, "value": value})
    return out


def taskrun(name: str, namespace: str, results: list[dict[str, Any]], api: str = "tekton.dev/v1") -> dict:
    key = "results" if api == "tekton.dev/v1" else "taskResults"
    return {
        "apiVersion": api,
        "kind": "TaskRun",
        "metadata": {"name": name, "namespace": namespace, "uid": "0b7c1a5e-1111-2222-3333-444455556666"},
        "spec": {"taskRef": {"name": "build"}},
        "status": {
            "podName": f"{name}-pod",
            "startTime": "2026-08-20T10:00:00Z",
            "completionTime": "2026-08-20T10:01:00Z",
            "conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded"}],
            key: results,
        },
    }
