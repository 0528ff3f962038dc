package policy.release.subject_test

import rego.v1

import data.lib.testdata as td
import data.policy.release.subject
import data.policy.release.tasks

other_digest := concat("", ["sha256:", concat("", [x | some _ in numbers.range(1, 32); x := "cd"])])

with_results(results) := object.union(object.remove(td.build_task, ["results"]), {"results": results})

pipelines(results) := [
	td.input_of([td.v02([td.clone_task, td.scan_task, with_results(results)], td.materials)]),
	td.input_of([td.v1([td.clone_task, td.scan_task, with_results(results)], td.v1_deps)]),
]

reported(url, digest) := concat("@", [url, digest])

test_build_task_that_built_the_image_passes if {
	count(subject.deny) == 0 with input as td.good_v02
	count(subject.deny) == 0 with input as td.good_v1
}

test_missing_image_results_deny if {
	expected := {{"code": "subject.build_task_image_results_found", "params": ["0"], "term": "0"}}
	every inp in pipelines([]) {
		subject.deny == expected with input as inp
	}
}

test_image_url_without_its_digest_denies if {
	# IMAGE_URL and IMAGE_DIGEST must come as a pair from one task
	expected := {{"code": "subject.build_task_image_results_found", "params": ["0"], "term": "0"}}
	every inp in pipelines([{"name": "IMAGE_URL", "value": "registry.example.com/org/app"}]) {
		subject.deny == expected with input as inp
	}
	every inp in pipelines([{"name": "IMAGE_DIGEST", "value": td.digest}]) {
		subject.deny == expected with input as inp
	}
}

test_pipeline_without_tasks_is_left_to_the_tasks_package if {
	# no double report here, but the decision still denies through tasks.pipeline_has_tasks
	inp := td.input_of([td.v02([], td.materials)])
	count(subject.deny) == 0 with input as inp
	"tasks.pipeline_has_tasks" in td.codes(tasks.deny) with input as inp
}

test_other_digest_denies if {
	every inp in pipelines([
		{"name": "IMAGE_URL", "value": "registry.example.com/org/app:latest"},
		{"name": "IMAGE_DIGEST", "value": other_digest},
	]) {
		subject.deny == {{
			"code": "subject.build_task_image_matches",
			"params": ["0", td.image.ref, reported("registry.example.com/org/app:latest", other_digest)],
			"term": "0",
		}} with input as inp
	}
}

promoted_url := "quay.io/releases/app:1.0"

promoted := {"ref": concat("@", ["quay.io/releases/app", td.digest]), "digest": td.digest}

test_promoted_copy_is_admitted_by_default if {
	# a release flow copied the image (same digest) to another repository; the gate decides on digests
	every inp in pipelines(td.build_task.results) {
		count(subject.deny) == 0 with input as object.union(inp, {"image": promoted})
	}
}

test_repository_binding_denies_a_copy_elsewhere if {
	expected := {{
		"code": "subject.image_repository_allowed",
		"params": [promoted.ref, "registry.example.com/org/app:latest"],
		"term": promoted.ref,
	}}
	every inp in pipelines(td.build_task.results) {
		subject.deny == expected with input as object.union(inp, {"image": promoted})
			with data.rule_data.allowed_promotion_targets as []
		subject.deny == expected with input as object.union(inp, {"image": promoted})
			with data.rule_data.allowed_promotion_targets as ["quay.io/staging/", "quay.io/releases/app-evil"]

		# the build repository itself is always allowed
		count(subject.deny) == 0 with input as inp with data.rule_data.allowed_promotion_targets as []
	}
}

test_allowed_promotion_targets if {
	every targets in [
		["quay.io/releases/app"],
		["quay.io/releases/"],
		["quay.io/"],
		["QUAY.io:443/releases/"],
		["quay.io/other", "quay.io/releases/app"],
		"quay.io/releases/",
	] {
		every inp in pipelines(td.build_task.results) {
			count(subject.deny) == 0 with input as object.union(inp, {"image": promoted})
				with data.rule_data.allowed_promotion_targets as targets
		}
	}

	# targets are repositories by whole components; a target that is no repository matches nothing
	every targets in [["quay.io/rel/"], ["quay.io/releases/ap"], ["quay.io/Releases/"], [42]] {
		every inp in pipelines(td.build_task.results) {
			td.codes(subject.deny) == {"subject.image_repository_allowed"} with input as object.union(inp, {"image": promoted})
				with data.rule_data.allowed_promotion_targets as targets
		}
	}
}

test_repository_binding_reads_references_canonically if {
	# IMAGE_URL as the build task wrote it, the admitted reference as the gate names it
	every url in ["REGISTRY.example.com/org/app:latest", "registry.example.com:443/org/app", "registry.example.com/org/app@sha256:00000000000000000000000000000000"] {
		every inp in pipelines([{"name": "IMAGE_URL", "value": url}, {"name": "IMAGE_DIGEST", "value": td.digest}]) {
			count(subject.deny) == 0 with input as inp with data.rule_data.allowed_promotion_targets as []
		}
	}
}

test_repository_binding_denies_references_it_cannot_read if {
	bad := "registry.example.com/org/../evil/app"
	every inp in pipelines([{"name": "IMAGE_URL", "value": bad}, {"name": "IMAGE_DIGEST", "value": td.digest}]) {
		results := subject.deny with input as inp with data.rule_data.allowed_promotion_targets as []
		{"code": "subject.image_reference_canonical", "params": [bad], "term": bad} in results

		# without binding the repository is not read at all
		count(subject.deny) == 0 with input as inp
	}
}

test_docker_hub_names_are_normalised if {
	hub := {"ref": concat("@", ["index.docker.io/library/app", td.digest]), "digest": td.digest}
	every inp in pipelines([
		{"name": "IMAGE_URL", "value": "docker.io/app:1.0\n"},
		{"name": "IMAGE_DIGEST", "value": concat("", [td.digest, "\n"])},
	]) {
		count(subject.deny) == 0 with input as object.union(inp, {"image": hub})
	}
}

test_prefixed_pairs_and_several_images if {
	# one build task pushing two images; the admitted one is the second pair
	every inp in pipelines([
		{"name": "DEBUG_IMAGE_URL", "value": "registry.example.com/org/app-debug"},
		{"name": "DEBUG_IMAGE_DIGEST", "value": other_digest},
		{"name": "APP_IMAGE_URL", "value": "registry.example.com/org/app"},
		{"name": "APP_IMAGE_DIGEST", "value": td.digest},
	]) {
		count(subject.deny) == 0 with input as inp
	}
}

test_url_and_digest_of_different_pairs_do_not_match if {
	results := [
		{"name": "A_IMAGE_URL", "value": "registry.example.com/org/app"},
		{"name": "A_IMAGE_DIGEST", "value": other_digest},
		{"name": "B_IMAGE_URL", "value": "registry.example.com/org/other"},
		{"name": "B_IMAGE_DIGEST", "value": td.digest},
	]

	# the digest was built (as B, in another repository): bound to its build repository, the image's
	# repository is not the one B pushed to, whatever A's URL says
	every inp in pipelines(results) {
		count(subject.deny) == 0 with input as inp
		td.codes(subject.deny) == {"subject.image_repository_allowed"} with input as inp
			with data.rule_data.allowed_promotion_targets as []
	}
}

test_missing_admitted_image_denies if {
	every inp in pipelines(td.build_task.results) {
		subject.deny == {{
			"code": "subject.build_task_image_matches",
			"params": [
				"0", "(no image in the policy input)",
				reported("registry.example.com/org/app:latest", td.digest),
			],
			"term": "0",
		}} with input as object.remove(inp, ["image"])

		# a reference without a digest cannot be matched either
		td.codes(subject.deny) == {"subject.build_task_image_matches"} with input as object.union(inp, {"image": {"ref": td.image.ref, "digest": null}})
	}
}
