"""Bundled sample runs: the TEP-0084 build pipeline as ``tekton.dev/v1`` objects (a completed
PipelineRun and its child TaskRuns in one ``kind: List``), plus the demo's deny variants.

The built image is a parameter so the demo can substitute the image it really pushed.
"""

from __future__ import annotations

import copy
import re
from importlib import resources
from typing import Any

from attestation.errors import InputError
from signer.documents import parse_documents

SAMPLES = ("tep0084-pipelinerun", "tep0084-injected-task", "tep0084-no-scan")
BUILD_TASK = "image-build"
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def text(name: str) -> str:
    """The YAML text of a sample (``name`` with or without ``.yaml``)."""
    base = name.removesuffix(".yaml")
    if base not in SAMPLES:
        raise InputError(f"unknown sample {name!r} (known: {', '.join(SAMPLES)})")
    return resources.files(__name__).joinpath(f"{base}.yaml").read_text(encoding="utf-8")


def _replace(results: list[dict[str, Any]], values: dict[str, str]) -> None:
    for r in results or []:
        if r.get("name") in values:
            r["value"] = values[r["name"]]


def load(
    name: str, *, image_url: str | None = None, image_digest: str | None = None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(PipelineRun object, [child TaskRun objects]) of a sample, with the built image replaced in the
    build task's results and the pipeline results when ``image_url``/``image_digest`` are given."""
    docs = parse_documents(text(name), source=f"sample {name}")
    pipelinerun = copy.deepcopy(next(d for d in docs if d.get("kind") == "PipelineRun"))
    taskruns = [copy.deepcopy(d) for d in docs if d.get("kind") == "TaskRun"]
    if image_digest is not None and not _DIGEST.fullmatch(image_digest):
        raise InputError(f"image digest {image_digest!r} is not sha256:<64 lowercase hex>")
    values = {k: v for k, v in (("IMAGE_URL", image_url), ("IMAGE_DIGEST", image_digest)) if v is not None}
    if values:
        _replace(pipelinerun["status"].get("results"), values)
        for tr in taskruns:
            if tr["metadata"].get("labels", {}).get("tekton.dev/pipelineTask") == BUILD_TASK:
                _replace(tr["status"].get("results"), values)
        if image_url is not None:
            for p in pipelinerun["spec"].get("params") or []:
                if p["name"] == "output-image":
                    p["value"] = image_url
    return pipelinerun, taskruns
