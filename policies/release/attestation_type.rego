# METADATA
# title: Attestation type
# description: >-
#   Every attestation the gate verified must be an in-toto Statement of a known version, and there
#   must be at least one: a decision over nothing is a denial.
package policy.release.attestation_type

import data.lib

# METADATA
# title: Known attestation type
# description: >-
#   Every attestation must be an in-toto Statement of a known version, so that the other rules read
#   its fields the way its producer meant them.
# custom:
#   short_name: known_attestation_type
#   failure_msg: Unknown attestation type %s
#   solution: >-
#     Produce attestations as in-toto Statements (v0.1 or v1), or add the type to the
#     rule data key known_attestation_types.
deny contains result if {
	some att in input.attestations
	type := object.get(att, ["statement", "_type"], "(missing)")
	not type in lib.as_set(lib.rule_data("known_attestation_types"))
	result := lib.result_helper_with_term(rego.metadata.chain(), [type], type)
}

# METADATA
# title: Attestations provided
# description: >-
#   The image must carry at least one verified attestation. Without one no other rule has anything to
#   check, and an empty policy input must never pass.
# custom:
#   short_name: attestations_provided
#   failure_msg: No verified attestation was provided for the image
#   solution: >-
#     Sign the build provenance (for example with the provgate signer or Tekton Chains) and store it
#     with the image.
deny contains result if {
	not _has_attestations
	result := lib.result_helper(rego.metadata.chain(), [])
}

# A list, not merely something with a length: a string or object there holds nothing any rule iterates,
# so every other rule would find nothing to deny.
_has_attestations if {
	is_array(input.attestations)
	count(input.attestations) > 0
}
