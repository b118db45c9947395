"""The scenario library end to end: every scenario runs on its base, and the CLI writes labelled
output with a manifest; fraud injectors use the model's conditions when the base has them."""

from __future__ import annotations

import json

import polars as pl
import pytest
from streamsynth.scenarios.catalog import library_files

from streamsynth.cli import main
from streamsynth.contract import EVENT_ID, SCENARIO_ID, check_stream
from streamsynth.pipeline import open_scenario_run, open_source


@pytest.mark.parametrize("path", library_files(), ids=lambda p: p.stem)
def test_library_scenario_runs_and_labels_what_it_reports(path):
    src = open_source(path)  # the pipeline recognises a scenario file and opens its base
    out = pl.concat(list(check_stream(src.stream, src.time, src.entity)), how="vertical")
    report = src.description["scenario"]
    assert report["name"] == path.stem
    for event in report["events"]:
        touched = event["rows_added"] + event["rows_changed"] + event["rows_removed"]
        assert touched > 0, f"{path.stem}: event {event['index']} ({event['kind']}) did nothing"
        labelled = out.filter(pl.col(SCENARIO_ID) == event["scenario_id"]).height
        if event["kind"] == "dropout":
            assert labelled == 0
        else:
            # Rows can be changed again by a later event, which then owns their label.
            assert 0 < labelled <= event["rows_added"] + event["rows_changed"]
    assert out[EVENT_ID].n_unique() == out.height


def test_scenario_run_writes_output_and_manifest(tmp_path, capsys):
    out = tmp_path / "storm.parquet"
    assert main(["scenario", "run", "gateway_503_storm", "-o", str(out)]) == 0
    frame = pl.read_parquet(out)
    manifest = json.loads((tmp_path / "storm.parquet.manifest.json").read_text())
    assert manifest["seed"] == 21
    assert manifest["scenario"]["name"] == "gateway_503_storm"
    assert manifest["model"]["kind"] == "rules"
    assert "polars" in manifest["versions"]
    event = manifest["scenario"]["events"][0]
    assert event["window_start"] == "2024-05-01T18:20:00+00:00"
    assert event["window_end"] == "2024-05-01T18:25:00+00:00"
    labels = dict(frame["label"].value_counts().iter_rows())
    assert manifest["counts"]["labels"] == labels
    assert labels["ops.error_spike"] == event["rows_changed"] > 0
    spiked = frame.filter(pl.col("label") == "ops.error_spike")
    assert spiked["status"].is_in([502, 503, 504]).all()
    assert spiked["event_type"].is_in(["payment", "checkout"]).all()
    assert "gateway_503_storm" in capsys.readouterr().out


def test_same_seed_same_file_other_seed_other_file(tmp_path):
    a, b, c = (tmp_path / f"{x}.parquet" for x in "abc")
    assert main(["scenario", "run", "card_testing_burst", "-o", str(a)]) == 0
    assert main(["scenario", "run", "card_testing_burst", "-o", str(b)]) == 0
    assert main(["scenario", "run", "card_testing_burst", "-o", str(c), "--seed", "99"]) == 0
    assert pl.read_parquet(a).equals(pl.read_parquet(b))
    assert not pl.read_parquet(a).equals(pl.read_parquet(c))


def test_run_without_output_points_to_replay(capsys):
    assert main(["scenario", "run", "black_friday_surge"]) == 2
    err = capsys.readouterr().err
    assert "no output file to write" in err and "streamsynth replay" in err


def test_list_and_show(capsys):
    assert main(["scenario", "list"]) == 0
    listed = capsys.readouterr().out
    for path in library_files():
        assert path.stem in listed
    assert main(["scenario", "show", "mule_ring"]) == 0
    assert "mule_fan_out" in capsys.readouterr().out
    assert main(["scenario", "show", "no_such_thing"]) == 2
    assert "library scenarios are:" in capsys.readouterr().err


def test_sample_command_accepts_a_scenario_file(tmp_path):
    out = tmp_path / "ct.parquet"
    path = next(p for p in library_files() if p.stem == "card_testing_burst")
    assert main(["sample", str(path), "-o", str(out)]) == 0
    frame = pl.read_parquet(out)
    assert (frame["label"] == "fraud.card_testing").sum() == 200
    manifest = json.loads((tmp_path / "ct.parquet.manifest.json").read_text())
    assert manifest["model"]["scenario"]["events"][0]["rows_added"] == 200


def test_fraud_templates_come_from_the_conditional_model(tmp_path):

    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: m\nseed: 4\nbase: {source: demo, entities: 400, start: 2024-01-02T09:00:00Z, duration: 1h}\n"
        "events:\n"
        "  - {kind: velocity_burst, at: 10m, duration: 20m,\n"
        "     params: {entities: 3, transactions: 10, conditions: {fraud_scenario: stolen_card}}}\n"
        "  - {kind: velocity_burst, at: 10m, duration: 20m, params: {entities: 3, use_model: false}}\n"
    )
    run = open_scenario_run(spec)
    out = pl.concat(list(run.stream), how="vertical")
    by_model, by_rows = run.report["events"]
    assert by_model["templates"] == "model" and by_rows["templates"] == "base rows"
    conditioned = out.filter(pl.col(SCENARIO_ID) == by_model["scenario_id"])
    assert conditioned.height == 30 and (conditioned["fraud_scenario"] == "stolen_card").all()
    assert conditioned["is_fraud"].all()


def test_sharded_runs_make_each_injected_row_once():
    path = next(p for p in library_files() if p.stem == "log_gap_duplicate_replay")
    fraud = next(p for p in library_files() if p.stem == "card_testing_burst")
    # Fraud rows: every shard picks the same victims and emits the rows of the victims it generates.
    whole = pl.concat(list(open_source(fraud).stream), how="vertical")
    shards = [pl.concat(list(open_source(fraud, shard=s).stream), how="vertical") for s in ((0, 2), (1, 2))]
    made = [part.filter(pl.col("label") == "fraud.card_testing") for part in shards]
    assert all(rows.height for rows in made), "one shard owns every victim: the test would prove little"
    expected = whole.filter(pl.col("label") == "fraud.card_testing").sort(EVENT_ID)
    assert expected.height == 200
    assert pl.concat(made).sort(EVENT_ID).equals(expected)
    customers = [set(part["customer_id"].to_list()) for part in shards]
    assert not customers[0] & customers[1]
    # Row-level events act on each shard's own rows: the shards together equal the unsharded run.
    whole = pl.concat(list(open_source(path).stream), how="vertical")
    parts = pl.concat(
        [pl.concat(list(open_source(path, shard=s).stream), how="vertical") for s in ((0, 2), (1, 2))]
    )
    assert sorted(parts[EVENT_ID].to_list()) == sorted(whole[EVENT_ID].to_list())


def test_fraud_rows_do_not_depend_on_batch_size(tmp_path):
    """Victims and templates come from the base rows before each window, not the batches around it."""
    path = str(next(p for p in library_files() if p.stem == "account_takeover_wave"))
    assert main(["sample", path, "--entities", "600", "-o", str(tmp_path / "a.parquet")]) == 0
    assert main(["stream", path, "--entities", "600", "--batch-size", "53", "-o", str(tmp_path / "b.parquet")]) == 0
    a, b = (pl.read_parquet(tmp_path / f"{x}.parquet") for x in "ab")
    assert (a["label"] == "fraud.account_takeover").sum() == 4 * 6 + 6 * 6 + 8 * 7
    assert a.sort(EVENT_ID).equals(b.sort(EVENT_ID))
