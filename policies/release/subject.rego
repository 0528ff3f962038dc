# METADATA
# title: Subject
# description: >-
#   Ties the pipeline's tasks to the image being admitted: a build task reported the image's digest.
#
#   The gate decides on digests: by default the same digest in another repository is admitted, so a
#   copy promoted by a release flow (same digest, attestations copied along) passes like the original.
#   Repository binding is an explicit choice: the rule data key allowed_promotion_targets lists the
#   repositories an image may be admitted from besides the one its build task pushed to (entries as for
#   trusted_task_bundles: a repository, or a prefix ending in "/"). The shipped default ["*"] admits any
#   repository; [] binds every image to the repository its build pushed it to.
package policy.release.subject

import data.lib
import data.lib.image
import data.lib.tekton
import data.lib.uri

# The images the build tasks of PipelineRun attestation i say they pushed: every pair of results
# <prefix>IMAGE_URL / <prefix>IMAGE_DIGEST of one task (Chains' type hint).
_built_images[i] := [{"task": task.name, "url": url, "digest": digest} |
	some task in tekton.tasks[i]
	some r in task.results
	endswith(r.name, "IMAGE_URL")
	prefix := trim_suffix(r.name, "IMAGE_URL")
	url := tekton.result_value(task, r.name)
	digest := tekton.result_value(task, concat("", [prefix, "IMAGE_DIGEST"]))
] if {
	some i in tekton.pipelinerun_indexes
}

# METADATA
# title: Build task image results found
# description: >-
#   A task of each PipelineRun must report the image it built as IMAGE_URL and IMAGE_DIGEST results;
#   otherwise nothing ties the pipeline's tasks to the image being admitted.
# custom:
#   short_name: build_task_image_results_found
#   failure_msg: No task of PipelineRun attestation %s reports IMAGE_URL and IMAGE_DIGEST results
#   solution: >-
#     Use a build task that writes the pushed image to IMAGE_URL and IMAGE_DIGEST results.
deny contains result if {
	some i in tekton.pipelinerun_indexes
	count(tekton.tasks[i]) > 0
	count(_built_images[i]) == 0
	text := format_int(i, 10)
	result := lib.result_helper_with_term(rego.metadata.chain(), [text], text)
}

# METADATA
# title: Build task built this image
# description: >-
#   The IMAGE_DIGEST result of a build task in each PipelineRun attestation must be the digest of the
#   image being admitted (its IMAGE_URL names where the build pushed it: see image_repository_allowed).
# custom:
#   short_name: build_task_image_matches
#   failure_msg: No build task of PipelineRun attestation %s built %s (they report %s)
#   solution: >-
#     Check that the image was built by this pipeline; the provenance may belong to another image.
deny contains result if {
	some i in tekton.pipelinerun_indexes
	count(_built_images[i]) > 0
	count(_builds_of_image[i]) == 0
	reported := concat(", ", sort([concat("@", [b.url, b.digest]) | some b in _built_images[i]]))
	text := format_int(i, 10)
	result := lib.result_helper_with_term(rego.metadata.chain(), [text, _admitted_text, reported], text)
}

# Total: `not is_string(input.image.ref)` would be undefined (not true) without an image, and the deny
# above would silently not fire.
_admitted_text := ref if {
	ref := object.get(input, ["image", "ref"], null)
	is_string(ref)
} else := "(no image in the policy input)"

# The build results of attestation i that name the admitted image's digest.
_builds_of_image[i] := [b |
	some b in _built_images[i]
	b.digest == digest
] if {
	some i in tekton.pipelinerun_indexes
	digest := object.get(input, ["image", "digest"], null)
	is_string(digest)
}

_builds_of_image[i] := [] if {
	some i in tekton.pipelinerun_indexes
	not is_string(object.get(input, ["image", "digest"], null))
}

# METADATA
# title: Image repository allowed
# description: >-
#   Unless allowed_promotion_targets holds "*" (the default), the image must be admitted from the
#   repository its build task pushed it to (IMAGE_URL, tag ignored) or from a repository the rule data
#   key allowed_promotion_targets allows. Repositories are compared in canonical form (registry host
#   case, default port, Docker Hub names).
# custom:
#   short_name: image_repository_allowed
#   failure_msg: Image %s was built as %s, and its repository is not an allowed promotion target
#   solution: >-
#     Admit the image from the repository it was built in, or add the repository it was copied to to the
#     rule data key allowed_promotion_targets.
deny contains result if {
	_binding
	some i in tekton.pipelinerun_indexes
	builds := _builds_of_image[i]
	count(builds) > 0
	admitted := image.location(input.image.ref)
	not _repository_allowed(admitted, builds)
	built := concat(", ", sort({b.url | some b in builds}))
	result := lib.result_helper_with_term(rego.metadata.chain(), [input.image.ref, built], input.image.ref)
}

# METADATA
# title: Image reference can be canonicalised
# description: >-
#   While images are bound to repositories (allowed_promotion_targets without "*"), the admitted image
#   and the IMAGE_URL of the build task that built it must be image references that can be read
#   unambiguously: a registry host, lower-case path components, no dot segments or escapes.
# custom:
#   short_name: image_reference_canonical
#   failure_msg: Image reference %s cannot be canonicalised
#   solution: >-
#     Write IMAGE_URL as a plain image reference (registry/repository[:tag]).
deny contains result if {
	_binding
	some i in tekton.pipelinerun_indexes
	some ref in array.concat([_admitted_text], [b.url | some b in _builds_of_image[i]])
	not image.location(ref)
	result := lib.result_helper_with_term(rego.metadata.chain(), [ref], ref)
}

_targets := lib.as_set(lib.rule_data("allowed_promotion_targets"))

_binding if not "*" in _targets

_target_entries := {e | some t in _targets; e := image.entry(t)}

_repository_allowed(admitted, builds) if {
	some b in builds
	image.location(b.url) == admitted
}

_repository_allowed(admitted, _) if {
	some e in _target_entries
	uri.matches(admitted, e)
}
