package policy.release.trusted_task_test

import rego.v1

import data.lib.testdata as td
import data.policy.release.trusted_task

pinned(repo) := concat("@", [repo, td.bundle_digest])

# The fixture pipeline with git-clone from a bundle too: v1beta1 bundle refs for clone and build, the v1
# bundles resolver for scan.
bundled_clone := object.union(td.clone_task, {"ref": {"bundle": pinned("quay.io/tasks/git-clone")}})

with_build_ref(ref) := object.union(object.remove(td.build_task, ["ref"]), {"ref": ref})

resolver_ref(bundle) := {"resolver": "bundles", "params": [
	{"name": "bundle", "value": bundle},
	{"name": "name", "value": "buildah"},
	{"name": "kind", "value": "task"},
]}

# Each pipeline both ways: SLSA v0.2 and SLSA v1.0.
both(ts) := [td.input_of([td.v02(ts, td.materials)]), td.input_of([td.v1(ts, td.v1_deps)])]

trusted_quay := ["quay.io/tasks/"]

test_pinned_bundles_pass if {
	every inp in both([bundled_clone, td.scan_task, td.build_task]) {
		count(trusted_task.deny) == 0 with input as inp with data.rule_data.trusted_task_bundles as trusted_quay
	}
}

test_tagged_bundle_denies if {
	tagged := "quay.io/tasks/buildah:0.1"
	expected := {{"code": "trusted_task.pinned", "params": ["build", tagged], "term": tagged}}
	every ref in [{"name": "buildah", "bundle": tagged}, resolver_ref(tagged)] {
		every inp in both([bundled_clone, td.scan_task, with_build_ref(ref)]) {
			trusted_task.deny == expected with input as inp with data.rule_data.trusted_task_bundles as trusted_quay
		}
	}
}

test_short_or_misplaced_digest_is_not_pinned if {
	short := "quay.io/tasks/buildah@sha256:e4c2916f"
	inp := td.input_of([td.v02([bundled_clone, td.scan_task, with_build_ref({"name": "buildah", "bundle": short})], td.materials)])
	trusted_task.deny == {
		{"code": "trusted_task.pinned", "params": ["build", short], "term": short},
		# a digest that short is no image reference at all, so it cannot be compared with the trusted ones
		{"code": "trusted_task.location_canonical", "params": ["build", short], "term": "build"},
	} with input as inp with data.rule_data.trusted_task_bundles as trusted_quay

	# tag and digest together is pinned by the digest
	both_ref := concat("@", ["quay.io/tasks/buildah:0.1", td.bundle_digest])
	ok := td.input_of([td.v02([bundled_clone, td.scan_task, with_build_ref({"name": "buildah", "bundle": both_ref})], td.materials)])
	count(trusted_task.deny) == 0 with input as ok with data.rule_data.trusted_task_bundles as trusted_quay
}

test_task_without_bundle_is_not_trusted if {
	expected := {{"code": "trusted_task.trusted", "params": ["clone", "the cluster task git-clone"], "term": "clone"}}
	every inp in both(td.tasks) {
		trusted_task.deny == expected with input as inp with data.rule_data.trusted_task_bundles as trusted_quay
	}
}

test_bundle_from_another_repository_is_not_trusted if {
	evil := pinned("quay.io/evil/buildah")
	expected := {{"code": "trusted_task.trusted", "params": ["build", evil], "term": "build"}}
	every ref in [{"name": "buildah", "bundle": evil}, resolver_ref(evil)] {
		every inp in both([bundled_clone, td.scan_task, with_build_ref(ref)]) {
			trusted_task.deny == expected with input as inp with data.rule_data.trusted_task_bundles as trusted_quay
		}
	}
}

test_exact_repository_entries if {
	exact := ["quay.io/tasks/git-clone", "quay.io/tasks/trivy-scanner", "quay.io/tasks/buildah"]
	every inp in both([bundled_clone, td.scan_task, td.build_task]) {
		count(trusted_task.deny) == 0 with input as inp with data.rule_data.trusted_task_bundles as exact
	}

	# an entry without a trailing "/" is one repository, not a prefix of others
	near := ["quay.io/tasks/git-clone", "quay.io/tasks/trivy-scanner", "quay.io/tasks/build"]
	every inp in both([bundled_clone, td.scan_task, td.build_task]) {
		trusted_task.deny == {{
			"code": "trusted_task.trusted",
			"params": ["build", pinned("quay.io/tasks/buildah")],
			"term": "build",
		}} with input as inp with data.rule_data.trusted_task_bundles as near
	}
}

test_docker_hub_bundles_are_normalised if {
	hub := pinned("docker.io/tasks/buildah")
	inp := td.input_of([td.v1([bundled_clone, td.scan_task, with_build_ref({"name": "buildah", "bundle": hub})], td.v1_deps)])
	count(trusted_task.deny) == 0 with input as inp with data.rule_data.trusted_task_bundles as ["quay.io/tasks/", "index.docker.io/tasks/"]
}

test_default_trusts_only_the_tekton_catalog if {
	catalog := pinned("gcr.io/tekton-releases/catalog/upstream/buildah")
	catalog_build := with_build_ref({"name": "buildah", "bundle": catalog})
	results := trusted_task.deny with input as td.input_of([td.v02([bundled_clone, td.scan_task, catalog_build], td.materials)])
	results == {
		{"code": "trusted_task.trusted", "params": ["clone", pinned("quay.io/tasks/git-clone")], "term": "clone"},
		{"code": "trusted_task.trusted", "params": ["scan", pinned("quay.io/tasks/trivy-scanner")], "term": "scan"},
	}
}

test_trusted_task_bundles_warning if {
	count(trusted_task.warn) == 0 with input as td.good_v02
	expected := {{"code": "trusted_task.trusted_task_bundles_provided", "params": []}}
	trusted_task.warn == expected with input as td.good_v02 with data.rule_data.trusted_task_bundles as []

	# either list checks origins
	count(trusted_task.warn) == 0 with input as td.good_v02 with data.rule_data.trusted_task_bundles as []
		with data.rule_data.trusted_task_git_repos as ["https://github.com/org/"]

	# while the list is empty only pinning is checked
	count(trusted_task.deny) == 0 with input as td.good_v1 with data.rule_data.trusted_task_bundles as []
}

test_bundle_locations_compare_in_canonical_form if {
	# registry host case, the default port, tag next to digest: the same repository
	every ref in [
		pinned("QUAY.IO/tasks/buildah"),
		pinned("quay.io:443/tasks/buildah"),
		pinned("quay.io/tasks/buildah:0.1"),
	] {
		count(trusted_task.deny) == 0 with input as td.input_of([td.v02([bundled_clone, td.scan_task, with_build_ref(resolver_ref(ref))], td.materials)])
			with data.rule_data.trusted_task_bundles as trusted_quay
	}

	# a longer name next to a prefix is another repository; whole components count
	evil := pinned("quay.io/tasks-evil/buildah")
	results := trusted_task.deny with input as td.input_of([td.v02([bundled_clone, td.scan_task, with_build_ref(resolver_ref(evil))], td.materials)])
		with data.rule_data.trusted_task_bundles as ["quay.io/tasks"]
	td.codes(results) == {"trusted_task.trusted"}
}

test_bundle_references_that_cannot_be_read_deny if {
	every ref in [
		pinned("quay.io/tasks/../evil/buildah"),
		pinned("quay.io/tasks/Buildah"),
		pinned("quay.io/tasks/%2e%2e/buildah"),
	] {
		results := trusted_task.deny with input as td.input_of([td.v1([bundled_clone, td.scan_task, with_build_ref(resolver_ref(ref))], td.v1_deps)])
			with data.rule_data.trusted_task_bundles as trusted_quay
		results == {{"code": "trusted_task.location_canonical", "params": ["build", ref], "term": "build"}}
	}

	# a bundles resolver that names no bundle cannot be pinned
	nothing := {"resolver": "bundles", "params": [{"name": "name", "value": "buildah"}]}
	results := trusted_task.deny with input as td.input_of([td.v02([bundled_clone, td.scan_task, with_build_ref(nothing)], td.materials)])
		with data.rule_data.trusted_task_bundles as trusted_quay
	results == {
		{"code": "trusted_task.pinned", "params": ["build", "a bundles reference without a bundle"], "term": "a bundles reference without a bundle"},
		{"code": "trusted_task.trusted", "params": ["build", "a bundles reference without a bundle"], "term": "build"},
	}

	# nothing is compared while no trusted locations are set: only pinning is checked then
	count(trusted_task.deny) == 0 with input as td.input_of([td.v1([bundled_clone, td.scan_task, with_build_ref(resolver_ref(pinned("quay.io/tasks/../x")))], td.v1_deps)])
		with data.rule_data.trusted_task_bundles as []
}

git_ref(url, revision) := {"resolver": "git", "params": [
	{"name": "url", "value": url},
	{"name": "revision", "value": revision},
	{"name": "pathInRepo", "value": "task/git-clone/git-clone.yaml"},
]}

git_clone(url, revision) := object.union(object.remove(td.clone_task, ["ref"]), {
	"ref": git_ref(url, revision),
	"invocation": {"environment": {"labels": {"tekton.dev/task": "git-clone"}}},
})

git_trusted := ["https://github.com/org/tasks"]

test_git_resolver_tasks_can_be_trusted if {
	every url in [
		"https://github.com/org/tasks",
		"https://github.com/org/tasks.git",
		"git+https://GitHub.com/org/tasks/",
		"https://github.com:443/org/tasks",
		"git@github.com:org/tasks.git",
	] {
		every inp in both([git_clone(url, td.commit), td.scan_task, td.build_task]) {
			count(trusted_task.deny) == 0 with input as inp with data.rule_data.trusted_task_bundles as trusted_quay
				with data.rule_data.trusted_task_git_repos as git_trusted
		}
	}
}

test_git_resolver_tasks_from_elsewhere_are_not_trusted if {
	every url in [
		"https://github.com/org/tasks-evil",
		"https://github.com/org/tasks/../evil",
		"https://github.com@evil.example/org/tasks",
		"https://github.com:8443/org/tasks",
	] {
		every inp in both([git_clone(url, td.commit), td.scan_task, td.build_task]) {
			td.codes(trusted_task.deny) == {"trusted_task.trusted"} with input as inp
				with data.rule_data.trusted_task_bundles as trusted_quay
				with data.rule_data.trusted_task_git_repos as git_trusted
		}
	}

	# and the git list alone trusts no bundle
	results := trusted_task.deny with input as td.input_of([td.v02([git_clone("https://github.com/org/tasks", td.commit), td.scan_task, td.build_task], td.materials)])
		with data.rule_data.trusted_task_bundles as [] with data.rule_data.trusted_task_git_repos as git_trusted
	{r.term | some r in results} == {"scan", "build"}
}

test_git_resolver_tasks_must_name_a_commit if {
	every revision in ["main", "v1.0", substring(td.commit, 0, 7), ""] {
		results := trusted_task.deny with input as td.input_of([td.v02([git_clone("https://github.com/org/tasks", revision), td.scan_task, td.build_task], td.materials)])
			with data.rule_data.trusted_task_bundles as trusted_quay
			with data.rule_data.trusted_task_git_repos as git_trusted
		text := concat("", ["https://github.com/org/tasks@", revision, " (task/git-clone/git-clone.yaml)"])
		results == {{"code": "trusted_task.pinned", "params": ["clone", text], "term": text}}
	}
}

test_git_urls_that_cannot_be_read_deny if {
	results := trusted_task.deny with input as td.input_of([td.v02([git_clone("github.com/org/tasks", td.commit), td.scan_task, td.build_task], td.materials)])
		with data.rule_data.trusted_task_bundles as trusted_quay
		with data.rule_data.trusted_task_git_repos as git_trusted
	td.codes(results) == {"trusted_task.location_canonical"}
}

test_other_resolvers_and_embedded_specs_are_not_trusted if {
	hub := with_build_ref({"resolver": "hub", "params": [{"name": "name", "value": "buildah"}]})
	spec := with_build_ref({})
	http := with_build_ref({"resolver": "http", "params": [{"name": "url", "value": "https://quay.io/tasks/buildah.yaml"}]})
	expected := {
		"the hub resolver": hub,
		"an embedded taskSpec": spec,
		"the http resolver": http,
	}
	every text, task in expected {
		every inp in both([bundled_clone, td.scan_task, task]) {
			trusted_task.deny == {{"code": "trusted_task.trusted", "params": ["build", text], "term": "build"}} with input as inp
				with data.rule_data.trusted_task_bundles as trusted_quay
		}
	}
}

test_ambiguous_references_deny if {
	# the bundle field next to a resolver: Tekton would run the bundle field's quay.io/evil task
	mixed := object.union(resolver_ref(pinned("quay.io/tasks/buildah")), {"bundle": pinned("quay.io/evil/buildah")})
	twice := {"resolver": "bundles", "params": [
		{"name": "bundle", "value": pinned("quay.io/tasks/buildah")},
		{"name": "name", "value": "buildah"},
		{"name": "bundle", "value": pinned("quay.io/evil/buildah")},
	]}
	expected := {{"code": "trusted_task.task_ref_unambiguous", "params": ["build"], "term": "build"}}
	every ref in [mixed, twice] {
		every inp in both([bundled_clone, td.scan_task, with_build_ref(ref)]) {
			# denied whatever the trust configuration, and not read one way for the other rules
			trusted_task.deny == expected with input as inp with data.rule_data.trusted_task_bundles as trusted_quay
			trusted_task.deny == expected with input as inp with data.rule_data.trusted_task_bundles as []
		}
	}
}

v02_taskrun(source, labels) := object.union(td.v02([], td.materials), {"predicate": {
	"buildType": "tekton.dev/v1beta1/TaskRun",
	"buildConfig": {"steps": []},
	"invocation": {"configSource": source, "environment": {"labels": labels}},
}})

test_taskrun_statements_are_checked_too if {
	pipeline := td.v02([bundled_clone, td.scan_task, td.build_task], td.materials)

	# a TaskRun statement of a cluster Task next to a good PipelineRun statement
	local := v02_taskrun({}, {"tekton.dev/pipelineTask": "push", "tekton.dev/task": "kaniko"})
	results := trusted_task.deny with input as td.input_of([pipeline, local]) with data.rule_data.trusted_task_bundles as trusted_quay
	results == {{"code": "trusted_task.trusted", "params": ["push", "a task in the cluster"], "term": "push"}}

	# one from a trusted bundle passes
	source := {"uri": "quay.io/tasks/buildah", "digest": {"sha256": substring(td.bundle_digest, 7, -1)}, "entryPoint": "buildah"}
	count(trusted_task.deny) == 0 with input as td.input_of([pipeline, v02_taskrun(source, {"tekton.dev/task": "buildah"})])
		with data.rule_data.trusted_task_bundles as trusted_quay

	# and one from an untrusted bundle does not
	evil := object.union(source, {"uri": "quay.io/evil/buildah"})
	td.codes(trusted_task.deny) == {"trusted_task.trusted"} with input as td.input_of([pipeline, v02_taskrun(evil, {})])
		with data.rule_data.trusted_task_bundles as trusted_quay
}

# A SLSA v1.0 TaskRun statement: the runSpec of a TaskRun (object.union would keep the pipelineRef).
v1_taskrun(ref) := object.union(object.remove(st, ["predicate"]), {"predicate": object.union(object.remove(st.predicate, ["buildDefinition"]), {"buildDefinition": {
	"buildType": "https://tekton.dev/chains/v2/slsa",
	"externalParameters": {"runSpec": {"taskRef": ref}},
	"resolvedDependencies": [],
}})}) if {
	st := td.v1([], [])
}

test_v1_taskrun_statements_are_checked_too if {
	pipeline := td.v1([bundled_clone, td.scan_task, td.build_task], td.v1_deps)
	count(trusted_task.deny) == 0 with input as td.input_of([pipeline, v1_taskrun(resolver_ref(pinned("quay.io/tasks/buildah")))])
		with data.rule_data.trusted_task_bundles as trusted_quay
	tagged := "quay.io/tasks/buildah:0.1"
	trusted_task.deny == {{"code": "trusted_task.pinned", "params": ["buildah", tagged], "term": tagged}} with input as td.input_of([pipeline, v1_taskrun(resolver_ref(tagged))])
		with data.rule_data.trusted_task_bundles as trusted_quay
	results := trusted_task.deny with input as td.input_of([pipeline, v1_taskrun(resolver_ref(pinned("quay.io/evil/buildah")))])
		with data.rule_data.trusted_task_bundles as trusted_quay
	results == {{"code": "trusted_task.trusted", "params": ["buildah", pinned("quay.io/evil/buildah")], "term": "buildah"}}
}

# Pinned means exactly 64 lower-case hex digits after the last "@sha256:" of a bundle, and a revision of
# exactly 40 or 64 lower-case hex digits.
test_pinning_bounds if {
	hex := substring(td.bundle_digest, 7, 64)
	every digest in [substring(hex, 0, 63), concat("", [hex, "0"]), upper(hex), concat("", [substring(hex, 0, 63), "g"])] {
		bundle := concat("", ["quay.io/tasks/buildah@sha256:", digest])
		inp := td.input_of([td.v02([bundled_clone, td.scan_task, with_build_ref({"name": "buildah", "bundle": bundle})], td.materials)])
		"trusted_task.pinned" in td.codes(trusted_task.deny) with input as inp with data.rule_data.trusted_task_bundles as trusted_quay
	}
	bare := td.input_of([td.v02([bundled_clone, td.scan_task, with_build_ref({"name": "buildah", "bundle": hex})], td.materials)])
	"trusted_task.pinned" in td.codes(trusted_task.deny) with input as bare with data.rule_data.trusted_task_bundles as trusted_quay
	twice := concat("", ["quay.io/tasks/buildah@sha256:", hex, "@sha256:", hex])
	inp := td.input_of([td.v02([bundled_clone, td.scan_task, with_build_ref({"name": "buildah", "bundle": twice})], td.materials)])
	not "trusted_task.pinned" in td.codes(trusted_task.deny) with input as inp with data.rule_data.trusted_task_bundles as trusted_quay

	git := {"https://github.com/org/tasks"}
	every revision in [td.commit, hex] {
		ok := td.input_of([td.v02([git_clone("https://github.com/org/tasks", revision), td.scan_task, td.build_task], td.materials)])
		not "trusted_task.pinned" in td.codes(trusted_task.deny) with input as ok with data.rule_data.trusted_task_git_repos as git
	}
	every revision in [substring(td.commit, 0, 39), concat("", [td.commit, "0"]), upper(td.commit), substring(hex, 0, 63), concat("", [hex, "0"])] {
		bad := td.input_of([td.v02([git_clone("https://github.com/org/tasks", revision), td.scan_task, td.build_task], td.materials)])
		"trusted_task.pinned" in td.codes(trusted_task.deny) with input as bad with data.rule_data.trusted_task_git_repos as git
	}
}
