# METADATA
# title: Trusted tasks
# description: >-
#   Where the tasks of a PipelineRun came from: task definitions pinned by digest and from trusted
#   locations.
package policy.release.trusted_task

import data.lib
import data.lib.image
import data.lib.tekton

# METADATA
# title: Task bundles pinned by digest
# description: >-
#   A task that comes from an OCI bundle must reference the bundle by digest. A tag can be moved to
#   other content after the fact, so a tagged reference says nothing about what actually ran.
# custom:
#   short_name: pinned
#   failure_msg: Pipeline task %s uses bundle %s, which is not pinned by digest
#   solution: >-
#     Reference the task bundle as repository@sha256:<digest>.
deny contains result if {
	some i in tekton.pipelinerun_indexes
	some task in tekton.tasks[i]
	task.bundle in _unpinned_bundles
	result := lib.result_helper_with_term(rego.metadata.chain(), [task.name, task.bundle], task.bundle)
}

# The distinct bundle references of every PipelineRun attestation. Pipelines reuse a handful of catalog
# bundles, so each reference is parsed and checked once instead of once per task.
_bundles contains task.bundle if {
	some i in tekton.pipelinerun_indexes
	some task in tekton.tasks[i]
}

_unpinned_bundles contains bundle if {
	some bundle in _bundles
	bundle != ""
	not _pinned(bundle)
}

_pinned(ref) if regex.match(`@sha256:[0-9a-f]{64}$`, ref)

# METADATA
# title: Tasks come from trusted bundles
# description: >-
#   When the rule data key trusted_task_bundles lists bundle repositories, every task must come from a
#   bundle in one of them. Tasks without a bundle (cluster tasks, embedded specs, git resolver) are not
#   trusted. An entry ending in "/" admits every repository below it.
# custom:
#   short_name: trusted
#   failure_msg: Pipeline task %s comes from %s, which is not a trusted task bundle
#   solution: >-
#     Use a task from a trusted bundle repository, or add the repository to the rule data key
#     trusted_task_bundles.
deny contains result if {
	trusted := lib.rule_data("trusted_task_bundles")
	count(trusted) > 0
	some i in tekton.pipelinerun_indexes
	some task in tekton.tasks[i]
	task.bundle in _untrusted_bundles
	result := lib.result_helper_with_term(rego.metadata.chain(), [task.name, _bundle_text(task.bundle)], task.name)
}

# lib.as_set of the rule data once, not once per task.
_trusted_repos := lib.as_set(lib.rule_data("trusted_task_bundles"))

_untrusted_bundles contains bundle if {
	some bundle in _bundles
	not _trusted_bundle(bundle, _trusted_repos)
}

_trusted_bundle(bundle, trusted) if {
	bundle != ""
	lib.prefix_allowed(image.repo(bundle), trusted)
}

# One rule with an else, not two complementary rules: OPA evaluates every rule of a function (to check
# that they agree), and this one runs for every untrusted task.
_bundle_text(bundle) := "no bundle" if bundle == ""

else := bundle

# METADATA
# title: Trusted task bundles provided
# description: >-
#   The rule data key trusted_task_bundles should list the bundle repositories tasks may come from.
#   While it is empty, where tasks come from is not checked.
# custom:
#   short_name: trusted_task_bundles_provided
#   failure_msg: The trusted_task_bundles rule data is empty, task origins are not checked
#   solution: >-
#     Set the rule data key trusted_task_bundles.
warn contains result if {
	count(lib.rule_data("trusted_task_bundles")) == 0
	result := lib.result_helper(rego.metadata.chain(), [])
}
