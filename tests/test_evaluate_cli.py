"""`streamsynth evaluate`: report and JSON files, scorecard output, --fail-under exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from test_evaluate import OTHER, REAL

from streamsynth.cli import main
from streamsynth.evaluate.scorecard import METRICS


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("evaluate")
    real, synth = folder / "real.parquet", folder / "synth.csv"
    REAL.write_parquet(real)
    OTHER.with_columns(pl.col("ts").dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ")).write_csv(synth)
    return real, synth


FAST = ["--window", "8", "--iterations", "100", "--max-windows", "300"]


def test_writes_report_and_json_and_passes(tables, tmp_path: Path, capsys) -> None:
    real, synth = tables
    report, metrics = tmp_path / "report.html", tmp_path / "metrics.json"
    code = main(
        [
            "evaluate",
            str(real),
            str(synth),
            "--report",
            str(report),
            "--json",
            str(metrics),
            "--fail-under",
            "discriminative=0.3",
            "--fail-under",
            "ks.amount=0.2",
            *FAST,
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "discriminative" in out and "(gate)" in out
    data = json.loads(metrics.read_text())
    assert data["real_rows"] == REAL.height and data["synth_rows"] == OTHER.height
    assert {c["key"] for c in data["scorecard"]} >= {"ks", "tv", "discriminative", "row_copies"}
    assert data["utility"]["window_length"] == 8
    assert data["fidelity"]["numeric"][0]["name"] == "amount"
    assert report.read_text().startswith("<!DOCTYPE html>")


def test_fail_under_sets_the_exit_code(tables, capsys) -> None:
    real, synth = tables
    code = main(["evaluate", str(real), str(synth), "--no-gru", "--fail-under", "ks=0.0001"])
    assert code == 1
    assert "FAILED ks" in capsys.readouterr().err
    # Higher-is-better keys fail when the value is below the threshold.
    code = main(["evaluate", str(real), str(synth), "--no-gru", "--fail-under", "dcr_ratio=100"])
    assert code == 1


def test_copied_data_fails_the_privacy_gate(tables, capsys) -> None:
    real, _ = tables
    code = main(["evaluate", str(real), str(real), "--no-gru", "--fail-under", "row_copies=0.05"])
    assert code == 1
    assert "FAILED row_copies" in capsys.readouterr().err


def test_bad_arguments_are_user_errors(tables, tmp_path: Path, capsys) -> None:
    real, synth = tables
    assert main(["evaluate", str(real), str(synth), "--fail-under", "sharpness=1"]) == 2
    assert "unknown metric 'sharpness'" in capsys.readouterr().err
    assert main(["evaluate", str(real), str(synth), "--fail-under", "ks"]) == 2
    assert main(["evaluate", str(real), str(tmp_path / "missing.csv")]) == 2
    OTHER.drop("channel").write_parquet(tmp_path / "narrow.parquet")
    assert main(["evaluate", str(real), str(tmp_path / "narrow.parquet"), "--no-gru"]) == 2
    assert "no column 'channel'" in capsys.readouterr().err


def test_schema_file_overrides_roles(tables, tmp_path: Path) -> None:
    real, synth = tables
    schema = tmp_path / "schema.yaml"
    schema.write_text("entity: customer_id\ncolumns:\n  latency_ms: ignore\n")
    metrics = tmp_path / "m.json"
    assert (
        main(
            [
                "evaluate",
                str(real),
                str(synth),
                "--schema",
                str(schema),
                "--no-gru",
                "--json",
                str(metrics),
            ]
        )
        == 0
    )
    names = [c["name"] for c in json.loads(metrics.read_text())["fidelity"]["numeric"]]
    assert names == ["amount"]


def test_help_documents_every_metric_key(capsys) -> None:
    assert main(["evaluate", "--list-metrics"]) == 0
    listed = capsys.readouterr().out
    for key in METRICS:
        assert f"{key} (" in listed
    from streamsynth.cli.evaluate import _FAIL_HELP

    for key in METRICS:
        assert key in _FAIL_HELP
