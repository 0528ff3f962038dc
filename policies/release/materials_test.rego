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

test_pipeline_and_task_definition_repositories_are_sources if {
	# where the pipeline and its tasks were loaded from counts like any other git material (Chains merges
	# a source equal to one of them into one material)
	config := {"predicate": {"invocation": {"configSource": {"uri": source, "digest": {"sha1": td.commit}}}}}
	count(materials.deny) == 0 with input as td.input_of([object.union(td.v02(td.tasks, td.materials), config)])
	count(materials.deny) == 0 with input as td.input_of([object.union(td.v02(td.tasks, td.materials), config)])
		with data.rule_data.allowed_source_repos as ["https://github.com/org/app"]
	config_deps := [
		{"name": "pipeline", "uri": source, "digest": {"sha1": td.commit}},
		{"name": "pipelineTask", "uri": source, "digest": {"sha1": td.commit}},
		{"name": "stepAction/lint", "uri": source, "digest": {"sha1": td.commit}},
	]
	count(materials.deny) == 0 with input as v1_deps(config_deps)
}

evil := "git+https://evil.example/org/pipelines.git"

test_the_pipeline_source_must_be_allowed_like_any_other if {
	# the pipeline author loads the pipeline (or a task) from a repository of their choice with the git
	# resolver; it is a material, equal to invocation.configSource.uri, and no longer exempt
	pipeline_config := {"predicate": {"invocation": {"configSource": {"uri": evil, "digest": {"sha1": td.commit}}}}}
	st := object.union(td.v02(td.tasks, array.concat(td.materials, [{"uri": evil, "digest": {"sha1": td.commit}}])), pipeline_config)
	expected := {{"code": "materials.source_repo_allowed", "params": [evil], "term": evil}}
	materials.deny == expected with input as td.input_of([st]) with data.rule_data.allowed_source_repos as ["https://github.com/org/"]

	task := object.union(td.clone_task, {"invocation": {"configSource": {"uri": evil, "digest": {"sha1": td.commit}}}})
	st_task := td.v02([task, td.scan_task, td.build_task], array.concat(td.materials, [{"uri": evil, "digest": {"sha1": td.commit}}]))
	materials.deny == expected with input as td.input_of([st_task]) with data.rule_data.allowed_source_repos as ["https://github.com/org/"]

	# SLSA v1.0: the pipeline and task definitions in resolvedDependencies
	every name in ["pipeline", "task", "pipelineTask"] {
		deps := array.concat(td.v1_deps, [{"name": name, "uri": evil, "digest": {"sha1": td.commit}}])
		materials.deny == expected with input as v1_deps(deps) with data.rule_data.allowed_source_repos as ["https://github.com/org/"]
	}

	# and only a git source counts as the source found: an OCI bundle does not
	bundle_only := td.input_of([td.v02(td.tasks, [{"uri": "oci://quay.io/tasks/buildah", "digest": {"sha256": "ab"}}])])
	td.codes(materials.deny) == {"materials.git_source_found"} with input as bundle_only
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

test_commit_is_exactly_40_lower_case_hex_digits if {
	every commit in [substring(td.commit, 0, 39), concat("", [td.commit, "0"]), upper(td.commit), concat("", [substring(td.commit, 0, 39), "g"])] {
		expected := {{"code": "materials.git_commit_pinned", "params": [source, commit], "term": source}}
		materials.deny == expected with input as v02_materials([{"uri": source, "digest": {"sha1": commit}}])
	}
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

allowed_org := ["https://github.com/org/"]

with_source(uri) := [td.input_of([td.v02(td.tasks, [{"uri": uri, "digest": {"sha1": td.commit}}])]), v1_deps([{"name": "inputs/result", "uri": uri, "digest": {"sha1": td.commit}}])]

test_spellings_of_an_allowed_repository_pass if {
	every uri in [
		"git+https://github.com/org/app.git",
		"git+https://GitHub.COM/org/app",
		"git+https://github.com:443/org/app/",
		"git+https://user@github.com/org/app",
		"git+https://github.com/org/./app",
		"git+https://github.com/org/x/../app",
		"git+https://github.com/org/%61pp",
		"git+ssh://git@github.com/org/app.git",
		"git+git@github.com:org/app.git",
	] {
		every inp in with_source(uri) {
			count(materials.deny) == 0 with input as inp with data.rule_data.allowed_source_repos as allowed_org
			count(materials.deny) == 0 with input as inp with data.rule_data.allowed_source_repos as ["git@github.com:org/app.git"]
		}
	}
}

test_spellings_that_leave_an_allowed_repository_deny if {
	every uri in [
		"git+https://github.com/org/app/../../evil/app", # dot segments climb out of org/
		"git+https://github.com/org-evil/app", # a prefix by characters, not by segments
		"git+https://github.com@evil.example/org/app", # userinfo: the host is evil.example
		"git+https://github.com:8443/org/app", # another port, another server
		"git+https://github.com.evil.example/org/app",
		"git+https://evil.example/github.com/org/app",
	] {
		every inp in with_source(uri) {
			materials.deny == {{"code": "materials.source_repo_allowed", "params": [uri], "term": uri}} with input as inp
				with data.rule_data.allowed_source_repos as allowed_org
		}
	}
}

test_sources_that_cannot_be_canonicalised_deny if {
	every uri in [
		"git+gitspam.spam/spam/spam.git", # a scheme-less host/path, as a real recording has it
		"git+https://github.com/org/%2e%2e/evil/app",
		"git+https://github.com/org%2Fapp",
		"git+https://a@github.com@evil.example/org/app",
		"git+https://github.com/../org/app",
		"git+https://github.com/org/app?ref=main",
		"git+file:///srv/git/app",
		"git+https://github.com",
	] {
		every inp in with_source(uri) {
			materials.deny == {{"code": "materials.source_url_canonical", "params": [uri], "term": uri}} with input as inp
				with data.rule_data.allowed_source_repos as allowed_org

			# nothing is compared while the allow-list is empty
			count(materials.deny) == 0 with input as inp
		}
	}
}

test_allow_list_entries_that_cannot_be_read_match_nothing if {
	# an entry without a scheme is no repository URL: the list is in effect, and nothing matches it
	materials.deny == {{"code": "materials.source_repo_allowed", "params": [source], "term": source}} with input as td.good_v02
		with data.rule_data.allowed_source_repos as ["github.com/org/"]
	count(materials.warn) == 0 with input as td.good_v02 with data.rule_data.allowed_source_repos as ["github.com/org/"]
}
