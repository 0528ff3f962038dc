package lib

# Result helpers shared by every rule package.
#
# A rule passes rego.metadata.chain() and gets its code from its own METADATA block, so the code can
# never drift from the documentation: "<package>.<short_name>", the package named below policy.release.
# The gate adds msg/title/description/solution from the same METADATA (gate.policy.metadata) and fills
# the %s placeholders of custom.failure_msg from params, in order. OPA's Wasm target plans
# rego.metadata.chain() at compile time, so both engines return the same results.

# A result without a term.
result_helper(chain, params) := {"code": _code(chain), "params": params}

# A result with a term: the thing the result is about (a task name, a material URI), as in Conforma.
result_helper_with_term(chain, params, term) := {"code": _code(chain), "params": params, "term": term}

# Total: a rule without a custom.short_name still reports a result, with a code the gate reports as
# undeclared, never an undefined and therefore silently passing rule.
_code(chain) := concat(".", [_package_name(chain[0].path), _short_name(chain[0])])

_package_name(path) := concat(".", array.slice(path, 2, count(path) - 1)) if {
	array.slice(path, 0, 2) == ["policy", "release"]
} else := concat(".", array.slice(path, 0, count(path) - 1))

_short_name(entry) := name if {
	name := entry.annotations.custom.short_name
	is_string(name)
} else := "metadata_missing"

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
