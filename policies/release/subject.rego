# METADATA
# title: Subject
# description: >-
#   Ties the pipeline's tasks to the image being admitted: a build task reported the image's digest.
package policy.release.subject

import data.lib
import data.lib.image
import data.lib.tekton

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
#   The IMAGE_URL and IMAGE_DIGEST results of a build task in each PipelineRun attestation must name the
#   image being admitted: the same digest, and the same repository (tag ignored, Docker Hub names
#   normalised).
# custom:
#   short_name: build_task_image_matches
#   failure_msg: No build task of PipelineRun attestation %s built %s (they report %s)
#   solution: >-
#     Check that the image was built by this pipeline; the provenance may belong to another image.
deny contains result if {
	some i in tekton.pipelinerun_indexes
	count(_built_images[i]) > 0
	not _image_built(_built_images[i])
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

_image_built(built) if {
	digest := input.image.digest
	is_string(digest)
	repo := image.repo(input.image.ref)
	some b in built
	b.digest == digest
	image.repo(b.url) == repo
}
