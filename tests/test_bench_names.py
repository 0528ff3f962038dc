"""`python bench/X.py` puts bench/ first on sys.path, so a script named like a standard-library module
replaces that module for every bench script and everything they import (bench/operator.py once broke
them all: `operator` is imported by the standard library itself)."""

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_no_bench_script_shadows_a_standard_library_module() -> None:
    names = {path.stem for path in BENCH.glob("*.py")}
    assert names, "bench/ has no scripts"
    assert not names & set(sys.stdlib_module_names), sorted(names & set(sys.stdlib_module_names))
