# METADATA
# title: Builder
# description: >-
#   Which builder produced each SLSA provenance statement. Builder IDs that are URLs are compared in
#   canonical form (lib.uri: scheme and host case, default port, userinfo, dot segments, escapes of
#   unreserved characters, trailing slash), so a spelling variant of an allowed ID is the same ID, and a
#   URL that cannot be canonicalised is denied.
package policy.release.builder

import data.lib
import data.lib.tekton
import data.lib.uri

# METADATA
# title: Builder ID found
# description: >-
#   Every SLSA provenance attestation must name the builder that produced it.
# custom:
#   short_name: builder_id_found
#   failure_msg: Provenance attestation %s does not name a builder
#   solution: >-
#     Make sure the build system fills in builder.id (SLSA v0.2) or runDetails.builder.id (SLSA v1.0).
deny contains result if {
	some i in tekton.provenance_indexes
	not _has_builder_id(input.attestations[i].statement)
	result := lib.result_helper_with_term(rego.metadata.chain(), [format_int(i, 10)], format_int(i, 10))
}

# A helper rather than `not is_string(tekton.builder_id(st))`: OPA evaluates a call nested in a negated
# expression before the negation, so a statement without a builder made that rule undefined (a silent pass).
_has_builder_id(st) if is_string(tekton.builder_id(st))

# METADATA
# title: Builder ID accepted
# description: >-
#   The builder named in each SLSA provenance attestation must be one of the builders the
#   organisation trusts (rule data allowed_builder_ids).
# custom:
#   short_name: builder_id_accepted
#   failure_msg: Builder ID %s is not one of the allowed builder IDs (%s)
#   solution: >-
#     Build with a trusted builder, or add its ID to the rule data key allowed_builder_ids.
deny contains result if {
	allowed := lib.rule_data("allowed_builder_ids")
	some i in tekton.provenance_indexes
	id := tekton.builder_id(input.attestations[i].statement)
	is_string(id)
	not _unreadable(id)
	not _accepted(id, lib.as_set(allowed))
	result := lib.result_helper_with_term(rego.metadata.chain(), [id, lib.list_text(allowed)], id)
}

# An else-chain: the canonical comparison only runs for an ID that is not listed as it is.
_accepted(id, allowed) if {
	id in allowed
} else if {
	canonical := uri.url(id)
	some a in allowed
	uri.url(a) == canonical
}

# An ID with a scheme is a URL, and must be one that can be canonicalised.
_unreadable(id) if {
	contains(id, "://")
	not uri.url(id)
}

# METADATA
# title: Builder ID can be canonicalised
# description: >-
#   A builder ID that is a URL (has a scheme) must be one that can be read unambiguously (lib.uri): no
#   ".." above the root, no escaped "/" or dot segment, no "@" in userinfo, no query or fragment. What
#   cannot be read cannot be compared with the allowed builder IDs.
# custom:
#   short_name: builder_id_canonical
#   failure_msg: Builder ID %s is a URL that cannot be canonicalised
#   solution: >-
#     Configure the builder with a plain URL as its ID (Chains: builder.id).
deny contains result if {
	some i in tekton.provenance_indexes
	id := tekton.builder_id(input.attestations[i].statement)
	is_string(id)
	_unreadable(id)
	result := lib.result_helper_with_term(rego.metadata.chain(), [id], id)
}
