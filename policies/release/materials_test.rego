package policy.release.materials_test

import rego.v1

import data.lib.testdata as td
import data.policy.release.materials

source := "git+https://github.com/org/app.git"

v02_materials(mats) := td.input_of([td.v02(td.tasks, mats)])

# SLSA v1.0 keeps sources in resolvedDependencies, after the pipelineTask records.
v1_deps(deps) := td.input_of([td.v1(td.tasks, deps)])

test_pinned_git_source_passes if {
	count(materials.deny) == 0 with input as td.good_v02
	count(materials.deny) == 0 with input as td.good_v1
}

test_no_git_source_denies if {
	expected := {{"code": "materials.git_source_found", "params": ["0"], "term": "0"}}
	materials.deny == expected with input as v02_materials([])
	materials.deny == expected with input as v02_materials([{"uri": "oci://quay.io/tasks/buildah", "digest": {"sha256": "ab"}}])
	materials.deny == expected with input as td.input_of([object.union(td.v02(td.tasks, []), {"predicate": {"materials": "none"}})])
	materials.deny == expected with input as v1_deps([])
}

test_pipeline_definition_repository_is_not_a_source if {
	# where the pipeline definition came from (configSource) says nothing about what was built
	config := {"predicate": {"invocation": {"configSource": {"uri": source, "digest": {"sha1": td.commit}}}}}
	st := object.union(td.v02(td.tasks, td.materials), config)
	materials.deny == {{"code": "materials.git_source_found", "params": ["0"], "term": "0"}} with input as td.input_of([st])

	# the same for a task definition fetched by the git resolver
	task := object.union(td.clone_task, {"invocation": {"configSource": {"uri": source}}})
	st_task := td.v02([task, td.scan_task, td.build_task], td.materials)
	td.codes(materials.deny) == {"materials.git_source_found"} with input as td.input_of([st_task])

	# and for SLSA v1.0 configuration dependencies
	config_deps := [
		{"name": "pipeline", "uri": source, "digest": {"sha1": td.commit}},
		{"name": "task", "uri": source, "digest": {"sha1": td.commit}},
		{"name": "stepAction/lint", "uri": source, "digest": {"sha1": td.commit}},
	]
	materials.deny == {{"code": "materials.git_source_found", "params": ["0"], "term": "0"}} with input as v1_deps(config_deps)
}

test_second_attestation_without_source_is_named if {
	inp := td.input_of([td.v1(td.tasks, td.v1_deps), td.v02(td.tasks, [])])
	materials.deny == {{"code": "materials.git_source_found", "params": ["1"], "term": "1"}} with input as inp
}

test_taskrun_provenance_needs_no_git_source if {
	taskrun := object.union(td.v02([], []), {"predicate": {"buildType": "tekton.dev/v1/TaskRun"}})
	count(materials.deny) == 0 with input as td.input_of([taskrun])
}

test_unpinned_commit_denies if {
	branch := [{"uri": source, "digest": {"sha1": "main"}}]
	expected := {{"code": "materials.git_commit_pinned", "params": [source, "main"], "term": source}}
	materials.deny == expected with input as v02_materials(branch)
	materials.deny == expected with input as v1_deps([{"name": "inputs/result", "uri": source, "digest": {"sha1": "main"}}])

	short := [{"uri": source, "digest": {"sha1": "a5bdfa2"}}]
	materials.deny == {{"code": "materials.git_commit_pinned", "params": [source, "a5bdfa2"], "term": source}} with input as v02_materials(short)
}

test_missing_or_malformed_commit_denies if {
	no_digest := materials.deny with input as v02_materials([{"uri": source}])
	no_digest == {{"code": "materials.git_commit_pinned", "params": [source, "(none)"], "term": source}}
	sha256_only := materials.deny with input as v1_deps([{"uri": source, "digest": {"sha256": td.commit}}])
	sha256_only == no_digest
	number := materials.deny with input as v02_materials([{"uri": source, "digest": {"sha1": 5}}])
	number == {{"code": "materials.git_commit_pinned", "params": [source, "a non-string value"], "term": source}}
}

test_allowed_source_repos_accepts_listed_repositories if {
	count(materials.deny) == 0 with input as td.good_v02 with data.rule_data.allowed_source_repos as ["https://github.com/org/app"]
	count(materials.deny) == 0 with input as td.good_v1 with data.rule_data.allowed_source_repos as ["git+https://github.com/org/app.git"]
	count(materials.deny) == 0 with input as td.good_v1 with data.rule_data.allowed_source_repos as ["https://github.com/other/", "https://github.com/org/"]
	count(materials.deny) == 0 with input as td.good_v02 with data.rule_data.allowed_source_repos as "https://github.com/org/app"
}

test_allowed_source_repos_denies_other_repositories if {
	expected := {{"code": "materials.source_repo_allowed", "params": [source], "term": source}}
	materials.deny == expected with input as td.good_v02 with data.rule_data.allowed_source_repos as ["https://github.com/other/app"]
	materials.deny == expected with input as td.good_v1 with data.rule_data.allowed_source_repos as ["https://github.com/other/app"]

	# a bare entry is one repository, not a prefix
	materials.deny == expected with input as td.good_v02 with data.rule_data.allowed_source_repos as ["https://github.com/org/ap"]
	materials.deny == expected with input as td.good_v02 with data.rule_data.allowed_source_repos as ["https://github.com/org"]
}

test_allowed_source_repos_warning if {
	expected := {{"code": "materials.allowed_source_repos_provided", "params": []}}
	materials.warn == expected with input as td.good_v02
	materials.warn == expected with input as td.good_v02 with data.rule_data.allowed_source_repos as []
	count(materials.warn) == 0 with input as td.good_v02 with data.rule_data.allowed_source_repos as ["https://github.com/org/app"]
}

test_malformed_allowed_source_repos_warns if {
	# entries that are not strings check nothing, so they must not silence the warning
	expected := {{"code": "materials.allowed_source_repos_provided", "params": []}}
	materials.warn == expected with input as td.good_v02 with data.rule_data.allowed_source_repos as [42]
	materials.warn == expected with input as td.good_v02 with data.rule_data.allowed_source_repos as {"repo": "https://github.com/org/app"}
}
