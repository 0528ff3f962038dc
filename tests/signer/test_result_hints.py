"""Type-hint rules, one test per rule. Expected values are derived by hand from Chains' rules
(pkg/artifacts/signable.go, structured.go, formats/slsa/extract, internal/material, attest)."""

from __future__ import annotations

import pytest

from signer.image_refs import parse_digest
from signer.result_hints import (
    Artifact,
    OCIImage,
    append_subjects,
    artifact_inputs,
    artifact_outputs,
    artifact_uri_pairs,
    git_material,
    is_build_artifact_result,
    oci_images,
    subjects_build_artifacts,
    subjects_v1,
)
from signer.run import Result, to_run

A = "a" * 64
B = "b" * 64
SHA1 = "0123456789abcdef0123456789abcdef01234567"


def R(name: str, value) -> Result:
    t = "array" if isinstance(value, list) else "object" if isinstance(value, dict) else "string"
    return Result(name, t, value)


# ---------------------------------------------------------------- IMAGE_URL / IMAGE_DIGEST


def test_image_pair_with_prefix_and_trimmed_values():
    w: list[str] = []
    got = oci_images([R("first-IMAGE_URL", " gcr.io/foo/bar\n"), R("first-IMAGE_DIGEST", f"sha256:{A}\n")], w)
    assert got == [OCIImage("gcr.io/foo/bar", f"sha256:{A}")]
    assert w == []


def test_tag_in_image_url_is_dropped():
    got = oci_images([R("IMAGE_URL", "gcr.io/foo/bar:v1.2"), R("IMAGE_DIGEST", f"sha256:{A}")], [])
    assert got == [OCIImage("gcr.io/foo/bar", f"sha256:{A}")]


def test_docker_hub_names_are_normalised():
    got = oci_images(
        [
            R("IMAGE_URL", "busybox"),
            R("IMAGE_DIGEST", f"sha256:{A}"),
            R("x-IMAGE_URL", "docker.io/me/app"),
            R("x-IMAGE_DIGEST", f"sha256:{B}"),
        ],
        [],
    )
    assert [i.name for i in got] == ["index.docker.io/library/busybox", "index.docker.io/me/app"]


@pytest.mark.parametrize(
    "digest", [f"sha256:{A.upper()}", f"sha256:{A[:63]}", f"sha256:{A}0", f"sha512:{A}{A}", A, f"SHA256:{A}"]
)
def test_image_digest_must_be_sha256_64_lowercase_hex(digest):
    w: list[str] = []
    assert oci_images([R("IMAGE_URL", "gcr.io/foo/bar"), R("IMAGE_DIGEST", digest)], w) == []
    assert len(w) == 1 and "IMAGE_URL/IMAGE_DIGEST" in w[0] and "ignored" in w[0]


def test_image_url_without_digest_warns_and_is_skipped():
    w: list[str] = []
    assert oci_images([R("IMAGE_URL", "gcr.io/foo/bar")], w) == []
    assert w == ["result IMAGE_URL has no matching IMAGE_DIGEST; ignored"]


def test_empty_and_non_string_image_results_are_skipped():
    w: list[str] = []
    assert oci_images([R("IMAGE_URL", "  "), R("IMAGE_DIGEST", ["sha256:" + A])], w) == []
    assert any("empty" in x for x in w) and any("array" in x for x in w)


def test_images_deduplicated_by_normalised_reference():
    got = oci_images(
        [
            R("IMAGE_URL", "busybox:1"),
            R("IMAGE_DIGEST", f"sha256:{A}"),
            R("IMAGES", f"index.docker.io/library/busybox@sha256:{A}"),
        ],
        [],
    )
    assert got == [OCIImage("index.docker.io/library/busybox", f"sha256:{A}")]


# ---------------------------------------------------------------- IMAGES


def test_images_split_on_comma_and_newline_with_blanks():
    value = f"gcr.io/aa@sha256:{A},\n  gcr.io/bb:tag@sha256:{B}\n,\n\n"
    assert oci_images([R("IMAGES", value)], []) == [
        OCIImage("gcr.io/aa", f"sha256:{A}"),
        OCIImage("gcr.io/bb", f"sha256:{B}"),
    ]


def test_images_entry_without_digest_is_skipped_with_warning():
    w: list[str] = []
    assert oci_images([R("IMAGES", f"gcr.io/aa:latest, gcr.io/bb@sha256:{B}")], w) == [
        OCIImage("gcr.io/bb", f"sha256:{B}")
    ]
    assert len(w) == 1 and "'gcr.io/aa:latest'" in w[0]


def test_images_only_matches_exact_name():
    assert oci_images([R("MY_IMAGES", f"gcr.io/aa@sha256:{A}")], []) == []


# ---------------------------------------------------------------- ParseDigest / ARTIFACT_URI


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (f"sha256:{A}", ("sha256", A)),
        (f" SHA256 : {A} ", ("sha256", A)),  # alg lower-cased, both parts trimmed
        (f"sha384:{'c' * 96}", ("sha384", "c" * 96)),
        (f"sha512:{'d' * 128}", ("sha512", "d" * 128)),
        (f"sha1:{SHA1}", ("sha1", SHA1)),
    ],
)
def test_parse_digest_accepts(value, expected):
    assert parse_digest(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        f"sha256:{A[:-1]}",
        f"sha384:{A}",
        f"sha512:{'d' * 127}",
        f"sha1:{SHA1[:-1]}",
        f"sha1:{SHA1.upper()}",
        f"md5:{'e' * 32}",
        "sha256",
        f"sha256:{A}:x",
        "",
        f"sha256:{A.upper()}",
    ],
)
def test_parse_digest_rejects(value):
    with pytest.raises(ValueError):
        parse_digest(value)


def test_artifact_uri_pair_keeps_uri_and_digest_as_written():
    got = artifact_uri_pairs(
        [R("pkg-ARTIFACT_URI", "pkg:npm/x@1"), R("pkg-ARTIFACT_DIGEST", f"SHA1:{SHA1}")], []
    )
    # Chains validates with ParseDigest but splits the raw string for the subject: alg case kept.
    assert got == [Artifact("pkg:npm/x@1", {"SHA1": SHA1})]


def test_artifact_uri_sha1_must_be_40_hex():
    w: list[str] = []
    assert artifact_uri_pairs([R("ARTIFACT_URI", "u"), R("ARTIFACT_DIGEST", "sha1:abc")], w) == []
    assert "sha1 must be 40 lowercase hex" in w[0]


def test_artifact_uri_unknown_algorithm_rejected():
    w: list[str] = []
    assert artifact_uri_pairs([R("ARTIFACT_URI", "u"), R("ARTIFACT_DIGEST", "md5:" + "e" * 32)], w) == []
    assert "unsupported algorithm 'md5'" in w[0]


# ---------------------------------------------------------------- ARTIFACT_OUTPUTS / ARTIFACT_INPUTS


def test_artifact_outputs_with_build_artifact_flag():
    results = [
        R("a-ARTIFACT_OUTPUTS", {"uri": "gcr.io/x", "digest": f"sha256:{A}", "isBuildArtifact": "true"}),
        R("b-ARTIFACT_OUTPUTS", {"uri": "pkg:pypi/y@1", "digest": f"sha256:{B}", "isBuildArtifact": "false"}),
        R("c-ARTIFACT_OUTPUTS", {"uri": "pkg:pypi/z@1", "digest": f"sha256:{B}", "isBuildArtifact": "True"}),
    ]
    assert artifact_outputs(results, []) == [
        (Artifact("gcr.io/x", {"sha256": A}), True),
        (Artifact("pkg:pypi/y@1", {"sha256": B}), False),
        (Artifact("pkg:pypi/z@1", {"sha256": B}), False),  # only the exact string "true" counts
    ]
    assert [is_build_artifact_result(r) for r in results] == [True, False, False]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"digest": f"sha256:{A}"}, "has no uri"),
        ({"uri": "x", "digest": ""}, "has no digest"),
        ({"uri": "x", "digest": "sha256:"}, "needs 64 hex"),
        ("gcr.io/x@sha256:" + A, "must be an object"),
    ],
)
def test_artifact_outputs_invalid_are_skipped_with_warning(value, message):
    w: list[str] = []
    assert artifact_outputs([R("ARTIFACT_OUTPUTS", value)], w) == []
    assert len(w) == 1 and message in w[0]


def test_build_artifact_output_that_is_an_image_is_also_an_oci_image():
    results = [
        R("ARTIFACT_OUTPUTS", {"uri": "abc", "digest": f"sha256:{A}", "isBuildArtifact": "true"}),
        R("x-ARTIFACT_OUTPUTS", {"uri": "gcr.io/nb", "digest": f"sha256:{B}"}),
    ]
    assert oci_images(results, []) == [OCIImage("index.docker.io/library/abc", f"sha256:{A}")]


def test_artifact_inputs_use_parsed_digest():
    got = artifact_inputs([R("src-ARTIFACT_INPUTS", {"uri": "https://x/y", "digest": f" SHA1 :{SHA1}"})], [])
    assert got == [Artifact("https://x/y", {"sha1": SHA1})]  # no git+ rewrite for inputs


# ---------------------------------------------------------------- CHAINS-GIT_*


def _tr(params=None, defaults=None, results=None, kind="TaskRun"):
    spec_key = "taskSpec" if kind == "TaskRun" else "pipelineSpec"
    return to_run(
        {
            "apiVersion": "tekton.dev/v1",
            "kind": kind,
            "metadata": {"name": "r"},
            "spec": {"params": params or []},
            "status": {spec_key: {"params": defaults or []}, "results": results or []},
        },
        source="t",
    )


def test_git_url_rewritten_with_git_prefix_and_suffix():
    run = _tr(
        params=[
            {"name": "CHAINS-GIT_URL", "value": "https://github.com/o/r"},
            {"name": "CHAINS-GIT_COMMIT", "value": SHA1},
        ]
    )
    assert git_material(run, []) == Artifact("git+https://github.com/o/r.git", {"sha1": SHA1})
    run = _tr(
        params=[
            {"name": "CHAINS-GIT_URL", "value": "git+https://github.com/o/r.git"},
            {"name": "CHAINS-GIT_COMMIT", "value": SHA1},
        ]
    )
    assert git_material(run, []).uri == "git+https://github.com/o/r.git"


def test_git_precedence_default_then_params_then_results():
    defaults = [
        {"name": "CHAINS-GIT_URL", "default": "https://d"},
        {"name": "CHAINS-GIT_COMMIT", "default": "1" * 40},
    ]
    params = [{"name": "CHAINS-GIT_COMMIT", "value": "2" * 40}]
    results = [{"name": "CHAINS-GIT_URL", "value": "https://r"}]
    for kind in ("TaskRun", "PipelineRun"):
        assert git_material(_tr(params, defaults, kind=kind), []) == Artifact(
            "git+https://d.git", {"sha1": "2" * 40}
        )
        got = git_material(_tr(params, defaults, results, kind=kind), [])
        assert got == Artifact("git+https://r.git", {"sha1": "2" * 40})


def test_git_commit_is_not_validated_but_warned():
    w: list[str] = []
    run = _tr(
        params=[
            {"name": "CHAINS-GIT_URL", "value": "https://x"},
            {"name": "CHAINS-GIT_COMMIT", "value": "main"},
        ]
    )
    assert git_material(run, w) == Artifact("git+https://x.git", {"sha1": "main"})
    assert "not a 40-hex sha1" in w[0]


def test_git_needs_commit_and_pipelinerun_needs_url():
    w: list[str] = []
    assert git_material(_tr(params=[{"name": "CHAINS-GIT_URL", "value": "https://x"}]), w) is None
    assert "without a non-empty CHAINS-GIT_COMMIT" in w[0]
    pr = _tr(params=[{"name": "CHAINS-GIT_COMMIT", "value": SHA1}], kind="PipelineRun")
    assert git_material(pr, []) is None
    # Chains quirk: a TaskRun only checks the commit, the URL becomes "git+.git".
    tr = _tr(params=[{"name": "CHAINS-GIT_COMMIT", "value": SHA1}])
    assert git_material(tr, []) == Artifact("git+.git", {"sha1": SHA1})


# ---------------------------------------------------------------- AppendSubjects and subject order


def test_append_subjects_merges_on_shared_digest_only():
    first = [Artifact("x", {"sha256": A})]
    merged = append_subjects(first, [Artifact("x", {"sha256": A, "sha512": "f" * 128})])
    assert merged == [Artifact("x", {"sha256": A, "sha512": "f" * 128})]
    assert append_subjects(first, [Artifact("x", {"sha256": B})]) == [
        Artifact("x", {"sha256": A}),
        Artifact("x", {"sha256": B}),
    ]
    assert append_subjects(first, [Artifact("y", {"sha256": A})])[1] == Artifact("y", {"sha256": A})
    assert first == [Artifact("x", {"sha256": A})], "input list not modified"


def test_subjects_v1_order_images_then_uri_pairs_then_outputs():
    run = _tr(
        results=[
            {"name": "o-ARTIFACT_OUTPUTS", "value": {"uri": "file.tgz", "digest": f"sha256:{B}"}},
            {"name": "ARTIFACT_URI", "value": "pkg:x"},
            {"name": "ARTIFACT_DIGEST", "value": f"sha256:{A}"},
            {"name": "IMAGES", "value": f"gcr.io/img@sha256:{A}"},
        ]
    )
    got = subjects_v1(run, [], deep_inspection=False, warnings=[])
    assert [s.uri for s in got] == ["gcr.io/img", "pkg:x", "file.tgz"]


def test_subjects_v1_build_artifact_image_named_twice():
    # uri "abc" is a subject as written (ARTIFACT_OUTPUTS) and, normalised, as an OCI image.
    run = _tr(
        results=[
            {
                "name": "ARTIFACT_OUTPUTS",
                "value": {"uri": "abc", "digest": f"sha256:{A}", "isBuildArtifact": "true"},
            }
        ]
    )
    got = subjects_v1(run, [], deep_inspection=False, warnings=[])
    assert [s.uri for s in got] == ["index.docker.io/library/abc", "abc"]
    got = subjects_build_artifacts(run, [], deep_inspection=False, warnings=[])
    assert [s.uri for s in got] == ["abc", "index.docker.io/library/abc"]


def test_subjects_build_artifacts_skip_uri_pairs_and_non_build_outputs():
    run = _tr(
        results=[
            {"name": "ARTIFACT_URI", "value": "pkg:x"},
            {"name": "ARTIFACT_DIGEST", "value": f"sha256:{A}"},
            {"name": "ARTIFACT_OUTPUTS", "value": {"uri": "f", "digest": f"sha256:{A}"}},
        ]
    )
    assert subjects_build_artifacts(run, [], deep_inspection=False, warnings=[]) == []


# ---------------------------------------------------------------- ggcr name.NewDigest (weak validation)


@pytest.mark.parametrize(
    ("ref", "name"),
    [
        # The repository (after the registry, before library/ is added) needs 2..255 characters.
        ("gcr.io/a", None),
        ("a", None),
        ("ab", "index.docker.io/library/ab"),
        # Only the characters are checked, not a component grammar.
        ("gcr.io/a__b", "gcr.io/a__b"),
        ("gcr.io/-x.", "gcr.io/-x."),
        ("gcr.io/Foo", None),
        # A tag with a character outside [A-Za-z0-9_.-] fails NewTag; the ':' then fails the repository.
        ("gcr.io/foo:ta g", None),
        ("foo:", None),
        ("localhost:5000/x/y:v1", "localhost:5000/x/y"),
        # docker.io is rewritten to index.docker.io; other registries are kept as written.
        ("docker.io/foo", "index.docker.io/library/foo"),
        ("GCR.io/foo", "GCR.io/foo"),
        ("localhost/foo", "localhost/foo"),
        ("my_reg.io:80/foo", "my_reg.io:80/foo"),
        # The registry must be a URL authority: a port is digits only.
        ("reg.io:abc/foo", None),
    ],
)
def test_image_names_follow_ggcr_new_digest(ref: str, name: str | None) -> None:
    got = oci_images([R("IMAGES", f"{ref}@sha256:{A}")], [])
    assert got == ([OCIImage(name, f"sha256:{A}")] if name else [])


def test_image_digest_must_be_lowercase_sha256() -> None:
    assert oci_images([R("IMAGES", f"gcr.io/foo@sha256:{A.upper()}")], []) == []
    assert oci_images([R("IMAGES", f"gcr.io/foo@sha512:{A}{A}")], []) == []
