# METADATA
# title: Trusted tasks
# description: >-
#   Where the task definitions came from: pinned to a digest or commit, read one way only, and from a
#   trusted location.
#
#   These rules apply to every verified Tekton provenance statement about the image, not only to the
#   PipelineRun one: the tasks of a PipelineRun statement, and the task of a TaskRun statement (SLSA
#   v0.2: where its invocation.configSource says the Task came from; SLSA v1.0: its runSpec.taskRef). A
#   statement whose build type no rule can read is denied by slsa_provenance.build_type_known. So a
#   TaskRun statement from an untrusted task next to a good PipelineRun statement denies the image.
#
#   Tasks can be trusted by origin: OCI bundles whose repository is listed in trusted_task_bundles, and
#   tasks from the git resolver whose repository is listed in trusted_task_git_repos (pinned to a full
#   commit). Embedded taskSpecs, Tasks in the cluster and other resolvers (hub, http, cluster) name no
#   content-addressed origin and are never trusted while either list is set. Locations are compared in
#   canonical form (lib.image, lib.uri) by whole path segments.
package policy.release.trusted_task

import data.lib
import data.lib.image
import data.lib.tekton
import data.lib.uri

# METADATA
# title: Task definitions pinned
# description: >-
#   A task that comes from an OCI bundle must reference the bundle by digest, and a task from the git
#   resolver must name a full commit as its revision. A tag or branch can be moved to other content after
#   the fact, so such a reference says nothing about what actually ran.
# custom:
#   short_name: pinned
#   failure_msg: Task %s uses %s, which is not pinned by digest or commit
#   solution: >-
#     Reference the task bundle as repository@sha256:<digest>, or give the git resolver a commit sha as
#     its revision.
deny contains result if {
	some o, text in _unpinned
	some name in _names_by_origin[o]
	result := lib.result_helper_with_term(rego.metadata.chain(), [name, text], text)
}

# The task names of every Tekton attestation by origin, in one pass over the tasks. Pipelines reuse a
# handful of catalog bundles, so each origin is parsed and checked once, and only the tasks of a bad one
# are visited again.
_names_by_origin[t.origin] contains t.name if {
	some origins in tekton.task_origins
	some t in origins
	not t.ambiguous
}

_origins contains o if some o, _ in _names_by_origin

_unpinned[o] := _origin_text(o) if {
	some o in _origins
	o.kind in {"bundle", "git"}
	not _pinned(o)
}

# Lengths apart from the patterns: see lib.image. A bundle is pinned when its reference ends in
# "@sha256:" and 64 lower-case hex digits (none of which can be part of another "@sha256:").
_pinned(o) if {
	o.kind == "bundle"
	parts := split(o.ref, "@sha256:")
	count(parts) > 1
	_hex(parts[count(parts) - 1], {64})
}

_pinned(o) if {
	o.kind == "git"
	_hex(o.revision, {40, 64})
}

_hex(text, lengths) if {
	regex.match(`^[0-9a-f]+$`, text)
	count(text) in lengths
}

# METADATA
# title: Tasks come from trusted locations
# description: >-
#   When the rule data keys trusted_task_bundles or trusted_task_git_repos list locations, every task
#   must come from a bundle or git repository listed there: equal to an entry, or below an entry ending
#   in "/". Tasks without such an origin (embedded specs, cluster Tasks, other resolvers) are not
#   trusted.
# custom:
#   short_name: trusted
#   failure_msg: Task %s comes from %s, which is not a trusted task location
#   solution: >-
#     Use a task from a trusted bundle or git repository, or add its location to the rule data key
#     trusted_task_bundles or trusted_task_git_repos.
deny contains result if {
	_checking
	some o in _untrusted
	text := _origin_text(o)
	some name in _names_by_origin[o]
	result := lib.result_helper_with_term(rego.metadata.chain(), [name, text], name)
}

# METADATA
# title: Task location can be canonicalised
# description: >-
#   While trusted task locations are set, the bundle reference or git URL a task came from must be one
#   that can be read unambiguously (lib.image, lib.uri); what cannot be read cannot be compared with the
#   trusted locations.
# custom:
#   short_name: location_canonical
#   failure_msg: Task %s comes from %s, which cannot be canonicalised
#   solution: >-
#     Reference the task by a plain bundle reference or repository URL.
deny contains result if {
	_checking
	some o in _unreadable
	text := _origin_text(o)
	some name in _names_by_origin[o]
	result := lib.result_helper_with_term(rego.metadata.chain(), [name, text], name)
}

# METADATA
# title: Task reference unambiguous
# description: >-
#   A task reference must say one thing: not the v1beta1 bundle field next to a resolver (Tekton runs the
#   bundle, a reader of the resolver would check something else), not a resolver parameter given twice.
#   Tekton rejects both, so no real run records one; the statement is denied rather than read one way.
# custom:
#   short_name: task_ref_unambiguous
#   failure_msg: Task %s has a task reference that can be read in more than one way
#   solution: >-
#     Reference the task with one mechanism (the bundles resolver or the bundle field) and each resolver
#     parameter once.
deny contains result if {
	some origins in tekton.task_origins
	some t in origins
	t.ambiguous
	result := lib.result_helper_with_term(rego.metadata.chain(), [t.name], t.name)
}

_bundle_lists := lib.as_set(lib.rule_data("trusted_task_bundles"))

_git_lists := lib.as_set(lib.rule_data("trusted_task_git_repos"))

# Checked as soon as either list is set; entries that cannot be read match nothing (fail closed).
_checking if count(_bundle_lists) + count(_git_lists) > 0

_bundle_entries := {e | some text in _bundle_lists; e := image.entry(text)}

_git_entries := {e | some text in _git_lists; e := uri.git_entry(text)}

_untrusted contains o if {
	some o in _origins
	not o in _unreadable
	not _trusted(o)
}

# Each origin's location is read once: a rule, where a function would be evaluated again per use.
_locations[o] := image.location(o.ref) if {
	some o in _origins
	o.kind == "bundle"
}

_locations[o] := location if {
	some o in _origins
	o.kind == "git"
	location := uri.git_location(o.url)
	count(location) > 1
}

_unreadable contains o if {
	some o in _origins
	o.kind == "bundle"
	o.ref != ""
	not _locations[o]
}

_unreadable contains o if {
	some o in _origins
	o.kind == "git"
	not _locations[o]
}

_trusted(o) if {
	o.kind == "bundle"
	some e in _bundle_entries
	uri.matches(_locations[o], e)
}

_trusted(o) if {
	o.kind == "git"
	some e in _git_entries
	uri.matches(_locations[o], e)
}

# What a message says a task came from. One rule with an else-chain, not complementary rules: OPA
# evaluates every rule of a function to check that they agree, and this one runs per untrusted task.
_origin_text(o) := o.ref if {
	o.kind == "bundle"
	o.ref != ""
} else := "a bundles reference without a bundle" if {
	o.kind == "bundle"
} else := concat("", [o.url, "@", o.revision, " (", o.path, ")"]) if {
	o.kind == "git"
} else := "an embedded taskSpec" if {
	o.kind == "inline"
} else := concat(" ", ["the cluster task", o.name]) if {
	o.kind == "local"
	o.name != ""
} else := "a task in the cluster" if {
	o.kind == "local"
} else := concat(" ", ["the", o.resolver, "resolver"])

# METADATA
# title: Trusted task locations provided
# description: >-
#   The rule data keys trusted_task_bundles and trusted_task_git_repos should list where tasks may come
#   from. While both are empty, where tasks come from is not checked (pinning still is).
# custom:
#   short_name: trusted_task_bundles_provided
#   failure_msg: The trusted_task_bundles and trusted_task_git_repos rule data are empty, task origins are not checked
#   solution: >-
#     Set the rule data key trusted_task_bundles or trusted_task_git_repos.
warn contains result if {
	not _checking
	result := lib.result_helper(rego.metadata.chain(), [])
}
