package policy.release.attestation_type_test

import rego.v1

import data.lib.testdata as td
import data.policy.release.attestation_type

with_type(type) := object.union(td.v02(td.tasks, td.materials), {"_type": type})

test_in_toto_statements_pass if {
	count(attestation_type.deny) == 0 with input as td.good_v02
	count(attestation_type.deny) == 0 with input as td.good_v1
}

test_unknown_statement_type_denies if {
	results := attestation_type.deny with input as td.input_of([td.v1(td.tasks, td.v1_deps), with_type("https://in-toto.io/Statement/v9")])
	results == {{
		"code": "attestation_type.known_attestation_type",
		"params": ["https://in-toto.io/Statement/v9"],
		"term": "https://in-toto.io/Statement/v9",
	}}
}

test_missing_statement_type_denies if {
	no_type := object.remove(td.v02(td.tasks, td.materials), ["_type"])
	results := attestation_type.deny with input as td.input_of([no_type])
	results == {{"code": "attestation_type.known_attestation_type", "params": ["(missing)"], "term": "(missing)"}}

	# an attestation without a statement at all
	no_statement := {"image": td.image, "attestations": [{"signatures": []}]}
	attestation_type.deny == results with input as no_statement
}

test_known_types_from_rule_data if {
	v1_only := ["https://in-toto.io/Statement/v1"]
	count(attestation_type.deny) == 0 with input as td.good_v1 with data.rule_data.known_attestation_types as v1_only
	results := attestation_type.deny with input as td.good_v02 with data.rule_data.known_attestation_types as v1_only
	results == {{
		"code": "attestation_type.known_attestation_type",
		"params": ["https://in-toto.io/Statement/v0.1"],
		"term": "https://in-toto.io/Statement/v0.1",
	}}

	# no known types configured: nothing is known
	td.codes(attestation_type.deny) == {"attestation_type.known_attestation_type"} with input as td.good_v1
		with data.rule_data.known_attestation_types as []
}

test_no_attestations_denies if {
	expected := {{"code": "attestation_type.attestations_provided", "params": []}}
	attestation_type.deny == expected with input as td.input_of([])
	attestation_type.deny == expected with input as {"image": td.image}
	attestation_type.deny == expected with input as {}
}

test_attestations_that_are_not_a_list_deny if {
	# a string or object has a length but holds no attestation any rule could read
	expected := {{"code": "attestation_type.attestations_provided", "params": []}}
	attestation_type.deny == expected with input as {"image": td.image, "attestations": "not a list"}
	results := attestation_type.deny with input as {"image": td.image, "attestations": {"0": {}}}
	{"code": "attestation_type.attestations_provided", "params": []} in results
}
