"""`streamsynth evaluate`: report and JSON files, scorecard output, --fail-under exit codes."""

from __future__ import annotations

import json
import re
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
    assert {c["key"] for c in data["scorecard"]} >= {"ks", "tv", "discriminative", "row_copies_excess"}
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
    code = main(["evaluate", str(real), str(real), "--no-gru", "--fail-under", "row_copies_excess=0.05"])
    assert code == 1
    assert "FAILED row_copies_excess" in capsys.readouterr().err


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bad")
    OTHER.drop("channel").write_parquet(folder / "narrow.parquet")
    OTHER.with_columns(pl.col("amount").cast(pl.String)).write_parquet(folder / "text_amount.parquet")
    (folder / "empty.csv").write_text("")
    return folder


# (arguments after REAL SYNTH, what the error line must say, what the hint must say); SYNTH is
# replaced where the case names another file. Each must exit 2 with one error line and a hint.
BAD = {
    "missing real file": (["{missing}", "{synth}"], "missing.csv does not exist", "check the path"),
    "missing synthetic file": (["{real}", "{missing}"], "missing.csv does not exist", "check the path"),
    "empty synthetic file": (["{real}", "{bad}/empty.csv"], "empty.csv is empty", "header and rows"),
    "missing column": (["{real}", "{bad}/narrow.parquet"], "synthetic data has no column 'channel'",
                       "columns in synthetic data"),
    "column of another type": (["{real}", "{bad}/text_amount.parquet"],
                               "'amount' is String, but the schema says numeric", "role in the schema"),
    "unknown metric": (["--fail-under", "sharpness=1"], "unknown metric 'sharpness'", "keys are: ks"),
    "gate without a value": (["--fail-under", "ks"], "'ks' is not KEY=VALUE", "--fail-under discriminative"),
    "gate without a key": (["--fail-under", "=0.1"], "'=0.1' is not KEY=VALUE", "--fail-under discriminative"),
    "gate value not a number": (["--fail-under", "ks=low"], "'low' is not a finite number", "discriminative=0.2"),
    "gate value not finite": (["--fail-under", "ks=nan"], "'nan' is not a finite number", "discriminative=0.2"),
    "renamed key": (["--fail-under", "row_copies=0.02"], "'row_copies' is now 'row_copies_excess'",
                    "--fail-under row_copies_excess=0.02"),
    "gate on an unknown column": (["--fail-under", "ks.sharpness=0.1"], "'sharpness' is not a numeric column",
                                  "numeric columns: amount, latency_ms"),
    "gate of the wrong kind": (["--fail-under", "ks.channel=0.1"], "'channel' is not a numeric column",
                               "gate it with tv.channel"),
    "window too short": (["--window", "1"], "--window 1: must be at least 2", "--window 8"),
    "no iterations": (["--iterations", "0"], "--iterations 0: must be at least 1", "--iterations 1000"),
    "unknown device": (["--device", "abacus"], "device 'abacus' is not a torch device", "cpu, cuda"),
    "report folder missing": (["--report", "{bad}/nowhere/r.html"], "folder", "create it first"),
    "json path a folder": (["--json", "{bad}"], "is a directory", "give a file path"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_exits_2_with_one_line_and_a_hint(case, tables, bad_inputs, tmp_path, capsys) -> None:
    args, message, hint = BAD[case]
    real, synth = tables
    names = {"real": real, "synth": synth, "bad": bad_inputs, "missing": tmp_path / "missing.csv"}
    args = [a.format(**names) for a in args]
    if not args[0].startswith("-"):
        real_arg, synth_arg, args = args[0], args[1], args[2:]
    else:
        real_arg, synth_arg = str(real), str(synth)
    # --no-gru keeps a case that the old code wrongly ran through quick (no case may run at all)
    code = main(["evaluate", real_arg, synth_arg, "--no-gru", *args])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("  hint: "), err
    assert message in lines[0] and hint in lines[1], err


def test_privacy_numbers_agree_in_report_json_and_scorecard(tables, tmp_path: Path, capsys) -> None:
    """The exact-copy shares have one name and one value in the HTML, the JSON and the scorecard."""
    real, _ = tables
    copied = REAL.sample(1000, seed=5)
    synth = tmp_path / "synth.parquet"
    pl.concat([OTHER.head(OTHER.height - 1000), copied]).sort("ts").write_parquet(synth)
    report, metrics = tmp_path / "report.html", tmp_path / "metrics.json"
    code = main(["evaluate", str(real), str(synth), "--no-gru", "--report", str(report), "--json", str(metrics)])
    assert code == 0
    out = capsys.readouterr().out
    data = json.loads(metrics.read_text())
    p = data["privacy"]
    assert 0.1 < p["row_copies"] < 0.25 and p["row_copies_baseline"] < 0.05
    assert p["row_copies_excess"] == pytest.approx(p["row_copies"] - p["row_copies_baseline"])
    card = {c["key"]: c for c in data["scorecard"]}
    assert card["row_copies_excess"]["value"] == p["row_copies_excess"]
    assert card["sequence_copies_excess"]["value"] == p["sequence_copies_excess"]
    assert "row_copies" not in card and "sequence_copies" not in card
    # The CLI's scorecard line shows the same number under the same name.
    line = next(ln for ln in out.splitlines() if " row_copies_excess " in ln)
    assert f"{p['row_copies_excess']:.4g}" in line.split()
    html = report.read_text()
    shown = re.search(
        r"<tr><td>exact copies of real rows \(share of rows\)</td><td>([^<]*)</td><td>([^<]*)</td>"
        r"<td>([^<]*)</td></tr>",
        html,
    )
    assert shown, "the privacy table has no row of exact row copies"
    assert shown.groups() == tuple(
        f"{p[k]:.4g}" for k in ("row_copies", "row_copies_baseline", "row_copies_excess")
    )
    scorecard_row = re.search(r"<td>row_copies_excess</td><td>([^<]*)</td>", html)
    assert scorecard_row and scorecard_row.group(1) == f"{p['row_copies_excess']:.4g}"
    assert "beyond the holdout&#x27;s share" in html and "Beyond the holdout&#x27;s share&#x27; is" in html


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
