package lib.tekton_test

import rego.v1

import data.lib.tekton
import data.lib.testdata as td

digest_b := concat("@", ["quay.io/tasks/buildah", td.bundle_digest])

digest_t := concat("@", ["quay.io/tasks/trivy-scanner", td.bundle_digest])

# The fixture pipeline, normalised by hand from lib/testdata_test.rego.
expected_clone := {
	"name": "clone", "task": "git-clone", "bundle": "", "status": "Succeeded", "after": [],
	"started": "2024-01-01T00:00:00Z", "finished": "2024-01-01T00:00:10Z",
	"results": [{"name": "commit", "value": td.commit}],
}

expected_scan := {
	"name": "scan", "task": "trivy-scanner", "bundle": digest_t, "status": "Succeeded", "after": ["clone"],
	"started": "2024-01-01T00:00:11Z", "finished": "2024-01-01T00:00:20Z", "results": [],
}

expected_build := {
	"name": "build", "task": "buildah", "bundle": digest_b, "status": "Succeeded", "after": ["scan"],
	"started": "2024-01-01T00:00:21Z", "finished": "2024-01-01T00:00:40Z",
	"results": [
		{"name": "IMAGE_URL", "value": "registry.example.com/org/app:latest\n"},
		{"name": "IMAGE_DIGEST", "value": td.digest},
	],
}

other_statement := {
	"_type": "https://in-toto.io/Statement/v1",
	"predicateType": "https://cyclonedx.org/bom",
	"subject": [],
	"predicate": {},
}

# Fixture variants with object.union/object.remove only: the wasm test engine has no json.patch.
v02_with_build_type(build_type) := object.union(td.v02(td.tasks, td.materials), {"predicate": {"buildType": build_type}})

v1_with_build_type(build_type) := object.union(
	td.v1(td.tasks, td.v1_deps),
	{"predicate": {"buildDefinition": {"buildType": build_type}}},
)

replace(obj, key, value) := object.union(object.remove(obj, [key]), {key: value})

v1_with_run_spec(spec) := replace(st, "predicate", replace(st.predicate, "buildDefinition", definition)) if {
	st := td.v1(td.tasks, td.v1_deps)
	definition := replace(st.predicate.buildDefinition, "externalParameters", {"runSpec": spec})
}

test_provenance_and_pipelinerun_indexes if {
	taskrun := v02_with_build_type("tekton.dev/v1/TaskRun")
	inp := td.input_of([td.v02(td.tasks, td.materials), other_statement, taskrun, td.v1(td.tasks, td.v1_deps)])
	tekton.provenance_indexes == {0, 2, 3} with input as inp
	tekton.pipelinerun_indexes == {0, 3} with input as inp
}

test_v02_pipelinerun_build_types if {
	every build_type in tekton.pipelinerun_build_types_v02 {
		tekton.is_pipelinerun(v02_with_build_type(build_type))
	}

	# TaskRun provenance records no pipeline tasks; the task rules must not read it as a PipelineRun
	every build_type in tekton.taskrun_build_types_v02 {
		not tekton.is_pipelinerun(v02_with_build_type(build_type))
	}
	not tekton.is_pipelinerun(v02_with_build_type("https://example.com/other"))
}

test_v1_pipelinerun_needs_a_pipeline_run_spec if {
	tekton.is_pipelinerun(td.v1(td.tasks, td.v1_deps))
	tekton.is_pipelinerun(v1_with_run_spec({"pipelineSpec": {"tasks": []}}))
	not tekton.is_pipelinerun(v1_with_run_spec({"taskRef": {"name": "buildah"}}))
	not tekton.is_pipelinerun(v1_with_run_spec({"pipelineRef": "build"}))
	tekton.is_pipelinerun(v1_with_build_type("https://tekton.dev/chains/v2/slsa"))
	not tekton.is_pipelinerun(v1_with_build_type("https://example.com/build"))
}

test_builder_id if {
	tekton.builder_id(td.v02(td.tasks, td.materials)) == "https://tekton.dev/chains/v2"
	tekton.builder_id(td.v1(td.tasks, td.v1_deps)) == "https://tekton.dev/chains/v2"
	st := td.v1(td.tasks, td.v1_deps)
	not tekton.builder_id(replace(st, "predicate", object.remove(st.predicate, ["runDetails"])))
	not tekton.builder_id(other_statement)
}

test_v02_tasks_normalised if {
	tekton.tasks == {0: [expected_clone, expected_scan, expected_build]} with input as td.good_v02
}

test_v1_tasks_normalised_from_taskruns if {
	# SLSA v1.0 records no task graph, so "after" is always empty there
	expected := [
		expected_clone,
		object.union(expected_scan, {"after": []}),
		object.union(expected_build, {"after": []}),
	]
	tekton.tasks == {0: expected} with input as td.good_v1
}

test_plain_slsa_v1_records_no_tasks if {
	# pipelineTask entries of the plain slsa build type carry no TaskRun, only a URI and digest
	st := v1_with_build_type("https://tekton.dev/chains/v2/slsa")
	tekton.tasks == {0: []} with input as td.input_of([st])
	tekton.task_record_count == {0: 0} with input as td.input_of([st])
}

test_unreadable_v1_records_are_counted_but_not_read if {
	bad := [
		{"name": "pipelineTask", "content": "%%% not base64"},
		{"name": "pipelineTask", "content": base64.encode("not json")},
		{"name": "pipelineTask", "content": base64.encode("[1, 2]")},
		{"name": "pipelineTask", "uri": "oci://quay.io/tasks/x"},
	]
	inp := td.input_of([td.v1(td.tasks, array.concat(td.v1_deps, bad))])
	tekton.task_record_count == {0: 7} with input as inp
	count(tekton.tasks[0]) == 3 with input as inp
}

test_unreadable_v02_records_are_counted_but_not_read if {
	inp := td.input_of([td.v02(array.concat(td.tasks, ["clone", 7]), td.materials)])
	tekton.task_record_count == {0: 5} with input as inp
	count(tekton.tasks[0]) == 3 with input as inp
}

test_decode_taskrun if {
	tekton.decode_taskrun({"content": base64.encode(`{"kind": "TaskRun"}`)}) == {"kind": "TaskRun"}
	not tekton.decode_taskrun({"content": "%%%"})

	# `{}` is e30= in canonical base64; unpadded and over-padded forms are refused on every engine
	not tekton.decode_taskrun({"content": "e30"})
	not tekton.decode_taskrun({"content": "e30=="})
	not tekton.decode_taskrun({"content": "e30=\n"})
	not tekton.decode_taskrun({"content": base64.encode("{")})
	not tekton.decode_taskrun({"content": base64.encode(`"a string"`)})
	not tekton.decode_taskrun({"content": 12})
	not tekton.decode_taskrun({})
}

test_task_name_of_v1beta1_bundle_ref if {
	ref := {"name": "buildah", "bundle": digest_b, "kind": "Task"}
	tekton.ref_task_name(ref) == "buildah"
	tekton.ref_bundle(ref) == digest_b
}

test_task_name_of_v1_bundles_resolver if {
	ref := {"resolver": "bundles", "params": [
		{"name": "kind", "value": "task"},
		{"name": "name", "value": "trivy-scanner"},
		{"name": "bundle", "value": digest_t},
	]}
	tekton.ref_task_name(ref) == "trivy-scanner"
	tekton.ref_bundle(ref) == digest_t

	# the resolver's params decide, not a stray name field next to them
	without_name := {"resolver": "bundles", "name": "buildah", "params": [{"name": "bundle", "value": digest_t}]}
	tekton.ref_task_name(without_name) == ""
	tekton.ref_bundle({"resolver": "bundles", "bundle": digest_b, "params": []}) == ""
}

test_task_name_of_plain_and_other_refs if {
	tekton.ref_task_name({"name": "git-clone", "kind": "Task"}) == "git-clone"
	tekton.ref_bundle({"name": "git-clone", "kind": "Task"}) == ""

	# git, hub and cluster resolvers and embedded specs name no task definition here
	git := {"resolver": "git", "params": [{"name": "url", "value": "https://x/y.git"}, {"name": "pathInRepo", "value": "t.yaml"}]}
	tekton.ref_task_name(git) == ""
	tekton.ref_bundle(git) == ""
	tekton.ref_task_name({}) == ""
	tekton.ref_task_name("buildah") == ""
	tekton.ref_task_name({"name": 5}) == ""
	tekton.ref_bundle({"bundle": ["x"]}) == ""
	tekton.ref_bundle("quay.io/tasks/buildah") == ""
}

test_param_takes_first_value_and_skips_junk if {
	ref := {"params": ["junk", {"name": "name", "value": "first"}, {"name": "name", "value": "second"}]}
	tekton.param(ref, "name") == "first"
	tekton.param(ref, "bundle") == ""
	tekton.param({"params": "name=x"}, "name") == ""
}

taskrun(extra) := object.union({"apiVersion": "tekton.dev/v1", "kind": "TaskRun"}, extra)

test_taskrun_task_name_falls_back_to_the_task_label if {
	labelled := taskrun({"metadata": {"labels": {"tekton.dev/task": "git-clone"}}, "spec": {"taskRef": {"resolver": "git"}}})
	tekton.taskrun_task_name(labelled) == "git-clone"

	# a taskRef name wins over the label
	both := taskrun({"metadata": {"labels": {"tekton.dev/task": "other"}}, "spec": {"taskRef": {"name": "git-clone"}}})
	tekton.taskrun_task_name(both) == "git-clone"
	tekton.taskrun_task_name(taskrun({"spec": {"taskSpec": {"steps": []}}})) == ""
}

condition(status) := taskrun({"status": {"conditions": [{"type": "Succeeded", "status": status}]}})

test_taskrun_status if {
	tekton.taskrun_status(condition("True")) == "Succeeded"
	tekton.taskrun_status(condition("False")) == "Failed"
	tekton.taskrun_status(condition("Unknown")) == "Running"

	# no Succeeded condition, or one without a status: the TaskRun never reported an outcome
	tekton.taskrun_status(taskrun({"status": {"conditions": [{"type": "Succeeded"}]}})) == "Unknown"
	tekton.taskrun_status(taskrun({"status": {"conditions": [{"type": "Other", "status": "True"}]}})) == "Unknown"
	tekton.taskrun_status(taskrun({})) == "Unknown"
}

test_taskrun_results_v1_and_v1beta1 if {
	tekton.taskrun_results(taskrun({"status": {"results": [{"name": "a", "value": "1"}]}})) == [{"name": "a", "value": "1"}]
	tekton.taskrun_results(taskrun({"status": {"taskResults": [{"name": "b", "value": "2"}]}})) == [{"name": "b", "value": "2"}]
	tekton.taskrun_results(taskrun({"status": {}})) == []

	# results without a string name are dropped, not an error
	tekton.taskrun_results(taskrun({"status": {"results": [{"name": 1, "value": "1"}, "x"]}})) == []
}

test_result_value_trims_and_is_undefined_when_missing if {
	task := {"results": [{"name": "IMAGE_URL", "value": " reg/app\n"}, {"name": "N", "value": 3}]}
	tekton.result_value(task, "IMAGE_URL") == "reg/app"
	not tekton.result_value(task, "IMAGE_DIGEST")
	not tekton.result_value(task, "N")
}

test_v02_precedence_follows_the_after_graph if {
	tekton.predecessors == {0: {"clone": set(), "scan": {"clone"}, "build": {"clone", "scan"}}} with input as td.good_v02
	tekton.precedes(0, expected_clone, expected_build) with input as td.good_v02
	not tekton.precedes(0, expected_build, expected_clone) with input as td.good_v02
}

test_v1_precedence_follows_times if {
	inp := td.good_v1
	tekton.precedes(0, expected_clone, expected_build) with input as inp
	not tekton.precedes(0, expected_build, expected_clone) with input as inp

	# offsets compare as instants
	a := {"finished": "2024-01-01T01:00:00+01:00"}
	tekton.precedes(0, a, {"started": "2024-01-01T00:00:00Z"}) with input as inp
	not tekton.precedes(0, a, {"started": "2023-12-31T23:59:59Z"}) with input as inp

	# without both times nothing is known to precede
	not tekton.precedes(0, {"finished": ""}, {"started": "2024-01-01T00:00:00Z"}) with input as inp
	not tekton.precedes(0, a, {"started": ""}) with input as inp
	not tekton.precedes(0, {"finished": "soon"}, {"started": "2024-01-01T00:00:00Z"}) with input as inp
}
