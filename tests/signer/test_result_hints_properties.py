"""Property tests: no result name or value makes the hint parsers raise, and whatever they return is
well-formed (images carry a normalised name and a valid sha256 digest; artifacts a valid digest)."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signer.image_refs import parse_digest
from signer.result_hints import (
    artifact_inputs,
    artifact_outputs,
    artifact_uri_pairs,
    git_material,
    oci_images,
    subjects_build_artifacts,
    subjects_v1,
)
from signer.run import Result, to_run

SUFFIXES = [
    "IMAGE_URL",
    "IMAGE_DIGEST",
    "IMAGES",
    "ARTIFACT_URI",
    "ARTIFACT_DIGEST",
    "ARTIFACT_OUTPUTS",
    "ARTIFACT_INPUTS",
    "CHAINS-GIT_URL",
    "CHAINS-GIT_COMMIT",
]
hexes = st.text("0123456789abcdefABCDEF", min_size=0, max_size=130)
digests = st.one_of(
    st.builds(
        lambda a, h: f"{a}:{h}", st.sampled_from(["sha256", "sha1", "SHA512", "md5", " sha384"]), hexes
    ),
    st.text(max_size=40),
)
refs = st.one_of(
    st.text(max_size=60), st.sampled_from(["busybox", "gcr.io/a/b:t", "localhost:5000/x", "A/B", "a@b"])
)
strings = st.one_of(st.text(max_size=80), refs, digests, st.builds(lambda r, d: f"{r}@{d}", refs, digests))
values = st.one_of(
    strings,
    st.lists(strings, max_size=3),
    st.dictionaries(
        st.sampled_from(["uri", "digest", "isBuildArtifact", "x"]),
        st.one_of(strings, st.sampled_from(["true", "false"])),
        max_size=4,
    ),
)
names = st.one_of(
    st.builds(lambda p, s: p + s, st.text(max_size=8), st.sampled_from(SUFFIXES)), st.text(max_size=20)
)
results = st.lists(st.builds(lambda n, v: (n, v), names, values), max_size=8)


def as_results(pairs) -> list[Result]:
    return [
        Result(n, "array" if isinstance(v, list) else "object" if isinstance(v, dict) else "string", v)
        for n, v in pairs
    ]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(results)
def test_hint_parsers_never_raise_and_return_valid_values(pairs):
    rs = as_results(pairs)
    w: list[str] = []
    for img in oci_images(rs, w):
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", img.digest)
        assert "/" in img.name and img.name == img.name.strip()
    for art in artifact_uri_pairs(rs, w) + [a for a, _ in artifact_outputs(rs, w)] + artifact_inputs(rs, w):
        ((alg, hexpart),) = art.digest.items()
        parse_digest(f"{alg}:{hexpart}")  # every emitted digest passes Chains' ParseDigest
        assert art.uri
    assert all("\n" not in x for x in w), "each warning is one stderr line"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(results, st.booleans())
def test_subject_builders_never_raise(pairs, deep):
    obj = {
        "apiVersion": "tekton.dev/v1",
        "kind": "TaskRun",
        "metadata": {"name": "t"},
        "spec": {"params": [{"name": n, "value": v} for n, v in pairs[:3]]},
        "status": {
            "results": [{"name": n, "value": v} for n, v in pairs],
            "steps": [{"name": "s", "results": [{"name": n, "value": v} for n, v in pairs[:2]]}],
        },
    }
    run = to_run(obj, source="prop")
    w: list[str] = []
    subjects_v1(run, [], deep_inspection=deep, warnings=w)
    subjects_build_artifacts(run, [], deep_inspection=deep, warnings=w)
    git_material(run, w)


@given(st.text(max_size=200))
def test_parse_digest_only_raises_value_error(text):
    try:
        alg, hexpart = parse_digest(text)
    except ValueError:
        return
    assert alg in {"sha1", "sha256", "sha384", "sha512"}
    assert re.fullmatch(r"[0-9a-f]+", hexpart)
