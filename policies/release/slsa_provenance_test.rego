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

with_build_type(st, build_type) := object.union(st, {"predicate": {"buildType": build_type}})

test_tekton_runs_of_every_kind_have_a_known_build_type if {
	count(slsa_provenance.deny) == 0 with input as td.input_of([with_build_type(td.v02([], td.materials), "tekton.dev/v1beta1/TaskRun")])
	count(slsa_provenance.deny) == 0 with input as td.input_of([with_build_type(td.v02([], td.materials), "https://tekton.dev/attestations/chains@v2")])
	plain := object.union(td.v1(td.tasks, td.v1_deps), {"predicate": {"buildDefinition": {"buildType": "https://tekton.dev/chains/v2/slsa"}}})
	count(slsa_provenance.deny) == 0 with input as td.input_of([plain])
}

test_provenance_no_task_rule_can_read_denies if {
	# next to a good PipelineRun statement: it is not checked, so it must not ride along
	other := with_build_type(td.v02([], td.materials), "https://github.com/slsa-framework/slsa-github-generator/container@v1")
	results := slsa_provenance.deny with input as td.input_of([td.v02(td.tasks, td.materials), other])
	results == {{
		"code": "slsa_provenance.build_type_known",
		"params": ["1", "https://github.com/slsa-framework/slsa-github-generator/container@v1"],
		"term": "1",
	}}

	v1_other := object.union(td.v1(td.tasks, td.v1_deps), {"predicate": {"buildDefinition": {"buildType": "https://example.org/build"}}})
	td.codes(slsa_provenance.deny) == {"slsa_provenance.build_type_known"} with input as td.input_of([v1_other])

	# a Tekton build type whose run spec names neither a pipeline nor a task
	st := td.v1(td.tasks, td.v1_deps)
	no_spec := object.union(object.remove(st, ["predicate"]), {"predicate": object.union(object.remove(st.predicate, ["buildDefinition"]), {"buildDefinition": object.union(object.remove(st.predicate.buildDefinition, ["externalParameters"]), {"externalParameters": {"runSpec": {}}})})})
	td.codes(slsa_provenance.deny) == {"slsa_provenance.build_type_known"} with input as td.input_of([no_spec])

	no_type := object.union(object.remove(td.v02([], td.materials), ["predicate"]), {"predicate": {"builder": {"id": "x"}}})
	slsa_provenance.deny == {{"code": "slsa_provenance.build_type_known", "params": ["0", "(missing)"], "term": "0"}} with input as td.input_of([no_type])
	slsa_provenance.deny == {{"code": "slsa_provenance.build_type_known", "params": ["0", "(not a string)"], "term": "0"}} with input as td.input_of([with_build_type(td.v02([], []), 7)])
}
