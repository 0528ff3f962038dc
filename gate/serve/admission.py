"""AdmissionReview ``admission.k8s.io/v1`` in and out: the request read and bounded, the images of every
kind that carries a pod template found with the JSON pointer of each, the response and its JSONPatch.

Pure functions, no I/O. A body that is not an AdmissionReview raises :class:`BadReview` (the server
answers 400, and the API server applies the webhook's ``failurePolicy``); a review whose object is not
what its kind promises raises :class:`BadObject` (the server denies it, naming what is wrong).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from attestation.errors import InputError, LimitExceeded
from attestation.limits import load_json
from gate.render import printable

API_VERSION = "admission.k8s.io/v1"
# Images in one object: far more than any pod has (Kubernetes itself caps nothing, but the API server's
# request size does); more is an attack on the gate's fan-out, not a workload.
MAX_IMAGES = 256
# What kubectl shows well: one line per image, each bounded, and a bounded whole.
MAX_LINE = 400
MAX_LINES = 12
MAX_WARNING = 256
MAX_WARNINGS = 20


class BadReview(InputError):
    """The body is not a usable AdmissionReview v1 (HTTP 400)."""


class BadObject(InputError):
    """The object under review is not shaped as its kind requires (a denial)."""


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    kind: str

    def __str__(self) -> str:
        return f"{self.group}/{self.version} {self.kind}" if self.group else f"{self.version} {self.kind}"


@dataclass(frozen=True)
class Review:
    uid: str
    kind: Kind
    sub_resource: str
    namespace: str
    name: str
    operation: str
    dry_run: bool
    obj: Mapping[str, Any] | None
    old: Mapping[str, Any] | None


@dataclass(frozen=True)
class ImageUse:
    """One place an image is named: the reference as written, the JSON pointer of that string, and the
    container (or image volume) it belongs to, for messages."""

    image: str
    pointer: str
    where: str


def _string(doc: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = doc.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise BadReview(f"AdmissionReview {where}.{key} must be a string")
    return value


def parse_review(body: bytes, *, max_bytes: int) -> Review:
    """The request of an AdmissionReview v1, checked; :class:`BadReview` naming the first problem."""
    if not body:
        raise BadReview("empty request body: expected an AdmissionReview admission.k8s.io/v1 (JSON)")
    try:
        doc = load_json(body, max_bytes=max_bytes, what="AdmissionReview")
    except LimitExceeded as err:
        raise BadReview(str(err)) from None
    except InputError as err:
        raise BadReview(f"request body is not valid JSON: {err}") from None
    if not isinstance(doc, dict):
        raise BadReview("AdmissionReview must be a JSON object")
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if kind != "AdmissionReview" or api_version != API_VERSION:
        raise BadReview(
            f"expected kind AdmissionReview, apiVersion {API_VERSION}; got kind "
            f"{printable(str(kind))[:60]!r}, apiVersion {printable(str(api_version))[:60]!r} "
            "(set admissionReviewVersions: [v1])"
        )
    request = doc.get("request")
    if not isinstance(request, dict):
        raise BadReview("AdmissionReview has no request object")
    uid = _string(request, "uid", "request")
    if not uid or len(uid) > 128:
        raise BadReview("AdmissionReview request.uid must be a non-empty string of at most 128 characters")
    gvk = request.get("kind")
    if not isinstance(gvk, dict):
        raise BadReview("AdmissionReview request.kind must be an object {group, version, kind}")
    operation = _string(request, "operation", "request")
    if operation not in ("CREATE", "UPDATE", "DELETE", "CONNECT"):
        raise BadReview(
            f"AdmissionReview request.operation {printable(operation)[:40]!r} is not one Kubernetes sends"
        )
    obj, old = request.get("object"), request.get("oldObject")
    for key, value in (("object", obj), ("oldObject", old)):
        if value is not None and not isinstance(value, dict):
            raise BadReview(f"AdmissionReview request.{key} must be an object")
    dry_run = request.get("dryRun", False)
    if not isinstance(dry_run, bool):
        raise BadReview("AdmissionReview request.dryRun must be true or false")
    return Review(
        uid=uid,
        kind=Kind(
            group=_string(gvk, "group", "request.kind", required=False),
            version=_string(gvk, "version", "request.kind"),
            kind=_string(gvk, "kind", "request.kind"),
        ),
        sub_resource=_string(request, "subResource", "request", required=False),
        namespace=_string(request, "namespace", "request", required=False),
        name=_string(request, "name", "request", required=False),
        operation=operation,
        dry_run=dry_run,
        obj=obj,
        old=old,
    )


# -- where images live ---------------------------------------------------------------------------------

_TEMPLATE = ("spec", "template", "spec")
POD_SPEC_PATHS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "Pod"): ("spec",),
    ("", "PodTemplate"): ("template", "spec"),
    ("", "ReplicationController"): _TEMPLATE,
    ("apps", "Deployment"): _TEMPLATE,
    ("apps", "ReplicaSet"): _TEMPLATE,
    ("apps", "StatefulSet"): _TEMPLATE,
    ("apps", "DaemonSet"): _TEMPLATE,
    ("batch", "Job"): _TEMPLATE,
    ("batch", "CronJob"): ("spec", "jobTemplate", "spec", "template", "spec"),
}
CONTAINER_LISTS = (
    ("containers", "container"),
    ("initContainers", "init container"),
    ("ephemeralContainers", "ephemeral container"),
)


def knows(kind: Kind) -> bool:
    return (kind.group, kind.kind) in POD_SPEC_PATHS


def pod_spec(obj: Mapping[str, Any], kind: Kind) -> tuple[Mapping[str, Any] | None, str]:
    """The pod spec inside ``obj`` and its JSON pointer; None when the object has none (a
    ReplicationController without a template)."""
    path = POD_SPEC_PATHS.get((kind.group, kind.kind))
    if path is None:
        raise BadObject(f"provgate does not know where a {kind} keeps its images")
    node: Any = obj
    for i, key in enumerate(path):
        if not isinstance(node, Mapping):
            raise BadObject(f"{kind} .{'.'.join(path[:i])} must be an object")
        node = node.get(key)
        if node is None:
            return None, ""
    if not isinstance(node, Mapping):
        raise BadObject(f"{kind} .{'.'.join(path)} must be an object")
    return node, "/" + "/".join(path)


def images_of(obj: Mapping[str, Any] | None, kind: Kind) -> list[ImageUse]:
    """Every image named in ``obj``'s pod spec: containers, init containers (native sidecars too),
    ephemeral containers and image volumes, in that order."""
    if obj is None:
        return []
    spec, base = pod_spec(obj, kind)
    if spec is None:
        return []
    return list(_images(spec, base, kind))


def _images(spec: Mapping[str, Any], base: str, kind: Kind) -> Iterator[ImageUse]:
    count = 0
    for key, noun in CONTAINER_LISTS:
        items = spec.get(key)
        if items is None:
            continue
        if not isinstance(items, list):
            raise BadObject(f"{kind}: {key} must be a list")
        for i, item in enumerate(items):
            if not isinstance(item, Mapping):
                raise BadObject(f"{kind}: {key}[{i}] must be an object")
            image = item.get("image")
            if not isinstance(image, str) or not image:
                raise BadObject(f"{kind}: {key}[{i}].image must be a non-empty string")
            name = item.get("name")
            label = f"{noun} {name}" if isinstance(name, str) and name else f"{noun} {i}"
            count += 1
            yield ImageUse(image, f"{base}/{key}/{i}/image", printable(label)[:100])
    volumes = spec.get("volumes")
    if isinstance(volumes, list):
        for i, volume in enumerate(volumes):
            source = volume.get("image") if isinstance(volume, Mapping) else None
            if source is None:
                continue
            reference = source.get("reference") if isinstance(source, Mapping) else None
            if not isinstance(reference, str) or not reference:
                raise BadObject(f"{kind}: volumes[{i}].image.reference must be a non-empty string")
            name = volume.get("name")
            count += 1
            yield ImageUse(
                reference, f"{base}/volumes/{i}/image/reference", f"image volume {printable(str(name))[:60]}"
            )
    if count > MAX_IMAGES:
        raise BadObject(f"{kind}: {count} images, more than the {MAX_IMAGES} provgate checks in one object")


def images_to_decide(review: Review) -> list[ImageUse]:
    """The images of the object this request would store that need a decision: all of them on CREATE,
    on UPDATE only the ones the old object did not name (a label change decides nothing)."""
    if review.operation not in ("CREATE", "UPDATE"):
        return []
    uses = images_of(review.obj, review.kind)
    if review.operation == "UPDATE" and review.old is not None:
        before = {u.image for u in images_of(review.old, review.kind)}
        uses = [u for u in uses if u.image not in before]
    return uses


# -- the response --------------------------------------------------------------------------------------


def response(
    uid: str,
    *,
    allowed: bool,
    message: str = "",
    code: int = 403,
    warnings: Sequence[str] = (),
    patch: Sequence[Mapping[str, Any]] = (),
    audit: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """An AdmissionReview v1 answer to the request ``uid``; a patch only when there is one."""
    out: dict[str, Any] = {"uid": uid, "allowed": allowed}
    if not allowed:
        out["status"] = {"code": code, "message": message or "denied by provgate"}
    elif message:
        out["status"] = {"code": 200, "message": message}
    if warnings:
        out["warnings"] = bounded_warnings(warnings)
    if patch:
        out["patchType"] = "JSONPatch"
        out["patch"] = base64.b64encode(json.dumps(list(patch), separators=(",", ":")).encode()).decode()
    if audit:
        out["auditAnnotations"] = dict(audit)
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": out}


def bounded_warnings(warnings: Sequence[str]) -> list[str]:
    """Distinct, printable, each cut to what kubectl shows whole, and not too many."""
    out: list[str] = []
    for w in warnings:
        text = _cut(printable(w), MAX_WARNING)
        if text not in out:
            out.append(text)
    if len(out) > MAX_WARNINGS:
        out = [*out[: MAX_WARNINGS - 1], f"... and {len(out) - MAX_WARNINGS + 1} more warnings"]
    return out


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def denial_message(lines: Sequence[str], total: int) -> str:
    """``provgate denied N of M image(s):`` then one bounded line per denied image (printable: image
    references and messages come from outside)."""
    head = f"provgate denied {len(lines)} of {total} image(s):"
    shown = [_cut(printable(line), MAX_LINE) for line in lines[:MAX_LINES]]
    if len(lines) > MAX_LINES:
        shown.append(f"... and {len(lines) - MAX_LINES} more")
    return "\n".join([head, *(f"- {line}" for line in shown)])


def pin_patch(uses: Sequence[ImageUse], pinned: Mapping[str, str]) -> list[dict[str, Any]]:
    """JSONPatch operations replacing each use of an image in ``pinned`` (as written -> pinned)."""
    return [
        {"op": "replace", "path": u.pointer, "value": pinned[u.image]}
        for u in uses
        if u.image in pinned and pinned[u.image] != u.image
    ]
