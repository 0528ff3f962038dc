package lib.rule_data_test

import rego.v1

import data.lib

test_defaults_come_from_rule_data_yml if {
	lib.rule_data("allowed_builder_ids") == ["https://tekton.dev/chains/v2"]
	lib.rule_data("required_tasks") == [
		"git-clone",
		["trivy-scanner", "source-scan", "sast-scan"],
		["buildah", "kaniko", "build"],
	]
	lib.rule_data("trusted_task_bundles") == ["gcr.io/tekton-releases/catalog/upstream/"]
	lib.rule_data("allowed_source_repos") == []
}

test_unknown_key_reads_as_empty_list if {
	lib.rule_data("no_such_key") == []
}

test_override_replaces_one_key if {
	lib.rule_data("allowed_builder_ids") == ["https://builder.example/1"] with data.rule_data.allowed_builder_ids as ["https://builder.example/1"]
	lib.rule_data("trusted_task_bundles") == ["gcr.io/tekton-releases/catalog/upstream/"] with data.rule_data.allowed_builder_ids as ["https://builder.example/1"]
}

test_malformed_rule_data_document_reads_as_empty if {
	lib.rule_data("allowed_builder_ids") == [] with data.rule_data as "not an object"
	lib.rule_data("allowed_builder_ids") == [] with data.rule_data as ["https://tekton.dev/chains/v2"]
	lib.rule_data("allowed_builder_ids") == [] with data.rule_data as {}
}
