"""The run model: loading files, v1beta1 -> v1 conversion, completion and child matching."""

from __future__ import annotations

import json

import pytest

from attestation.errors import InputError, LimitExceeded
from signer.documents import load_documents, parse_documents
from signer.run import (
    child_taskruns,
    children_by_pipeline_task,
    require_completed,
    to_run,
)


def taskrun(name: str = "tr", **status) -> dict:
    return {
        "apiVersion": "tekton.dev/v1",
        "kind": "TaskRun",
        "metadata": {"name": name, "namespace": "ns", "labels": {}},
        "spec": {},
        "status": {"completionTime": "2024-01-01T00:00:10Z", **status},
    }


def test_single_json_object(tmp_path):
    path = tmp_path / "tr.json"
    path.write_text(json.dumps(taskrun()))
    docs = load_documents(path)
    assert [d["metadata"]["name"] for d in docs] == ["tr"]


def test_yaml_list_and_multi_document(tmp_path):
    path = tmp_path / "runs.yaml"
    path.write_text(
        "apiVersion: v1\nkind: List\nitems:\n"
        "- {apiVersion: tekton.dev/v1, kind: TaskRun, metadata: {name: a}}\n"
        "---\napiVersion: tekton.dev/v1\nkind: TaskRun\nmetadata: {name: b}\n"
    )
    assert [d["metadata"]["name"] for d in load_documents(path)] == ["a", "b"]


def test_unreadable_and_invalid_files(tmp_path):
    with pytest.raises(InputError, match="cannot read"):
        load_documents(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(InputError, match=r"bad.yaml: not valid YAML or JSON"):
        load_documents(bad)
    with pytest.raises(InputError, match="no objects"):
        parse_documents("", source="empty.yaml")


def test_yaml_alias_bomb_is_bounded():
    # 9 levels of 10 aliases each expand to 10**9 leaves if walked naively.
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        refs = ", ".join([f"*a{i - 1}"] * 10)
        lines.append(f"a{i}: &a{i} [{refs}]")
    with pytest.raises(LimitExceeded):
        parse_documents("\n".join(lines), source="bomb.yaml")


def test_not_a_run_is_rejected():
    with pytest.raises(InputError, match=r"x.yaml: Pod p is not a TaskRun or PipelineRun"):
        to_run({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}, source="x.yaml")
    with pytest.raises(InputError, match=r"apiVersion 'tekton\.dev/v1alpha1'"):
        to_run(
            {"apiVersion": "tekton.dev/v1alpha1", "kind": "TaskRun", "metadata": {"name": "p"}},
            source="x.yaml",
        )


def test_field_of_wrong_type_names_the_field():
    obj = taskrun(results="oops")
    with pytest.raises(InputError, match=r"TaskRun ns/tr: field status.results must be a list"):
        to_run(obj, source="x.yaml")


def test_result_values_are_decoded_like_tekton():
    run = to_run(
        taskrun(
            results=[
                {"name": "n", "value": 42},
                {"name": "b", "value": True},
                {"name": "a", "value": ["x"]},
                {"name": "o", "value": {"k": "v"}},
                {"name": "z", "value": None},
            ]
        ),
        source="x",
    )
    assert [(r.name, r.type, r.value) for r in run.results] == [
        ("n", "string", "42"),
        ("b", "string", "true"),
        ("a", "array", ["x"]),
        ("o", "object", {"k": "v"}),
        ("z", "string", ""),
    ]


def test_require_completed():
    obj = taskrun()
    del obj["status"]["completionTime"]
    with pytest.raises(InputError, match=r"x.yaml: TaskRun ns/tr has not completed"):
        require_completed(to_run(obj, source="x.yaml"))


def test_v1beta1_taskrun_converted():
    obj = {
        "apiVersion": "tekton.dev/v1beta1",
        "kind": "TaskRun",
        "metadata": {"name": "tr"},
        "spec": {"taskRef": {"name": "build", "bundle": "gcr.io/b/t@sha256:" + "a" * 64, "kind": "Task"}},
        "status": {
            "taskResults": [{"name": "IMAGE_URL", "value": "x"}],
            "taskSpec": {"steps": [{"name": "s", "resources": {"limits": {"cpu": "1"}}}]},
        },
    }
    run = to_run(obj, source="x")
    assert run.obj["apiVersion"] == "tekton.dev/v1"
    assert run.source_api_version == "tekton.dev/v1beta1"
    assert run.gvk == "tekton.dev/v1/TaskRun"
    # TaskRef.convertTo (Pipeline v1.15, vendored by Chains) has no bundle: name and kind survive.
    assert run.spec["taskRef"] == {"name": "build", "kind": "Task"}
    assert [r.name for r in run.results] == ["IMAGE_URL"]
    assert run.resolved_spec["steps"][0] == {"name": "s", "computeResources": {"limits": {"cpu": "1"}}}
    assert obj["status"]["taskResults"], "the input object is not modified"


def test_v1beta1_pipelinerun_converted():
    obj = {
        "apiVersion": "tekton.dev/v1beta1",
        "kind": "PipelineRun",
        "metadata": {"name": "pr"},
        "spec": {"serviceAccountName": "sa", "timeout": "1h0m0s"},
        "status": {
            "pipelineResults": [{"name": "IMAGE_URL", "value": "x"}],
            "taskRuns": {"pr-b": {"pipelineTaskName": "b"}, "pr-a": {"pipelineTaskName": "a"}},
        },
    }
    run = to_run(obj, source="x")
    assert run.spec["taskRunTemplate"] == {"serviceAccountName": "sa"}
    assert run.spec["timeouts"] == {"pipeline": "1h0m0s"}
    assert [r.name for r in run.results] == ["IMAGE_URL"]
    assert [(c["name"], c["pipelineTaskName"], c["kind"]) for c in run.status["childReferences"]] == [
        ("pr-a", "a", "TaskRun"),
        ("pr-b", "b", "TaskRun"),
    ]


def pipelinerun(children: list[str]) -> dict:
    return {
        "apiVersion": "tekton.dev/v1",
        "kind": "PipelineRun",
        "metadata": {"name": "pr", "namespace": "ns"},
        "status": {"childReferences": [{"kind": "TaskRun", "name": c} for c in children]},
    }


def test_child_taskruns_in_child_reference_order_and_missing_named():
    pr = to_run(pipelinerun(["b", "a"]), source="pr.yaml")
    a = to_run(taskrun("a"), source="a")
    b = to_run(taskrun("b"), source="b")
    assert [t.name for t in child_taskruns(pr, [a, b])] == ["b", "a"]
    with pytest.raises(InputError, match=r"pr.yaml: PipelineRun ns/pr is missing child TaskRun\(s\) b"):
        child_taskruns(pr, [a])


def test_children_by_pipeline_task_by_label():
    x1, x2, y = taskrun("x1"), taskrun("x2"), taskrun("y")
    x1["metadata"]["labels"] = {"tekton.dev/pipelineTask": "x"}
    x2["metadata"]["labels"] = {"tekton.dev/pipelineTask": "x"}
    y["metadata"]["labels"] = {"tekton.dev/pipelineTask": "y"}
    runs = [to_run(o, source="s") for o in (x1, y, x2)]
    assert [t.name for t in children_by_pipeline_task(runs)["x"]] == ["x1", "x2"]
