package lib.image

# Image references the way go-containerregistry names them (Repository.Name()), because Chains names
# subjects that way while build tasks write whatever the user typed into IMAGE_URL: the registry host in
# lower case, its default port (443) dropped, Docker Hub as index.docker.io with official images under
# library/. Repository path components follow the distribution reference grammar (lower case, separated
# by ".", "_", "__" or dashes), so a reference that climbs with "..", carries an escape or upper case in
# its path, or names no repository at all is undefined, and the rules deny it.

_docker_hub := "index.docker.io"

_docker_hub_aliases := {"docker.io", "index.docker.io", "registry-1.docker.io"}

_max_length := 1024

# Lengths are counted apart from the patterns, which have no counted repetition ({n}, {n,m}): OPA's
# wasm compiles each pattern again on every evaluation, and a counted repetition made a pattern several
# times costlier to compile than the rest of the evaluation (docs/performance.md).

# repo(ref): "registry/path" of "registry/path[:tag][@digest]", tag and digest dropped.
repo(ref) := concat("/", location(ref))

# location(ref): [registry, path component, ...].
location(ref) := array.concat([registry], _hub_path(registry, path)) if {
	[registry, path] := _parts(ref)
}

# [registry, path components] of a reference; the prefix of repositories when it is an entry.
_parts(ref) := [registry, path] if {
	is_string(ref)
	count(ref) <= _max_length
	name := _name(trim_space(ref))
	components := split(name, "/")
	registry := _registry(components)
	path := _path(components)
	every c in path {
		regex.match(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`, c)
	}
}

# The name without tag and digest; undefined when either is malformed.
_name(ref) := name if {
	at := split(ref, "@")
	count(at) <= 2
	_valid_digest(at)
	components := split(at[0], "/")
	last := split(components[count(components) - 1], ":")
	count(last) <= 2
	_valid_tag(last)
	name := concat("/", array.concat(array.slice(components, 0, count(components) - 1), [last[0]]))
}

_valid_digest(at) if count(at) == 1

# algorithm ":" at least 32 hex digits; the pattern allows one ":" only, so split gives the two parts.
_valid_digest(at) if {
	regex.match(`^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-fA-F0-9]+$`, at[1])
	count(split(at[1], ":")[1]) >= 32
}

_valid_tag(last) if count(last) == 1

_valid_tag(last) if {
	regex.match(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`, last[1])
	count(last[1]) <= 128
}

# The first component names a registry when there is more than one and it looks like a host (a ".", a
# port or localhost), as in Docker's reading; otherwise the image is on Docker Hub.
# Two rules, not an else: a registry component that cannot be read leaves the reference undefined
# instead of falling back to Docker Hub.
_registry(components) := registry if {
	_has_registry(components)
	registry := _canonical_registry(components[0])
}

_registry(components) := _docker_hub if not _has_registry(components)

_has_registry(components) if {
	count(components) > 1
	_host_like(components[0])
}

_host_like(first) if contains(first, ".")

_host_like(first) if contains(first, ":")

_host_like("localhost")

_path(components) := array.slice(components, 1, count(components)) if {
	_has_registry(components)
} else := components

# A host in lower case without a trailing dot, and a port unless it is HTTPS's 443.
_canonical_registry(text) := _docker_hub if {
	lower(text) in _docker_hub_aliases
} else := host if {
	parts := split(lower(text), ":")
	count(parts) == 1
	host := _host(parts[0])
} else := registry if {
	parts := split(lower(text), ":")
	count(parts) == 2
	host := _host(parts[0])
	regex.match(`^[0-9]+$`, parts[1])
	count(parts[1]) <= 5
	port := to_number(parts[1])
	port >= 1
	port <= 65535
	registry := _with_port(host, port)
}

_host(text) := host if {
	host := trim_suffix(text, ".")
	regex.match(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$`, host)
}

_with_port(host, port) := host if port == 443

else := concat(":", [host, format_int(port, 10)])

# Docker Hub paths without an organisation live under "library/".
_hub_path(registry, path) := array.concat(["library"], path) if {
	registry == _docker_hub
	count(path) == 1
} else := path

# An allow-list entry: {"location": [...], "subtree": bool}, matched with lib.uri.matches. An entry
# ending in "/" admits every repository strictly below it ("quay.io/org/" admits "quay.io/org/app",
# never "quay.io/org-evil/app"); "quay.io/" admits the whole registry; any other entry admits exactly
# that repository. Undefined for an entry that is not a repository or registry.
entry(text) := {"location": loc, "subtree": true} if {
	is_string(text)
	endswith(text, "/")
	body := trim_suffix(text, "/")
	loc := _entry_location(body)
}

entry(text) := {"location": location(text), "subtree": false} if {
	is_string(text)
	not endswith(text, "/")
}

# A prefix, not a repository: "docker.io/tasks/" is the tasks organisation, not library/tasks.
_entry_location(body) := [_canonical_registry(body)] if {
	not contains(body, "/")
	_host_like(body)
} else := array.concat([registry], path) if {
	[registry, path] := _parts(body)
}
