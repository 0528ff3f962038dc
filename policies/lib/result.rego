package lib

# Result helpers shared by every rule package.
#
# rego-cpp (the embedded engine) has no rego.metadata.chain(), so a rule names its own code here and the
# gate adds msg/title/description/solution from the rule's METADATA block, parsed out of the source by
# gate.policy.metadata. Both engines therefore return the same bare results (docs/rego-engines.md).

# A result without a term. params fill the %s placeholders of the rule's custom.failure_msg in order.
result_helper(code, params) := {"code": code, "params": params}

# A result with a term: the thing the result is about (a task name, a material URI), as in Conforma.
result_helper_with_term(code, params, term) := {"code": code, "params": params, "term": term}

# A rule-data value that is either one string or a list of alternatives, as a set.
as_set(value) := {value} if is_string(value)

as_set(value) := {v | some v in value} if is_array(value)

as_set(value) := set() if {
	not is_string(value)
	not is_array(value)
}

# The same value as text for a message: alternatives joined with " or ", sorted for stable output.
# Total, so malformed rule data still yields a result instead of an undefined (silently passing) rule.
describe(value) := value if {
	is_string(value)
} else := concat(" or ", sort(value)) if {
	strings_only(value)
} else := "(malformed rule data)"

# A list of strings for a message: sorted, joined with ", ".
list_text(value) := concat(", ", sort(value)) if {
	strings_only(value)
} else := "(malformed rule data)"

strings_only(value) if {
	is_array(value)
	every v in value {
		is_string(v)
	}
}

# True when value equals one of the prefixes, or lies under one that ends with "/". A bare prefix such as
# "quay.io/org/task" must not admit "quay.io/org/task-evil", so only a trailing "/" opens a subtree.
prefix_allowed(value, prefixes) if {
	some p in prefixes
	value == p
}

prefix_allowed(value, prefixes) if {
	some p in prefixes
	endswith(p, "/")
	startswith(value, p)
}
