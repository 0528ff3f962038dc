"""Chains' rules for the SLSA v1.0 predicate that are not visible in a whole statement: feature flags
through the Go struct, and how resolved dependencies are de-duplicated."""

from __future__ import annotations

from signer.provenance import resolved_dependencies, slsa_v1_0_predicate
from signer.provenance.resolved_dependencies import Dependency


def test_feature_flags_follow_the_go_struct() -> None:
    warnings: list[str] = []
    got = slsa_v1_0_predicate.feature_flags(
        {
            "EnableAPIFields": "alpha",
            "enableTektonOCIBundles": False,
            "setSecurityContext": "yes",
            "coschedule": "",
            "unknown": True,
        },
        warnings,
        "tr.yaml: status.provenance.featureFlags",
    )
    # *bool keeps an explicit false; omitempty drops ""; a mistyped value is dropped with a warning.
    assert got == {"enableAPIFields": "alpha", "enableTektonOCIBundles": False}
    assert warnings and "setSecurityContext" in warnings[0]


def test_dedupe_keeps_config_entries_and_ignores_names() -> None:
    a = Dependency(uri="git+https://x.git", digest=(("sha1", "1" * 40),))
    deps = [
        Dependency(name="pipeline", uri=a.uri, digest=a.digest),
        Dependency(name="pipelineTask", uri=a.uri, digest=a.digest),  # same uri+digest: dropped
        Dependency(name="stepAction/s", uri=a.uri, digest=a.digest),  # always kept
        Dependency(name="inputs/result", uri=a.uri, digest=a.digest, content=b"x"),  # content differs
        Dependency(uri=a.uri, digest=a.digest),  # dropped
    ]
    assert [d.name for d in resolved_dependencies.dedupe(deps)] == [
        "pipeline",
        "stepAction/s",
        "inputs/result",
    ]
