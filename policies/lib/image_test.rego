package lib.image_test

import rego.v1

import data.lib.image
import data.lib.uri

# Build tasks report IMAGE_URL however the user typed it; the admitted image arrives as Chains names it.
# Both must reduce to the same repository or the subject check denies a legitimate build.

test_docker_hub_official_images_live_under_library if {
	image.repo("ubuntu") == "index.docker.io/library/ubuntu"
	image.repo("ubuntu:22.04") == "index.docker.io/library/ubuntu"
	image.repo("docker.io/ubuntu") == "index.docker.io/library/ubuntu"
	image.repo("registry-1.docker.io/ubuntu:22.04") == "index.docker.io/library/ubuntu"
	image.repo("docker.io/library/ubuntu:22.04") == "index.docker.io/library/ubuntu"
	image.repo("index.docker.io/library/ubuntu") == "index.docker.io/library/ubuntu"
}

test_docker_hub_organisation_images if {
	image.repo("org/app:1.0") == "index.docker.io/org/app"
	image.repo("docker.io/org/app") == "index.docker.io/org/app"
	image.repo("index.docker.io/org/app:1.0") == "index.docker.io/org/app"
}

test_other_registries_keep_their_path if {
	image.repo("registry.example.com/org/app") == "registry.example.com/org/app"
	image.repo("quay.io/org/team/app:v1") == "quay.io/org/team/app"

	# a docker.io-looking segment that is not the registry is just a path element
	image.repo("quay.io/docker.io/app") == "quay.io/docker.io/app"
}

test_tag_digest_and_whitespace_are_dropped if {
	digest := concat("", ["sha256:", concat("", [x | some _ in numbers.range(1, 64); x := "a"])])
	image.repo(concat("@", ["registry.example.com/org/app", digest])) == "registry.example.com/org/app"
	image.repo(concat("@", ["registry.example.com/org/app:v1", digest])) == "registry.example.com/org/app"

	# echo in a build task leaves a newline behind
	image.repo(" registry.example.com/org/app:latest\n") == "registry.example.com/org/app"
}

test_registry_ports_are_not_tags if {
	image.repo("localhost:5000/app:tag") == "localhost:5000/app"
	image.repo("registry.example.com:5000/org/app") == "registry.example.com:5000/org/app"
	image.repo("localhost/app") == "localhost/app"
}

test_different_repositories_stay_different if {
	image.repo("org/app") != image.repo("quay.io/org/app")
	image.repo("registry.example.com/org/app") != image.repo("registry.example.com/org/app-evil")
	image.repo("library/app") != image.repo("quay.io/library/app")
}

test_registry_host_case_and_default_port if {
	image.repo("Quay.IO/org/app") == "quay.io/org/app"
	image.repo("quay.io:443/org/app:v1") == "quay.io/org/app"
	image.repo("QUAY.io:0443/org/app") == "quay.io/org/app"
	image.repo("Docker.IO/org/app") == "index.docker.io/org/app"
	image.repo("registry.example.com:5000/org/app") != image.repo("registry.example.com/org/app")
}

test_references_that_name_no_repository_are_undefined if {
	every ref in [
		"quay.io/Org/app", # path components are lower case
		"quay.io/org/../evil/app",
		"quay.io/org/./app",
		"quay.io//org/app",
		"quay.io/org/app%2Fx",
		"quay.io/org/app:",
		"quay.io/org/app:tag:x",
		"quay.io/org/app@sha256:e4c2916f",
		"quay.io/org/app@sha256:zz",
		"quay.io/org/app@a@sha256:e4c2916f25ce2d42ec7016c3dc3392e527442c307f43aae3ea63f4622ee5cfe4",
		"quay.io:https/org/app",
		"quay_io.example:5000:1/app",
		"oci://quay.io/org/app",
		"quay.io/org/app/",
		"-app",
		"",
		7,
	] {
		not image.repo(ref)
	}
}

test_entries if {
	image.entry("quay.io/org/") == {"location": ["quay.io", "org"], "subtree": true}
	image.entry("Quay.io/") == {"location": ["quay.io"], "subtree": true}
	image.entry("docker.io/") == {"location": ["index.docker.io"], "subtree": true}
	image.entry("docker.io/tasks/") == {"location": ["index.docker.io", "tasks"], "subtree": true}
	image.entry("quay.io/org/app") == {"location": ["quay.io", "org", "app"], "subtree": false}
	image.entry("ubuntu") == {"location": ["index.docker.io", "library", "ubuntu"], "subtree": false}
	not image.entry("quay.io/Org/")
	not image.entry(["quay.io/"])
}

test_entries_match_whole_components if {
	org := image.entry("quay.io/org/")
	uri.matches(image.location("quay.io/org/app@sha256:e4c2916f25ce2d42ec7016c3dc3392e527442c307f43aae3ea63f4622ee5cfe4"), org)
	uri.matches(image.location("QUAY.IO:443/org/team/app:1"), org)
	not uri.matches(image.location("quay.io/org-evil/app"), org)
	not uri.matches(image.location("quay.io/org"), org)
	not uri.matches(image.location("quay.io:8443/org/app"), org)
	registry := image.entry("quay.io/")
	uri.matches(image.location("quay.io/any/app"), registry)
	not uri.matches(image.location("quay.io.evil.example/any/app"), registry)
}

# The lengths the patterns leave to count(): a tag of 1 to 128 characters, a digest of at least 32 hex
# digits, a port of at most five digits.
test_tag_digest_and_port_bounds if {
	tag128 := concat("", ["a", concat("", [c | some _ in numbers.range(1, 127); c := "b"])])
	count(tag128) == 128
	image.repo(concat(":", ["quay.io/org/app", tag128])) == "quay.io/org/app"
	not image.repo(concat(":", ["quay.io/org/app", concat("", [tag128, "c"])]))
	image.repo("quay.io/org/app:_1") == "quay.io/org/app"
	not image.repo("quay.io/org/app:.1")
	not image.repo("quay.io/org/app:-1")

	image.repo("quay.io/org/app@sha256:0123456789abcdef0123456789ABCDEF") == "quay.io/org/app"
	not image.repo("quay.io/org/app@sha256:0123456789abcdef0123456789abcde")
	not image.repo("quay.io/org/app@sha256:0123456789abcdef0123456789abcdeg")
	not image.repo("quay.io/org/app@sha256:sha256:0123456789abcdef0123456789abcdef")

	image.repo("quay.io:65535/org/app") == "quay.io:65535/org/app"
	image.repo("quay.io:08443/org/app") == "quay.io:8443/org/app"
	not image.repo("quay.io:008443/org/app")
	not image.repo("quay.io:65536/org/app")
}
