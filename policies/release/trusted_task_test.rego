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
	trusted_task.deny == {{"code": "trusted_task.pinned", "params": ["build", short], "term": short}} with input as inp
		with data.rule_data.trusted_task_bundles as trusted_quay

	# tag and digest together is pinned by the digest
	both_ref := concat("@", ["quay.io/tasks/buildah:0.1", td.bundle_digest])
	ok := td.input_of([td.v02([bundled_clone, td.scan_task, with_build_ref({"name": "buildah", "bundle": both_ref})], td.materials)])
	count(trusted_task.deny) == 0 with input as ok with data.rule_data.trusted_task_bundles as trusted_quay
}

test_task_without_bundle_is_not_trusted if {
	expected := {{"code": "trusted_task.trusted", "params": ["clone", "no bundle"], "term": "clone"}}
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

	# while the list is empty only pinning is checked
	count(trusted_task.deny) == 0 with input as td.good_v1 with data.rule_data.trusted_task_bundles as []
}
