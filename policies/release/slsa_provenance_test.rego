package policy.release.slsa_provenance_test

import rego.v1

import data.lib.testdata as td
import data.policy.release.slsa_provenance

defaults_text := "https://slsa.dev/provenance/v0.2, https://slsa.dev/provenance/v1"

test_slsa_provenance_passes if {
	count(slsa_provenance.deny) == 0 with input as td.good_v02
	count(slsa_provenance.deny) == 0 with input as td.good_v1
}

test_other_predicate_type_denies if {
	sbom := object.union(td.v1(td.tasks, td.v1_deps), {"predicateType": "https://cyclonedx.org/bom"})
	results := slsa_provenance.deny with input as td.input_of([td.v02(td.tasks, td.materials), sbom])
	results == {{
		"code": "slsa_provenance.predicate_type_accepted",
		"params": ["https://cyclonedx.org/bom", defaults_text],
		"term": "https://cyclonedx.org/bom",
	}}
}

test_missing_predicate_type_denies if {
	st := object.remove(td.v02(td.tasks, td.materials), ["predicateType"])
	results := slsa_provenance.deny with input as td.input_of([st])
	results == {{
		"code": "slsa_provenance.predicate_type_accepted",
		"params": ["(missing)", defaults_text],
		"term": "(missing)",
	}}
}

test_allowed_types_from_rule_data if {
	v1_only := ["https://slsa.dev/provenance/v1"]
	count(slsa_provenance.deny) == 0 with input as td.good_v1 with data.rule_data.allowed_predicate_types as v1_only
	results := slsa_provenance.deny with input as td.good_v02 with data.rule_data.allowed_predicate_types as v1_only
	results == {{
		"code": "slsa_provenance.predicate_type_accepted",
		"params": ["https://slsa.dev/provenance/v0.2", "https://slsa.dev/provenance/v1"],
		"term": "https://slsa.dev/provenance/v0.2",
	}}

	# none allowed: every attestation is denied
	td.codes(slsa_provenance.deny) == {"slsa_provenance.predicate_type_accepted"} with input as td.good_v1
		with data.rule_data.allowed_predicate_types as []
}
