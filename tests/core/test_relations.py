"""Numeric near-dependencies (relations): found at fit with one or two parents, not found in
noise, saved with the model, and a child moved with its parents when a dependency changes them."""

from __future__ import annotations

import json
import warnings
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from streamsynth import relations
from streamsynth.datasets.flights import flights
from streamsynth.models import create, load_model
from streamsynth.schema import Schema


def _table(n: int = 6000, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    distance = rng.uniform(100, 2500, n).round()
    channel = rng.choice(["pos", "online", "atm"], n)
    amount = rng.gamma(2.0, 30.0, n).round(2)
    fee = amount * np.where(channel == "online", 0.03, 0.01) + rng.normal(0, 0.02, n)
    return pl.DataFrame({
        "ts": [datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=i) for i in range(n)],
        "user": [f"u{i % 300}" for i in range(n)],
        "distance": distance.astype(np.int64),
        "air_time": (distance / 7.8 + 18 + rng.normal(0, 3, n)).round().astype(np.int64),
        "channel": channel,
        "amount": amount,
        "fee": fee.round(2),
        "noise": rng.normal(0, 1, n),
    })


def test_one_and_two_parents_are_found_and_noise_is_not():
    frame = _table()
    found = {r.child: r for r in relations.discover(frame, Schema.infer(frame))}
    # two columns that follow each other: one direction is kept (a dependency, when one sets
    # distance, makes it the parent)
    pair = [r for r in found.values() if {r.child, *r.parents} == {"distance", "air_time"}]
    assert len(pair) == 1 and pair[0].score > 0.9
    assert set(found["fee"].parents) == {"amount", "channel"}
    assert "noise" not in found


def test_rank_and_place_are_inverse_and_follow_the_parent():
    frame = _table()
    relation = next(r for r in relations.discover(frame, Schema.infer(frame), fixed={"distance"})
                    if r.child == "air_time")
    u = relation.rank(frame)
    assert np.isfinite(u).all() and 0.4 < float(np.mean(u)) < 0.6
    placed = relation.place(frame, u)
    assert np.abs(placed - frame["air_time"].to_numpy()).mean() < 3
    # the same rank at a longer distance is a longer flight
    longer = frame.with_columns(pl.col("distance") + 780)
    assert float(np.median(relation.place(longer, u) - placed)) == pytest.approx(100, abs=8)
    assert np.array_equal(placed, np.round(placed))  # the child's whole numbers


def test_a_child_moves_with_a_parent_a_dependency_sets(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        frame = flights(n_aircraft=150, days=12, n_airports=20, seed=3)
        model = create("baseline").fit(frame)
    assert any(d.determines == "distance" for d in model.dependencies)
    assert any(r.child == "air_time" and r.parents[0] == "distance" for r in model.relations)
    sample = model.sample(n_events=5000, seed=1)

    def spread(f: pl.DataFrame) -> float:
        return float((f["air_time"] - f["distance"] / 7.8).std())

    model.save(tmp_path / "m")
    assert load_model(tmp_path / "m").sample(n_events=5000, seed=1).equals(sample)
    # the baseline draws the child from its parents (within 1.5x of the real spread around the
    # line); without relations it is several times the real spread
    assert spread(sample) < 1.5 * spread(frame)
    model.relations = []
    assert spread(model.sample(n_events=5000, seed=1)) > 3 * spread(frame)


def test_a_model_saved_before_relations_and_continuities_still_loads_and_samples(tmp_path):
    frame = _table(2000)
    model = create("baseline").fit(frame)
    model.save(tmp_path / "m")
    config = tmp_path / "m" / "config.json"
    header = json.loads(config.read_text())
    del header["relations"], header["continuities"]
    config.write_text(json.dumps(header))
    (tmp_path / "m" / "checksums.sha256").unlink()  # models saved before relations had none
    old = load_model(tmp_path / "m")
    assert old.relations == [] and old.sample(n_events=300).height == 300
