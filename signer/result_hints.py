"""Tekton Chains type hints: which run results name artifacts, and how they are validated.

The rules follow Chains (``pkg/artifacts/signable.go``, ``structured.go``, ``formats/slsa/extract``)
because a verifier compares our subjects with what Chains would have produced. A malformed hint is
never fatal and never a subject: it is skipped and a human-readable line is appended to ``warnings``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from signer.image_refs import SHA1_HEX, digest_reference, parse_digest, show
from signer.run import Result, Run, executed_taskruns

IMAGE_URL = "IMAGE_URL"
IMAGE_DIGEST = "IMAGE_DIGEST"
IMAGES = "IMAGES"
ARTIFACT_URI = "ARTIFACT_URI"
ARTIFACT_DIGEST = "ARTIFACT_DIGEST"
ARTIFACT_OUTPUTS = "ARTIFACT_OUTPUTS"
ARTIFACT_INPUTS = "ARTIFACT_INPUTS"
GIT_URL = "CHAINS-GIT_URL"
GIT_COMMIT = "CHAINS-GIT_COMMIT"
IS_BUILD_ARTIFACT = "isBuildArtifact"


@dataclass(frozen=True)
class Artifact:
    uri: str
    digest: dict[str, str]


@dataclass(frozen=True)
class OCIImage:
    name: str  # ggcr Repository.Name(), e.g. index.docker.io/library/busybox
    digest: str  # sha256:<hex>

    @property
    def ref(self) -> str:
        return f"{self.name}@{self.digest}"

    def artifact(self) -> Artifact:
        return Artifact(self.name, {"sha256": self.digest.removeprefix("sha256:")})


def _warn(warnings: list[str], where: str, message: str) -> None:
    # Result names come from the run: escape line breaks so a warning stays one line on stderr.
    text = f"{where}: {message}" if where else message
    warnings.append(text.replace("\r", "\\r").replace("\n", "\\n"))


def _raw_split(digest: str) -> dict[str, str]:
    # Subjects built from ARTIFACT_URI/ARTIFACT_OUTPUTS keep the digest as written (Chains splits the
    # raw string after ParseDigest accepted it), unlike materials, which use ParseDigest's output.
    alg, hexpart = digest.split(":")
    return {alg: hexpart}


def _pairs(
    results: Sequence[Result], uri_suffix: str, digest_suffix: str, warnings: list[str], where: str
) -> list[tuple[str, str, str]]:
    """``<prefix><uri_suffix>`` + ``<prefix><digest_suffix>`` grouped by prefix: (prefix, uri, digest).

    Chains groups in a Go map (random order); we keep the order in which each prefix first appears.
    Values are trimmed; empty or non-string values are ignored; a later result overrides an earlier one.
    """
    partial: dict[str, dict[str, str]] = {}
    for r in results:
        for suffix, key in ((uri_suffix, "uri"), (digest_suffix, "digest")):
            if not r.name.endswith(suffix):
                continue
            if not isinstance(r.value, str):
                _warn(warnings, where, f"result {r.name} is a {r.type}, type hints need a string; ignored")
                continue
            value = r.value.strip()
            if not value:
                _warn(warnings, where, f"result {r.name} is empty; ignored")
                continue
            partial.setdefault(r.name[: -len(suffix)], {})[key] = value
    out = []
    for prefix, p in partial.items():
        if "uri" not in p or "digest" not in p:
            have, want = (uri_suffix, digest_suffix) if "uri" in p else (digest_suffix, uri_suffix)
            _warn(warnings, where, f"result {prefix}{have} has no matching {prefix}{want}; ignored")
            continue
        out.append((prefix, p["uri"], p["digest"]))
    return out


def _oci(ref: str) -> OCIImage | None:
    found = digest_reference(ref)
    return OCIImage(*found) if found is not None else None


def _split_images(value: str) -> list[str]:
    return [p.strip() for p in re.split(r"[,\n]", value) if p.strip()]


def _structured(r: Result, warnings: list[str], where: str) -> Artifact | None:
    """A ``*ARTIFACT_OUTPUTS``/``*ARTIFACT_INPUTS`` object validated as Chains' ``isValidArtifactOutput``."""
    if not isinstance(r.value, dict):
        _warn(warnings, where, f"result {r.name} must be an object with uri and digest; ignored")
        return None
    uri, digest = r.value.get("uri", ""), r.value.get("digest", "")
    if not uri:
        _warn(warnings, where, f"result {r.name} has no uri; ignored")
        return None
    if not digest:
        _warn(warnings, where, f"result {r.name} has no digest; ignored")
        return None
    try:
        parse_digest(digest)
    except ValueError as err:
        _warn(warnings, where, f"result {r.name}: {err}; ignored")
        return None
    return Artifact(uri, _raw_split(digest))


def is_build_artifact_result(r: Result) -> bool:
    """A valid ``*ARTIFACT_OUTPUTS`` object with ``isBuildArtifact: "true"`` (Chains ``IsBuildArtifact``)."""
    if not r.name.endswith(ARTIFACT_OUTPUTS) or not isinstance(r.value, dict):
        return False
    if r.value.get(IS_BUILD_ARTIFACT) != "true":
        return False
    return _structured(r, [], "") is not None


def is_invalid_artifact_outputs(r: Result) -> bool:
    """``*ARTIFACT_OUTPUTS`` that Chains' ``IsBuildArtifact`` rejects with an error (not an object, or
    marked as a build artifact with a bad uri/digest): v2alpha4 leaves these out of byproducts too."""
    if not r.name.endswith(ARTIFACT_OUTPUTS):
        return False
    if not isinstance(r.value, dict):
        return True
    return r.value.get(IS_BUILD_ARTIFACT) == "true" and _structured(r, [], "") is None


def build_artifacts(results: Sequence[Result], warnings: list[str], *, where: str = "") -> list[Artifact]:
    """Chains ``ExtractBuildArtifactsFromResults``: isBuildArtifact outputs, raw uri."""
    out = []
    for r in results:
        if not r.name.endswith(ARTIFACT_OUTPUTS):
            continue
        if not isinstance(r.value, dict):
            _warn(warnings, where, f"result {r.name} must be an object with uri and digest; ignored")
            continue
        if r.value.get(IS_BUILD_ARTIFACT) != "true":
            continue
        art = _structured(r, warnings, where)
        if art is not None:
            out.append(art)
    return out


def oci_images(results: Sequence[Result], warnings: list[str], *, where: str = "") -> list[OCIImage]:
    """Images a run built: ``*IMAGE_URL``/``*IMAGE_DIGEST`` pairs, then ``IMAGES``, then build-artifact
    ``*ARTIFACT_OUTPUTS`` whose uri is an image; de-duplicated by normalised ``name@digest``."""
    seen: set[str] = set()
    out: list[OCIImage] = []

    def add(img: OCIImage) -> None:
        if img.ref not in seen:
            seen.add(img.ref)
            out.append(img)

    for prefix, uri, digest in _pairs(results, IMAGE_URL, IMAGE_DIGEST, warnings, where):
        img = _oci(f"{uri}@{digest}")
        if img is None:
            _warn(
                warnings,
                where,
                f"results {prefix}{IMAGE_URL}/{prefix}{IMAGE_DIGEST}: "
                f"{show(uri + '@' + digest)} is not an image reference with a sha256 digest; ignored",
            )
            continue
        add(img)
    for r in results:
        if r.name != IMAGES:
            continue
        if not isinstance(r.value, str):
            _warn(warnings, where, f"result {IMAGES} is a {r.type}, it must be a string; ignored")
            continue
        for entry in _split_images(r.value):
            img = _oci(entry)
            if img is None:
                _warn(
                    warnings,
                    where,
                    f"result {IMAGES}: {show(entry)} is not an image reference with a sha256 digest; ignored",
                )
                continue
            add(img)
    # Build artifacts that are not images (npm packages, files...) are fine: no warning.
    for art in build_artifacts(results, [], where=where):
        ((alg, hexpart),) = art.digest.items()
        img = _oci(f"{art.uri}@{alg}:{hexpart}")
        if img is not None:
            add(img)
    return out


def artifact_uri_pairs(results: Sequence[Result], warnings: list[str], *, where: str = "") -> list[Artifact]:
    """``*ARTIFACT_URI``/``*ARTIFACT_DIGEST`` pairs; the digest must pass :func:`parse_digest`."""
    out = []
    for prefix, uri, digest in _pairs(results, ARTIFACT_URI, ARTIFACT_DIGEST, warnings, where):
        try:
            parse_digest(digest)
        except ValueError as err:
            _warn(warnings, where, f"result {prefix}{ARTIFACT_DIGEST}: {err}; ignored")
            continue
        out.append(Artifact(uri, _raw_split(digest)))
    return out


def artifact_outputs(
    results: Sequence[Result], warnings: list[str], *, where: str = ""
) -> list[tuple[Artifact, bool]]:
    """Valid ``*ARTIFACT_OUTPUTS`` objects with their ``isBuildArtifact == "true"`` flag."""
    out = []
    for r in results:
        if r.name.endswith(ARTIFACT_OUTPUTS):
            art = _structured(r, warnings, where)
            if art is not None:
                assert isinstance(r.value, dict)
                out.append((art, r.value.get(IS_BUILD_ARTIFACT) == "true"))
    return out


def artifact_inputs(results: Sequence[Result], warnings: list[str], *, where: str = "") -> list[Artifact]:
    """``*ARTIFACT_INPUTS`` objects as materials: raw uri, digest as :func:`parse_digest` returns it."""
    out = []
    for r in results:
        if r.name.endswith(ARTIFACT_INPUTS):
            art = _structured(r, warnings, where)
            if art is not None:
                assert isinstance(r.value, dict)
                alg, hexpart = parse_digest(r.value["digest"])
                out.append(Artifact(art.uri, {alg: hexpart}))
    return out


def spdx_git(url: str) -> str:
    """``git+`` prefix and ``.git`` suffix added when missing (Chains ``attest.SPDXGit``)."""
    if not url.startswith("git+"):
        url = "git+" + url
    if not url.endswith(".git"):
        url += ".git"
    return url


def _string_of(value: object) -> str:
    return value if isinstance(value, str) else ""


def git_material(run: Run, warnings: list[str], *, where: str | None = None) -> Artifact | None:
    """``CHAINS-GIT_URL``/``CHAINS-GIT_COMMIT``: spec param defaults < run params < run results.

    Values are used as written (not trimmed; the commit is not validated, the digest key is always
    ``sha1``). Quirk kept from Chains: for a TaskRun only the commit is required, so a commit without a
    URL yields the material ``git+.git``; a PipelineRun needs both.
    """
    loc = run.display if where is None else where
    url = commit = ""
    seen_url = seen_commit = False
    for p in run.param_specs:
        if "default" not in p:
            continue
        if p["name"] == GIT_COMMIT:
            commit, seen_commit = _string_of(p["default"]), True
        elif p["name"] == GIT_URL:
            url, seen_url = _string_of(p["default"]), True
    for p in run.params:
        if p["name"] == GIT_COMMIT:
            commit, seen_commit = _string_of(p.get("value")), True
        elif p["name"] == GIT_URL:
            url, seen_url = _string_of(p.get("value")), True
    for r in run.results:
        if r.name == GIT_COMMIT:
            commit, seen_commit = r.string_value, True
        elif r.name == GIT_URL:
            url, seen_url = r.string_value, True
    if not seen_url and not seen_commit:
        return None
    if not commit:
        _warn(warnings, loc, f"{GIT_URL} without a non-empty {GIT_COMMIT}; no git material")
        return None
    if not url:
        if run.kind == "PipelineRun":
            _warn(warnings, loc, f"{GIT_COMMIT} without a non-empty {GIT_URL}; no git material")
            return None
        _warn(
            warnings,
            loc,
            f"{GIT_COMMIT} without a non-empty {GIT_URL}; material named 'git+.git' (as Chains does)",
        )
    elif not SHA1_HEX.fullmatch(commit):
        _warn(warnings, loc, f"{GIT_COMMIT} {show(commit)} is not a 40-hex sha1 (recorded as written)")
    return Artifact(spdx_git(url), {"sha1": commit})


class ArtifactList:
    """An ordered artifact list that merges as Chains' ``AppendSubjects``/``AppendMaterials`` do: an item
    with the same name as an earlier one and at least one equal ``alg:hex`` merges its digests into
    that entry (first position kept). Entries are indexed by name, so building a PipelineRun's
    thousands of materials stays linear."""

    def __init__(self, existing: Iterable[Artifact] = ()) -> None:
        self._items: list[Artifact] = []
        self._by_uri: dict[str, list[int]] = {}
        # Entries already in the list are kept as they are, even if they would merge with each other.
        for item in existing:
            self._append(item)

    def _append(self, item: Artifact) -> None:
        self._by_uri.setdefault(item.uri, []).append(len(self._items))
        self._items.append(item)

    def add(self, item: Artifact) -> None:
        for i in self._by_uri.get(item.uri, ()):
            have = self._items[i]
            # Go indexes a missing key as "", so an empty hex matches an absent algorithm.
            if any(item.digest.get(a, "") == h for a, h in have.digest.items()):
                self._items[i] = Artifact(have.uri, {**have.digest, **item.digest})
                return
        self._append(Artifact(item.uri, dict(item.digest)))

    def extend(self, items: Iterable[Artifact]) -> ArtifactList:
        for item in items:
            self.add(item)
        return self

    def items(self) -> list[Artifact]:
        return list(self._items)


def append_subjects(existing: Iterable[Artifact], new: Iterable[Artifact]) -> list[Artifact]:
    """Chains ``AppendSubjects``/``AppendMaterials`` (see :class:`ArtifactList`)."""
    return ArtifactList(existing).extend(new).items()


append_materials = append_subjects


def _subjects_of(run: Run, warnings: list[str]) -> list[Artifact]:
    where = run.display
    results = run.results
    subjects: list[Artifact] = []
    subjects = append_subjects(subjects, (i.artifact() for i in oci_images(results, warnings, where=where)))
    subjects = append_subjects(subjects, artifact_uri_pairs(results, warnings, where=where))
    subjects = append_subjects(subjects, (a for a, _ in artifact_outputs(results, warnings, where=where)))
    return subjects


def subjects_v1(
    run: Run, children: Sequence[Run], *, deep_inspection: bool, warnings: list[str]
) -> list[Artifact]:
    """Chains ``SubjectDigests`` (slsa/v1, slsa/v2alpha3): images, ARTIFACT_URI pairs, ARTIFACT_OUTPUTS;
    for a PipelineRun with deep inspection the executed children's subjects come first."""
    own = _subjects_of(run, warnings)
    if run.kind == "TaskRun" or not deep_inspection:
        return own
    out = ArtifactList()
    for tr in executed_taskruns(run, children):
        out.extend(_subjects_of(tr, warnings))
    return out.extend(own).items()


def _build_artifact_subjects(results: Sequence[Result], warnings: list[str], where: str) -> list[Artifact]:
    subjects = append_subjects([], build_artifacts(results, warnings, where=where))
    return append_subjects(subjects, (i.artifact() for i in oci_images(results, warnings, where=where)))


def subjects_build_artifacts(
    run: Run, children: Sequence[Run], *, deep_inspection: bool, warnings: list[str]
) -> list[Artifact]:
    """Chains ``SubjectsFromBuildArtifact`` (slsa/v2alpha4). TaskRun: each step's results, then the
    TaskRun's results. PipelineRun: its own results, then (deep inspection) each executed child."""
    if run.kind == "TaskRun":
        return _taskrun_build_artifact_subjects(run, warnings)
    out = ArtifactList(_build_artifact_subjects(run.results, warnings, run.display))
    if deep_inspection:
        for tr in executed_taskruns(run, children):
            out.extend(_taskrun_build_artifact_subjects(tr, warnings))
    return out.items()


def _taskrun_build_artifact_subjects(run: Run, warnings: list[str]) -> list[Artifact]:
    out: list[Artifact] = []
    for i, step in enumerate(run.status.get("steps") or []):
        step_results = [Result.of(r) for r in step.get("results") or []]
        if step_results:
            where = f"{run.display} step {step.get('name') or i}"
            out = append_subjects(out, _build_artifact_subjects(step_results, warnings, where))
    return append_subjects(out, _build_artifact_subjects(run.results, warnings, run.display))
