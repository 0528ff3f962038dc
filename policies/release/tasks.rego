# METADATA
# title: Tasks
# description: >-
#   What ran in the PipelineRun: the task records, their outcome, which tasks are required and in which
#   order, and whether the recorded task graph can have come from a real run.
#
#   Tasks are matched by task definition name. A task resolved remotely (git, hub, http, cluster
#   resolvers) gets its name from the tekton.dev/task label the Tekton controller sets to the resolved
#   Task's name, in SLSA v0.2 (the record's invocation.environment.labels) and v1.0 (the embedded
#   TaskRun) alike; a bundle reference names it directly. An embedded taskSpec has no definition name: it
#   never satisfies required_tasks, whatever the pipeline task is called.
#
#   Chains records only the tasks that ran: a task a when expression skipped has no record, while the
#   runAfter of the tasks after it still names it. Such names are therefore not an error; they link
#   nothing, so task_order can only be satisfied through tasks that did run. Duplicate names are allowed
#   only as the TaskRuns of one matrixed pipeline task (same reference, same predecessors).
package policy.release.tasks

import data.lib
import data.lib.tekton
import data.lib.time as ltime

# METADATA
# title: Pipeline run has tasks
# description: >-
#   At least one PipelineRun provenance attestation must record the tasks it ran. Without a task list
#   none of the task rules can check anything, and that must not look like a pass. SLSA v1.0 provenance
#   records tasks only with the slsa-tekton build type.
# custom:
#   short_name: pipeline_has_tasks
#   failure_msg: No PipelineRun attestation records any tasks
#   solution: >-
#     Build the image in a Tekton PipelineRun and attest it with SLSA v0.2 provenance or with SLSA v1.0
#     provenance of build type https://tekton.dev/chains/v2/slsa-tekton.
deny contains result if {
	count([i | some i in tekton.pipelinerun_indexes; count(tekton.tasks[i]) > 0]) == 0
	result := lib.result_helper(rego.metadata.chain(), [])
}

# METADATA
# title: Task records readable
# description: >-
#   Every task record in a PipelineRun attestation must be readable. A record that cannot be decoded
#   would otherwise drop out of every task check unnoticed.
# custom:
#   short_name: task_records_readable
#   failure_msg: "%s of %s task records could not be read"
#   solution: >-
#     The attestation is malformed: SLSA v1.0 pipelineTask dependencies must carry the child TaskRun as
#     base64-encoded JSON in content (build type slsa-tekton).
deny contains result if {
	some i in tekton.pipelinerun_indexes
	total := tekton.task_record_count[i]
	read := count(tekton.tasks[i])
	read != total
	result := lib.result_helper(rego.metadata.chain(), [format_int(total - read, 10), format_int(total, 10)])
}

# METADATA
# title: Successful pipeline tasks
# description: >-
#   Every task of the PipelineRun must have succeeded.
# custom:
#   short_name: successful_pipeline_tasks
#   failure_msg: Pipeline task %s did not succeed (status %s)
#   solution: >-
#     Find out why the task failed and rebuild the image.
deny contains result if {
	some i in tekton.pipelinerun_indexes
	some task in tekton.tasks[i]
	task.status != "Succeeded"
	result := lib.result_helper_with_term(rego.metadata.chain(), [task.name, task.status], task.name)
}

# METADATA
# title: Task names known
# description: >-
#   Every task record must name its pipeline task, and a task that references a definition (not an
#   embedded taskSpec) must name that definition, through its reference or the tekton.dev/task label.
#   A task whose name cannot be established can satisfy no rule about which tasks ran, so it is reported
#   as such rather than as a missing task.
# custom:
#   short_name: task_names_known
#   failure_msg: Task record %s of PipelineRun attestation %s has no %s
#   solution: >-
#     The attestation was not written by a Tekton Chains that records task names; attest the build with
#     a current Chains or the provgate signer.
deny contains result if {
	some i, unnamed in tekton.unnamed_tasks
	some [k, missing] in unnamed
	label := _record_label(k, tekton.tasks[i][k])
	result := lib.result_helper_with_term(rego.metadata.chain(), [label, format_int(i, 10), missing], label)
}

_record_label(k, task) := task.name if {
	task.name != ""
} else := concat("", ["#", format_int(k, 10)])

# METADATA
# title: Task names unique
# description: >-
#   Records that share a pipeline task name must be TaskRuns of one matrixed pipeline task: the same
#   task reference and the same predecessors. Two different tasks under one name cannot come from a real
#   run (Tekton rejects duplicate pipeline task names), and would let one stand in for the other.
# custom:
#   short_name: task_names_unique
#   failure_msg: PipelineRun attestation %s records different tasks under the name %s
#   solution: >-
#     The attestation does not describe a real run; rebuild the image and attest it again.
deny contains result if {
	some i, names in tekton.inconsistent_names
	some name in names
	result := lib.result_helper_with_term(rego.metadata.chain(), [format_int(i, 10), name], name)
}

# METADATA
# title: Task graph acyclic
# description: >-
#   The task graph of a PipelineRun attestation (SLSA v0.2 "after" edges) must have no cycle: Tekton
#   rejects pipelines with one, so a statement with one was not produced by a real run, and a cycle
#   could make a task that ran after another look as if it ran before it.
# custom:
#   short_name: task_graph_acyclic
#   failure_msg: PipelineRun attestation %s records task %s as running after itself
#   solution: >-
#     The attestation does not describe a real run; rebuild the image and attest it again.
deny contains result if {
	some i, names in tekton.cycle_members
	some name in names
	result := lib.result_helper_with_term(rego.metadata.chain(), [format_int(i, 10), name], name)
}

# METADATA
# title: Required tasks found
# description: >-
#   Every task listed in the rule data key required_tasks must have run in the PipelineRun (an item that
#   is a list is satisfied by any one of its names). Tasks are matched by task definition name, whatever
#   the pipeline calls them. With no task records at all, every required task is missing.
# custom:
#   short_name: required_tasks_found
#   failure_msg: Required task %s is missing
#   solution: >-
#     Add the missing task to the build pipeline, or change the rule data key required_tasks.
deny contains result if {
	some names in _task_name_sets
	some required in lib.rule_data("required_tasks")
	count(names & lib.as_set(required)) == 0
	text := lib.describe(required)
	result := lib.result_helper_with_term(rego.metadata.chain(), [text], text)
}

# The task definition names of each PipelineRun attestation; one empty set when there is none, so that
# required tasks are reported missing rather than not checked.
_task_name_sets contains names if {
	some i in tekton.pipelinerun_indexes
	names := {t.task | some t in tekton.tasks[i]}
}

_task_name_sets contains set() if count(tekton.pipelinerun_indexes) == 0

# METADATA
# title: Required tasks list provided
# description: >-
#   The rule data key required_tasks should list the tasks every build must run. Without it no task is
#   required.
# custom:
#   short_name: required_tasks_list_provided
#   failure_msg: The required_tasks rule data is empty or malformed, no task is required
#   solution: >-
#     Set the rule data key required_tasks.
warn contains result if {
	not _valid_required_tasks(lib.rule_data("required_tasks"))
	result := lib.result_helper(rego.metadata.chain(), [])
}

_valid_required_tasks(value) if {
	is_array(value)
	count(value) > 0
	every item in value {
		_valid_alternatives(item)
	}
}

_valid_alternatives(item) if is_string(item)

_valid_alternatives(item) if {
	lib.strings_only(item)
	count(item) > 0
}

# METADATA
# title: Task order
# description: >-
#   For each entry {before, after} of the rule data key task_order, every task named in "after" must
#   have a task named in "before" among its predecessors, for example "scan the source before building
#   the image". SLSA v0.2 provenance records the task graph (runAfter and result references); SLSA v1.0
#   provenance does not, so there a task precedes another when it finished no later than the other
#   started.
# custom:
#   short_name: task_order
#   failure_msg: Task %s did not run after a task %s
#   solution: >-
#     Make the task run after the required task in the pipeline (runAfter or a result reference).
deny contains result if {
	some k, order in lib.rule_data("task_order")
	after := lib.as_set(object.get(order, "after", []))
	some i in tekton.pipelinerun_indexes
	some task in tekton.tasks[i]
	task.task in after
	not _has_predecessor(i, k, task)
	result := lib.result_helper_with_term(
		rego.metadata.chain(), [task.name, lib.describe(object.get(order, "before", []))],
		task.name,
	)
}

# Whether some task named in "before" of task_order entry k precedes task, answered from
# values computed once per attestation and entry rather than by comparing every pair of tasks.
# SLSA v0.2: the task runs after one of them when it is reachable from them in the reversed task graph.
# A task that is itself one of them must be reached from the others (precedence excludes the task itself).
_has_predecessor(i, k, task) if {
	not task.name in _before_names[i][k]
	task.name in _after_before_names[i][k]
}

_has_predecessor(i, k, task) if {
	task.name in _before_names[i][k]
	task.name in graph.reachable(tekton.successor_graph[i], _before_names[i][k] - {task.name})
}

# SLSA v1.0: the task started no earlier than the earliest finish of one of them.
_has_predecessor(i, k, task) if {
	input.attestations[i].statement.predicateType == tekton.slsa_v1
	task.started != ""
	_earliest_before_finish[i][k] <= ltime.parse_ns(task.started)
}

# before_names[i][k]: the names of the tasks of attestation i that task_order entry k names in "before".
_before_names[i][k] := {t.name | some t in tekton.tasks[i]; t.task in before} if {
	some k, order in lib.rule_data("task_order")
	before := lib.as_set(object.get(order, "before", []))
	some i in tekton.pipelinerun_indexes
}

# SLSA v0.2: every task that runs after one of them (and those of them that are nodes of the graph).
_after_before_names[i][k] := graph.reachable(tekton.successor_graph[i], names) if {
	some i, by_entry in _before_names
	input.attestations[i].statement.predicateType == tekton.slsa_v02
	some k, names in by_entry
}

# SLSA v1.0: the earliest parseable finish time of one of them; undefined when none has one.
_earliest_before_finish[i][k] := min(finishes) if {
	some k, order in lib.rule_data("task_order")
	before := lib.as_set(object.get(order, "before", []))
	some i in tekton.pipelinerun_indexes
	input.attestations[i].statement.predicateType == tekton.slsa_v1
	finishes := [ns |
		some t in tekton.tasks[i]
		t.task in before
		t.finished != ""
		ns := ltime.parse_ns(t.finished)
	]
	count(finishes) > 0
}
