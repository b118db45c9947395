"""Shared fixtures: a small payments sample, a fitted baseline, the real-data folder, and a
``torchrun`` launcher for distributed training through the CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.fixture(scope="session")
def payments_small() -> pl.DataFrame:
    from streamsynth.datasets import payments

    return payments(n_customers=300, n_terminals=120, n_days=10, seed=3)


@pytest.fixture(scope="session")
def baseline_model(payments_small):
    from streamsynth.models.baseline import BaselineSynthesizer

    return BaselineSynthesizer(seed=11).fit(payments_small)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the checkout; tests using it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data folder {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture
def torchrun() -> Callable[..., subprocess.CompletedProcess]:
    """``torchrun(N, *ARGS)`` runs ``torchrun --standalone --nproc_per_node N -m streamsynth ARGS``
    (a free rendezvous port, one thread a process) and fails the test if it fails; skips the test
    where torchrun is not installed."""
    if shutil.which("torchrun") is None:
        pytest.skip("torchrun is not installed")

    def run(processes: int, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
        proc = subprocess.run(
            ["torchrun", "--standalone", "--nproc_per_node", str(processes), "-m", "streamsynth", *args],
            capture_output=True, text=True, timeout=timeout, env=dict(os.environ, OMP_NUM_THREADS="1"),
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        return proc

    return run


@pytest.fixture(scope="module")
def ray_runtime():
    """A local Ray runtime for a module's tests (skipped without the ray extra)."""
    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield ray
    ray.shutdown()
