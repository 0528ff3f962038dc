"""The embedded engine (rego-cpp) and a real OPA server give the same decisions."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from gate.policy import PolicyEngine, load_policy_set, make_engine
from policies import ROOT
from tests.gate.test_policy_library import tep0084_input
from tests.infra.opa import opa_server  # noqa: F401


def corpus() -> Iterator[tuple[str, dict[str, Any]]]:
    base = tep0084_input()
    yield "tep0084", base
    tasks = lambda doc: doc["attestations"][0]["statement"]["predicate"]["buildConfig"]["tasks"]  # noqa: E731
    doc = copy.deepcopy(base)
    tasks(doc)[0]["status"] = "Failed"
    yield "failed-task", doc
    doc = copy.deepcopy(base)
    del tasks(doc)[1]
    yield "no-scan", doc
    doc = copy.deepcopy(base)
    doc["attestations"][0]["statement"]["predicate"]["materials"][0]["digest"]["sha1"] = "main"
    yield "unpinned-commit", doc
    doc = copy.deepcopy(base)
    doc["attestations"][0]["statement"]["predicate"]["builder"]["id"] = "https://evil.example"
    yield "bad-builder", doc
    doc = copy.deepcopy(base)
    doc["image"]["digest"] = "sha256:" + "0" * 64
    yield "other-image", doc
    doc = copy.deepcopy(base)
    doc["attestations"][0]["statement"]["_type"] = "https://example.com/Statement"
    doc["attestations"][0]["statement"]["predicateType"] = "https://example.com/other"
    yield "unknown-types", doc
    yield "empty", {"image": {}, "attestations": []}


def summary(engine: PolicyEngine, doc: dict[str, Any]) -> tuple[list[dict], list[dict]]:
    evaluation = engine.evaluate(doc)
    return [r.to_dict() for r in evaluation.violations], [r.to_dict() for r in evaluation.warnings]


@pytest.fixture(scope="module")
def engines(opa_server: str) -> Iterator[tuple[PolicyEngine, PolicyEngine]]:  # noqa: F811
    policy_set = load_policy_set([ROOT])
    embedded = make_engine(policy_set)
    opa = make_engine(policy_set, engine="opa", opa_url=opa_server)
    yield embedded, opa
    embedded.close()
    opa.close()


@pytest.mark.parametrize(("name", "doc"), list(corpus()), ids=[n for n, _ in corpus()])
def test_engines_agree(engines: tuple[PolicyEngine, PolicyEngine], name: str, doc: dict[str, Any]) -> None:
    embedded, opa = engines
    assert summary(embedded, doc) == summary(opa, doc)
    if name != "tep0084":
        # every mutation of the sample adds at least one violation the sample did not have
        base_codes = {r["code"] for r in summary(embedded, tep0084_input())[0]}
        codes = {r["code"] for r in summary(embedded, doc)[0]}
        assert codes - base_codes, name
