"""Rules where an earlier version of our builders disagreed with Tekton Chains (found by running Chains'
own formatters on the same inputs). Each test names the Chains rule; inputs are our own minimal runs."""

from __future__ import annotations

import base64
import json

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
    return to_run(
        {
            "apiVersion": "tekton.dev/v1",
            "kind": "TaskRun",
            "metadata": {"name": name, "labels": {"tekton.dev/pipelineTask": task}},
            "spec": {},
            "status": status,
        },
        source="test",
    )


def pipelinerun(tasks: list[str], finally_: list[str]) -> Run:
    return to_run(
        {
            "apiVersion": "tekton.dev/v1",
            "kind": "PipelineRun",
            "metadata": {"name": "pr"},
            "spec": {},
            "status": {
                "startTime": T0,
                "completionTime": T1,
                "pipelineSpec": {
                    "tasks": [{"name": t, "taskRef": {"name": t}} for t in tasks],
                    "finally": [{"name": t, "taskRef": {"name": t}} for t in finally_],
                },
            },
        },
        source="test",
    )


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
    children = [
        taskrun("pr-clone", "clone"),
        taskrun("pr-build", "build", completed=False),
        taskrun("pr-notify", "notify"),
    ]
    assert build_config_tasks(pr, children) == [("clone", None), ("notify", ["build"])]


def test_param_default_null_is_no_default() -> None:
    # ParamSpec.default is a *ParamValue: JSON null decodes to nil, so attest.Invocation adds nothing and
    # the CHAINS-GIT_URL hint has no default to fall back on (only the commit is required for a TaskRun,
    # so the material is named from the empty URL: "git+.git").
    tr = to_run(
        {
            "apiVersion": "tekton.dev/v1",
            "kind": "TaskRun",
            "metadata": {"name": "t"},
            "spec": {"params": [{"name": "CHAINS-GIT_COMMIT", "value": "abc"}]},
            "status": {
                "completionTime": T1,
                "taskSpec": {
                    "params": [
                        {"name": "CHAINS-GIT_URL", "type": "string", "default": None},
                        {"name": "level", "type": "string", "default": None},
                    ]
                },
            },
        },
        source="test",
    )
    got = generate(tr, [], Options(format="slsa/v1")).statement["predicate"]
    assert got["invocation"]["parameters"] == {"CHAINS-GIT_COMMIT": "abc"}
    assert got["materials"] == [{"uri": "git+.git", "digest": {"sha1": "abc"}}]


def test_unparseable_timeout_is_rejected() -> None:
    # spec.timeout is a metav1.Duration; Chains cannot decode such a run, so there is no provenance.
    with pytest.raises(InputError, match=r"spec\.timeout must be a Go duration"):
        to_run(
            {
                "apiVersion": "tekton.dev/v1",
                "kind": "TaskRun",
                "metadata": {"name": "t"},
                "spec": {"timeout": "soon"},
            },
            source="test",
        )
    with pytest.raises(InputError, match=r"spec\.timeouts\.tasks must be a Go duration"):
        to_run(
            {
                "apiVersion": "tekton.dev/v1",
                "kind": "PipelineRun",
                "metadata": {"name": "p"},
                "spec": {"timeouts": {"tasks": "1 hour"}},
            },
            source="test",
        )


# v1beta1 input: Chains reads v1 objects, converted by Pipeline's ConvertTo (v1beta1 -> v1).


def test_v1beta1_config_source_does_not_survive_conversion() -> None:
    # Provenance.convertTo copies refSource and featureFlags only; the deprecated configSource is lost,
    # so neither invocation.configSource nor a "task" dependency comes from it.
    tr = to_run(
        {
            "apiVersion": "tekton.dev/v1beta1",
            "kind": "TaskRun",
            "metadata": {"name": "t"},
            "status": {
                "completionTime": T1,
                "provenance": {
                    "configSource": {"uri": "git+https://example.com/t", "digest": {"sha1": "a" * 40}}
                },
            },
        },
        source="test",
    )
    v02 = generate(tr, [], Options(format="slsa/v1")).statement["predicate"]
    assert v02["invocation"]["configSource"] == {}
    v10 = generate(tr, [], Options(format="slsa/v2alpha4")).statement["predicate"]
    assert "resolvedDependencies" not in v10["buildDefinition"]


def test_v1beta1_pipelinerun_timeout_replaces_timeouts() -> None:
    # PipelineRunSpec.ConvertTo: a v1beta1 timeout becomes timeouts = {pipeline: timeout}, dropping any
    # other timeouts; serviceAccountName moves into taskRunTemplate.
    pr = to_run(
        {
            "apiVersion": "tekton.dev/v1beta1",
            "kind": "PipelineRun",
            "metadata": {"name": "p"},
            "spec": {"timeout": "2h", "timeouts": {"tasks": "30m"}, "serviceAccountName": "builder"},
            "status": {"completionTime": T1},
        },
        source="test",
    )
    got = generate(pr, [], Options(format="slsa/v2alpha3")).statement
    assert got["predicate"]["buildDefinition"]["externalParameters"]["runSpec"] == {
        "timeouts": {"pipeline": "2h0m0s"},
        "taskRunTemplate": {"serviceAccountName": "builder"},
    }


def test_v1beta1_step_termination_reason_comes_from_terminated_state() -> None:
    # StepState.convertTo sets v1 terminationReason from terminated.reason; it shows in the TaskRun
    # that slsa-tekton embeds.
    child = to_run(
        {
            "apiVersion": "tekton.dev/v1beta1",
            "kind": "TaskRun",
            "metadata": {"name": "c", "labels": {"tekton.dev/pipelineTask": "build"}},
            "status": {
                "completionTime": T1,
                "steps": [
                    {
                        "name": "run",
                        "container": "step-run",
                        "imageID": IMG,
                        "terminated": {"exitCode": 1, "reason": "Error"},
                    }
                ],
            },
        },
        source="test",
    )
    pr = pipelinerun(["build"], [])
    got = generate(
        pr, [child], Options(format="slsa/v2alpha4", build_type="https://tekton.dev/chains/v2/slsa-tekton")
    ).statement
    (task,) = [
        d
        for d in got["predicate"]["buildDefinition"]["resolvedDependencies"]
        if d.get("name") == "pipelineTask"
    ]
    (step,) = json.loads(base64.b64decode(task["content"]))["status"]["steps"]
    assert step["terminationReason"] == "Error"
    # startedAt/finishedAt are metav1.Time structs: omitempty keeps them, as null.
    assert step["terminated"] == {"exitCode": 1, "reason": "Error", "startedAt": None, "finishedAt": None}


def test_build_config_ref_is_a_go_task_ref() -> None:
    # TaskAttestation.Ref is a v1.TaskRef struct: unknown keys and empty omitempty fields disappear.
    pr = to_run(
        {
            "apiVersion": "tekton.dev/v1",
            "kind": "PipelineRun",
            "metadata": {"name": "pr"},
            "spec": {},
            "status": {
                "startTime": T0,
                "completionTime": T1,
                "pipelineSpec": {
                    "tasks": [
                        {"name": "build", "taskRef": {"name": "build", "kind": "", "bundle": "gcr.io/x/y:1"}}
                    ]
                },
            },
        },
        source="test",
    )
    got = generate(pr, [taskrun("pr-build", "build")], Options(format="slsa/v1")).statement
    assert got["predicate"]["buildConfig"]["tasks"][0]["ref"] == {"name": "build"}


def test_v1_0_times_keep_nanoseconds() -> None:
    # metav1.Time parses RFC 3339 with nanoseconds; runDetails.metadata holds protobuf Timestamps, which
    # protojson prints with 0, 3, 6 or 9 fraction digits, so a nanosecond time keeps all nine.
    tr = to_run(
        {
            "apiVersion": "tekton.dev/v1",
            "kind": "TaskRun",
            "metadata": {"name": "t"},
            "status": {
                "startTime": "2024-05-02T11:00:00.123456789+02:00",
                "completionTime": "2024-05-02T09:05:00.5Z",
            },
        },
        source="test",
    )
    meta = generate(tr, [], Options(format="slsa/v2alpha4")).statement["predicate"]["runDetails"]["metadata"]
    assert meta == {"startedOn": "2024-05-02T09:00:00.123456789Z", "finishedOn": "2024-05-02T09:05:00.500Z"}


def test_lower_case_rfc3339_letters_are_rejected() -> None:
    # time.Parse(time.RFC3339) needs upper-case T and Z; Chains cannot decode such a run.
    with pytest.raises(InputError, match=r"status\.startTime must be an RFC 3339 time"):
        to_run(
            {
                "apiVersion": "tekton.dev/v1",
                "kind": "TaskRun",
                "metadata": {"name": "t"},
                "status": {"startTime": "2024-05-02t09:00:00z"},
            },
            source="test",
        )
