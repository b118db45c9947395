"""Shared fixtures: a small payments sample, a fitted baseline, and the real-data folder."""

from __future__ import annotations

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
