package lib.tekton_test

import rego.v1

import data.lib.tekton
import data.lib.testdata as td

digest_b := concat("@", ["quay.io/tasks/buildah", td.bundle_digest])

digest_t := concat("@", ["quay.io/tasks/trivy-scanner", td.bundle_digest])

# The fixture pipeline, normalised by hand from lib/testdata_test.rego.
expected_clone := {
	"name": "clone", "task": "git-clone", "origin": {"kind": "local", "name": "git-clone"}, "ambiguous": false,
	"status": "Succeeded", "after": [], "started": "2024-01-01T00:00:00Z", "finished": "2024-01-01T00:00:10Z",
	"results": [{"name": "commit", "value": td.commit}],
}

expected_scan := {
	"name": "scan", "task": "trivy-scanner", "origin": {"kind": "bundle", "ref": digest_t}, "ambiguous": false,
	"status": "Succeeded", "after": ["clone"], "started": "2024-01-01T00:00:11Z",
	"finished": "2024-01-01T00:00:20Z", "results": [],
}

expected_build := {
	"name": "build", "task": "buildah", "origin": {"kind": "bundle", "ref": digest_b}, "ambiguous": false,
	"status": "Succeeded", "after": ["scan"], "started": "2024-01-01T00:00:21Z",
	"finished": "2024-01-01T00:00:40Z",
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

# One v0.2 task record: the given ref and the labels Chains copies from the TaskRun.
record(name, ref, labels) := {
	"name": name, "ref": ref, "status": "Succeeded",
	"invocation": {"configSource": {}, "environment": {"labels": labels}},
}

normalised(t) := task if {
	task := tekton.tasks[0][0] with input as td.input_of([td.v02([t], td.materials)])
}

normalised_v1(tr) := task if {
	dep := {"name": "pipelineTask", "content": base64.encode(json.marshal(tr))}
	task := tekton.tasks[0][0] with input as td.input_of([td.v1([], [dep])])
}

git_ref := {"kind": "Task", "resolver": "git", "params": [
	{"name": "url", "value": "https://github.com/org/tasks.git"},
	{"name": "revision", "value": td.commit},
	{"name": "pathInRepo", "value": "task/clone.yaml"},
]}

git_origin := {"kind": "git", "url": "https://github.com/org/tasks.git", "revision": td.commit, "path": "task/clone.yaml"}

test_provenance_pipelinerun_and_taskrun_indexes if {
	taskrun := v02_with_build_type("tekton.dev/v1/TaskRun")
	odd := v02_with_build_type("https://example.com/other")
	inp := td.input_of([td.v02(td.tasks, td.materials), other_statement, taskrun, td.v1(td.tasks, td.v1_deps), odd])
	tekton.provenance_indexes == {0, 2, 3, 4} with input as inp
	tekton.pipelinerun_indexes == {0, 3} with input as inp
	tekton.taskrun_indexes == {2} with input as inp
	tekton.unknown_build_indexes == {4} with input as inp
}

test_v02_pipelinerun_build_types if {
	every build_type in tekton.pipelinerun_build_types_v02 {
		tekton.is_pipelinerun(v02_with_build_type(build_type))
		not tekton.is_taskrun(v02_with_build_type(build_type))
	}

	# TaskRun provenance records no pipeline tasks; the task rules must not read it as a PipelineRun
	every build_type in tekton.taskrun_build_types_v02 {
		not tekton.is_pipelinerun(v02_with_build_type(build_type))
		tekton.is_taskrun(v02_with_build_type(build_type))
	}
	not tekton.is_pipelinerun(v02_with_build_type("https://example.com/other"))
	not tekton.is_taskrun(v02_with_build_type("https://example.com/other"))
}

test_v1_run_kind_follows_the_run_spec if {
	tekton.is_pipelinerun(td.v1(td.tasks, td.v1_deps))
	tekton.is_pipelinerun(v1_with_run_spec({"pipelineSpec": {"tasks": []}}))
	not tekton.is_pipelinerun(v1_with_run_spec({"taskRef": {"name": "buildah"}}))
	tekton.is_taskrun(v1_with_run_spec({"taskRef": {"name": "buildah"}}))
	tekton.is_taskrun(v1_with_run_spec({"taskSpec": {"steps": []}}))
	not tekton.is_pipelinerun(v1_with_run_spec({"pipelineRef": "build"}))
	not tekton.is_taskrun(v1_with_run_spec({"pipelineRef": "build"}))
	not tekton.is_taskrun(td.v1(td.tasks, td.v1_deps))
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
	tekton._decode_taskrun({"content": base64.encode(`{"kind": "TaskRun"}`)}) == {"kind": "TaskRun"}
	not tekton._decode_taskrun({"content": "%%%"})

	# `{}` is e30= in canonical base64; unpadded and over-padded forms are refused on every engine
	not tekton._decode_taskrun({"content": "e30"})
	not tekton._decode_taskrun({"content": "e30=="})
	not tekton._decode_taskrun({"content": "e30=\n"})
	not tekton._decode_taskrun({"content": "e30=e30="})
	not tekton._decode_taskrun({"content": "e3==="})
	not tekton._decode_taskrun({"content": "e3=0"})
	not tekton._decode_taskrun({"content": base64.encode("{")})
	not tekton._decode_taskrun({"content": base64.encode(`"a string"`)})
	not tekton._decode_taskrun({"content": 12})
	not tekton._decode_taskrun({})
}

origin(ref) := tekton._origin(ref, tekton._resolver(ref))

ambiguous(ref) := tekton._is_ambiguous(ref, tekton._resolver(ref))

test_origin_of_each_reference_style if {
	origin({"name": "buildah", "bundle": digest_b, "kind": "Task"}) == {"kind": "bundle", "ref": digest_b}
	bundles := {"resolver": "bundles", "params": [{"name": "bundle", "value": digest_t}, {"name": "name", "value": "trivy"}]}
	origin(bundles) == {"kind": "bundle", "ref": digest_t}
	origin(git_ref) == git_origin
	origin({"resolver": "hub", "params": [{"name": "name", "value": "git-clone"}]}) == {"kind": "resolver", "resolver": "hub"}
	origin({"resolver": "http", "params": [{"name": "url", "value": "https://x/t.yaml"}]}) == {"kind": "resolver", "resolver": "http"}
	origin({"resolver": "cluster", "params": []}) == {"kind": "resolver", "resolver": "cluster"}
	origin({"name": "git-clone", "kind": "ClusterTask"}) == {"kind": "local", "name": "git-clone"}

	# an embedded taskSpec: no reference, or one that names nothing
	origin({}) == {"kind": "inline"}
	origin({"kind": "Task"}) == {"kind": "inline"}
	origin({"name": 5, "bundle": ["x"]}) == {"kind": "inline"}

	# a bundles resolver without a bundle is still a bundle reference, to nothing
	origin({"resolver": "bundles", "params": []}) == {"kind": "bundle", "ref": ""}
}

test_task_name_of_bundle_and_plain_references if {
	normalised(record("build", {"name": "buildah", "bundle": digest_b}, {})).task == "buildah"
	normalised(record("scan", td.scan_task.ref, {})).task == "trivy-scanner"
	normalised(record("clone", {"name": "git-clone", "kind": "ClusterTask"}, {})).task == "git-clone"

	# a reference's own name wins over the label
	normalised(record("clone", {"name": "git-clone"}, {"tekton.dev/task": "other"})).task == "git-clone"

	# the resolver's params decide, not a stray name field next to them; then the label
	stray := {"resolver": "bundles", "name": "buildah", "params": [{"name": "bundle", "value": digest_t}]}
	normalised(record("scan", stray, {})).task == ""
	normalised(record("scan", stray, {"tekton.dev/task": "trivy-scanner"})).task == "trivy-scanner"
}

test_remote_tasks_are_named_by_the_task_label if {
	# what Chains writes for the git resolver: no name in the reference, the label on the record
	labels := {"tekton.dev/pipelineTask": "clone", "tekton.dev/task": "git-clone"}
	normalised(record("clone", git_ref, labels)).task == "git-clone"
	normalised(record("clone", git_ref, labels)).origin == git_origin
	normalised(record("t", {"resolver": "http", "params": []}, {"tekton.dev/task": "lint"})).task == "lint"

	# hub and cluster resolvers name the task in a param
	hub := {"resolver": "hub", "params": [{"name": "name", "value": "git-clone"}, {"name": "version", "value": "0.9"}]}
	normalised(record("clone", hub, {})).task == "git-clone"
	cluster := {"resolver": "cluster", "params": [{"name": "kind", "value": "task"}, {"name": "name", "value": "lint"}]}
	normalised(record("l", cluster, {"tekton.dev/task": "lint"})).task == "lint"

	# without the label a git-resolved task has no name the rules can use
	normalised(record("clone", git_ref, {})).task == ""
	normalised(record("clone", git_ref, {"tekton.dev/task": 7})).task == ""
}

test_embedded_specs_have_no_definition_name if {
	# PipelineRun labels propagate to TaskRuns: a tekton.dev/task label on an embedded spec proves nothing
	normalised(record("trivy-scanner", {}, {"tekton.dev/task": "trivy-scanner"})).task == ""
	normalised(object.remove(record("lint", {}, {}), ["ref"])).task == ""
	normalised(record("lint", "trivy-scanner", {})).origin == {"kind": "inline"}
}

test_pipeline_task_name_falls_back_to_the_label if {
	unnamed := object.remove(record("", git_ref, {"tekton.dev/pipelineTask": "clone", "tekton.dev/task": "git-clone"}), ["name"])
	normalised(unnamed).name == "clone"
	normalised(object.remove(record("", git_ref, {}), ["name"])).name == ""
	normalised(record("clone", git_ref, {"tekton.dev/pipelineTask": "other"})).name == "clone"
}

taskrun(extra) := object.union({"apiVersion": "tekton.dev/v1", "kind": "TaskRun"}, extra)

test_v1_taskrun_names if {
	labelled := taskrun({"metadata": {"labels": {"tekton.dev/pipelineTask": "clone", "tekton.dev/task": "git-clone"}}, "spec": {"taskRef": git_ref}})
	normalised_v1(labelled).task == "git-clone"
	normalised_v1(labelled).name == "clone"
	normalised_v1(labelled).origin == git_origin

	# a taskRef name wins over the label
	both := taskrun({"metadata": {"labels": {"tekton.dev/task": "other"}}, "spec": {"taskRef": {"name": "git-clone"}}})
	normalised_v1(both).task == "git-clone"
	spec := taskrun({"metadata": {"labels": {"tekton.dev/task": "x"}}, "spec": {"taskSpec": {"steps": []}}})
	normalised_v1(spec).task == ""
	normalised_v1(spec).origin == {"kind": "inline"}
	normalised_v1(spec).name == ""
}

test_ambiguous_references if {
	# the v1beta1 bundle field next to a resolver: Tekton runs the bundle field
	mixed := {"resolver": "git", "bundle": digest_b, "params": git_ref.params}
	ambiguous(mixed)
	ambiguous({"resolver": "bundles", "bundle": digest_b, "params": [{"name": "bundle", "value": digest_t}]})

	# a parameter given twice
	twice := {"resolver": "bundles", "params": [
		{"name": "bundle", "value": digest_t},
		{"name": "name", "value": "trivy-scanner"},
		{"name": "bundle", "value": "quay.io/evil/x@sha256:00"},
	]}
	ambiguous(twice)
	ambiguous({"resolver": "git", "params": array.concat(git_ref.params, [{"name": "url", "value": "https://evil.example/x"}])})
	ambiguous({"resolver": "bundles", "params": [{"name": "name", "value": "a"}, {"name": "name", "value": "a"}]})

	# plain references of every kind are not
	every ref in [git_ref, td.scan_task.ref, td.build_task.ref, td.clone_task.ref, {}, {"bundle": "", "resolver": "git"}] {
		not ambiguous(ref)
	}
	normalised(record("x", twice, {})).ambiguous
}

test_param_takes_first_value_and_skips_junk if {
	ref := {"params": ["junk", {"name": "name", "value": "first"}, {"name": "name", "value": "second"}]}
	tekton._param(ref, "name") == "first"
	tekton._param(ref, "bundle") == ""
	tekton._param({"params": "name=x"}, "name") == ""
	not ambiguous({"resolver": "bundles", "params": ["junk", "junk", {"name": "bundle", "value": "x"}]})
}

condition(status) := taskrun({"status": {"conditions": [{"type": "Succeeded", "status": status}]}})

test_taskrun_status if {
	tekton._taskrun_status(condition("True")) == "Succeeded"
	tekton._taskrun_status(condition("False")) == "Failed"
	tekton._taskrun_status(condition("Unknown")) == "Running"

	# no Succeeded condition, or one without a status: the TaskRun never reported an outcome
	tekton._taskrun_status(taskrun({"status": {"conditions": [{"type": "Succeeded"}]}})) == "Unknown"
	tekton._taskrun_status(taskrun({"status": {"conditions": [{"type": "Other", "status": "True"}]}})) == "Unknown"
	tekton._taskrun_status(taskrun({})) == "Unknown"
}

test_taskrun_results_v1_and_v1beta1 if {
	tekton._taskrun_results(taskrun({"status": {"results": [{"name": "a", "value": "1"}]}})) == [{"name": "a", "value": "1"}]
	tekton._taskrun_results(taskrun({"status": {"taskResults": [{"name": "b", "value": "2"}]}})) == [{"name": "b", "value": "2"}]
	tekton._taskrun_results(taskrun({"status": {}})) == []

	# results without a string name are dropped, not an error
	tekton._taskrun_results(taskrun({"status": {"results": [{"name": 1, "value": "1"}, "x"]}})) == []
}

test_result_value_trims_and_is_undefined_when_missing if {
	task := {"results": [{"name": "IMAGE_URL", "value": " reg/app\n"}, {"name": "N", "value": 3}]}
	tekton.result_value(task, "IMAGE_URL") == "reg/app"
	not tekton.result_value(task, "IMAGE_DIGEST")
	not tekton.result_value(task, "N")
}

# A v0.2 TaskRun statement: labels and configSource as Chains writes them.
v02_taskrun(source, labels) := object.union(v02_with_build_type("tekton.dev/v1beta1/TaskRun"), {"predicate": {
	"buildConfig": {"steps": []},
	"invocation": {"configSource": source, "environment": {"labels": labels}},
}})

test_v02_taskrun_statement_task_comes_from_its_config_source if {
	labels := {"tekton.dev/pipelineTask": "build", "tekton.dev/task": "buildah"}
	bundle := v02_taskrun({"uri": "quay.io/tasks/buildah", "digest": {"sha256": substring(td.bundle_digest, 7, -1)}, "entryPoint": "buildah"}, labels)
	task := tekton.taskrun_task[0] with input as td.input_of([bundle])
	task.name == "build"
	task.task == "buildah"
	task.origin == {"kind": "bundle", "ref": digest_b}
	task.status == "Unknown"

	git := v02_taskrun({"uri": "git+https://github.com/org/tasks.git", "digest": {"sha1": td.commit}, "entryPoint": "t.yaml"}, {})
	origin := tekton.taskrun_task[0].origin with input as td.input_of([git])
	origin == {"kind": "git", "url": "git+https://github.com/org/tasks.git", "revision": td.commit, "path": "t.yaml"}

	# a Task from the cluster (or an embedded spec: v0.2 cannot tell) has an empty configSource
	local := tekton.taskrun_task[0] with input as td.input_of([v02_taskrun({}, {"tekton.dev/task": "kaniko"})])
	local.origin == {"kind": "local", "name": ""}
	local.name == "kaniko"
	tekton.task_origins == {0: [local]} with input as td.input_of([v02_taskrun({}, {"tekton.dev/task": "kaniko"})])
	tekton.task_origins[0][0].name == "of a TaskRun attestation" with input as td.input_of([v02_taskrun({}, {})])
}

test_v1_taskrun_statement_task_comes_from_its_run_spec if {
	st := v1_with_run_spec({"taskRef": git_ref})
	labelled := object.union(st, {"predicate": {"buildDefinition": {"internalParameters": {"labels": {"tekton.dev/task": "git-clone"}}}}})
	task := tekton.taskrun_task[0] with input as td.input_of([labelled])
	task.origin == git_origin
	task.task == "git-clone"
	task.name == "git-clone"
	not task.ambiguous
	tekton.taskrun_task[0].origin == {"kind": "inline"} with input as td.input_of([v1_with_run_spec({"taskSpec": {"steps": []}})])
	tekton.taskrun_task[0].ambiguous with input as td.input_of([v1_with_run_spec({"taskRef": object.union(git_ref, {"bundle": digest_b})})])
}

test_task_origins_cover_pipeline_and_taskrun_statements if {
	inp := td.input_of([td.v02(td.tasks, td.materials), v02_taskrun({}, {"tekton.dev/task": "kaniko"}), other_statement])
	origins := tekton.task_origins with input as inp
	[t.name | some t in origins[0]] == ["clone", "scan", "build"]
	[[t.name, t.origin, t.ambiguous] | some t in origins[1]] == [["kaniko", {"kind": "local", "name": ""}, false]]
	not origins[2]
}

graph_input(ts) := td.input_of([td.v02(ts, td.materials)])

node(name, after) := {"name": name, "after": after, "ref": {"name": name}, "status": "Succeeded"}

test_acyclic_graphs_have_no_cycle_members if {
	count(tekton.cycle_members) == 0 with input as td.good_v02

	# listed in reverse order (every edge to a later record) but acyclic
	reverse := [node("c", ["b"]), node("b", ["a"]), node("a", [])]
	count(tekton.cycle_members) == 0 with input as graph_input(reverse)

	# a diamond, and edges to tasks that did not run (a when expression skipped them)
	diamond := [node("d", ["b", "c"]), node("b", ["a"]), node("c", ["a", "skipped"]), node("a", [])]
	count(tekton.cycle_members) == 0 with input as graph_input(diamond)
}

test_cycles_are_found if {
	tekton.cycle_members == {0: {"a"}} with input as graph_input([node("a", ["a"]), node("b", ["a"])])
	tekton.cycle_members == {0: {"a", "b"}} with input as graph_input([node("a", ["b"]), node("b", ["a"])])
	three := [node("a", ["c"]), node("b", ["a"]), node("c", ["b"]), node("d", ["c"])]
	tekton.cycle_members == {0: {"a", "b", "c"}} with input as graph_input(three)

	# a cycle among later records, reached through a task outside it
	tail := [node("x", []), node("y", ["x", "z"]), node("z", ["y"])]
	tekton.cycle_members == {0: {"y", "z"}} with input as graph_input(tail)

	# through the second record of a task recorded twice
	twice := [node("x", []), node("y", ["x"]), node("x", ["y"])]
	tekton.cycle_members == {0: {"x", "y"}} with input as graph_input(twice)
}

test_matrix_fan_out_is_one_task_under_one_name if {
	scan := node("scan", ["clone"])
	matrix := [node("clone", []), scan, scan, object.union(scan, {"status": "Failed"}), node("build", ["scan"])]
	count(tekton.inconsistent_names) == 0 with input as graph_input(matrix)
}

test_different_tasks_under_one_name_are_inconsistent if {
	other_ref := [node("clone", []), node("scan", ["clone"]), object.union(node("scan", ["clone"]), {"ref": {"name": "fake"}})]
	tekton.inconsistent_names == {0: {"scan"}} with input as graph_input(other_ref)

	# the same task recorded twice with other predecessors: one copy could pose as running first
	other_after := [node("clone", []), node("scan", ["clone"]), node("build", ["scan"]), node("scan", ["build"])]
	tekton.inconsistent_names == {0: {"scan"}} with input as graph_input(other_after)

	# SLSA v1.0: two TaskRuns of one pipeline task name from different definitions
	v1 := td.input_of([td.v1([td.clone_task, td.scan_task, object.union(td.build_task, {"name": "scan"})], td.v1_deps)])
	tekton.inconsistent_names == {0: {"scan"}} with input as v1
}
