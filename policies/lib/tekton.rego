package lib.tekton

# Reading Tekton Chains provenance: which statements are PipelineRun or TaskRun provenance, and the tasks
# they record, normalised to one shape whatever the SLSA version, Tekton API version or task reference
# style:
#
#   {"name": pipeline task name ("" when unknown), "task": task definition name ("" when unknown or
#    inline), "origin": where the definition came from (below), "ambiguous": whether the reference can
#    be read two ways, "status": "Succeeded" | "Failed" | "Running" | "Unknown", "after": [pipeline task
#    names] (SLSA v0.2), "started": RFC 3339 or "", "finished": RFC 3339 or "", "results": [{"name",
#    "value"}]}
#
#   origin: {"kind": "bundle", "ref"} | {"kind": "git", "url", "revision", "path"} | {"kind": "inline"}
#           | {"kind": "local", "name"} (a Task or ClusterTask in the cluster, by name)
#           | {"kind": "resolver", "resolver"} (cluster, hub, http and other resolvers)
#
# What Chains records (checked against its source and real statements, tests/gate/real_provenance/):
# SLSA v0.2 task records carry the taskRef as the pipeline wrote it; a remotely resolved one (git, hub,
# http, cluster) names no task, but the record's invocation.environment.labels hold the
# tekton.dev/task label that the Tekton controller sets to the resolved Task's metadata.name for every
# referenced task. SLSA v1.0 slsa-tekton provenance embeds the child TaskRuns, labels included. Inline
# taskSpecs have no definition name and never get that label from the controller, so a label on one
# (PipelineRun labels propagate to TaskRuns) is not believed.
#
# Every helper is total (a default instead of undefined) because a task that drops out of a
# comprehension would silently escape the checks.

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

# Indexes into input.attestations, so large statements are never hashed into sets.
provenance_indexes contains i if {
	some i, att in input.attestations
	att.statement.predicateType in provenance_predicate_types
}

pipelinerun_indexes contains i if {
	some i in provenance_indexes
	is_pipelinerun(input.attestations[i].statement)
}

taskrun_indexes contains i if {
	some i in provenance_indexes
	is_taskrun(input.attestations[i].statement)
}

# Provenance of no Tekton run this library can read: its tasks cannot be checked.
unknown_build_indexes := (provenance_indexes - pipelinerun_indexes) - taskrun_indexes

is_pipelinerun(st) if {
	st.predicateType == slsa_v02
	st.predicate.buildType in pipelinerun_build_types_v02
}

is_pipelinerun(st) if {
	st.predicateType == slsa_v1
	st.predicate.buildDefinition.buildType in build_types_v1
	_is_pipeline_run_spec(st.predicate.buildDefinition.externalParameters.runSpec)
}

_is_pipeline_run_spec(spec) if is_object(spec.pipelineRef)

_is_pipeline_run_spec(spec) if is_object(spec.pipelineSpec)

is_taskrun(st) if {
	st.predicateType == slsa_v02
	st.predicate.buildType in taskrun_build_types_v02
}

is_taskrun(st) if {
	st.predicateType == slsa_v1
	st.predicate.buildDefinition.buildType in build_types_v1
	not is_pipelinerun(st)
	_is_task_run_spec(st.predicate.buildDefinition.externalParameters.runSpec)
}

_is_task_run_spec(spec) if is_object(spec.taskRef)

_is_task_run_spec(spec) if is_object(spec.taskSpec)

builder_id(st) := st.predicate.builder.id if st.predicateType == slsa_v02

builder_id(st) := st.predicate.runDetails.builder.id if st.predicateType == slsa_v1

# tasks[i]: the normalised tasks of the PipelineRun attestation input.attestations[i].
tasks[i] := [_normalise_v02(t) | some t in _raw_tasks[i]] if {
	some i in pipelinerun_indexes
	input.attestations[i].statement.predicateType == slsa_v02
}

tasks[i] := [_normalise_taskrun(tr) | some tr in _raw_tasks[i]] if {
	some i in pipelinerun_indexes
	input.attestations[i].statement.predicateType == slsa_v1
}

# _raw_tasks[i]: the task records as stored; for SLSA v1.0 the decoded child TaskRuns.
_raw_tasks[i] := [t | some t in array_or_empty(st.predicate.buildConfig.tasks); is_object(t)] if {
	some i in pipelinerun_indexes
	st := input.attestations[i].statement
	st.predicateType == slsa_v02
}

_raw_tasks[i] := [tr | some dep in _task_dependencies[i]; tr := _decode_taskrun(dep)] if {
	some i in pipelinerun_indexes
	input.attestations[i].statement.predicateType == slsa_v1
}

# How many task records the attestation lists, readable or not (see tasks.task_records_readable).
task_record_count[i] := count(array_or_empty(st.predicate.buildConfig.tasks)) if {
	some i in pipelinerun_indexes
	st := input.attestations[i].statement
	st.predicateType == slsa_v02
}

task_record_count[i] := count(_task_dependencies[i]) if {
	some i in pipelinerun_indexes
	input.attestations[i].statement.predicateType == slsa_v1
}

# Only the slsa-tekton build type embeds the child TaskRuns; plain slsa provenance lists pipelineTask
# dependencies by URI and digest alone, which name no task, so it records no tasks (pipeline_has_tasks).
_task_dependencies[i] := [dep |
	some dep in array_or_empty(object.get(st.predicate, ["buildDefinition", "resolvedDependencies"], []))
	is_object(dep)
	dep.name == "pipelineTask"
] if {
	some i in pipelinerun_indexes
	st := input.attestations[i].statement
	st.predicateType == slsa_v1
	st.predicate.buildDefinition.buildType == slsa_tekton
}

_task_dependencies[i] := [] if {
	some i in pipelinerun_indexes
	st := input.attestations[i].statement
	st.predicateType == slsa_v1
	st.predicate.buildDefinition.buildType != slsa_tekton
}

# taskrun_task[i]: the one task of the TaskRun attestation input.attestations[i], in the same shape.
# SLSA v0.2 TaskRun provenance records no taskRef: where the definition came from is its
# invocation.configSource (uri and digest of a remote Task), and it records no outcome ("Unknown").
taskrun_task[i] := _taskrun_statement_task(labels, _config_source_origin(source), _label(labels, "tekton.dev/task"), false) if {
	some i in taskrun_indexes
	st := input.attestations[i].statement
	st.predicateType == slsa_v02
	labels := _object(object.get(st.predicate, ["invocation", "environment", "labels"], {}))
	source := _object(object.get(st.predicate, ["invocation", "configSource"], {}))
}

taskrun_task[i] := _taskrun_statement_task(labels, origin, _task_name(ref, resolver, origin, labels), _is_ambiguous(ref, resolver)) if {
	some i in taskrun_indexes
	st := input.attestations[i].statement
	st.predicateType == slsa_v1
	ref := _object(object.get(st.predicate, ["buildDefinition", "externalParameters", "runSpec", "taskRef"], {}))
	labels := _object(object.get(st.predicate, ["buildDefinition", "internalParameters", "labels"], {}))
	resolver := _resolver(ref)
	origin := _origin(ref, resolver)
}

_taskrun_statement_task(labels, origin, task, ambiguous) := {
	"name": _first_nonempty([_label(labels, "tekton.dev/pipelineTask"), task, "of a TaskRun attestation"]),
	"task": task,
	"origin": origin,
	"ambiguous": ambiguous,
	"status": "Unknown",
	"after": [],
	"started": "",
	"finished": "",
	"results": [],
}

_config_source_origin(source) := {
	"kind": "git",
	"url": uri,
	"revision": _string_or_empty(object.get(source, ["digest", "sha1"], "")),
	"path": _string_or_empty(object.get(source, "entryPoint", "")),
} if {
	uri := _string_or_empty(object.get(source, "uri", ""))
	startswith(uri, "git+")
} else := {"kind": "bundle", "ref": concat("@", [uri, concat(":", ["sha256", digest])])} if {
	uri := _string_or_empty(object.get(source, "uri", ""))
	uri != ""
	digest := _string_or_empty(object.get(source, ["digest", "sha256"], ""))
	digest != ""
} else := {"kind": "local", "name": ""}

# task_origins[i]: the tasks (records with "name", "origin" and "ambiguous") of every Tekton attestation,
# PipelineRun and TaskRun alike: every verified statement about the image has its task definitions
# checked.
task_origins[i] := tasks[i] if some i in pipelinerun_indexes

task_origins[i] := [taskrun_task[i]] if some i in taskrun_indexes

# else-chains rather than two complementary rules: OPA evaluates every rule of a function to check that
# they agree, and these run several times per task.
array_or_empty(x) := x if is_array(x)

else := []

_object(x) := x if is_object(x)

else := {}

_string_or_empty(x) := x if is_string(x)

else := ""

_first_nonempty(values) := values[0] if values[0] != ""

else := values[1] if values[1] != ""

else := values[2]

_label(labels, key) := _string_or_empty(object.get(labels, key, ""))

# Undefined (not an error) for anything but base64 JSON of an object, so the record counts as unreadable.
_decode_taskrun(dep) := tr if {
	is_string(dep.content)

	# OPA's Wasm base64 built-ins accept unpadded and over-padded text that OPA itself refuses; the
	# pattern and the length hold every engine to OPA's reading (standard alphabet, canonical padding).
	# The length is counted apart from the pattern: see lib.image.
	regex.match(`^[A-Za-z0-9+/]*=?=?$`, dep.content)
	count(dep.content) % 4 == 0
	base64.is_valid(dep.content)
	text := base64.decode(dep.content)
	json.is_valid(text)
	tr := json.unmarshal(text)
	is_object(tr)
}

_normalise_v02(t) := {
	"name": _pipeline_task_name(t, labels),
	"task": _task_name(ref, resolver, origin, labels),
	"origin": origin,
	"ambiguous": _is_ambiguous(ref, resolver),
	"status": _string_or_empty(object.get(t, "status", "")),
	"after": [a | some a in array_or_empty(object.get(t, "after", [])); is_string(a)],
	"started": _string_or_empty(object.get(t, "startedOn", "")),
	"finished": _string_or_empty(object.get(t, "finishedOn", "")),
	"results": _results(object.get(t, "results", [])),
} if {
	ref := _object(object.get(t, "ref", {}))
	resolver := _resolver(ref)
	labels := _object(object.get(t, ["invocation", "environment", "labels"], {}))
	origin := _origin(ref, resolver)
}

# The record's name, else the label (some Chains versions leave the name out of remote tasks' records).
_pipeline_task_name(t, labels) := name if {
	name := _string_or_empty(object.get(t, "name", ""))
	name != ""
} else := _label(labels, "tekton.dev/pipelineTask")

_normalise_taskrun(tr) := {
	"name": _label(labels, "tekton.dev/pipelineTask"),
	"task": _task_name(ref, resolver, origin, labels),
	"origin": origin,
	"ambiguous": _is_ambiguous(ref, resolver),
	"status": _taskrun_status(tr),
	"after": [],
	"started": _string_or_empty(object.get(tr, ["status", "startTime"], "")),
	"finished": _string_or_empty(object.get(tr, ["status", "completionTime"], "")),
	"results": _taskrun_results(tr),
} if {
	ref := _object(object.get(tr, ["spec", "taskRef"], {}))
	resolver := _resolver(ref)
	labels := _object(object.get(tr, ["metadata", "labels"], {}))
	origin := _origin(ref, resolver)
}

# v1 TaskRuns keep results in status.results, v1beta1 ones in status.taskResults. object.get, not
# `not is_array(tr.status.results)`: OPA hoists the ref out of the negation, so a TaskRun without results
# (a lint task) would make the whole function undefined and the task would drop out of every check.
_taskrun_results(tr) := _results(rs) if {
	rs := object.get(tr, ["status", "results"], null)
	is_array(rs)
} else := _results(object.get(tr, ["status", "taskResults"], []))

_results(rs) := [{"name": r.name, "value": r.value} | some r in array_or_empty(rs); is_string(r.name)]

# Where a taskRef's definition comes from. The resolver decides when there is one; the v1beta1 bundle
# field and a plain name otherwise. A reference with none of them is an embedded taskSpec.
_origin(ref, resolver) := {"kind": "bundle", "ref": _string_or_empty(_param(ref, "bundle"))} if {
	resolver == "bundles"
} else := {
	"kind": "git",
	"url": _string_or_empty(_param(ref, "url")),
	"revision": _string_or_empty(_param(ref, "revision")),
	"path": _string_or_empty(_param(ref, "pathInRepo")),
} if {
	resolver == "git"
} else := {"kind": "resolver", "resolver": resolver} if {
	resolver != ""
} else := {"kind": "bundle", "ref": bundle} if {
	bundle := _string_or_empty(object.get(ref, "bundle", ""))
	bundle != ""
} else := {"kind": "local", "name": name} if {
	name := _string_or_empty(object.get(ref, "name", ""))
	name != ""
} else := {"kind": "inline"}

_resolver(ref) := _string_or_empty(object.get(ref, "resolver", ""))

# The task definition name: the resolver's "name" _param (bundles, hub, cluster) or the plain name, else
# the tekton.dev/task label the controller sets from the resolved Task (git and http resolvers name no
# task in the reference). An embedded taskSpec has none.
_task_name(ref, resolver, origin, labels) := "" if {
	origin.kind == "inline"
} else := name if {
	name := _ref_name(ref, resolver)
	name != ""
} else := _label(labels, "tekton.dev/task")

_ref_name(ref, resolver) := _string_or_empty(_param(ref, "name")) if {
	resolver != ""
} else := _string_or_empty(object.get(ref, "name", ""))

# A reference that can be read two ways: the v1beta1 bundle field next to a resolver (Tekton prefers the
# bundle field, a reader of the resolver would not), or a resolver parameter given twice (which value
# counts depends on the reader). Tekton rejects both, so no real run records one.
_is_ambiguous(ref, resolver) if {
	resolver != ""
	_string_or_empty(object.get(ref, "bundle", "")) != ""
} else if {
	names := [p.name | some p in array_or_empty(object.get(ref, "params", [])); is_object(p)]
	count(names) != count({n | some n in names})
} else := false

# First value of a resolver parameter; "" when absent.
_param(ref, name) := value if {
	values := [p.value | some p in array_or_empty(object.get(ref, "params", [])); is_object(p); p.name == name]
	count(values) > 0
	value := values[0]
} else := ""

_taskrun_status(tr) := status if {
	conditions := [c | some c in array_or_empty(object.get(tr, ["status", "conditions"], [])); is_object(c); c.type == "Succeeded"]
	count(conditions) > 0
	status := _condition_status(conditions[0])
} else := "Unknown"

_condition_status(c) := "Succeeded" if c.status == "True"

_condition_status(c) := "Failed" if c.status == "False"

_condition_status(c) := "Running" if not c.status in {"True", "False"}

# result_value(task, name): a task result's value, surrounding whitespace removed (echo adds "\n").
result_value(task, name) := trim_space(values[0]) if {
	values := [r.value | some r in task.results; r.name == name; is_string(r.value)]
	count(values) > 0
}

# _after_graph[i]: name -> the names it runs after. An "after" name that is not a task of the record is
# not a node: graph.reachable neither follows nor returns it. Chains records only tasks that ran (it skips
# a task a when expression skipped), but keeps the pipeline's runAfter, so such names occur in real runs.
_after_graph[i] := {name: object.get(edges, name, set()) | some name in _task_names[i]} if {
	some i in pipelinerun_indexes
	input.attestations[i].statement.predicateType == slsa_v02
	edges := object.get(_after_edges, i, {})
}

# The names of the tasks of attestation i.
_task_names[i] := {t.name | some t in tasks[i]} if some i in pipelinerun_indexes

# Edges grouped by name in one pass over the tasks (a comprehension per name would be quadratic).
_after_edges[i][t.name] contains a if {
	some i in pipelinerun_indexes
	some t in tasks[i]
	some a in t.after
}

_successor_edges[i][a] contains t.name if {
	some i in pipelinerun_indexes
	some t in tasks[i]
	some a in t.after
}

# successor_graph[i]: the SLSA v0.2 task graph reversed, name -> tasks that run after it. One
# graph.reachable call over it from a set of tasks gives every task that runs after any of them, where
# walking each task's predecessors costs O(tasks^2).
successor_graph[i] := {name: object.get(edges, name, set()) | some name in _task_names[i]} if {
	some i in pipelinerun_indexes
	input.attestations[i].statement.predicateType == slsa_v02
	edges := object.get(_successor_edges, i, {})
}

# unnamed_tasks[i]: [position, what is missing] of the task records of PipelineRun attestation i whose
# pipeline task name or (for a referenced definition) task definition name cannot be established.
unnamed_tasks[i] contains [k, "pipeline task name"] if {
	some i in pipelinerun_indexes
	some k, t in tasks[i]
	t.name == ""
}

unnamed_tasks[i] contains [k, "task definition name"] if {
	some i in pipelinerun_indexes
	some k, t in tasks[i]
	t.task == ""
	t.origin.kind != "inline"
}

# Task-graph integrity (SLSA v0.2; v1.0 records no graph).
#
# cycle_members[i]: tasks of attestation i that run after themselves. A cycle cannot consist only of
# edges to tasks listed earlier (the record order would then be a topological order), so only the
# targets of edges to later-listed tasks are searched: one graph.reachable call for each such edge, none
# for the usual record, where a pipeline lists tasks in the order they depend on each other.
cycle_members[i] contains t.name if {
	some i in pipelinerun_indexes
	some t in tasks[i]
	t.name in t.after
}

# Every task on a cycle through the edge u -> w: those w runs after that run after u.
cycle_members[i] contains name if {
	some [u, w] in _forward_edges[i]
	down := graph.reachable(_after_graph[i], {w})
	u in down
	some name in (down & graph.reachable(successor_graph[i], {u}))
}

# [u, w]: u runs after w, and w's first record is listed later than u's (records of one name share a
# first position, so a cycle through the later records of a matrixed task is found too).
_forward_edges[i] contains [t.name, a] if {
	some i in pipelinerun_indexes
	input.attestations[i].statement.predicateType == slsa_v02
	positions := _first_position[i]
	some t in tasks[i]
	some a in t.after
	a != t.name
	positions[a] > positions[t.name]
}

_first_position[i] := {name: min(js) | some name, js in _positions[i]} if some i in pipelinerun_indexes

_positions[i][t.name] contains j if {
	some i in pipelinerun_indexes
	some j, t in tasks[i]
}

# inconsistent_names[i]: pipeline task names that several records share while differing in what ran or
# what they ran after. A matrix fans one pipeline task out into several TaskRuns, each recorded under the
# task's name with the same reference and predecessors; records that differ there are two tasks with one
# name, which Tekton rejects, so no real run records them.
inconsistent_names[i] contains name if {
	some i in pipelinerun_indexes
	some name, js in _positions[i]
	count(js) > 1
	count({_shape(tasks[i][j]) | some j in js}) > 1
}

_shape(t) := {"task": t.task, "origin": t.origin, "ambiguous": t.ambiguous, "after": {a | some a in t.after}}
