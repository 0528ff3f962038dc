# METADATA
# title: Source materials
# description: >-
#   The git sources a build names: found, pinned to a commit, and from an allowed repository.
#
#   Every git material counts, the repositories the pipeline and its tasks were loaded from (their
#   configSource, or the pipeline, task and pipelineTask entries of SLSA v1.0 resolvedDependencies)
#   included: whoever writes the pipeline chooses where it is loaded from, so exempting those would
#   let an unapproved repository through, and Chains merges a source that equals one of them into one
#   material, so the two cannot be told apart. List the repositories your pipeline and task definitions
#   come from in allowed_source_repos too.
#
#   Repository URLs are compared in canonical form (lib.uri): scheme and host case, default ports,
#   userinfo, dot segments, escapes of unreserved characters, the git+ prefix, a trailing ".git" or "/"
#   and the transport (https, ssh, scp-like git@host:path) make no difference; paths are compared by
#   whole segments. A git source whose URL cannot be canonicalised is denied while the allow-list is in
#   effect.
package policy.release.materials

import data.lib
import data.lib.tekton
import data.lib.uri

# Git sources of a provenance statement, as {"uri", "digest"}: SLSA v0.2 materials and SLSA v1.0
# resolvedDependencies with a git+ URI.
_git_sources[i] := [m |
	some m in tekton.array_or_empty(st.predicate.materials)
	is_object(m)
	startswith(object.get(m, "uri", ""), "git+")
] if {
	some i in tekton.provenance_indexes
	st := input.attestations[i].statement
	st.predicateType == tekton.slsa_v02
}

_git_sources[i] := [d |
	some d in tekton.array_or_empty(st.predicate.buildDefinition.resolvedDependencies)
	is_object(d)
	startswith(object.get(d, "uri", ""), "git+")
] if {
	some i in tekton.provenance_indexes
	st := input.attestations[i].statement
	st.predicateType == tekton.slsa_v1
}

# METADATA
# title: Git source found
# description: >-
#   Every PipelineRun provenance attestation must name a git repository and commit (Chains records the
#   source from the CHAINS-GIT_URL / CHAINS-GIT_COMMIT type hints, and where the pipeline and its tasks
#   were loaded from).
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
	regex.match(`^[0-9a-f]+$`, value) # the length apart: see lib.image
	count(value) == 40
}

# METADATA
# title: Source repository allowed
# description: >-
#   When the rule data key allowed_source_repos lists repositories, each git source must be one of them
#   or lie below an entry ending in "/" (by whole path segments: "https://github.com/org/" admits
#   "https://github.com/org/app", never "https://github.com/org-evil/app"). Both sides are compared in
#   canonical form.
# custom:
#   short_name: source_repo_allowed
#   failure_msg: Git source %s is not an allowed source repository
#   solution: >-
#     Build from an allowed repository, or add it to the rule data key allowed_source_repos.
deny contains result if {
	_checking
	some i in tekton.provenance_indexes
	some source in _git_sources[i]
	location := uri.git_location(source.uri)
	count(location) > 1
	not _allowed(location)
	result := lib.result_helper_with_term(rego.metadata.chain(), [source.uri], source.uri)
}

# METADATA
# title: Git source URL can be canonicalised
# description: >-
#   While allowed_source_repos is in effect, every git source must be a repository URL that can be read
#   unambiguously (lib.uri): not a scheme-less or local path, no query or fragment, no ".." above the
#   root, no escaped "/" or dot segment, no "@" in userinfo, no IP literal. What cannot be read cannot be
#   compared with the allow-list, so it is denied.
# custom:
#   short_name: source_url_canonical
#   failure_msg: Git source %s is not a repository URL that can be canonicalised
#   solution: >-
#     Record the source as a plain repository URL (for example https://host/org/repo.git) in
#     CHAINS-GIT_URL.
deny contains result if {
	_checking
	some i in tekton.provenance_indexes
	some source in _git_sources[i]
	not _repository(source.uri)
	result := lib.result_helper_with_term(rego.metadata.chain(), [source.uri], source.uri)
}

_repository(text) if count(uri.git_location(text)) > 1

# Checked as soon as the list holds a string: entries that cannot be canonicalised match nothing (fail
# closed). Entries that are not strings check nothing, and must not silence the warning below.
_checking if {
	some p in lib.as_set(lib.rule_data("allowed_source_repos"))
	is_string(p)
}

_entries := {e | some p in lib.as_set(lib.rule_data("allowed_source_repos")); e := uri.git_entry(p)}

_allowed(location) if {
	some e in _entries
	uri.matches(location, e)
}

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
	not _checking
	result := lib.result_helper(rego.metadata.chain(), [])
}
