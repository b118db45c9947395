"""The package's face: every public name resolves, and importing the package loads no polars or
torch (the command line's start-up depends on it)."""

from __future__ import annotations

import subprocess
import sys

import streamsynth


def test_every_public_name_resolves():
    for name in streamsynth.__all__:
        assert getattr(streamsynth, name) is not None, name
    assert streamsynth.create("baseline").name == "baseline"


def test_importing_the_package_loads_no_polars_or_torch():
    code = "import sys, streamsynth; print(sorted(m for m in ('polars', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr
