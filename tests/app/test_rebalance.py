"""Rebalancing: the asked class ratio within 1%, every real row kept, synthetic rows marked."""

from __future__ import annotations

import json

import polars as pl
import pytest

from streamsynth.cli import main
from streamsynth.errors import StreamsynthError
from streamsynth.rebalance import SYNTHETIC, rebalance


@pytest.fixture(scope="module")
def real(tmp_path_factory, payments_small):
    path = tmp_path_factory.mktemp("rebalance") / "real.parquet"
    payments_small.write_parquet(path)
    return path


@pytest.mark.parametrize("ratio", [0.05, 0.2, 0.5])
def test_cli_hits_the_ratio_and_keeps_every_real_row(tmp_path, real, ratio):
    out = tmp_path / "balanced.parquet"
    assert main(["rebalance", str(real), "--label", "is_fraud", "--ratio", str(ratio), "-o", str(out)]) == 0
    frame = pl.read_parquet(out)
    original = pl.read_parquet(real)
    assert abs(frame["is_fraud"].mean() - ratio) < 0.01
    kept = frame.filter(~pl.col(SYNTHETIC)).drop(SYNTHETIC)
    assert kept.equals(original)  # all real rows, unchanged, minority ones included
    synthetic = frame.filter(pl.col(SYNTHETIC))
    assert synthetic.height > 0 and synthetic["is_fraud"].all()
    assert not synthetic["customer_id"].is_in(original["customer_id"].implode()).any()
    manifest = json.loads((tmp_path / "balanced.parquet.manifest.json").read_text())
    summary = manifest["rebalance"]
    assert summary["real_minority_rows"] == int(original["is_fraud"].sum())
    assert summary["synthetic_rows"] == synthetic.height
    assert abs(summary["achieved_ratio"] - ratio) < 0.01


def test_a_ratio_below_the_current_share_adds_majority_rows(payments_small):
    share = payments_small["is_fraud"].mean()
    result = rebalance(payments_small, label="is_fraud", ratio=share / 2, seed=1)
    assert abs(result.summary["achieved_ratio"] - share / 2) < 0.01
    assert result.frame.filter(~pl.col(SYNTHETIC)).height == payments_small.height
    assert not result.frame.filter(pl.col(SYNTHETIC))["is_fraud"].any()


def test_same_seed_same_rows(payments_small):
    a = rebalance(payments_small, label="is_fraud", ratio=0.1, seed=3).frame
    b = rebalance(payments_small, label="is_fraud", ratio=0.1, seed=3).frame
    assert a.equals(b)


def test_bad_inputs_name_what_is_wrong(payments_small):
    with pytest.raises(StreamsynthError, match="has no column 'fraud'"):
        rebalance(payments_small, label="fraud", ratio=0.2)
    with pytest.raises(StreamsynthError, match="is not a share"):
        rebalance(payments_small, label="is_fraud", ratio=1.5)
    no_fraud = payments_small.filter(~pl.col("is_fraud"))
    with pytest.raises(StreamsynthError, match="no row has is_fraud=True"):
        rebalance(no_fraud, label="is_fraud", ratio=0.2, minority="true")
