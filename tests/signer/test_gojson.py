"""Go's encode of Tekton objects (signer.provenance.gojson): what Chains writes for ``runSpec`` and for the
``slsa-tekton`` task descriptor, which are ``json.Marshal`` of the decoded Go structs, not the input JSON."""

from __future__ import annotations

import base64
import json

import pytest

from signer.golang import go_json
from signer.provenance import Options, generate, gojson
from signer.run import to_run

IMAGE_ID = "golang@sha256:" + "1" * 64

TASKRUN = {
    "apiVersion": "tekton.dev/v1",
    "kind": "TaskRun",
    "metadata": {
        "name": "build-tr",
        "namespace": "ci",
        "uid": "u-1",
        "creationTimestamp": None,
        "labels": {"tekton.dev/pipelineTask": "build", "app": "web"},
        "somethingNew": "dropped",
    },
    "spec": {
        "taskRef": {"name": "build", "kind": "Task"},
        "timeout": "60m",
        "params": [{"name": "flags", "value": ["-v", "-x"]}],
    },
    "status": {
        "podName": "build-pod",
        "startTime": "2024-05-02T11:00:01.5+02:00",
        "completionTime": "2024-05-02T09:01:00Z",
        "conditions": [{"type": "Succeeded", "status": "True", "reason": "Succeeded"}],
        "provenance": {
            "featureFlags": {"EnableAPIFields": "beta", "enableStepActions": False, "maxResultSize": 4096}
        },
        "taskSpec": {"steps": [{"name": "compile", "image": "golang", "script": "go build"}]},
        "steps": [
            {
                "name": "compile",
                "container": "step-compile",
                "imageID": IMAGE_ID,
                "terminated": {
                    "exitCode": 0,
                    "reason": "Completed",
                    "startedAt": "2024-05-02T09:00:02Z",
                    "finishedAt": "2024-05-02T09:00:59Z",
                },
            }
        ],
        "results": [{"name": "digest", "type": "string", "value": "sha256:ab"}],
        "bogus": 1,
    },
}

# Written from encoding/json's rules over the v1 types (and checked against Chains' own encoder):
# * keys in struct declaration order (TypeMeta's kind before apiVersion; StepState's embedded
#   ContainerState first), map keys sorted (labels);
# * unknown keys dropped (metadata.somethingNew, status.bogus);
# * creationTimestamp is omitzero: null is left out; a Condition's lastTransitionTime is a struct with
#   omitempty, which never omits a struct, so the missing time is written as null;
# * non-omitempty zero values appear: spec.serviceAccountName "", each step's computeResources {};
# * times are re-printed as RFC 3339 seconds in UTC (the .5 s fraction is dropped), durations as
#   time.Duration.String() ("60m" -> "1h0m0s");
# * featureFlags keys match case-insensitively (EnableAPIFields -> enableAPIFields) and omitempty drops
#   the false bool.
EXPECTED = (
    '{"kind":"TaskRun","apiVersion":"tekton.dev/v1",'
    '"metadata":{"name":"build-tr","namespace":"ci","uid":"u-1",'
    '"labels":{"app":"web","tekton.dev/pipelineTask":"build"}},'
    '"spec":{"params":[{"name":"flags","value":["-v","-x"]}],"serviceAccountName":"",'
    '"taskRef":{"name":"build","kind":"Task"},"timeout":"1h0m0s"},'
    '"status":{"conditions":[{"type":"Succeeded","status":"True","lastTransitionTime":null,"reason":"Succeeded"}],'
    '"podName":"build-pod","startTime":"2024-05-02T09:00:01Z","completionTime":"2024-05-02T09:01:00Z",'
    '"steps":[{"terminated":{"exitCode":0,"reason":"Completed","startedAt":"2024-05-02T09:00:02Z",'
    '"finishedAt":"2024-05-02T09:00:59Z"},"name":"compile","container":"step-compile",'
    '"imageID":"' + IMAGE_ID + '"}],'
    '"results":[{"name":"digest","type":"string","value":"sha256:ab"}],'
    '"taskSpec":{"steps":[{"name":"compile","image":"golang","computeResources":{},"script":"go build"}]},'
    '"provenance":{"featureFlags":{"enableAPIFields":"beta","maxResultSize":4096}}}}'
)


def test_taskrun_is_reencoded_as_go_writes_it() -> None:
    assert go_json(gojson.taskrun(TASKRUN), sort_keys=False).decode() == EXPECTED


def test_slsa_tekton_descriptor_content_is_the_go_encoding() -> None:
    pr = to_run(
        {
            "apiVersion": "tekton.dev/v1",
            "kind": "PipelineRun",
            "metadata": {"name": "pr", "namespace": "ci", "uid": "p-1"},
            "spec": {"pipelineRef": {"name": "p"}},
            "status": {
                "startTime": "2024-05-02T09:00:00Z",
                "completionTime": "2024-05-02T09:02:00Z",
                "pipelineSpec": {"tasks": [{"name": "build", "taskRef": {"name": "build"}}]},
            },
        },
        source="pr",
    )
    tr = to_run(TASKRUN, source="tr")
    got = generate(
        pr, [tr], Options(format="slsa/v2alpha4", build_type="https://tekton.dev/chains/v2/slsa-tekton")
    ).statement
    deps = got["predicate"]["buildDefinition"]["resolvedDependencies"]
    (task,) = [d for d in deps if d.get("name") == "pipelineTask"]
    # Chains reads children through an informer lister: client-go's typed decoding clears kind and
    # apiVersion, so the embedded TaskRun starts at metadata.
    assert base64.b64decode(task["content"]).decode() == EXPECTED.replace(
        '"kind":"TaskRun","apiVersion":"tekton.dev/v1",', ""
    )


def test_run_spec_fills_go_defaults_inside_embedded_specs() -> None:
    # TaskRunSpec.serviceAccountName has no omitempty; Step.computeResources is a struct, so omitempty
    # keeps it as {}; Param values keep their array type; the timeout is re-printed by Duration.String().
    spec = {
        "taskSpec": {"steps": [{"name": "s", "image": "alpine", "args": ["a"]}]},
        "timeout": "90s",
        "params": [{"name": "p", "value": "v"}],
        "unknown": True,
    }
    assert gojson.run_spec("TaskRun", spec) == {
        "params": [{"name": "p", "value": "v"}],
        "serviceAccountName": "",
        "taskSpec": {"steps": [{"name": "s", "image": "alpine", "args": ["a"], "computeResources": {}}]},
        "timeout": "1m30s",
    }


def test_pipelinerun_spec_always_has_task_run_template() -> None:
    # PipelineRunSpec.taskRunTemplate is a struct without omitempty: {} when absent; timeouts are
    # *metav1.Duration values.
    spec = {"pipelineRef": {"name": "p"}, "timeouts": {"pipeline": "2h", "tasks": "30m0s"}}
    assert gojson.run_spec("PipelineRun", spec) == {
        "pipelineRef": {"name": "p"},
        "timeouts": {"pipeline": "2h0m0s", "tasks": "30m0s"},
        "taskRunTemplate": {},
    }


def test_v2alpha3_run_spec_uses_the_go_encoding() -> None:
    tr = to_run({**TASKRUN, "spec": {"taskSpec": {"steps": [{"name": "s", "image": "alpine"}]}}}, source="tr")
    got = generate(tr, [], Options(format="slsa/v2alpha3")).statement
    assert got["predicate"]["buildDefinition"]["externalParameters"]["runSpec"] == {
        "serviceAccountName": "",
        "taskSpec": {"steps": [{"name": "s", "image": "alpine", "computeResources": {}}]},
    }
    json.dumps(got)  # plain JSON values only


@pytest.mark.parametrize(
    ("written", "encoded"),
    [
        # Canonical-looking input is kept as written (ParseQuantity's fast path): scale a multiple of 3,
        # digits not ending in 000 and not starting with 0.
        ("250m", "250m"),
        ("1.234", "1.234"),
        ("+2", "+2"),
        ("1E6", "1E6"),
        ("1Gi", "1Gi"),
        ("7Mi", "7Mi"),
        # Otherwise the canonical form: smallest suffix keeping an integer mantissa.
        ("0.5", "500m"),
        ("1000m", "1"),
        ("1.0", "1"),
        ("5000", "5k"),
        ("2.5G", "2500M"),
        ("12e2", "1200"),
        # Binary units: a multiple of 8 is re-expressed in the largest exact unit.
        ("1024Mi", "1Gi"),
        ("2048Ki", "2Mi"),
        ("1536Mi", "1536Mi"),
        ("1.5Mi", "1536Ki"),
        # Below 1Ki a binary value is written in decimal; below a nano it rounds up to 1n.
        ("0.5Ki", "512"),
        ("0.0000000001", "1n"),
    ],
)
def test_quantities_are_canonicalised_like_resource_quantity(written: str, encoded: str) -> None:
    spec = {"computeResources": {"limits": {"memory": written}}}
    assert gojson.run_spec("TaskRun", spec)["computeResources"] == {"limits": {"memory": encoded}}
