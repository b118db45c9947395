"""The package's face: every public name resolves, and importing the package loads no polars or
torch (the command line's start-up depends on it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_every_public_name_resolves_and_none_is_a_subpackage():
    import streamsynth.evaluate  # noqa: F401 - sets the subpackage as an attribute of the package

    subpackages = {p.name for p in Path(streamsynth.__file__).parent.iterdir() if (p / "__init__.py").exists()}
    subpackages |= {"connectors", "scenarios"}
    for name in streamsynth.__all__:
        assert name not in subpackages, f"{name} would be shadowed by the subpackage streamsynth.{name}"
        assert getattr(streamsynth, name) is not None, name
    assert streamsynth.create("baseline").name == "baseline"


def test_importing_the_package_loads_no_polars_or_torch():
    code = "import sys, streamsynth; print(sorted(m for m in ('polars', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr
