package lib.image

# Image references the way go-containerregistry names them (Repository.Name()), because Chains names
# subjects that way while build tasks write whatever the user typed into IMAGE_URL.

docker_hub := "index.docker.io"

docker_hub_aliases := {"docker.io", "index.docker.io", "registry-1.docker.io"}

# "reg/repo[:tag][@sha256:...]" -> normalised repository, tag and digest dropped.
repo(ref) := normalise(strip_tag(split(trim_space(ref), "@")[0]))

strip_tag(name) := concat("/", array.concat(array.slice(parts, 0, n - 1), [split(parts[n - 1], ":")[0]])) if {
	parts := split(name, "/")
	n := count(parts)
}

normalise(name) := concat("/", [docker_hub, "library", name]) if {
	not contains(name, "/")
}

normalise(name) := concat("/", [docker_hub, name]) if {
	contains(name, "/")
	not has_registry(name)
}

normalise(name) := concat("/", [first, rest]) if {
	has_registry(name)
	first := split(name, "/")[0]
	not first in docker_hub_aliases
	rest := substring(name, count(first) + 1, -1)
}

normalise(name) := hub_path(rest) if {
	has_registry(name)
	first := split(name, "/")[0]
	first in docker_hub_aliases
	rest := substring(name, count(first) + 1, -1)
}

# Docker Hub paths without an organisation live under "library/".
hub_path(rest) := concat("/", [docker_hub, "library", rest]) if not contains(rest, "/")

hub_path(rest) := concat("/", [docker_hub, rest]) if contains(rest, "/")

has_registry(name) if {
	contains(name, "/")
	first := split(name, "/")[0]
	registry_like(first)
}

registry_like(first) if contains(first, ".")

registry_like(first) if contains(first, ":")

registry_like("localhost")
