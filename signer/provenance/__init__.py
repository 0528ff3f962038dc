"""Provenance statements for Tekton runs, one module per format (Tekton Chains' formats).

``generate`` dispatches to ``formats.<format module>.build(run, children, options, warnings) -> dict``; the
statement is a plain dict that ``attestation.intoto.serialize`` turns into bytes.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from attestation.errors import InputError
from signer.run import Run

FORMATS = ("slsa/v1", "slsa/v2alpha3", "slsa/v2alpha4")
FORMAT_ALIASES = {"in-toto": "slsa/v1"}
DEFAULT_BUILDER_ID = "https://tekton.dev/chains/v2"
SLSA_BUILD_TYPE = "https://tekton.dev/chains/v2/slsa"
TEKTON_BUILD_TYPE = "https://tekton.dev/chains/v2/slsa-tekton"
BUILD_TYPES = (SLSA_BUILD_TYPE, TEKTON_BUILD_TYPE)
_MODULES = {"slsa/v1": "slsa_v1", "slsa/v2alpha3": "slsa_v2alpha3", "slsa/v2alpha4": "slsa_v2alpha4"}


@dataclass(frozen=True)
class Options:
    format: str = "slsa/v1"
    builder_id: str = DEFAULT_BUILDER_ID
    build_type: str | None = None
    deep_inspection: bool = False


@dataclass
class Provenance:
    statement: dict[str, Any]
    warnings: list[str] = field(default_factory=list)


def canonical_format(name: str) -> str:
    """``in-toto`` -> ``slsa/v1``; InputError for a format Chains does not have."""
    fmt = FORMAT_ALIASES.get(name, name)
    if fmt not in FORMATS:
        known = ", ".join([*FORMATS, *FORMAT_ALIASES])
        raise InputError(f"unknown provenance format {name!r} (known: {known})")
    return fmt


def check_build_type(build_type: str | None) -> None:
    if build_type is not None and build_type not in BUILD_TYPES:
        raise InputError(f"unsupported build type {build_type!r} (known: {', '.join(BUILD_TYPES)})")


def generate(run: Run, children: Sequence[Run], options: Options) -> Provenance:
    fmt = canonical_format(options.format)
    check_build_type(options.build_type)
    name = f"{__name__}.formats.{_MODULES[fmt]}"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as err:
        if err.name != name:
            raise
        raise InputError(f"provenance format {fmt} is not available in this build") from None
    warnings: list[str] = []
    statement = module.build(run, children, options, warnings)
    return Provenance(statement=statement, warnings=list(dict.fromkeys(warnings)))
