package lib.testdata

# Shared fixtures for the policy tests: a small TEP-0084-style pipeline (git-clone -> trivy-scanner ->
# buildah) as SLSA v0.2 and as SLSA v1.0 slsa-tekton provenance.

digest := concat("", ["sha256:", concat("", [x | some _ in numbers.range(1, 32); x := "ab"])])

image := {"ref": concat("@", ["registry.example.com/org/app", digest]), "digest": digest}

commit := "a5bdfa264ac87bb2bec104ef9ddf2207b5b210c9"

bundle_digest := "sha256:e4c2916f25ce2d42ec7016c3dc3392e527442c307f43aae3ea63f4622ee5cfe4"

clone_task := {
	"name": "clone", "ref": {"name": "git-clone", "kind": "Task"}, "status": "Succeeded",
	"startedOn": "2024-01-01T00:00:00Z", "finishedOn": "2024-01-01T00:00:10Z",
	"results": [{"name": "commit", "value": commit}],
}

scan_task := {
	"name": "scan", "after": ["clone"], "status": "Succeeded",
	"ref": {"resolver": "bundles", "params": [
		{"name": "bundle", "value": concat("@", ["quay.io/tasks/trivy-scanner", bundle_digest])},
		{"name": "name", "value": "trivy-scanner"},
		{"name": "kind", "value": "task"},
	]},
	"startedOn": "2024-01-01T00:00:11Z", "finishedOn": "2024-01-01T00:00:20Z",
}

build_task := {
	"name": "build", "after": ["scan"], "status": "Succeeded",
	"ref": {"name": "buildah", "bundle": concat("@", ["quay.io/tasks/buildah", bundle_digest])},
	"startedOn": "2024-01-01T00:00:21Z", "finishedOn": "2024-01-01T00:00:40Z",
	"results": [
		{"name": "IMAGE_URL", "value": "registry.example.com/org/app:latest\n"},
		{"name": "IMAGE_DIGEST", "value": digest},
	],
}

tasks := [clone_task, scan_task, build_task]

materials := [{"uri": "git+https://github.com/org/app.git", "digest": {"sha1": commit}}]

v02(ts, mats) := {
	"_type": "https://in-toto.io/Statement/v0.1",
	"predicateType": "https://slsa.dev/provenance/v0.2",
	"subject": [{"name": "registry.example.com/org/app", "digest": {"sha256": substring(digest, 7, -1)}}],
	"predicate": {
		"builder": {"id": "https://tekton.dev/chains/v2"},
		"buildType": "tekton.dev/v1/PipelineRun",
		"invocation": {"configSource": {}, "parameters": {}},
		"buildConfig": {"tasks": ts},
		"materials": mats,
	},
}

# A v0.2 task record as the child TaskRun Chains embeds in SLSA v1.0 slsa-tekton provenance.
taskrun(t) := {
	"apiVersion": "tekton.dev/v1",
	"kind": "TaskRun",
	"metadata": {"labels": {"tekton.dev/pipelineTask": t.name}},
	"spec": {"taskRef": t.ref},
	"status": {
		"conditions": [{"type": "Succeeded", "status": condition(t.status)}],
		"startTime": t.startedOn,
		"completionTime": t.finishedOn,
		"results": object.get(t, "results", []),
	},
}

condition("Succeeded") := "True"

condition("Failed") := "False"

v1(ts, deps) := {
	"_type": "https://in-toto.io/Statement/v1",
	"predicateType": "https://slsa.dev/provenance/v1",
	"subject": [{"name": "registry.example.com/org/app", "digest": {"sha256": substring(digest, 7, -1)}}],
	"predicate": {
		"buildDefinition": {
			"buildType": "https://tekton.dev/chains/v2/slsa-tekton",
			"externalParameters": {"runSpec": {"pipelineRef": {"name": "build"}}},
			"resolvedDependencies": array.concat(
				[{"name": "pipelineTask", "content": base64.encode(json.marshal(taskrun(t)))} | some t in ts],
				deps,
			),
		},
		"runDetails": {"builder": {"id": "https://tekton.dev/chains/v2"}},
	},
}

v1_deps := [{"name": "inputs/result", "uri": "git+https://github.com/org/app.git", "digest": {"sha1": commit}}]

input_of(statements) := {"image": image, "attestations": [{"statement": s, "signatures": []} | some s in statements]}

good_v02 := input_of([v02(tasks, materials)])

good_v1 := input_of([v1(tasks, v1_deps)])

codes(results) := {r.code | some r in results}
