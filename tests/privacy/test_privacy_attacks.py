"""Membership and attribute inference attacks: a synthetic set that copies its training rows is
caught (AUC near 1), an independent one is not (AUC near 0.5); the CLI flags and gates."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from streamsynth.cli import main
from streamsynth.datasets import payments
from streamsynth.errors import StreamsynthError
from streamsynth.evaluate import evaluate


@pytest.fixture(scope="module")
def groups() -> dict[str, pl.DataFrame]:
    """Three disjoint groups of customers of one simulated population: training, held-out, other."""
    frame = payments(n_customers=600, n_days=10, seed=1)
    ids = frame["customer_id"].unique().sort()
    third = ids.len() // 3
    parts = {"train": ids[:third], "holdout": ids[third : 2 * third], "other": ids[2 * third :]}
    return {k: frame.filter(pl.col("customer_id").is_in(v.implode())) for k, v in parts.items()}


def test_copied_training_rows_are_caught(groups: dict[str, pl.DataFrame]) -> None:
    result = evaluate(
        groups["holdout"], groups["train"], train=groups["train"], sensitive="merchant_category", gru=False
    )
    m, a = result.membership, result.attribute
    assert m is not None and m.unit == "entity" and m.members >= 150 and m.non_members >= 150
    assert m.auc > 0.95 and m.row_auc > 0.8 and m.tpr_at_fpr_10 > 0.9
    assert m.member_dcr_median == 0.0 < m.non_member_dcr_median
    assert a is not None and a.kind == "categorical"
    assert a.accuracy > 0.7 and a.leakage > 0.2 and a.advantage > 0.3
    assert result.metric("mia_auc") == m.auc
    assert result.metric("attribute_leakage") == pytest.approx(a.leakage)
    failed = {c.key for c in result.scorecard if c.passed is False}
    assert {"mia_auc", "attribute_leakage"} <= failed


def test_independent_data_leaks_nothing(groups: dict[str, pl.DataFrame]) -> None:
    result = evaluate(groups["holdout"], groups["other"], train=groups["train"], sensitive="amount", gru=False)
    m, a = result.membership, result.attribute
    assert 0.4 < m.auc < 0.6 and 0.4 < m.row_auc < 0.6
    assert a.kind == "numeric" and abs(a.leakage) < 0.05
    passed = {c.key: c.passed for c in result.scorecard}
    assert passed["mia_auc"] and passed["attribute_leakage"]


def test_attribute_attack_without_training_table(groups: dict[str, pl.DataFrame]) -> None:
    result = evaluate(groups["holdout"], groups["other"], sensitive="is_fraud", gru=False)
    assert result.membership is None
    a = result.attribute
    assert a.column == "is_fraud" and a.leakage is None and a.non_member_accuracy is None
    assert a.baseline > 0.9 and abs(a.advantage) < 0.05  # fraud is rare: the mode is a strong guess


def test_user_errors(groups: dict[str, pl.DataFrame]) -> None:
    with pytest.raises(StreamsynthError, match="not trained on") as info:
        evaluate(groups["train"], groups["other"], train=groups["train"], gru=False)
    assert "--train" in info.value.hint
    with pytest.raises(StreamsynthError, match="sensitive column 'card_number'") as info:
        evaluate(groups["holdout"], groups["other"], sensitive="card_number", gru=False)
    assert "merchant_category" in info.value.hint


def test_cli_train_and_sensitive(
    groups: dict[str, pl.DataFrame], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    paths = {}
    for name in ("train", "holdout"):
        paths[name] = tmp_path / f"{name}.parquet"
        groups[name].write_parquet(paths[name])
    out, report = tmp_path / "eval.json", tmp_path / "report.html"
    args = ["evaluate", str(paths["holdout"]), str(paths["train"]), "--train", str(paths["train"]),
            "--sensitive", "channel", "--no-gru", "--json", str(out), "--report", str(report)]
    assert main([*args, "--fail-under", "mia_auc=0.6"]) == 1
    data = json.loads(out.read_text())
    assert data["membership"]["auc"] > 0.95 and data["attribute"]["column"] == "channel"
    assert "Privacy attacks" in report.read_text()
    text = capsys.readouterr()
    assert "FAILED mia_auc" in text.err and "attribute_leakage" in text.out
    assert main(["evaluate", str(paths["holdout"]), str(paths["train"]), "--no-gru", "--sensitive", "nope"]) == 2
