# METADATA
# title: Source materials
# description: >-
#   The git sources a build names: found, pinned to a commit, and from an allowed repository.
package policy.release.materials

import data.lib
import data.lib.tekton

# Git sources of a provenance statement, as {"uri", "digest"}. SLSA v0.2: materials with a git+ URI,
# except those that are the pipeline's or a task's configSource (where the definitions came from, not
# what was built). SLSA v1.0: resolvedDependencies with a git+ URI, except the named configuration
# entries (pipeline, task, pipelineTask, stepAction/*).
_git_sources[i] := [m |
	some m in tekton.array_or_empty(st.predicate.materials)
	is_object(m)
	startswith(object.get(m, "uri", ""), "git+")
	not m.uri in _config_uris[i]
] if {
	some i in tekton.provenance_indexes
	st := input.attestations[i].statement
	st.predicateType == tekton.slsa_v02
}

_git_sources[i] := [d |
	some d in tekton.array_or_empty(st.predicate.buildDefinition.resolvedDependencies)
	is_object(d)
	startswith(object.get(d, "uri", ""), "git+")
	not _config_dependency(object.get(d, "name", ""))
] if {
	some i in tekton.provenance_indexes
	st := input.attestations[i].statement
	st.predicateType == tekton.slsa_v1
}

# A rule, not a function of the statement: computed once per attestation rather than once per material.
_config_uris[i] := {uri |
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

_config_dependency(name) if name in tekton.config_dependency_names

_config_dependency(name) if startswith(name, "stepAction/")

# "git+https://host/org/repo.git" -> "https://host/org/repo"
_repo_url(uri) := trim_suffix(trim_prefix(uri, "git+"), ".git")

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
	count(_git_sources[i]) == 0
	result := lib.result_helper_with_term(rego.metadata.chain(), [format_int(i, 10)], format_int(i, 10))
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
	some source in _git_sources[i]
	commit := object.get(source, ["digest", "sha1"], "(none)")
	not _sha1(commit)
	result := lib.result_helper_with_term(rego.metadata.chain(), [source.uri, _value_text(commit)], source.uri)
}

_value_text(value) := value if is_string(value)

_value_text(value) := "a non-string value" if not is_string(value)

_sha1(value) if {
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
	count(_allowed_repos) > 0
	some i in tekton.provenance_indexes
	some source in _git_sources[i]
	not lib.prefix_allowed(_repo_url(source.uri), _allowed_repos)
	result := lib.result_helper_with_term(rego.metadata.chain(), [source.uri], source.uri)
}

# The usable entries of allowed_source_repos. The deny above and the warning below share it, so entries
# that are not strings (which check nothing) cannot silence the warning.
_allowed_repos := {_repo_url(p) | some p in lib.as_set(lib.rule_data("allowed_source_repos")); is_string(p)}

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
	count(_allowed_repos) == 0
	result := lib.result_helper(rego.metadata.chain(), [])
}
