"""The bundled Rego policy library. ``ROOT`` is the directory the gate loads by default."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent
