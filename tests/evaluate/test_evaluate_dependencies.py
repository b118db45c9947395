"""The ``dependencies`` check: a planted break (a determined column shuffled) is scored, named
first with an example row, shown in the report and the JSON, and gates the exit code."""

from __future__ import annotations

import json

import numpy as np
import polars as pl

from streamsynth.cli import main
from streamsynth.evaluate.data import prepare
from streamsynth.evaluate.dependencies import dependency_check


def test_real_data_breaks_none_of_its_own_dependencies(payments_small):
    check = dependency_check(prepare(payments_small, payments_small, None))
    assert check is not None and check.broken_share == 0.0
    assert {d.determines for d in check.dependencies} >= {"merchant_category"}


def test_a_planted_break_scores_high_and_is_named_first(payments_small, tmp_path, capsys):
    rng = np.random.default_rng(0)
    broken = payments_small.with_columns(
        pl.Series("merchant_category", rng.permutation(payments_small["merchant_category"].to_numpy()))
    )
    real, synth = tmp_path / "real.parquet", tmp_path / "synth.parquet"
    payments_small.write_parquet(real)
    broken.write_parquet(synth)
    code = main(["evaluate", str(real), str(synth), "--no-gru", "--json", str(tmp_path / "m.json"),
                 "--report", str(tmp_path / "r.html"), "--fail-under", "dependencies=0.01"])
    assert code == 1
    err = capsys.readouterr().err
    assert "of synthetic rows break terminal_id -> merchant_category" in err
    record = json.loads((tmp_path / "m.json").read_text())["fidelity"]["dependencies"]
    assert record["broken_share"] > 0.5
    assert record["dependencies"][0]["determines"] == "merchant_category"
    assert "expected merchant_category" in record["dependencies"][0]["example"]
    assert "Dependencies between columns" in (tmp_path / "r.html").read_text()
