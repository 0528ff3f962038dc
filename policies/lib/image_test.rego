package lib.image_test

import rego.v1

import data.lib.image

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
