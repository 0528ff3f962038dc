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
