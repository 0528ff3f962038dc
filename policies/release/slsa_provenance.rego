# METADATA
# title: SLSA provenance
# description: >-
#   Every attestation must be of a predicate type the policy understands.
package policy.release.slsa_provenance

import data.lib

# METADATA
# title: Predicate type accepted
# description: >-
#   Every attestation must carry a predicate type from the allowed list (by default SLSA provenance
#   v0.2 and v1.0), so nothing reaches the gate in a format its rules do not understand.
# custom:
#   short_name: predicate_type_accepted
#   failure_msg: Attestation predicate type %s is not an expected type (%s)
#   solution: >-
#     Produce SLSA provenance, or add the predicate type to the rule data key allowed_predicate_types.
deny contains result if {
	allowed := lib.rule_data("allowed_predicate_types")
	some att in input.attestations
	predicate_type := object.get(att, ["statement", "predicateType"], "(missing)")
	not predicate_type in lib.as_set(allowed)
	result := lib.result_helper_with_term(
		rego.metadata.chain(), [predicate_type, lib.list_text(allowed)],
		predicate_type,
	)
}
