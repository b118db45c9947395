"""The rules generator as a stream: determinism, sharding, contract, arrivals, state machines."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from streamsynth.cli import main
from streamsynth.contract import check_stream
from streamsynth.errors import StreamsynthError
from streamsynth.models import create, load_model
from streamsynth.models.rules import RuleSynthesizer
from streamsynth.rules import EXAMPLES

EXAMPLE_DIR = Path(__file__).resolve().parents[2] / "streamsynth" / "rules" / "examples"
START = datetime(2024, 5, 6, tzinfo=UTC)  # a Monday


def _spec(**parts: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": "s",
        "start": START.isoformat(),
        "entity": {"name": "user", "count": 2_000},
        "arrival": {"sessions_per_day": 24},
        "events": {"fields": {"x": {"distribution": {"kind": "normal"}}}},
    }
    spec.update(parts)
    return spec


def _example(name: str) -> RuleSynthesizer:
    return RuleSynthesizer.from_file(EXAMPLE_DIR / f"{name}.yaml")


@pytest.mark.parametrize("name", EXAMPLES)
def test_examples_keep_the_stream_contract(name: str) -> None:
    model = _example(name)
    stream = check_stream(model.stream(batch_size=3_000), model.schema.time, model.schema.entity)
    batches = list(itertools.islice(stream, 15))
    assert all(b.height == 3_000 for b in batches)
    assert batches[0].columns[:3] == ["event_id", model.schema.time, model.schema.entity]


@pytest.mark.parametrize("name", EXAMPLES)
def test_same_seed_same_events_whatever_the_batch_size(name: str) -> None:
    model = _example(name)
    a = model.sample(n_events=20_000, batch_size=1_234)
    b = model.sample(n_events=20_000, batch_size=20_000)
    assert a.equals(b)
    other = model.sample(n_events=2_000, seed=model.seed + 1)
    assert not other.equals(a.head(2_000))


@pytest.mark.parametrize("name", EXAMPLES)
def test_shards_are_exactly_the_unsharded_rows_of_their_entities(name: str) -> None:
    model = _example(name)
    full = model.sample(n_events=15_000)
    end = full[model.schema.time][-1]
    full = model.sample(end=end)
    parts = [model.sample(end=end, shard=(k, 4)) for k in range(4)]
    assert sum(p.height for p in parts) == full.height
    keys = [model.schema.time, "event_id"]
    assert pl.concat(parts).sort(keys).equals(full.sort(keys))
    numbers = parts[1]["event_id"].str.split("-").list.get(-2).cast(pl.Int64)
    assert (numbers % 4 == 1).all()


def test_stream_is_endless_and_time_ordered_past_the_duration() -> None:
    model = RuleSynthesizer.from_spec(_spec(entity={"name": "user", "count": 50}, duration_hours=1))
    stream = check_stream(model.stream(batch_size=500), "ts", "user")
    last = list(itertools.islice(stream, 40))[-1]
    assert last["ts"][-1] > START + timedelta(days=3)
    late = START + timedelta(minutes=30, seconds=7)
    assert model.sample(start=late, n_events=100)["ts"].min() >= late


def test_poisson_rate_and_hour_of_day_profile() -> None:
    hours = [0.0] * 6 + [1.0] * 6 + [4.0] * 2 + [1.0] * 10
    model = RuleSynthesizer.from_spec(
        _spec(arrival={"sessions_per_day": 6, "hour_of_day": hours}, entity={"name": "user", "count": 1_000})
    )
    frame = model.sample(end=START + timedelta(days=4))
    # 1,000 users x 6 sessions/day x 4 days, one event per session
    assert frame.height == pytest.approx(24_000, rel=0.03)
    share = frame["ts"].dt.hour().value_counts().sort("ts")
    observed = np.zeros(24)
    observed[share["ts"].to_numpy()] = share["count"].to_numpy() / frame.height
    expected = np.array(hours) / sum(hours)
    assert observed[:6].sum() == 0
    assert np.abs(observed - expected).max() < 0.01


def test_day_of_week_profile_and_rate_by_attribute() -> None:
    model = RuleSynthesizer.from_spec(
        _spec(
            entity={
                "name": "user",
                "count": 1_000,
                "attributes": {
                    "heavy": {"distribution": {"kind": "bernoulli", "p": 0.5}},
                    "activity": {"expr": "3.0 if heavy else 1.0", "output": False},
                },
            },
            arrival={"sessions_per_day": 4, "rate_by": "activity", "day_of_week": [1, 1, 1, 1, 1, 0, 0]},
        )
    )
    frame = model.sample(end=START + timedelta(days=7))
    assert frame["ts"].dt.weekday().max() <= 5  # Monday=1 .. Friday=5: nothing at the weekend
    per_user = frame.group_by("user", "heavy").len()
    means = per_user.group_by("heavy").agg(pl.col("len").mean()).sort("heavy")["len"].to_list()
    assert means[1] / means[0] == pytest.approx(3.0, rel=0.05)
    # weekday weights normalise to mean 1 over the week: 5 days carry 7/5 of the base rate
    assert frame.height == pytest.approx(1_000 * 4 * 2 * 7, rel=0.05)


def test_state_machine_transition_frequencies_and_dwell_times() -> None:
    machine = {
        "column": "step",
        "start": {"login": 0.7, "browse": 0.3},
        "states": {
            "login": {"next": {"browse": 0.9, "end": 0.1}, "dwell": {"kind": "constant", "value": 5}},
            "browse": {
                "next": {"browse": 0.5, "checkout": 0.3, "end": 0.2},
                "dwell": {"kind": "exponential", "scale": 30},
            },
            "checkout": {"next": {"payment": 0.8, "browse": 0.2}, "dwell": {"kind": "uniform", "low": 10, "high": 20}},
            "payment": {},
        },
    }
    fields = {"sess": {"expr": "session"}, "pos": {"expr": "position"}}
    model = RuleSynthesizer.from_spec(_spec(events={"type": machine, "fields": fields}))
    end = START + timedelta(hours=30)
    frame = model.sample(end=end).sort("sess", "pos")
    # sessions near the end may be cut short; keep those that began hours before it
    frame = frame.filter(pl.col("ts").min().over("sess") < end - timedelta(hours=3))
    assert frame.height > 100_000
    nxt = frame.with_columns(
        pl.col("step").shift(-1).over("sess").alias("to"),
        (pl.col("ts").shift(-1).over("sess") - pl.col("ts")).dt.total_microseconds().alias("gap_us"),
    )
    starts = frame.filter(pl.col("pos") == 0)["step"].value_counts(normalize=True).sort("step")
    assert dict(starts.iter_rows()) == pytest.approx({"browse": 0.3, "login": 0.7}, abs=0.01)
    expected = {
        "login": {"browse": 0.9, None: 0.1},
        "browse": {"browse": 0.5, "checkout": 0.3, None: 0.2},
        "checkout": {"payment": 0.8, "browse": 0.2},
        "payment": {None: 1.0},
    }
    for state, targets in expected.items():
        rows = nxt.filter(pl.col("step") == state)
        got = dict(rows["to"].value_counts(normalize=True).iter_rows())
        assert got == pytest.approx(targets, abs=0.015), state
    gaps = nxt.drop_nulls("to").group_by("step").agg((pl.col("gap_us") / 1e6).mean().alias("mean"))
    gaps = dict(gaps.iter_rows())
    assert gaps["login"] == pytest.approx(5, abs=1e-5)
    assert gaps["browse"] == pytest.approx(30, rel=0.03)
    assert gaps["checkout"] == pytest.approx(15, rel=0.02)
    assert frame.group_by("sess").len()["len"].max() <= 100


def test_bursts_are_labelled_dense_runs() -> None:
    spec = _spec(
        arrival={
            "sessions_per_day": 24,
            "bursts": {
                "probability": 0.05,
                "events": {"kind": "constant", "value": 20},
                "gap": {"kind": "exponential", "scale": 1},
            },
        },
        events={"fields": {"is_fraud": {"expr": "in_burst"}, "sess": {"expr": "session"}}},
        label="is_fraud",
    )
    model = RuleSynthesizer.from_spec(spec)
    frame = model.sample(n_events=60_000)
    assert frame["label"].unique().sort().to_list() == ["fraud", "normal"]
    assert (frame["is_anomaly"] == frame["is_fraud"]).all()
    sessions = frame.group_by("sess").agg(pl.col("is_fraud").first(), pl.len())
    bursts = sessions.filter(pl.col("is_fraud"))
    assert bursts.height / sessions.height == pytest.approx(0.05, abs=0.01)
    assert (bursts.filter(pl.col("len") < 20).height) <= 2  # only sessions cut at the sample end


def test_regular_process_and_smooth_noise() -> None:
    spec = _spec(
        entity={"name": "host", "count": 20},
        arrival={"process": "regular", "interval": 15, "jitter": 0.5},
        events={"fields": {"cpu": {"expr": "50 + 10 * noise(3600)"}, "raw": {"expr": "normal()"}}},
    )
    frame = RuleSynthesizer.from_spec(spec).sample(end=START + timedelta(hours=6))
    assert frame.height == pytest.approx(20 * 6 * 240, abs=20)
    gaps = frame.sort("host", "ts").with_columns(
        (pl.col("ts").diff().over("host").dt.total_microseconds() / 1e6).alias("gap")
    )["gap"].drop_nulls()
    assert gaps.min() >= 14.0 and gaps.max() <= 16.0
    assert gaps.mean() == pytest.approx(15, abs=0.01)
    by_host = frame.sort("host", "ts")
    lagged = by_host.with_columns(pl.col("cpu").shift(1).over("host").alias("prev")).drop_nulls("prev")
    assert np.corrcoef(lagged["cpu"], lagged["prev"])[0, 1] > 0.95
    assert frame["cpu"].std() == pytest.approx(10, rel=0.3)
    raw = by_host.with_columns(pl.col("raw").shift(1).over("host").alias("prev")).drop_nulls("prev")
    assert abs(np.corrcoef(raw["raw"], raw["prev"])[0, 1]) < 0.05


def test_save_load_round_trip_and_no_fit(tmp_path: Path) -> None:
    model = _example("payments")
    directory = model.save(tmp_path / "model")
    assert (directory / "schema.yaml").read_text() == (EXAMPLE_DIR / "payments.yaml").read_text()
    again = load_model(directory)
    assert isinstance(again, RuleSynthesizer)
    assert again.sample(n_events=3_000).equals(model.sample(n_events=3_000))
    with pytest.raises(StreamsynthError, match="needs no fit"):
        model.fit(pl.DataFrame({"a": [1]}))
    with pytest.raises(StreamsynthError, match="has no schema"):
        create("rules").sample(n_events=10)


def test_cli_sample_from_a_schema_file(tmp_path: Path) -> None:
    schema = tmp_path / "weblogs.yaml"
    assert main(["schema", "init", "weblogs", "-o", str(schema)]) == 0
    out = tmp_path / "out.parquet"
    assert main(["sample", str(schema), "-n", "5000", "-o", str(out), "--seed", "11"]) == 0
    frame = pl.read_parquet(out)
    assert frame.height == 5_000
    assert {"event_type", "method", "path", "status", "latency_ms", "user_agent"} <= set(frame.columns)
    expected = RuleSynthesizer.from_file(schema, seed=11).sample(n_events=5_000)
    assert frame["event_id"].to_list() == expected["event_id"].to_list()
