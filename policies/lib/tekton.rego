package lib.tekton

# Reading Tekton Chains provenance: which statements are PipelineRun provenance, and the tasks they
# record, normalised to one shape whatever the SLSA version, Tekton API version or task reference style:
#
#   {"name": pipeline task name, "task": task definition name ("" when unknown), "bundle": bundle ref or "",
#    "status": "Succeeded" | "Failed" | "Running" | "Unknown", "after": [pipeline task names] (SLSA v0.2),
#    "started": RFC 3339 or "", "finished": RFC 3339 or "", "results": [{"name", "value"}]}
#
# Every helper is total (a default instead of undefined) because a task that drops out of a
# comprehension would silently escape the checks.

import data.lib.time as ltime

slsa_v02 := "https://slsa.dev/provenance/v0.2"

slsa_v1 := "https://slsa.dev/provenance/v1"

provenance_predicate_types := {slsa_v02, slsa_v1}

pipelinerun_build_types_v02 := {
	"https://tekton.dev/attestations/chains/pipelinerun@v2",
	"tekton.dev/v1beta1/PipelineRun",
	"tekton.dev/v1/PipelineRun",
}

taskrun_build_types_v02 := {
	"https://tekton.dev/attestations/chains@v2",
	"tekton.dev/v1beta1/TaskRun",
	"tekton.dev/v1/TaskRun",
}

slsa_tekton := "https://tekton.dev/chains/v2/slsa-tekton"

build_types_v1 := {"https://tekton.dev/chains/v2/slsa", slsa_tekton}

# Names of SLSA v1.0 resolvedDependencies that describe build configuration (pipeline and task
# definitions), not build inputs.
config_dependency_names := {"pipeline", "task", "pipelineTask"}

# Indexes into input.attestations, so large statements are never hashed into sets.
provenance_indexes contains i if {
	some i, att in input.attestations
	att.statement.predicateType in provenance_predicate_types
}

pipelinerun_indexes contains i if {
	some i in provenance_indexes
	is_pipelinerun(input.attestations[i].statement)
}

is_pipelinerun(st) if {
	st.predicateType == slsa_v02
	st.predicate.buildType in pipelinerun_build_types_v02
}

is_pipelinerun(st) if {
	st.predicateType == slsa_v1
	st.predicate.buildDefinition.buildType in build_types_v1
	is_pipeline_run_spec(st.predicate.buildDefinition.externalParameters.runSpec)
}

is_pipeline_run_spec(spec) if is_object(spec.pipelineRef)

is_pipeline_run_spec(spec) if is_object(spec.pipelineSpec)

builder_id(st) := st.predicate.builder.id if st.predicateType == slsa_v02

builder_id(st) := st.predicate.runDetails.builder.id if st.predicateType == slsa_v1

# tasks[i]: the normalised tasks of the PipelineRun attestation input.attestations[i].
tasks[i] := [normalise_v02(t) | some t in raw_tasks[i]] if {
	some i in pipelinerun_indexes
	input.attestations[i].statement.predicateType == slsa_v02
}

tasks[i] := [normalise_taskrun(tr) | some tr in raw_tasks[i]] if {
	some i in pipelinerun_indexes
	input.attestations[i].statement.predicateType == slsa_v1
}

# raw_tasks[i]: the task records as stored; for SLSA v1.0 the decoded child TaskRuns.
raw_tasks[i] := [t | some t in array_or_empty(st.predicate.buildConfig.tasks); is_object(t)] if {
	some i in pipelinerun_indexes
	st := input.attestations[i].statement
	st.predicateType == slsa_v02
}

raw_tasks[i] := [tr | some dep in task_dependencies[i]; tr := decode_taskrun(dep)] if {
	some i in pipelinerun_indexes
	input.attestations[i].statement.predicateType == slsa_v1
}

# How many task records the attestation lists, readable or not (see tasks.task_records_readable).
task_record_count[i] := count(array_or_empty(st.predicate.buildConfig.tasks)) if {
	some i in pipelinerun_indexes
	st := input.attestations[i].statement
	st.predicateType == slsa_v02
}

task_record_count[i] := count(task_dependencies[i]) if {
	some i in pipelinerun_indexes
	input.attestations[i].statement.predicateType == slsa_v1
}

# Only the slsa-tekton build type embeds the child TaskRuns; plain slsa provenance lists pipelineTask
# dependencies by URI and digest alone, which name no task, so it records no tasks (pipeline_has_tasks).
task_dependencies[i] := [dep |
	some dep in array_or_empty(object.get(st.predicate, ["buildDefinition", "resolvedDependencies"], []))
	is_object(dep)
	dep.name == "pipelineTask"
] if {
	some i in pipelinerun_indexes
	st := input.attestations[i].statement
	st.predicateType == slsa_v1
	st.predicate.buildDefinition.buildType == slsa_tekton
}

task_dependencies[i] := [] if {
	some i in pipelinerun_indexes
	st := input.attestations[i].statement
	st.predicateType == slsa_v1
	st.predicate.buildDefinition.buildType != slsa_tekton
}

# else-chains rather than two complementary rules: OPA evaluates every rule of a function to check that
# they agree, and these run several times per task.
array_or_empty(x) := x if is_array(x)

else := []

# Undefined (not an error) for anything but base64 JSON of an object, so the record counts as unreadable.
decode_taskrun(dep) := tr if {
	is_string(dep.content)

	# OPA's Wasm base64 built-ins accept unpadded and over-padded text that OPA itself refuses; the
	# pattern holds every engine to OPA's reading (standard alphabet, canonical padding).
	regex.match(`^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$`, dep.content)
	base64.is_valid(dep.content)
	text := base64.decode(dep.content)
	json.is_valid(text)
	tr := json.unmarshal(text)
	is_object(tr)
}

normalise_v02(t) := {
	"name": string_or_empty(object.get(t, "name", "")),
	"task": ref_task_name(ref),
	"bundle": ref_bundle(ref),
	"status": string_or_empty(object.get(t, "status", "")),
	"after": [a | some a in array_or_empty(object.get(t, "after", [])); is_string(a)],
	"started": string_or_empty(object.get(t, "startedOn", "")),
	"finished": string_or_empty(object.get(t, "finishedOn", "")),
	"results": results(object.get(t, "results", [])),
} if {
	ref := object.get(t, "ref", {})
}

normalise_taskrun(tr) := {
	"name": string_or_empty(object.get(tr, ["metadata", "labels", "tekton.dev/pipelineTask"], "")),
	"task": taskrun_task_name(tr),
	"bundle": ref_bundle(object.get(tr, ["spec", "taskRef"], {})),
	"status": taskrun_status(tr),
	"after": [],
	"started": string_or_empty(object.get(tr, ["status", "startTime"], "")),
	"finished": string_or_empty(object.get(tr, ["status", "completionTime"], "")),
	"results": taskrun_results(tr),
}

string_or_empty(x) := x if is_string(x)

else := ""

# v1 TaskRuns keep results in status.results, v1beta1 ones in status.taskResults. object.get, not
# `not is_array(tr.status.results)`: OPA hoists the ref out of the negation, so a TaskRun without results
# (a lint task) would make the whole function undefined and the task would drop out of every check.
taskrun_results(tr) := results(rs) if {
	rs := object.get(tr, ["status", "results"], null)
	is_array(rs)
} else := results(object.get(tr, ["status", "taskResults"], []))

results(rs) := [{"name": r.name, "value": r.value} | some r in array_or_empty(rs); is_string(r.name)]

# The task definition name behind a taskRef: the bundles resolver's "name" param, else ref.name (plain
# and v1beta1 bundle refs). An embedded taskSpec or a git/hub/cluster resolver ref has no name here.
ref_task_name(ref) := name if {
	is_object(ref)
	object.get(ref, "resolver", "") == "bundles"
	name := string_or_empty(param(ref, "name"))
} else := name if {
	is_object(ref)
	name := string_or_empty(object.get(ref, "name", ""))
} else := ""

ref_bundle(ref) := bundle if {
	is_object(ref)
	object.get(ref, "resolver", "") == "bundles"
	bundle := string_or_empty(param(ref, "bundle"))
} else := bundle if {
	is_object(ref)
	bundle := string_or_empty(object.get(ref, "bundle", ""))
} else := ""

# First value of a resolver parameter; "" when absent.
param(ref, name) := value if {
	values := [p.value | some p in array_or_empty(object.get(ref, "params", [])); is_object(p); p.name == name]
	count(values) > 0
	value := values[0]
} else := ""

# A child TaskRun's task name: from its taskRef, else the tekton.dev/task label the controller sets on
# TaskRuns of referenced (also remotely resolved) Tasks.
taskrun_task_name(tr) := name if {
	name := ref_task_name(object.get(tr, ["spec", "taskRef"], {}))
	name != ""
} else := string_or_empty(object.get(tr, ["metadata", "labels", "tekton.dev/task"], ""))

taskrun_status(tr) := status if {
	conditions := [c | some c in array_or_empty(object.get(tr, ["status", "conditions"], [])); is_object(c); c.type == "Succeeded"]
	count(conditions) > 0
	status := condition_status(conditions[0])
} else := "Unknown"

condition_status(c) := "Succeeded" if c.status == "True"

condition_status(c) := "Failed" if c.status == "False"

condition_status(c) := "Running" if not c.status in {"True", "False"}

# result_value(task, name): a task result's value, surrounding whitespace removed (echo adds "\n").
result_value(task, name) := trim_space(values[0]) if {
	values := [r.value | some r in task.results; r.name == name; is_string(r.value)]
	count(values) > 0
}

# Precedence. SLSA v0.2 records "after" edges; SLSA v1.0 records none, so there a task precedes another
# when it finished no later than the other started.
predecessors[i] := {t.name: pred_names(i, t) | some t in tasks[i]} if {
	some i in pipelinerun_indexes
	input.attestations[i].statement.predicateType == slsa_v02
}

pred_names(i, t) := graph.reachable(after_graph[i], {t.name}) - {t.name}

after_graph[i] := {name: object.get(edges, name, set()) | some name in task_names[i]} if {
	some i in pipelinerun_indexes
	input.attestations[i].statement.predicateType == slsa_v02
	edges := object.get(after_edges, i, {})
}

# The names of the tasks of attestation i.
task_names[i] := {t.name | some t in tasks[i]} if some i in pipelinerun_indexes

# Edges grouped by name in one pass over the tasks (a comprehension per name would be quadratic). A name
# that only appears in "after" is not a node: graph.reachable neither follows nor returns it.
after_edges[i][t.name] contains a if {
	some i in pipelinerun_indexes
	some t in tasks[i]
	some a in t.after
}

successor_edges[i][a] contains t.name if {
	some i in pipelinerun_indexes
	some t in tasks[i]
	some a in t.after
}

# successor_graph[i]: the SLSA v0.2 task graph reversed, name -> tasks that run after it. One
# graph.reachable call over it from a set of tasks gives every task that runs after any of them, where
# walking each task's predecessors (predecessors[i]) costs O(tasks^2).
successor_graph[i] := {name: object.get(edges, name, set()) | some name in task_names[i]} if {
	some i in pipelinerun_indexes
	input.attestations[i].statement.predicateType == slsa_v02
	edges := object.get(successor_edges, i, {})
}

# precedes(i, a, b): task a ran before task b in attestation i.
precedes(i, a, b) if {
	input.attestations[i].statement.predicateType == slsa_v02
	a.name in predecessors[i][b.name]
}

precedes(i, a, b) if {
	input.attestations[i].statement.predicateType == slsa_v1
	a.finished != ""
	b.started != ""
	ltime.parse_ns(a.finished) <= ltime.parse_ns(b.started)
}
