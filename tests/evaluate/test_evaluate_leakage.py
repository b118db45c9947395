"""Label leakage in the fraud task: a column that alone gives the label away on real data is left
out of the features, and the report, the JSON and the CLI say so in one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
from test_evaluate import REAL

from streamsynth.cli import main
from streamsynth.evaluate.data import prepare
from streamsynth.evaluate.leakage import leaking_columns
from streamsynth.schema import Schema


def test_payments_fraud_scenario_is_dropped_and_the_task_is_no_longer_trivial(
    payments_small, baseline_model, tmp_path: Path, capsys
) -> None:
    real, synth = tmp_path / "real.parquet", tmp_path / "synth.parquet"
    payments_small.write_parquet(real)
    baseline_model.sample(n_entities=300, seed=4).write_parquet(synth)
    report, metrics = tmp_path / "report.html", tmp_path / "metrics.json"
    code = main(["evaluate", str(real), str(synth), "--no-gru", "--report", str(report), "--json", str(metrics)])
    assert code == 0
    err = capsys.readouterr().err
    notes = [line for line in err.splitlines() if "dropped from the features" in line]
    assert len(notes) == 1 and "'fraud_scenario'" in notes[0] and "'is_fraud'" in notes[0], err
    fraud = json.loads(metrics.read_text())["utility"]["fraud"]
    assert fraud["dropped"] == [{"column": "fraud_scenario", "auc": 1.0, "how": "value map"}]
    # With fraud_scenario among the features both AUCs were 1.0; without it the real-trained
    # detector has work to do, and the ratio says something about the synthetic data.
    assert fraud["auc_real"] < 0.99 and fraud["auc_synth"] < 0.99
    html = report.read_text()
    assert "column &#x27;fraud_scenario&#x27; dropped from the features" in html
    assert "<td>columns left out (alone they give the label away)</td><td>fraud_scenario</td>" in html


def _with_columns() -> pl.DataFrame:
    rng = np.random.default_rng(0)
    fraud = REAL["is_fraud"].to_numpy()
    n = REAL.height
    return REAL.with_columns(
        pl.Series("ref", [f"r{i}" for i in range(n)]),  # one value per row: nothing carries over
        pl.Series("flag", np.where(fraud & (rng.random(n) < 0.8), "set", "clear")),  # strong, not a giveaway
        pl.Series("risk", fraud * 6.0 + rng.normal(0, 1, n)),  # a threshold separates the classes
        pl.Series("code", np.where(fraud, rng.choice([1.0, 3.0], n), 2.0)),  # no threshold, a value map
        # set on fraud rows only: its missing values give the label away
        pl.when(pl.Series(fraud)).then(pl.Series(rng.uniform(10, 500, n))).otherwise(None).alias("chargeback"),
    )


def test_leaks_are_found_by_threshold_or_value_map_and_nothing_else() -> None:
    frame = _with_columns()
    schema = Schema.infer(frame, overrides={"ref": "categorical", "code": "numeric"})
    leaks = leaking_columns(prepare(frame, frame, schema))
    found = [(leak.column, leak.how) for leak in leaks]
    assert found == [("risk", "threshold"), ("code", "value map"), ("chargeback", "threshold")]
    assert all(leak.auc >= 0.99 for leak in leaks)


def test_a_frame_without_leakage_drops_nothing() -> None:
    assert leaking_columns(prepare(REAL, REAL)) == []
