package policy.release.tasks_test

import data.lib.testdata as td
import data.policy.release.tasks

test_good_pipelines_pass if {
	count(tasks.deny) == 0 with input as td.good_v02
	count(tasks.deny) == 0 with input as td.good_v1
}

test_no_pipeline_attestation_denies if {
	codes := td.codes(tasks.deny) with input as td.input_of([])
	codes == {"tasks.pipeline_has_tasks", "tasks.required_tasks_found"}
}

test_empty_task_list_denies if {
	codes := td.codes(tasks.deny) with input as td.input_of([td.v02([], td.materials)])
	"tasks.pipeline_has_tasks" in codes
	"tasks.required_tasks_found" in codes
}

test_v1_without_task_content_denies if {
	st := td.v1([], [{"name": "pipelineTask", "uri": "git+https://x/y.git", "digest": {"sha1": td.commit}}])
	codes := td.codes(tasks.deny) with input as td.input_of([st])
	codes == {"tasks.pipeline_has_tasks", "tasks.required_tasks_found", "tasks.task_records_readable"}
}

test_failed_task_denies if {
	failed := object.union(td.scan_task, {"status": "Failed"})
	results := tasks.deny with input as td.input_of([td.v02([td.clone_task, failed, td.build_task], td.materials)])
	results == {{"code": "tasks.successful_pipeline_tasks", "params": ["scan", "Failed"], "term": "scan"}}
	results_v1 := tasks.deny with input as td.input_of([td.v1([td.clone_task, failed, td.build_task], td.v1_deps)])
	results_v1 == results
}

test_missing_required_task_denies if {
	results := tasks.deny with input as td.input_of([td.v02([td.clone_task, td.build_task], td.materials)])
	{
		"code": "tasks.required_tasks_found",
		"params": ["sast-scan or source-scan or trivy-scanner"],
		"term": "sast-scan or source-scan or trivy-scanner",
	} in results

	# and the build no longer runs after a scan
	td.codes(results) == {"tasks.required_tasks_found", "tasks.task_order"}
}

test_required_task_alternatives_and_rule_data if {
	count(tasks.deny) == 0 with input as td.good_v02 with data.rule_data.required_tasks as [["kaniko", "buildah"]]
	results := tasks.deny with input as td.good_v02 with data.rule_data.required_tasks as ["unit-tests"]
	td.codes(results) == {"tasks.required_tasks_found"}
}

test_task_named_like_required_task_without_ref_does_not_count if {
	# A pipeline task called "trivy-scanner" with an embedded spec is not the trivy-scanner task.
	fake := {"name": "trivy-scanner", "after": ["clone"], "ref": {}, "status": "Succeeded"}
	results := tasks.deny with input as td.input_of([td.v02([td.clone_task, fake, td.build_task], td.materials)])
	"tasks.required_tasks_found" in td.codes(results)
}

test_required_tasks_list_warning if {
	count(tasks.warn) == 0 with input as td.good_v02
	td.codes(tasks.warn) == {"tasks.required_tasks_list_provided"} with input as td.good_v02
		with data.rule_data.required_tasks as []
	td.codes(tasks.warn) == {"tasks.required_tasks_list_provided"} with input as td.good_v02
		with data.rule_data.required_tasks as "git-clone"
}

test_task_order_v02_uses_after_graph if {
	# build no longer depends on scan: scan ran, but not before build
	unordered := object.union(td.build_task, {"after": ["clone"]})
	results := tasks.deny with input as td.input_of([td.v02([td.clone_task, td.scan_task, unordered], td.materials)])
	results == {{
		"code": "tasks.task_order",
		"params": ["build", "sast-scan or source-scan or trivy-scanner"],
		"term": "build",
	}}
}

test_task_order_v02_is_transitive if {
	mid := {"name": "mid", "after": ["scan"], "ref": {"name": "lint"}, "status": "Succeeded"}
	late := object.union(td.build_task, {"after": ["mid"]})
	count(tasks.deny) == 0 with input as td.input_of([td.v02([td.clone_task, td.scan_task, mid, late], td.materials)])
}

test_task_order_v1_uses_times if {
	early := object.union(td.build_task, {"startedOn": "2024-01-01T00:00:15Z"})
	results := tasks.deny with input as td.input_of([td.v1([td.clone_task, td.scan_task, early], td.v1_deps)])
	td.codes(results) == {"tasks.task_order"}

	# finished exactly when the build started: still before
	same := object.union(td.build_task, {"startedOn": "2024-01-01T00:00:20Z"})
	count(tasks.deny) == 0 with input as td.input_of([td.v1([td.clone_task, td.scan_task, same], td.v1_deps)])
}

test_task_order_without_times_denies if {
	no_time := object.union(td.scan_task, {"finishedOn": ""})
	results := tasks.deny with input as td.input_of([td.v1([td.clone_task, no_time, td.build_task], td.v1_deps)])
	td.codes(results) == {"tasks.task_order"}
}

test_unreadable_task_records_deny if {
	# SLSA v0.2: a record that is not an object; SLSA v1.0: content that is not base64 JSON of a TaskRun
	v02 := td.input_of([td.v02(array.concat(td.tasks, ["scan"]), td.materials)])
	tasks.deny == {{"code": "tasks.task_records_readable", "params": ["1", "4"]}} with input as v02
	bad := [
		{"name": "pipelineTask", "content": "%%%"},
		{"name": "pipelineTask", "content": base64.encode("not json")},
		{"name": "pipelineTask", "content": base64.encode("[]")},
	]
	v1 := td.input_of([td.v1(td.tasks, array.concat(td.v1_deps, bad))])
	tasks.deny == {{"code": "tasks.task_records_readable", "params": ["3", "6"]}} with input as v1
}

test_taskrun_or_plain_slsa_provenance_records_no_tasks if {
	taskrun := object.union(td.v02(td.tasks, td.materials), {"predicate": {"buildType": "tekton.dev/v1/TaskRun"}})
	"tasks.pipeline_has_tasks" in td.codes(tasks.deny) with input as td.input_of([taskrun])
	plain := object.union(td.v1(td.tasks, td.v1_deps), {"predicate": {"buildDefinition": {"buildType": "https://tekton.dev/chains/v2/slsa"}}})
	td.codes(tasks.deny) == {"tasks.pipeline_has_tasks", "tasks.required_tasks_found"} with input as td.input_of([plain])
}

test_v1_task_without_outcome_denies if {
	# a TaskRun with no Succeeded condition never reported success
	tr := {"apiVersion": "tekton.dev/v1", "kind": "TaskRun", "metadata": {"labels": {"tekton.dev/pipelineTask": "lint"}}}
	lint := {"name": "pipelineTask", "content": base64.encode(json.marshal(tr))}
	results := tasks.deny with input as td.input_of([td.v1(td.tasks, array.concat(td.v1_deps, [lint]))])
	results == {{"code": "tasks.successful_pipeline_tasks", "params": ["lint", "Unknown"], "term": "lint"}}
}

test_missing_required_task_denies_on_v1 if {
	results := tasks.deny with input as td.input_of([td.v1([td.clone_task, td.scan_task], td.v1_deps)])
	results == {{
		"code": "tasks.required_tasks_found",
		"params": ["build or buildah or kaniko"],
		"term": "build or buildah or kaniko",
	}}
}

test_required_task_names_from_rule_data if {
	# a plain name and a list of alternatives, matched by task definition name on both SLSA versions
	required := ["git-clone", ["sast-scan", "trivy-scanner"]]
	count(tasks.deny) == 0 with input as td.good_v1 with data.rule_data.required_tasks as required
	missing := ["git-clone", "unit-tests", ["lint", "sast"]]
	results := tasks.deny with input as td.good_v1 with data.rule_data.required_tasks as missing
	results == {
		{"code": "tasks.required_tasks_found", "params": ["unit-tests"], "term": "unit-tests"},
		{"code": "tasks.required_tasks_found", "params": ["lint or sast"], "term": "lint or sast"},
	}
}

test_malformed_required_tasks_warn if {
	td.codes(tasks.warn) == {"tasks.required_tasks_list_provided"} with input as td.good_v02
		with data.rule_data.required_tasks as ["git-clone", []]
	td.codes(tasks.warn) == {"tasks.required_tasks_list_provided"} with input as td.good_v02
		with data.rule_data.required_tasks as ["git-clone", ["buildah", 7]]
	count(tasks.warn) == 0 with input as td.good_v02 with data.rule_data.required_tasks as ["git-clone", ["buildah"]]
}

test_task_order_from_rule_data if {
	# single names on both sides
	clone_first := [{"before": "git-clone", "after": "trivy-scanner"}]
	count(tasks.deny) == 0 with input as td.good_v02 with data.rule_data.task_order as clone_first
	count(tasks.deny) == 0 with input as td.good_v1 with data.rule_data.task_order as clone_first
	build_first := [{"before": "buildah", "after": ["git-clone"]}]
	expected := {{"code": "tasks.task_order", "params": ["clone", "buildah"], "term": "clone"}}
	tasks.deny == expected with input as td.good_v02 with data.rule_data.task_order as build_first
	tasks.deny == expected with input as td.good_v1 with data.rule_data.task_order as build_first
}

test_task_order_without_before_denies if {
	# an entry that names no predecessor cannot be satisfied, so it denies rather than checking nothing
	results := tasks.deny with input as td.good_v02 with data.rule_data.task_order as [{"after": "buildah"}]
	results == {{"code": "tasks.task_order", "params": ["build", ""], "term": "build"}}
}

test_task_order_a_task_does_not_precede_itself if {
	# a task named on both sides needs another task before it, never itself
	self_only := [{"before": "buildah", "after": "buildah"}]
	expected := {{"code": "tasks.task_order", "params": ["build", "buildah"], "term": "build"}}
	tasks.deny == expected with input as td.good_v02 with data.rule_data.task_order as self_only
	with_clone := [{"before": ["buildah", "git-clone"], "after": "buildah"}]
	count(tasks.deny) == 0 with input as td.good_v02 with data.rule_data.task_order as with_clone
}

test_task_order_v02_graph_ignores_unknown_after_names if {
	# an "after" edge to a task that is not in the record links nothing
	orphan := object.union(td.build_task, {"after": ["ghost"]})
	ghost_scan := object.union(td.scan_task, {"after": ["ghost"]})
	results := tasks.deny with input as td.input_of([td.v02([td.clone_task, ghost_scan, orphan], td.materials)])
	td.codes(results) == {"tasks.task_order"}
}

# The fixture pipeline with every task resolved remotely, as Chains records it: the references name no
# task, the tekton.dev/task label on each record (SLSA v0.2) or TaskRun (SLSA v1.0) does.
git_ref(path) := {"kind": "Task", "resolver": "git", "params": [
	{"name": "url", "value": "https://github.com/org/tasks.git"},
	{"name": "revision", "value": td.commit},
	{"name": "pathInRepo", "value": path},
]}

remote(t, ref, task) := object.union(object.remove(t, ["ref"]), {
	"ref": ref,
	"invocation": {"environment": {"labels": {"tekton.dev/pipelineTask": t.name, "tekton.dev/task": task}}},
})

remote_v1(ts) := td.input_of([td.v1([], array.concat(
	[{"name": "pipelineTask", "content": base64.encode(json.marshal(labelled(t)))} | some t in ts],
	td.v1_deps,
))])

labelled(t) := object.union(td.taskrun(t), {"metadata": {"labels": {"tekton.dev/task": t.invocation.environment.labels["tekton.dev/task"]}}})

remote_tasks := [
	remote(td.clone_task, git_ref("task/git-clone.yaml"), "git-clone"),
	remote(td.scan_task, {"resolver": "hub", "params": [{"name": "kind", "value": "task"}]}, "trivy-scanner"),
	remote(td.build_task, {"resolver": "http", "params": [{"name": "url", "value": "https://example.org/buildah.yaml"}]}, "buildah"),
]

test_remote_tasks_satisfy_required_tasks_and_order if {
	count(tasks.deny) == 0 with input as td.input_of([td.v02(remote_tasks, td.materials)])
	count(tasks.deny) == 0 with input as remote_v1(remote_tasks)

	# a cluster resolver too, named by its param and by the label
	cluster := {"resolver": "cluster", "params": [{"name": "name", "value": "trivy-scanner"}, {"name": "kind", "value": "task"}]}
	ts := [remote_tasks[0], remote(td.scan_task, cluster, "trivy-scanner"), remote_tasks[2]]
	count(tasks.deny) == 0 with input as td.input_of([td.v02(ts, td.materials)])
}

test_remote_task_without_a_name_denies_as_unnamed_not_missing if {
	unnamed := object.union(object.remove(td.clone_task, ["ref"]), {"ref": git_ref("task/git-clone.yaml")})
	results := tasks.deny with input as td.input_of([td.v02([unnamed, td.scan_task, td.build_task], td.materials)])
	{
		"code": "tasks.task_names_known",
		"params": ["clone", "0", "task definition name"],
		"term": "clone",
	} in results

	# the missing name then also leaves git-clone unrun, which is true: nobody can tell it ran
	td.codes(results) == {"tasks.task_names_known", "tasks.required_tasks_found"}
}

test_record_without_a_pipeline_task_name_denies if {
	nameless := object.remove(td.scan_task, ["name"])
	results := tasks.deny with input as td.input_of([td.v02([td.clone_task, nameless, td.build_task], td.materials)])
	{"code": "tasks.task_names_known", "params": ["#1", "0", "pipeline task name"], "term": "#1"} in results

	# SLSA v1.0: a TaskRun without the tekton.dev/pipelineTask label
	tr := object.union(td.taskrun(td.scan_task), {"metadata": {"labels": {"tekton.dev/pipelineTask": ""}}})
	dep := {"name": "pipelineTask", "content": base64.encode(json.marshal(tr))}
	v1 := td.input_of([td.v1([td.clone_task, td.build_task], array.concat([dep], td.v1_deps))])
	{"code": "tasks.task_names_known", "params": ["#2", "0", "pipeline task name"], "term": "#2"} in tasks.deny with input as v1
}

test_embedded_specs_need_no_definition_name if {
	lint := {"name": "lint", "after": ["clone"], "ref": {}, "status": "Succeeded"}
	count(tasks.deny) == 0 with input as td.input_of([td.v02(array.concat(td.tasks, [lint]), td.materials)])
}

node(name, after) := {"name": name, "after": after, "ref": {"name": name}, "status": "Succeeded"}

test_task_graph_cycle_denies if {
	# the build recorded as running after the scan, and the scan after the build: a scan that ran last
	# would look as if it ran first
	cycle := [td.clone_task, object.union(td.scan_task, {"after": ["clone", "build"]}), td.build_task]
	results := tasks.deny with input as td.input_of([td.v02(cycle, td.materials)])
	results == {
		{"code": "tasks.task_graph_acyclic", "params": ["0", "scan"], "term": "scan"},
		{"code": "tasks.task_graph_acyclic", "params": ["0", "build"], "term": "build"},
	}

	self := [td.clone_task, object.union(td.scan_task, {"after": ["clone", "scan"]}), td.build_task]
	{"code": "tasks.task_graph_acyclic", "params": ["0", "scan"], "term": "scan"} in tasks.deny with input as td.input_of([td.v02(self, td.materials)])

	# listed out of order, three tasks long
	three := [node("a", ["c"]), node("b", ["a"]), node("c", ["b"])]
	td.codes(tasks.deny) & {"tasks.task_graph_acyclic"} == {"tasks.task_graph_acyclic"} with input as td.input_of([td.v02(three, td.materials)])
}

test_runafter_naming_a_task_that_did_not_run_is_not_an_error if {
	# Chains omits a task a when expression skipped, and keeps the runAfter that names it
	skipped := object.union(td.build_task, {"after": ["scan", "prefetch"]})
	count(tasks.deny) == 0 with input as td.input_of([td.v02([td.clone_task, td.scan_task, skipped], td.materials)])

	# but it links nothing: the scan must still be a recorded predecessor of the build
	only_skipped := object.union(td.build_task, {"after": ["prefetch"]})
	td.codes(tasks.deny) == {"tasks.task_order"} with input as td.input_of([td.v02([td.clone_task, td.scan_task, only_skipped], td.materials)])
}

test_duplicate_names_deny_unless_a_matrix_fan_out if {
	fake := object.union(object.remove(td.scan_task, ["ref"]), {"ref": {"name": "no-scan"}})
	results := tasks.deny with input as td.input_of([td.v02(array.concat(td.tasks, [fake]), td.materials)])
	results == {{"code": "tasks.task_names_unique", "params": ["0", "scan"], "term": "scan"}}
	td.codes(tasks.deny) == {"tasks.task_names_unique"} with input as td.input_of([td.v1(array.concat(td.tasks, [fake]), td.v1_deps)])

	# the same task again, but recorded as running after the build (under one name, that is a cycle too)
	late := object.union(td.scan_task, {"after": ["build"]})
	td.codes(tasks.deny) == {"tasks.task_names_unique", "tasks.task_graph_acyclic"} with input as td.input_of([td.v02(array.concat(td.tasks, [late]), td.materials)])

	# a matrix: one pipeline task, several TaskRuns with one reference and one set of predecessors
	matrix := array.concat(td.tasks, [td.scan_task, td.scan_task])
	count(tasks.deny) == 0 with input as td.input_of([td.v02(matrix, td.materials)])
	count(tasks.deny) == 0 with input as td.input_of([td.v1(matrix, td.v1_deps)])
}
