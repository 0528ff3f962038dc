"""Pieces of a run's provenance that several formats share: times, parameters, environment, sources.

Each mirrors one Chains helper (``formats/slsa/attest``, ``internal/material``) so the formats agree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from attestation.errors import InputError
from signer.result_hints import Artifact
from signer.run import Run

LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
CHAINS_PREFIX = "chains.tekton.dev/"
REPRODUCIBLE_LABEL = "chains.tekton.dev/reproducible"
OCI_SCHEME = "oci://"


def invocation_parameters(
    params: Sequence[Mapping[str, Any]], param_specs: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """ParamSpec defaults, overridden by the run's params (Chains ``attest.Invocation``)."""
    out: dict[str, Any] = {}
    for spec in param_specs:
        if "default" in spec and spec["default"] is not None:
            out[spec["name"]] = spec["default"]
    for p in params:
        out[p["name"]] = p.get("value", "")
    return out


def environment(labels: Mapping[str, str], annotations: Mapping[str, str]) -> dict[str, Any] | None:
    """``{"labels", "annotations"}`` without kubectl's last-applied copy and Chains' own annotations;
    each only when non-empty, ``None`` when both are empty."""
    env: dict[str, Any] = {}
    kept = {k: v for k, v in annotations.items() if k != LAST_APPLIED and not k.startswith(CHAINS_PREFIX)}
    if kept:
        env["annotations"] = kept
    if labels:
        env["labels"] = dict(labels)
    return env or None


def config_source(run: Run) -> dict[str, Any]:
    """``status.provenance.refSource`` as SLSA v0.2 ``configSource`` (empty fields omitted)."""
    src = run.ref_source or {}
    out: dict[str, Any] = {}
    if src.get("uri"):
        out["uri"] = src["uri"]
    if src.get("digest"):
        out["digest"] = dict(src["digest"])
    if src.get("entryPoint"):
        out["entryPoint"] = src["entryPoint"]
    return out


def invocation(run: Run) -> dict[str, Any]:
    """SLSA v0.2 ``invocation`` of a run (top level, and per task of a PipelineRun)."""
    inv: dict[str, Any] = {
        "configSource": config_source(run),
        "parameters": invocation_parameters(run.params, run.param_specs),
    }
    env = environment(run.labels, run.annotations)
    if env is not None:
        inv["environment"] = env
    return inv


def reproducible(run: Run) -> bool:
    return run.labels.get(REPRODUCIBLE_LABEL) == "true"


def image_material(image_id: str, *, where: str | Callable[[], str]) -> Artifact:
    """A step/sidecar ``imageID`` (``[docker-pullable://]repo@alg:hex``) as ``oci://repo`` material.

    Chains fails the whole payload when an imageID does not split into exactly one ``@`` and one ``:``;
    so do we (fail closed). ``where`` may be a callable, so large runs only format it on error.
    """
    parts = image_id.split("@")
    if len(parts) != 2 or len(parts[1].split(":")) != 2:
        place = where() if callable(where) else where
        raise InputError(f"{place}: imageID {image_id!r} is not <repository>@<algorithm>:<hex>")
    alg, hexpart = parts[1].split(":")
    return Artifact(OCI_SCHEME + parts[0].removeprefix("docker-pullable://"), {alg: hexpart})


def step_image_materials(run: Run) -> list[Artifact]:
    """Materials of a TaskRun's step images then sidecar images, in status order."""
    out = []
    for key in ("steps", "sidecars"):
        for i, state in enumerate(run.status.get(key) or []):
            where = lambda key=key, i=i: f"{run.source}: {run.display} status.{key}[{i}]"  # noqa: E731
            out.append(image_material(state.get("imageID") or "", where=where))
    return out


def ref_source_artifact(run: Run) -> Artifact | None:
    src = run.ref_source
    if src is None:
        return None
    return Artifact(src.get("uri", ""), dict(src.get("digest") or {}))


def condition_status(run: Run) -> str:
    """tkn's status word from ``conditions[0].status``: Succeeded / Failed / Running, else ``""``."""
    conditions = run.status.get("conditions") or []
    if not conditions:
        return ""
    return {"True": "Succeeded", "False": "Failed", "Unknown": "Running"}.get(conditions[0].get("status"), "")
