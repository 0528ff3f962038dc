package lib.result_test

import rego.v1

import data.lib

test_result_helpers if {
	lib.result_helper("pkg.rule", ["a"]) == {"code": "pkg.rule", "params": ["a"]}
	lib.result_helper_with_term("pkg.rule", ["a", "b"], "a") == {"code": "pkg.rule", "params": ["a", "b"], "term": "a"}
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

test_prefix_allowed_exact_entry if {
	lib.prefix_allowed("quay.io/org/task", {"quay.io/org/task"})
	not lib.prefix_allowed("quay.io/org/task-evil", {"quay.io/org/task"})
	not lib.prefix_allowed("quay.io/org/task/sub", {"quay.io/org/task"})
}

test_prefix_allowed_subtree_entry if {
	lib.prefix_allowed("quay.io/org/task", {"quay.io/org/"})
	lib.prefix_allowed("quay.io/org/team/task", {"quay.io/other/", "quay.io/org/"})
	not lib.prefix_allowed("quay.io/organisation/task", {"quay.io/org/"})
	not lib.prefix_allowed("quay.io/org", {"quay.io/org/"})
}

test_prefix_allowed_nothing_allowed if {
	not lib.prefix_allowed("quay.io/org/task", set())
	not lib.prefix_allowed("", set())
}
