package policy.release.builder_test

import rego.v1

import data.lib.testdata as td
import data.policy.release.builder

chains := "https://tekton.dev/chains/v2"

evil := "https://builder.example/evil"

v02_builder(id) := object.union(td.v02(td.tasks, td.materials), {"predicate": {"builder": {"id": id}}})

v1_builder(id) := object.union(td.v1(td.tasks, td.v1_deps), {"predicate": {"runDetails": {"builder": {"id": id}}}})

# The statement without predicate[key]. object.remove and object.union only: the wasm test engine has no
# json.patch.
without(st, key) := object.union(object.remove(st, ["predicate"]), {"predicate": object.remove(st.predicate, [key])})

test_trusted_builder_passes if {
	count(builder.deny) == 0 with input as td.good_v02
	count(builder.deny) == 0 with input as td.good_v1
}

test_missing_builder_id_denies if {
	expected := {{"code": "builder.builder_id_found", "params": ["0"], "term": "0"}}
	builder.deny == expected with input as td.input_of([without(td.v02(td.tasks, td.materials), "builder")])
	builder.deny == expected with input as td.input_of([without(td.v1(td.tasks, td.v1_deps), "runDetails")])

	# a builder id that is not a string is no builder id
	builder.deny == expected with input as td.input_of([v1_builder(42)])
}

test_missing_builder_id_names_the_attestation if {
	no_builder := without(td.v02(td.tasks, td.materials), "builder")
	results := builder.deny with input as td.input_of([td.v1(td.tasks, td.v1_deps), no_builder])
	results == {{"code": "builder.builder_id_found", "params": ["1"], "term": "1"}}
}

test_statement_that_is_not_provenance_needs_no_builder if {
	sbom := {"_type": "https://in-toto.io/Statement/v1", "predicateType": "https://cyclonedx.org/bom", "predicate": {}}
	count(builder.deny) == 0 with input as td.input_of([td.v1(td.tasks, td.v1_deps), sbom])
}

test_untrusted_builder_denies if {
	expected := {{"code": "builder.builder_id_accepted", "params": [evil, chains], "term": evil}}
	builder.deny == expected with input as td.input_of([v02_builder(evil)])
	builder.deny == expected with input as td.input_of([v1_builder(evil)])
}

test_allowed_builder_ids_from_rule_data if {
	allowed := ["https://builder.example/b", evil]
	count(builder.deny) == 0 with input as td.input_of([v1_builder(evil)]) with data.rule_data.allowed_builder_ids as allowed
	results := builder.deny with input as td.good_v02 with data.rule_data.allowed_builder_ids as allowed
	results == {{
		"code": "builder.builder_id_accepted",
		"params": [chains, "https://builder.example/b, https://builder.example/evil"],
		"term": chains,
	}}

	# no builder allowed: every builder is denied
	none := builder.deny with input as td.good_v1 with data.rule_data.allowed_builder_ids as []
	none == {{"code": "builder.builder_id_accepted", "params": [chains, ""], "term": chains}}
}

test_builder_ids_compare_in_canonical_form if {
	every id in [
		"HTTPS://Tekton.Dev/chains/v2",
		"https://tekton.dev:443/chains/v2/",
		"https://tekton.dev/chains/./v2",
		"https://tekton.dev/chains/x/../v2",
		"https://tekton.dev/%63hains/v2",
	] {
		count(builder.deny) == 0 with input as td.input_of([v02_builder(id)])
		count(builder.deny) == 0 with input as td.input_of([v1_builder(id)])
	}

	# the allow-list entry is read the same way
	count(builder.deny) == 0 with input as td.good_v02 with data.rule_data.allowed_builder_ids as ["https://TEKTON.dev/chains/v2/"]

	# IDs that are not URLs compare as they are
	count(builder.deny) == 0 with input as td.input_of([v02_builder("tekton-chains")]) with data.rule_data.allowed_builder_ids as ["tekton-chains"]
	td.codes(builder.deny) == {"builder.builder_id_accepted"} with input as td.input_of([v02_builder("Tekton-Chains")]) with data.rule_data.allowed_builder_ids as ["tekton-chains"]
}

test_builder_ids_that_leave_the_allowed_one_deny if {
	every id in [
		"https://tekton.dev/chains/v2/../../evil",
		"https://tekton.dev/chains/v3",
		"https://tekton.dev@evil.example/chains/v2",
		"https://tekton.dev:8443/chains/v2",
		"http://tekton.dev/chains/v2",
		"https://tekton.dev/chains/v2.evil",
	] {
		builder.deny == {{"code": "builder.builder_id_accepted", "params": [id, chains], "term": id}} with input as td.input_of([v02_builder(id)])
	}
}

test_builder_id_urls_that_cannot_be_canonicalised_deny if {
	every id in [
		"https://tekton.dev/../chains/v2",
		"https://tekton.dev/chains%2Fv2",
		"https://a@tekton.dev@evil/chains/v2",
		"https://tekton.dev/chains/v2?x=1",
		"https://tekton dev/chains/v2",
	] {
		builder.deny == {{"code": "builder.builder_id_canonical", "params": [id], "term": id}} with input as td.input_of([v1_builder(id)])
	}
}
