package lib.time

# RFC 3339 to nanoseconds. rego-cpp's time.parse_rfc3339_ns does not accept the "Z" zone designator
# that Chains writes, so it is rewritten to the equivalent "+00:00" first (docs/rego-engines.md).
parse_ns(ts) := time.parse_rfc3339_ns(concat("", [trim_suffix(ts, "Z"), "+00:00"])) if endswith(ts, "Z")

parse_ns(ts) := time.parse_rfc3339_ns(ts) if not endswith(ts, "Z")
