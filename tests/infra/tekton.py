"""Tekton runs on the test API server, completed the way Tekton's controller completes them.

No Tekton controller runs (``tests.infra.kube``): a test creates a TaskRun or PipelineRun and then writes
its ``status`` through the status subresource, as the controller does. The CRDs are Tekton's real ones,
so the real schema applies: a TaskRun status needs ``podName`` (422 without it), unknown status fields
are pruned, and a ``status`` sent with the create itself is dropped silently.

    run = create_run(kube.api, ns, taskrun_from_sample)            # an object as Tekton shows it
    new_taskrun(kube.api, ns, "build-1")
    complete_taskrun(kube.api, ns, "build-1", results={"IMAGE_URL": ..., "IMAGE_DIGEST": ...})
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from typing import Any

from tests.infra.kube import Resource, unique_name

GROUP = "tekton.dev"
TASKRUNS = Resource(GROUP, "v1", "taskruns")
PIPELINERUNS = Resource(GROUP, "v1", "pipelineruns")
_PLURALS = {"TaskRun": "taskruns", "PipelineRun": "pipelineruns"}
# What create_run keeps of an object's metadata; the rest (uid, resourceVersion, ...) is the API server's.
_KEPT_METADATA = ("name", "generateName", "labels", "annotations", "finalizers", "ownerReferences")


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def resource_of(run: Mapping[str, Any]) -> Resource:
    """The resource of a TaskRun or PipelineRun object, at the object's apiVersion."""
    group, _, version = run["apiVersion"].partition("/")
    return Resource(group, version, _PLURALS[run["kind"]])


def create_run(
    api: Any, namespace: str, run: Mapping[str, Any], *, with_status: bool = True
) -> dict[str, Any]:
    """Create ``run`` (a TaskRun or PipelineRun as Tekton shows it, e.g. from ``signer.samples``) in
    ``namespace``; then, if it has a status and ``with_status``, write that status as the controller would.
    Returns the stored object."""
    resource = resource_of(run)
    metadata = {key: run["metadata"][key] for key in _KEPT_METADATA if key in run.get("metadata", {})}
    body = {
        "apiVersion": run["apiVersion"],
        "kind": run["kind"],
        "metadata": metadata,
        "spec": run.get("spec", {}),
    }
    created = resource.create(api, namespace, body)
    if with_status and run.get("status"):
        return set_status(api, resource, namespace, created["metadata"]["name"], run["status"])
    return created


def set_status(
    api: Any, resource: Resource, namespace: str, name: str, status: Mapping[str, Any]
) -> dict[str, Any]:
    """Write ``status`` through the status subresource (a JSON merge patch); returns the stored object."""
    return resource.patch_status(api, namespace, name, dict(status))


def new_taskrun(
    api: Any,
    namespace: str,
    name: str | None = None,
    *,
    task: str = "build",
    params: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Create a TaskRun of Task ``task`` (which need not exist: nothing resolves it here)."""
    spec: dict[str, Any] = {"taskRef": {"name": task}}
    if params:
        spec["params"] = [{"name": k, "value": v} for k, v in params.items()]
    return create_run(
        api, namespace, _object("TaskRun", name or unique_name("taskrun"), spec, labels, annotations)
    )


def new_pipelinerun(
    api: Any,
    namespace: str,
    name: str | None = None,
    *,
    pipeline: str = "build",
    labels: Mapping[str, str] | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Create a PipelineRun of Pipeline ``pipeline`` (which need not exist)."""
    spec = {"pipelineRef": {"name": pipeline}}
    name = name or unique_name("pipelinerun")
    return create_run(api, namespace, _object("PipelineRun", name, spec, labels, annotations))


def _object(
    kind: str,
    name: str,
    spec: dict[str, Any],
    labels: Mapping[str, str] | None,
    annotations: Mapping[str, str] | None,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name}
    if labels:
        metadata["labels"] = dict(labels)
    if annotations:
        metadata["annotations"] = dict(annotations)
    return {"apiVersion": f"{GROUP}/v1", "kind": kind, "metadata": metadata, "spec": spec}


def succeeded_condition(
    succeeded: bool = True, reason: str | None = None, message: str = ""
) -> dict[str, Any]:
    """The ``Succeeded`` condition of a finished run (``status: "True"`` or ``"False"``)."""
    return {
        "type": "Succeeded",
        "status": "True" if succeeded else "False",
        "reason": reason or ("Succeeded" if succeeded else "Failed"),
        "message": message or ("All Steps have completed executing" if succeeded else "a step failed"),
        "lastTransitionTime": now(),
    }


def results_list(results: Mapping[str, str | list[str] | dict[str, str]]) -> list[dict[str, Any]]:
    """Tekton v1 results: ``{"name", "type": string|array|object, "value"}``."""
    kinds = {str: "string", list: "array", dict: "object"}
    return [{"name": k, "type": kinds[type(v)], "value": v} for k, v in results.items()]


def taskrun_status(
    name: str,
    *,
    results: Mapping[str, str | list[str] | dict[str, str]] | None = None,
    succeeded: bool = True,
    reason: str | None = None,
    pod_name: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A finished TaskRun's status as Tekton's controller writes it (``extra``: more status fields,
    e.g. ``steps``, ``taskSpec``, ``provenance``)."""
    started = now()
    status: dict[str, Any] = {
        "podName": pod_name or f"{name}-pod",
        "startTime": started,
        "completionTime": now(),
        "conditions": [succeeded_condition(succeeded, reason)],
    }
    if results:
        status["results"] = results_list(results)
    status.update(extra)
    return status


def complete_taskrun(api: Any, namespace: str, name: str, **status: Any) -> dict[str, Any]:
    """Finish TaskRun ``name``: the arguments are :func:`taskrun_status`'s. Returns the stored object."""
    return set_status(api, TASKRUNS, namespace, name, taskrun_status(name, **status))


def complete_pipelinerun(
    api: Any,
    namespace: str,
    name: str,
    *,
    children: Sequence[tuple[str, str]] = (),
    results: Mapping[str, str | list[str] | dict[str, str]] | None = None,
    succeeded: bool = True,
    reason: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Finish PipelineRun ``name``; ``children`` are its (pipelineTaskName, TaskRun name) pairs, written
    to ``status.childReferences`` as Tekton does."""
    status: dict[str, Any] = {
        "startTime": now(),
        "completionTime": now(),
        "conditions": [succeeded_condition(succeeded, reason)],
        "childReferences": [
            {"apiVersion": f"{GROUP}/v1", "kind": "TaskRun", "name": run, "pipelineTaskName": task}
            for task, run in children
        ],
    }
    if results:
        status["results"] = results_list(results)
    status.update(extra)
    return set_status(api, PIPELINERUNS, namespace, name, status)
