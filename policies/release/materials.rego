package policy.release.materials

import data.lib
import data.lib.tekton

# Git sources of a provenance statement, as {"uri", "digest"}. SLSA v0.2: materials with a git+ URI,
# except those that are the pipeline's or a task's configSource (where the definitions came from, not
# what was built). SLSA v1.0: resolvedDependencies with a git+ URI, except the named configuration
# entries (pipeline, task, pipelineTask, stepAction/*).
git_sources[i] := [m |
	some m in tekton.array_or_empty(st.predicate.materials)
	is_object(m)
	startswith(object.get(m, "uri", ""), "git+")
	not m.uri in config_uris[i]
] if {
	some i in tekton.provenance_indexes
	st := input.attestations[i].statement
	st.predicateType == tekton.slsa_v02
}

git_sources[i] := [d |
	some d in tekton.array_or_empty(st.predicate.buildDefinition.resolvedDependencies)
	is_object(d)
	startswith(object.get(d, "uri", ""), "git+")
	not config_dependency(object.get(d, "name", ""))
] if {
	some i in tekton.provenance_indexes
	st := input.attestations[i].statement
	st.predicateType == tekton.slsa_v1
}

# A rule, not a function of the statement: computed once per attestation rather than once per material.
config_uris[i] := {uri |
	some source in array.concat(
		[object.get(st.predicate, ["invocation", "configSource"], {})],
		[object.get(t, ["invocation", "configSource"], {}) | some t in tekton.array_or_empty(st.predicate.buildConfig.tasks)],
	)
	uri := object.get(source, "uri", "")
	uri != ""
} if {
	some i in tekton.provenance_indexes
	st := input.attestations[i].statement
	st.predicateType == tekton.slsa_v02
}

config_dependency(name) if name in tekton.config_dependency_names

config_dependency(name) if startswith(name, "stepAction/")

# "git+https://host/org/repo.git" -> "https://host/org/repo"
repo_url(uri) := trim_suffix(trim_prefix(uri, "git+"), ".git")

# METADATA
# title: Git source found
# description: >-
#   Every PipelineRun provenance attestation must name the git repository and commit it built from
#   (Chains records them from the CHAINS-GIT_URL / CHAINS-GIT_COMMIT type hints).
# custom:
#   short_name: git_source_found
#   failure_msg: PipelineRun attestation %s names no git source
#   solution: >-
#     Expose the git URL and commit of the source as pipeline results or parameters named
#     CHAINS-GIT_URL and CHAINS-GIT_COMMIT.
deny contains result if {
	some i in tekton.pipelinerun_indexes
	count(git_sources[i]) == 0
	result := lib.result_helper_with_term("materials.git_source_found", [format_int(i, 10)], format_int(i, 10))
}

# METADATA
# title: Git commit pinned
# description: >-
#   Each git source must be pinned to a full 40-hex-digit sha1 commit, not a branch, tag or short hash.
# custom:
#   short_name: git_commit_pinned
#   failure_msg: Git source %s is not pinned to a full commit sha1 (got %s)
#   solution: >-
#     Pass the resolved commit sha of the checkout (for example the git-clone task's commit result)
#     as CHAINS-GIT_COMMIT.
deny contains result if {
	some i in tekton.provenance_indexes
	some source in git_sources[i]
	commit := object.get(source, ["digest", "sha1"], "(none)")
	not sha1(commit)
	result := lib.result_helper_with_term("materials.git_commit_pinned", [source.uri, value_text(commit)], source.uri)
}

value_text(value) := value if is_string(value)

value_text(value) := "a non-string value" if not is_string(value)

sha1(value) if {
	is_string(value)
	regex.match(`^[0-9a-f]{40}$`, value)
}

# METADATA
# title: Source repository allowed
# description: >-
#   When the rule data key allowed_source_repos lists repositories, each git source must be one of them
#   or lie below an entry ending in "/". The git+ prefix and .git suffix are ignored on both sides.
# custom:
#   short_name: source_repo_allowed
#   failure_msg: Git source %s is not an allowed source repository
#   solution: >-
#     Build from an allowed repository, or add it to the rule data key allowed_source_repos.
deny contains result if {
	count(allowed_repos) > 0
	some i in tekton.provenance_indexes
	some source in git_sources[i]
	not lib.prefix_allowed(repo_url(source.uri), allowed_repos)
	result := lib.result_helper_with_term("materials.source_repo_allowed", [source.uri], source.uri)
}

# The usable entries of allowed_source_repos. The deny above and the warning below share it, so entries
# that are not strings (which check nothing) cannot silence the warning.
allowed_repos := {repo_url(p) | some p in lib.as_set(lib.rule_data("allowed_source_repos")); is_string(p)}

# METADATA
# title: Allowed source repositories provided
# description: >-
#   The rule data key allowed_source_repos should list the repositories builds may come from. While it
#   is empty, source repositories are not checked.
# custom:
#   short_name: allowed_source_repos_provided
#   failure_msg: The allowed_source_repos rule data is empty, source repositories are not checked
#   solution: >-
#     Set the rule data key allowed_source_repos.
warn contains result if {
	count(allowed_repos) == 0
	result := lib.result_helper("materials.allowed_source_repos_provided", [])
}
