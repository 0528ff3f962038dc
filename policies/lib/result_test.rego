package lib.result_test

import rego.v1

import data.lib

# rego.metadata.chain() as OPA returns it for a rule of package policy.release.pkg with a METADATA block.
chain(path, annotations) := [{"path": path, "annotations": annotations}, {"path": array.slice(path, 0, count(path) - 1)}]

rule_chain := chain(["policy", "release", "pkg", "deny"], {"scope": "rule", "custom": {"short_name": "rule"}})

test_result_helpers_take_the_code_from_metadata if {
	lib.result_helper(rule_chain, ["a"]) == {"code": "pkg.rule", "params": ["a"]}
	lib.result_helper_with_term(rule_chain, ["a", "b"], "a") == {"code": "pkg.rule", "params": ["a", "b"], "term": "a"}

	# nested packages keep every component below policy.release
	nested := chain(["policy", "release", "a", "b", "warn"], {"custom": {"short_name": "x"}})
	lib.result_helper(nested, []).code == "a.b.x"

	# a package outside policy.release is named in full
	lib.result_helper(chain(["custom", "pkg", "deny"], {"custom": {"short_name": "x"}}), []).code == "custom.pkg.x"
}

test_result_without_short_name_still_reports if {
	# undefined would silently drop the violation; the gate reports the unknown code as such
	lib.result_helper([{"path": ["policy", "release", "pkg", "deny"]}], []).code == "pkg.metadata_missing"
	lib.result_helper(chain(["policy", "release", "pkg", "deny"], {"custom": {"short_name": 5}}), []).code == "pkg.metadata_missing"
	lib.result_helper(chain(["policy", "release", "pkg", "deny"], {"title": "t"}), []).code == "pkg.metadata_missing"
}

# METADATA
# custom:
#   short_name: from_metadata
test_the_real_chain_of_an_annotated_rule if {
	# this test's own METADATA: the chain OPA (and its Wasm planner) hand to a rule
	lib.result_helper(rego.metadata.chain(), []).code == "lib.result_test.from_metadata"
}

test_as_set if {
	lib.as_set("git-clone") == {"git-clone"}
	lib.as_set(["buildah", "kaniko", "buildah"]) == {"buildah", "kaniko"}
	lib.as_set([]) == set()

	# anything else is no alternatives at all, so nothing can match it
	lib.as_set(7) == set()
	lib.as_set({"name": "buildah"}) == set()
	lib.as_set(null) == set()
}

test_describe if {
	lib.describe("git-clone") == "git-clone"
	lib.describe(["kaniko", "buildah"]) == "buildah or kaniko"
	lib.describe([]) == ""
	lib.describe(["buildah", 1]) == "(malformed rule data)"
	lib.describe({"a": "b"}) == "(malformed rule data)"
}

test_list_text if {
	lib.list_text(["b", "a"]) == "a, b"
	lib.list_text([]) == ""
	lib.list_text("a") == "(malformed rule data)"
	lib.list_text([1]) == "(malformed rule data)"
}

test_strings_only if {
	lib.strings_only(["a", "b"])
	lib.strings_only([])
	not lib.strings_only(["a", 1])
	not lib.strings_only("a")
	not lib.strings_only({"a"})
}
