# METADATA
# title: SLSA provenance
# description: >-
#   Every attestation must be of a predicate type the policy understands.
package policy.release.slsa_provenance

import data.lib
import data.lib.tekton

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

# METADATA
# title: Build type known
# description: >-
#   Every SLSA provenance statement must record a Tekton PipelineRun or TaskRun the task rules can read
#   (the SLSA v0.2 build types of Tekton Chains, or SLSA v1.0 https://tekton.dev/chains/v2/slsa and
#   slsa-tekton with a pipeline or task run spec). The trusted-task rules check every statement about the
#   image; one they cannot read must not ride along with one they can.
# custom:
#   short_name: build_type_known
#   failure_msg: Provenance attestation %s records a build of type %s, which the task rules cannot read
#   solution: >-
#     Attest builds with Tekton Chains or the provgate signer, or remove the other provenance from the
#     image.
deny contains result if {
	some i in tekton.unknown_build_indexes
	predicate := object.get(input.attestations[i].statement, "predicate", {})
	build_type := object.get(predicate, "buildType", object.get(predicate, ["buildDefinition", "buildType"], "(missing)"))
	text := format_int(i, 10)
	result := lib.result_helper_with_term(rego.metadata.chain(), [text, _text(build_type)], text)
}

_text(value) := value if is_string(value)

else := "(not a string)"
