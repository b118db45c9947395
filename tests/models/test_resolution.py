"""Learned resolutions: models sample numbers and times on the grids the training data sits on
(whole cents, multiples of 5, midnight-only dates, a 5-minute schedule for a share of rows)."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from streamsynth.cli import main
from streamsynth.contract import EVENT_ID, check_stream
from streamsynth.encoders.resolution import Grid
from streamsynth.models import create, load_model
from streamsynth.models.baseline import BaselineSynthesizer

DAY_US = 86_400_000_000
FIVE_MIN_US = 300_000_000
START = datetime(2024, 3, 1, tzinfo=UTC)
BEFORE = Path(__file__).resolve().parents[1] / "data" / "baseline_before_resolution"


def purchases(n: int = 3000, seed: int = 0) -> pl.DataFrame:
    """Midnight-only purchase dates, whole-cent amounts, quantities in fives, and a departure
    time on a 5-minute schedule in three rows of four."""
    r = np.random.default_rng(seed)
    start = int(START.timestamp() * 1e6)
    departures = start + r.integers(0, 30 * DAY_US, n)
    departures = np.where(r.random(n) < 0.75, departures // FIVE_MIN_US * FIVE_MIN_US, departures)
    return pl.DataFrame({
        "customer": [f"C{e:03d}" for e in r.integers(0, 100, n)],
        "ts": _times(start + r.integers(0, 30, n) * DAY_US),
        "amount": np.round(np.exp(r.normal(3.0, 1.0, n)), 2),
        "qty": 5 * r.integers(1, 20, n),
        "departure": _times(departures),
    })


def _times(us: np.ndarray) -> pl.Series:
    return pl.Series(us).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")


def _micros(frame: pl.DataFrame, column: str) -> np.ndarray:
    return frame[column].dt.epoch("us").to_numpy()


def _on_cents(x: pl.Series) -> float:
    cents = x.drop_nulls().to_numpy() * 100  # a barely trained transformer samples some nulls
    return float((np.abs(cents - np.round(cents)) < 1e-6).mean())


def _schedule(frame: pl.DataFrame) -> pl.DataFrame:
    """The departures as the event time (the purchase date set aside)."""
    return frame.drop("ts").rename({"departure": "ts"})


@pytest.fixture(scope="module")
def baseline() -> BaselineSynthesizer:
    return BaselineSynthesizer(seed=1).fit(purchases().drop("departure"))


@pytest.fixture(scope="module")
def scheduled() -> BaselineSynthesizer:
    return BaselineSynthesizer(seed=1).fit(_schedule(purchases()))


def test_grids_are_learned_from_the_values():
    r = np.random.default_rng(1)
    assert Grid.learn_numeric(np.round(r.uniform(1, 500, 500), 2)).steps == [0.01]
    assert Grid.learn_numeric(5 * r.integers(1, 40, 500), integer=True).steps == [5.0]
    assert Grid.learn_numeric(r.integers(1, 40, 500), integer=True) is None  # the type keeps it
    assert Grid.learn_numeric(r.normal(0, 1, 500)) is None
    prices = r.uniform(1, 500, 2000)
    whole_and_cents = np.where(r.random(2000) < 0.4, np.round(prices), np.round(prices, 2))
    grid = Grid.learn_numeric(whole_and_cents)
    assert grid.steps == [1.0, 0.01] and grid.shares[0] == pytest.approx(0.4, abs=0.04)
    # Midnight in the data's own offset (+02:00) reads as 22:00 UTC.
    local_midnights = int(START.timestamp() * 1e6) - 2 * 3_600_000_000 + r.integers(0, 60, 500) * DAY_US
    grid = Grid.learn_times(local_midnights)
    assert grid.steps == [DAY_US] and grid.phases == [22 * 3_600_000_000] and grid.always
    assert Grid.learn_times(r.integers(0, 10**15, 500)) is None
    # Bursts of whole-second events stay on seconds: not put onto one minute's instant.
    seconds = Grid.learn_times(10**15 + np.cumsum(r.integers(1, 20, 500)) * 1_000_000)
    assert seconds.steps == [1_000_000] and seconds.always


def test_cli_fit_and_sample_keep_a_file_of_dates_on_dates(tmp_path):
    frame = purchases(n=1000).drop("departure").with_columns(pl.col("ts").dt.strftime("%Y-%m-%d"))
    frame.write_csv(tmp_path / "purchases.csv")
    assert main(["fit", str(tmp_path / "purchases.csv"), "--model", "baseline", "-o", str(tmp_path / "m")]) == 0
    assert main(["sample", str(tmp_path / "m"), "-n", "2000", "-o", str(tmp_path / "out.parquet")]) == 0
    sample = pl.read_parquet(tmp_path / "out.parquet")
    assert sample.height == 2000 and (_micros(sample, "ts") % DAY_US == 0).all()
    assert _on_cents(sample["amount"]) == 1.0 and (sample["qty"] % 5 == 0).all()


def test_baseline_samples_whole_cents_fives_and_midnights(baseline):
    sample = baseline.sample(n_events=4000, start=START, batch_size=700)
    assert sample.height == 4000
    assert (_micros(sample, "ts") % DAY_US == 0).all()
    assert _on_cents(sample["amount"]) == 1.0
    assert sample["qty"].dtype == pl.Int64 and (sample["qty"] % 5 == 0).all()
    real = purchases()
    assert sample["amount"].min() >= real["amount"].min() and sample["amount"].max() <= real["amount"].max()
    assert sample["qty"].min() >= 5 and sample["qty"].max() <= 95
    # Several purchases of one customer on one day share the instant, as the real ones do.
    assert sample.select(pl.struct("customer", "ts").is_duplicated().any()).item()


def test_a_start_between_grid_points_keeps_times_at_or_after_it(baseline):
    start = START + timedelta(hours=13)
    sample = baseline.sample(n_events=2000, start=start)
    assert sample["ts"].min() >= start and (_micros(sample, "ts") % DAY_US == 0).all()


def test_a_share_of_times_on_a_schedule_stays_that_share_and_in_order(scheduled):
    grid = scheduled.time_grid
    assert grid.steps == [FIVE_MIN_US] and grid.shares[0] == pytest.approx(0.75, abs=0.03)
    batches = list(check_stream(scheduled.stream(start=START, batch_size=97, n_events=8000), time="ts"))
    sample = pl.concat(batches)
    assert sample.height == 8000 and sample["ts"].is_sorted()
    assert (_micros(sample, "ts") % FIVE_MIN_US == 0).mean() == pytest.approx(0.75, abs=0.03)
    # Draws are per event: the batch size changes neither the events nor their order.
    assert_frame_equal(sample, scheduled.sample(n_events=8000, start=START, batch_size=5000))


def test_shards_of_a_snapped_stream_partition_it(scheduled):
    end = START + timedelta(days=3)
    whole = scheduled.sample(start=START, end=end, batch_size=211)
    shards = [scheduled.sample(start=START, end=end, shard=(k, 3), batch_size=211) for k in range(3)]
    assert all(part["ts"].is_sorted() for part in shards)
    assert_frame_equal(pl.concat(shards).sort(EVENT_ID), whole.sort(EVENT_ID))


def test_grids_are_saved_and_loaded(baseline, tmp_path):
    baseline.save(tmp_path / "m")
    encoders = json.loads((tmp_path / "m" / "encoders.json").read_text())
    assert encoders["resolution"]["columns"]["amount"]["steps"] == [0.01]
    loaded = load_model(tmp_path / "m")
    assert_frame_equal(loaded.sample(n_events=3000, start=START), baseline.sample(n_events=3000, start=START))


def test_a_model_saved_before_resolutions_samples_as_it_did(tmp_path):
    # Saved, and sampled, by the code before resolutions (tests/data/baseline_before_resolution).
    shutil.copytree(BEFORE, tmp_path / "m")
    assert "resolution" not in json.loads((tmp_path / "m" / "encoders.json").read_text())
    model = load_model(tmp_path / "m")
    sample = model.sample(n_events=2000, start=START, batch_size=500)
    assert_frame_equal(sample, pl.read_parquet(BEFORE / "sample.parquet"))
    assert (_micros(sample, "ts") % DAY_US != 0).any()  # the old jitter, kept


@pytest.mark.slow
def test_transformer_samples_on_the_learned_grids(tmp_path):
    frame = purchases(n=1500)
    tiny = {"n_layer": 1, "n_head": 2, "n_embd": 32, "epochs": 2, "batch_size": 8, "progress": False}
    daily = create("transformer", seed=1, **tiny).fit(frame.drop("departure"))
    sample = daily.sample(n_entities=60, n_events=3000, start=START)
    assert (_micros(sample, "ts") % DAY_US == 0).all() and sample["ts"].is_sorted()
    assert _on_cents(sample["amount"]) == 1.0 and (sample["qty"].drop_nulls() % 5 == 0).all()
    # Times snap down: events generated just after an end can land before it, and must be there.
    end = START + timedelta(days=4, hours=12)
    assert_frame_equal(daily.sample(n_entities=60, start=START, end=end), sample.filter(pl.col("ts") < end))
    # A codec saved before resolutions decodes as it did: times and values as generated.
    daily.save(tmp_path / "m")
    encoders = json.loads((tmp_path / "m" / "encoders.json").read_text())
    del encoders["resolution"]
    (tmp_path / "m" / "encoders.json").write_text(json.dumps(encoders))
    (tmp_path / "m" / "checksums.sha256").unlink()  # nor checksums, in a model saved before resolutions
    before = load_model(tmp_path / "m")
    assert before.codec.time_grid is None and before.codec.grids == {}
    daily.codec.time_grid, daily.codec.grids = None, {}
    assert_frame_equal(before.sample(n_entities=60, n_events=500), daily.sample(n_entities=60, n_events=500))
    timetable = create("transformer", seed=1, **tiny).fit(_schedule(frame))
    stream = pl.concat(list(check_stream(timetable.stream(n_entities=60, n_events=6000, batch_size=101), time="ts")))
    assert (_micros(stream, "ts") % FIVE_MIN_US == 0).mean() == pytest.approx(0.75, abs=0.05)
    assert_frame_equal(timetable.sample(n_entities=60, n_events=2500), stream.head(2500))


def withdrawals(n: int = 4000, seed: int = 0) -> pl.DataFrame:
    """Card payments in cents, except at ATMs, which pay out whole tens; a decoy column says nothing."""
    r = np.random.default_rng(seed)
    channel = r.choice(["atm", "pos", "online"], n, p=[0.2, 0.5, 0.3])
    cents = np.round(np.exp(r.normal(3.5, 1.0, n)), 2)
    amount = np.where(channel == "atm", 10.0 * r.integers(2, 30, n), cents)
    return pl.DataFrame({
        "customer": [f"C{e:03d}" for e in r.integers(0, 200, n)],
        "ts": _times(int(START.timestamp() * 1e6) + np.sort(r.integers(0, 30 * DAY_US, n))),
        "channel": channel, "decoy": r.choice(["a", "b", "c"], n), "amount": amount,
    })


def _tens_by_channel(frame: pl.DataFrame) -> dict[str, float]:
    on = frame.group_by("channel").agg(((pl.col("amount") % 10).abs() < 1e-9).mean().alias("tens"))
    return dict(on.iter_rows())


def test_a_grid_depends_on_the_column_that_moves_its_values():
    frame = withdrawals()
    grid = Grid.learn_numeric(frame["amount"].to_numpy())
    assert grid.steps == [10.0, 0.01] and grid.by is None
    candidates = {c: frame[c].to_numpy() for c in ("decoy", "channel")}
    grid.condition_on(frame["amount"].to_numpy(), candidates)
    assert grid.by is not None and grid.by.column == "channel"
    weights = dict(zip(grid.by.values, grid.by.weights, strict=True))
    assert weights["atm"][0] == pytest.approx(1.0) and weights["pos"][0] < 0.01
    again = Grid.from_json(json.loads(json.dumps(grid.to_json())))
    assert again == grid
    # each row on its channel's level; a channel never seen takes the overall weights
    u = np.full(4, 0.5)
    assert again.levels(u, 4, pl.Series(["atm", "pos", "atm", "branch"])).tolist()[:3] == [0, 1, 0]
    # no column moves them: no condition
    plain = Grid.learn_numeric(frame["amount"].to_numpy()).condition_on(frame["amount"].to_numpy(),
                                                                        {"decoy": candidates["decoy"]})
    assert plain.by is None


@pytest.mark.parametrize("kind", ["baseline", "transformer"])
def test_models_keep_each_channels_grid(kind, tmp_path):
    frame = withdrawals()
    tiny = {"n_layer": 1, "n_head": 2, "n_embd": 32, "epochs": 2, "batch_size": 8, "progress": False}
    model = create(kind, seed=1, **(tiny if kind == "transformer" else {})).fit(frame)
    model.save(tmp_path / "m")
    sample = load_model(tmp_path / "m").sample(n_entities=200, n_events=4000, start=START)
    tens = _tens_by_channel(sample)
    assert tens["atm"] == 1.0  # every withdrawal on whole tens, as in training
    assert tens["pos"] < 0.05 and tens["online"] < 0.05  # before: about a fifth of them
