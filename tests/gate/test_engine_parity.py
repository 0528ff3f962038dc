"""The embedded (wasm) engine decides exactly like a real OPA server.

The corpus covers each rule's allow and deny case on SLSA v0.2 and SLSA v1.0 (slsa-tekton) statements,
the bundled sample runs through signer.provenance, the real Chains statements of
tests/gate/real_provenance/, and policy sets with other rule data (trusted bundles and source
repositories set, images bound to their build repository), each against its own OPA server because an
OPA engine owns its server's policies and data.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gate.policy import PolicyEngine, PolicySet, load_policy_set, make_engine
from policies import ROOT
from signer import samples
from signer.provenance import Options, generate
from signer.run import child_taskruns, to_run
from tests.gate.test_policy_library import tep0084_input
from tests.gate.test_policy_real_provenance import FIXTURES, load
from tests.infra.opa import running_opa

TEKTON = "https://tekton.dev/chains/v2/slsa-tekton"
Doc = dict[str, Any]


def statement_input(statement: Doc) -> Doc:
    digest = "sha256:" + statement["subject"][0]["digest"]["sha256"]
    return {
        "image": {"ref": f"{statement['subject'][0]['name']}@{digest}", "digest": digest},
        "attestations": [{"statement": statement, "signatures": [{"keyid": "k", "sig": "c2ln"}]}],
    }


def sample_input(name: str, fmt: str, build_type: str | None = None) -> Doc:
    pr_obj, tr_objs = samples.load(name)
    pr = to_run(pr_obj, source=name)
    children = child_taskruns(pr, [to_run(t, source=name) for t in tr_objs])
    opts = Options(format=fmt, deep_inspection=True, build_type=build_type)
    return statement_input(generate(pr, children, opts).statement)


def statement(doc: Doc) -> Doc:
    return doc["attestations"][0]["statement"]


def v02_tasks(doc: Doc) -> list[Doc]:
    return statement(doc)["predicate"]["buildConfig"]["tasks"]


def edit_taskruns(doc: Doc, edit: Callable[[list[Doc]], None]) -> Doc:
    """A copy of a SLSA v1.0 input with its child TaskRuns (base64 pipelineTask content) edited."""
    doc = copy.deepcopy(doc)
    deps = statement(doc)["predicate"]["buildDefinition"]["resolvedDependencies"]
    task_deps = [d for d in deps if d.get("name") == "pipelineTask"]
    runs = [json.loads(base64.b64decode(d["content"])) for d in task_deps]
    edit(runs)
    for dep in task_deps:
        deps.remove(dep)
    for dep in deps:
        dep.pop("content", None)  # pipeline/task definitions: no rule reads them
    for run in runs:
        content = base64.b64encode(json.dumps(run).encode()).decode()
        deps.append({"name": "pipelineTask", "uri": "oci://example/task", "content": content})
    return doc


def by_task(name: str, runs: list[Doc]) -> Doc:
    return next(r for r in runs if r["metadata"]["labels"].get("tekton.dev/pipelineTask") == name)


def slim(runs: list[Doc]) -> None:
    """Child TaskRuns without step scripts and with plain strings (the other resolvedDependencies lose
    their content in edit_taskruns)."""
    for run in runs:
        run["status"].pop("taskSpec", None)
        for c in run["status"].get("conditions", []):
            c.pop("message", None)
        for r in run["status"].get("results", []):
            r["value"] = r["value"].strip() if isinstance(r["value"], str) else r["value"]


def mutate(base: Doc, edit: Callable[[Doc], None]) -> Doc:
    doc = copy.deepcopy(base)
    edit(doc)
    return doc


def corpus() -> Iterator[tuple[str, Doc]]:
    base = tep0084_input()
    yield "tep0084", base
    yield "failed-task", mutate(base, lambda d: v02_tasks(d)[0].update(status="Failed"))
    yield "no-scan", mutate(base, lambda d: v02_tasks(d).pop(1))
    yield "no-tasks", mutate(base, lambda d: v02_tasks(d).clear())
    yield "tasks-not-a-list", mutate(base, lambda d: statement(d)["predicate"].update(buildConfig={}))

    def unpin(d: Doc) -> None:
        statement(d)["predicate"]["materials"][0]["digest"]["sha1"] = "main"

    yield "unpinned-commit", mutate(base, unpin)
    yield (
        "foreign-source",
        mutate(
            base,
            lambda d: statement(d)["predicate"]["materials"][0].update(uri="git+https://evil.example/x.git"),
        ),
    )
    yield "no-git-source", mutate(base, lambda d: statement(d)["predicate"].update(materials=[]))
    yield (
        "bad-builder",
        mutate(base, lambda d: statement(d)["predicate"]["builder"].update(id="https://evil")),
    )
    yield "no-builder-id", mutate(base, lambda d: statement(d)["predicate"]["builder"].pop("id"))
    yield "builder-id-number", mutate(base, lambda d: statement(d)["predicate"]["builder"].update(id=42))
    yield "other-image", mutate(base, lambda d: d["image"].update(digest="sha256:" + "0" * 64))
    yield "no-image", mutate(base, lambda d: d.pop("image"))

    def no_image_results(d: Doc) -> None:
        for t in v02_tasks(d):
            t["results"] = [r for r in t.get("results", []) if not r["name"].endswith(("URL", "DIGEST"))]

    yield "no-image-results", mutate(base, no_image_results)
    yield "unknown-predicate", mutate(base, lambda d: statement(d).update(predicateType="https://example/p"))

    def unknown_types(d: Doc) -> None:
        statement(d)["_type"] = "https://example.com/Statement"
        statement(d)["predicateType"] = "https://example.com/other"

    yield "unknown-types", mutate(base, unknown_types)
    yield "empty", {"image": {}, "attestations": []}
    yield "two-attestations", {**base, "attestations": base["attestations"] * 2}

    for name in samples.SAMPLES:
        yield f"sample-{name}-v0.2", sample_input(name, "slsa/v1")
        yield f"sample-{name}-v1.0", sample_input(name, "slsa/v2alpha4", TEKTON)
    yield "sample-v1.0-slsa-build-type", sample_input("tep0084-pipelinerun", "slsa/v2alpha4")

    v1 = sample_input("tep0084-pipelinerun", "slsa/v2alpha4", TEKTON)
    yield "v1.0-slim", edit_taskruns(v1, slim)

    def failed(runs: list[Doc]) -> None:
        slim(runs)
        by_task("source-scan", runs)["status"]["conditions"][0]["status"] = "False"

    yield "v1.0-failed-task", edit_taskruns(v1, failed)

    def scan_after_build(runs: list[Doc]) -> None:
        slim(runs)
        by_task("source-scan", runs)["status"]["startTime"] = "2024-05-14T23:00:00Z"
        by_task("source-scan", runs)["status"]["completionTime"] = "2024-05-14T23:30:00Z"

    yield "v1.0-scan-after-build", edit_taskruns(v1, scan_after_build)

    def bad_times(runs: list[Doc]) -> None:
        slim(runs)
        for run in runs:
            run["status"]["startTime"] = "yesterday"
            run["status"]["completionTime"] = "2024-13-01T00:00:00Z"

    yield "v1.0-unparseable-times", edit_taskruns(v1, bad_times)

    def odd_times(runs: list[Doc]) -> None:
        # Valid for OPA (Go's RFC 3339 reader): offsets, a one-digit hour, a comma fraction.
        slim(runs)
        for run in runs:
            run["status"]["startTime"] = "2024-05-14T1:00:00,5+01:00"
            run["status"]["completionTime"] = "2024-05-14T09:00:00.123456789123-02:30"

    yield "v1.0-odd-times", edit_taskruns(v1, odd_times)

    def garbage(d: Doc) -> None:
        deps = statement(d)["predicate"]["buildDefinition"]["resolvedDependencies"]
        deps.append({"name": "pipelineTask", "uri": "oci://x", "content": "not base64!"})
        deps.append({"name": "pipelineTask", "uri": "oci://x", "content": base64.b64encode(b"[1]").decode()})

    yield "v1.0-unreadable-records", mutate(edit_taskruns(v1, slim), garbage)
    yield "v1.0-script-escapes", v1
    yield "v1.0-exponent", edit_taskruns(v1, lambda runs: (slim(runs), runs[0].update(n=1e21)))
    yield from hardening_cases(base, v1)
    for name in sorted(FIXTURES):
        yield f"real-{name}", load(name)


PINNED = "@sha256:" + "e4c2916f25ce2d42ec7016c3dc3392e527442c307f43aae3ea63f4622ee5cfe4"


def hardening_cases(base: Doc, v1: Doc) -> Iterator[tuple[str, Doc]]:
    """Inputs for the rules of issue 10 and 11: URLs that leave an allowed location, task references and
    graphs no real run produces, other statements next to the PipelineRun one, a promoted copy."""

    def source(uri: str) -> Callable[[Doc], None]:
        return lambda d: statement(d)["predicate"]["materials"][0].update(uri=uri)

    yield (
        "source-dot-segments",
        mutate(base, source("git+https://github.com/lcarva/../../evil.example/x.git")),
    )
    yield "source-encoded-dots", mutate(base, source("git+https://github.com/lcarva/%2e%2e/x.git"))
    yield (
        "source-userinfo",
        mutate(base, source("git+https://github.com@evil.example/lcarva/minimal-container")),
    )
    yield "source-scp-like", mutate(base, source("git+git@GitHub.com:lcarva/minimal-container.git"))
    yield (
        "builder-dot-segments",
        mutate(
            base, lambda d: statement(d)["predicate"]["builder"].update(id="https://tekton.dev/../chains/v2")
        ),
    )
    yield (
        "builder-spelling",
        mutate(
            base,
            lambda d: statement(d)["predicate"]["builder"].update(id="HTTPS://Tekton.dev:443/chains/v2/"),
        ),
    )

    def git_resolver(label: bool) -> Callable[[Doc], None]:
        def edit(d: Doc) -> None:
            task = v02_tasks(d)[0]
            task["ref"] = {
                "resolver": "git",
                "params": [
                    {"name": "url", "value": "https://github.com/tektoncd/catalog.git"},
                    {"name": "revision", "value": "a" * 40},
                    {"name": "pathInRepo", "value": "task/git-clone/0.9/git-clone.yaml"},
                ],
            }
            if label:
                task.setdefault("invocation", {})["environment"] = {
                    "labels": {"tekton.dev/task": "git-clone"}
                }

        return edit

    yield "git-resolver-labelled", mutate(base, git_resolver(True))
    yield "git-resolver-unlabelled", mutate(base, git_resolver(False))

    def ambiguous(d: Doc) -> None:
        v02_tasks(d)[1]["ref"] = {
            "resolver": "bundles",
            "bundle": "quay.io/evil/trivy" + PINNED,
            "params": [
                {"name": "bundle", "value": "gcr.io/tekton-releases/catalog/upstream/trivy-scanner" + PINNED}
            ],
        }

    yield "ambiguous-ref", mutate(base, ambiguous)

    def unreadable_bundle(d: Doc) -> None:
        v02_tasks(d)[1]["ref"]["bundle"] = "gcr.io/tekton-releases/catalog/upstream/../evil/trivy" + PINNED

    yield "bundle-dot-segments", mutate(base, unreadable_bundle)
    yield "cycle", mutate(base, lambda d: v02_tasks(d)[0].update(after=["image-build"]))
    yield (
        "duplicate-names",
        mutate(
            base, lambda d: v02_tasks(d).append({**v02_tasks(d)[1], "ref": {"name": "fake", "kind": "Task"}})
        ),
    )
    yield "matrix-names", mutate(base, lambda d: v02_tasks(d).append(copy.deepcopy(v02_tasks(d)[1])))
    yield "skipped-dependency", mutate(base, lambda d: v02_tasks(d)[2]["after"].append("skipped-by-when"))

    def other_statement(build_type: str) -> Callable[[Doc], None]:
        def edit(d: Doc) -> None:
            other = copy.deepcopy(statement(d))
            other["predicate"]["buildType"] = build_type
            other["predicate"]["buildConfig"] = {"steps": []}
            other["predicate"]["invocation"]["environment"] = {"labels": {"tekton.dev/task": "kaniko"}}
            d["attestations"].append({"statement": other, "signatures": []})

        return edit

    yield "taskrun-next-to-pipelinerun", mutate(base, other_statement("tekton.dev/v1beta1/TaskRun"))
    yield "unknown-build-type", mutate(base, other_statement("https://example.org/build@v1"))

    def promoted(d: Doc) -> None:
        d["image"]["ref"] = "quay.io/releases/min@" + d["image"]["digest"]

    yield "promoted-copy", mutate(base, promoted)

    def odd_image_url(d: Doc) -> None:
        for task in v02_tasks(d):
            for result in task.get("results", []):
                if result["name"] == "IMAGE_URL":
                    result["value"] = "registry.example.com/minimal-container/../min:latest"

    yield "image-url-dot-segments", mutate(base, odd_image_url)
    yield (
        "v1.0-duplicate-names",
        edit_taskruns(
            v1,
            lambda runs: (
                slim(runs),
                runs.append({**copy.deepcopy(runs[0]), "spec": {"taskRef": {"name": "x"}}}),
            ),
        ),
    )


CORPUS = list(corpus())
# Rule data variants, each on its own OPA server (an OPA engine owns its server's policies and data).
DATA_VARIANTS = {
    "strict": {
        "rule_data": {
            "trusted_task_bundles": ["gcr.io/tekton-releases/catalog/upstream/"],
            "trusted_task_git_repos": ["https://github.com/tektoncd/catalog"],
            "allowed_source_repos": ["https://github.com/"],
            "allowed_promotion_targets": [],
            "task_order": [{"before": "git-clone", "after": ["trivy-scanner", "golangci-lint"]}],
        }
    },
    "unset": {
        "rule_data": {
            "trusted_task_bundles": [],
            "allowed_source_repos": [],
            "required_tasks": [],
            "task_order": [],
        }
    },
}


def summary(engine: PolicyEngine, doc: Doc) -> tuple[list[dict], list[dict]]:
    evaluation = engine.evaluate(doc)
    return [r.to_dict() for r in evaluation.violations], [r.to_dict() for r in evaluation.warnings]


def check_parity(engines: dict[str, PolicyEngine], name: str, doc: Doc) -> tuple[list[dict], list[dict]]:
    expected = summary(engines["opa"], doc)
    assert summary(engines["wasm"], doc) == expected, name
    return expected


def open_engines(policy_set: PolicySet, opa_url: str) -> dict[str, PolicyEngine]:
    return {
        "opa": make_engine(policy_set, engine="opa", opa_url=opa_url),
        "wasm": make_engine(policy_set, engine="wasm"),
    }


def own_opa_server(workdir: Path) -> contextlib.AbstractContextManager[str]:
    """An OPA server for one fixture: an OPA engine owns its server's policies and data."""
    return running_opa(workdir)


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, PolicyEngine]]:
    with own_opa_server(tmp_path_factory.mktemp("opa-default")) as url:
        opened = open_engines(load_policy_set([ROOT]), url)
        yield opened
        for engine in opened.values():
            engine.close()


@pytest.fixture(scope="module", params=sorted(DATA_VARIANTS))
def variant_engines(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, PolicyEngine]]:
    workdir = tmp_path_factory.mktemp(f"opa-{request.param}")
    data = workdir / "rule-data.json"
    data.write_text(json.dumps(DATA_VARIANTS[request.param]))
    with own_opa_server(workdir) as url:
        opened = open_engines(load_policy_set([ROOT], [Path(data)]), url)
        yield opened
        for engine in opened.values():
            engine.close()


@pytest.mark.parametrize(("name", "doc"), CORPUS, ids=[n for n, _ in CORPUS])
def test_engines_agree(engines: dict[str, PolicyEngine], name: str, doc: Doc) -> None:
    check_parity(engines, name, doc)


@pytest.mark.parametrize(("name", "doc"), CORPUS, ids=[n for n, _ in CORPUS])
def test_engines_agree_with_other_rule_data(
    variant_engines: dict[str, PolicyEngine], name: str, doc: Doc
) -> None:
    check_parity(variant_engines, name, doc)


def test_corpus_has_an_allow_and_a_deny_case_for_every_rule(tmp_path: Path) -> None:
    """The corpus is only as good as what it exercises: with the default rule data or one of the
    variants, every rule fires on some input and stays silent on another. Decided by the wasm engine,
    which the tests above hold to OPA's decisions."""
    fired: set[str] = set()
    silent: set[str] = set()
    codes = {r.code for r in load_policy_set([ROOT]).rules}
    data_files: list[list[Path]] = [[]]
    for name, data in DATA_VARIANTS.items():
        (tmp_path / f"{name}.json").write_text(json.dumps(data))
        data_files.append([tmp_path / f"{name}.json"])
    for data in data_files:
        engine = make_engine(load_policy_set([ROOT], data), engine="wasm")
        for _, doc in CORPUS:
            violations, warnings = summary(engine, doc)
            hit = {r["code"] for r in violations + warnings}
            fired |= hit
            silent |= codes - hit
        engine.close()
    assert codes - fired == set(), "never fires"
    assert codes - silent == set(), "always fires"
