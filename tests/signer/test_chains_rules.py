"""Rules where an earlier version of our builders disagreed with Tekton Chains (found by running Chains'
own formatters on the same inputs). Each test names the Chains rule; inputs are our own minimal runs."""

from __future__ import annotations

import pytest

from attestation.errors import InputError
from signer.provenance import Options, generate
from signer.run import Run, to_run

T0, T1 = "2024-05-02T09:00:00Z", "2024-05-02T09:05:00Z"
IMG = "gcr.io/acme/tool@sha256:" + "1" * 64


def taskrun(name: str, task: str, *, completed: bool = True) -> Run:
    status: dict = {
        "startTime": T0,
        "conditions": [{"type": "Succeeded", "status": "True"}],
        "taskSpec": {"steps": [{"name": "run", "image": "tool", "script": "true"}]},
        "steps": [{"name": "run", "container": "step-run", "imageID": IMG}],
    }
    if completed:
        status["completionTime"] = T1
    return to_run({"apiVersion": "tekton.dev/v1", "kind": "TaskRun",
                   "metadata": {"name": name, "labels": {"tekton.dev/pipelineTask": task}},
                   "spec": {}, "status": status}, source="test")


def pipelinerun(tasks: list[str], finally_: list[str]) -> Run:
    return to_run({"apiVersion": "tekton.dev/v1", "kind": "PipelineRun", "metadata": {"name": "pr"},
                   "spec": {}, "status": {
                       "startTime": T0, "completionTime": T1,
                       "pipelineSpec": {"tasks": [{"name": t, "taskRef": {"name": t}} for t in tasks],
                                        "finally": [{"name": t, "taskRef": {"name": t}} for t in finally_]},
                   }}, source="test")


def build_config_tasks(pr: Run, children: list[Run]) -> list[tuple[str, list[str] | None]]:
    got = generate(pr, children, Options(format="slsa/v1")).statement
    return [(t["name"], t.get("after")) for t in got["predicate"]["buildConfig"]["tasks"]]


def test_finally_after_names_last_task_that_has_a_taskrun() -> None:
    # slsa/v1 buildConfig (pipelinerun.go): a task without TaskRuns is skipped before it is recorded as
    # "last", so the finally task follows "build", not the skipped "deploy" declared after it.
    pr = pipelinerun(["clone", "build", "deploy"], ["notify"])
    children = [taskrun("pr-clone", "clone"), taskrun("pr-build", "build"), taskrun("pr-notify", "notify")]
    assert build_config_tasks(pr, children) == [("clone", None), ("build", None), ("notify", ["build"])]


def test_finally_without_any_taskrun_before_it_has_no_after() -> None:
    pr = pipelinerun(["skipped"], ["notify"])
    assert build_config_tasks(pr, [taskrun("pr-notify", "notify")]) == [("notify", None)]


def test_incomplete_taskrun_still_counts_as_last() -> None:
    # The TaskRun of "build" did not complete: it is not attested, but its task still became "last".
    pr = pipelinerun(["clone", "build"], ["notify"])
    children = [taskrun("pr-clone", "clone"), taskrun("pr-build", "build", completed=False),
                taskrun("pr-notify", "notify")]
    assert build_config_tasks(pr, children) == [("clone", None), ("notify", ["build"])]


def test_param_default_null_is_no_default() -> None:
    # ParamSpec.default is a *ParamValue: JSON null decodes to nil, so attest.Invocation adds nothing and
    # the CHAINS-GIT_URL hint has no default to fall back on (only the commit is required for a TaskRun,
    # so the material is named from the empty URL: "git+.git").
    tr = to_run({"apiVersion": "tekton.dev/v1", "kind": "TaskRun", "metadata": {"name": "t"},
                 "spec": {"params": [{"name": "CHAINS-GIT_COMMIT", "value": "abc"}]},
                 "status": {"completionTime": T1, "taskSpec": {"params": [
                     {"name": "CHAINS-GIT_URL", "type": "string", "default": None},
                     {"name": "level", "type": "string", "default": None},
                 ]}}}, source="test")
    got = generate(tr, [], Options(format="slsa/v1")).statement["predicate"]
    assert got["invocation"]["parameters"] == {"CHAINS-GIT_COMMIT": "abc"}
    assert got["materials"] == [{"uri": "git+.git", "digest": {"sha1": "abc"}}]


def test_unparseable_timeout_is_rejected() -> None:
    # spec.timeout is a metav1.Duration; Chains cannot decode such a run, so there is no provenance.
    with pytest.raises(InputError, match=r"spec\.timeout must be a Go duration"):
        to_run({"apiVersion": "tekton.dev/v1", "kind": "TaskRun", "metadata": {"name": "t"},
                "spec": {"timeout": "soon"}}, source="test")
    with pytest.raises(InputError, match=r"spec\.timeouts\.tasks must be a Go duration"):
        to_run({"apiVersion": "tekton.dev/v1", "kind": "PipelineRun", "metadata": {"name": "p"},
                "spec": {"timeouts": {"tasks": "1 hour"}}}, source="test")
