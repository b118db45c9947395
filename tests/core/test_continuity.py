"""Continuities: a column that repeats another column of the entity's previous event (a flight
leaves from where the aircraft last landed), found at fit and kept in every row of a stream,
across batch boundaries, with the route it forms one seen in training."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest

from streamsynth import continuity
from streamsynth.datasets.flights import flights
from streamsynth.models import create, load_model
from streamsynth.schema import Schema


@pytest.fixture(scope="module")
def schedule() -> pl.DataFrame:
    return flights(n_aircraft=80, days=8, n_airports=15, seed=5)


def _schema(frame: pl.DataFrame) -> Schema:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Schema.infer(frame)


def _continued(frame: pl.DataFrame) -> float:
    return frame.select((pl.col("origin") == pl.col("dest").shift(1).over("tail_number"))
                        .drop_nulls().mean()).item()


def test_found_in_a_schedule_and_not_where_it_breaks_too_often(schedule):
    schema = _schema(schedule)
    ordered = schedule.sort("tail_number", "dep_time")
    found = continuity.discover(ordered, schema)
    assert [(c.column, c.follows) for c in found] == [("origin", "dest")] and found[0].support == 1.0
    # one flight in ten repositioned elsewhere: no longer a continuity
    rng = np.random.default_rng(0)
    broken = ordered.with_columns(pl.Series("origin", np.where(rng.random(ordered.height) < 0.1, "ZZZ",
                                                                 ordered["origin"].to_numpy())))
    assert continuity.discover(broken, schema) == []


def test_a_column_repeating_itself_is_no_continuity():
    frame = pl.DataFrame({"user": ["a"] * 60 + ["b"] * 60, "t": list(range(120)),
                          "home": ["x"] * 60 + ["y"] * 60, "city": ["x"] * 60 + ["y"] * 60})
    schema = Schema.infer(frame, time="t", entity="user")
    assert continuity.discover(frame, schema) == []


@pytest.mark.parametrize("batch_size", [7, 10_000])
def test_every_sampled_flight_leaves_from_the_last_arrival_on_a_known_route(schedule, batch_size, tmp_path):
    model = create("baseline").fit(schedule, _schema(schedule))
    assert [c.describe() for c in model.continuities] == ["origin = previous dest (100.00% of events)"]
    sample = model.sample(n_events=3000, seed=2, batch_size=batch_size)
    assert _continued(sample) == 1.0
    routes = set(schedule.select("origin", "dest").unique().rows())
    assert set(sample.select("origin", "dest").unique().rows()) <= routes
    model.save(tmp_path / "m")
    assert load_model(tmp_path / "m").sample(n_events=3000, seed=2, batch_size=batch_size).equals(sample)


def test_the_batch_size_does_not_change_the_sample(schedule):
    model = create("baseline").fit(schedule, _schema(schedule))
    assert model.sample(n_events=2000, seed=1, batch_size=13).equals(model.sample(n_events=2000, seed=1))


def test_dependencies_off_switches_continuities_off(schedule):
    schema = _schema(schedule)
    schema.dependencies = "off"
    model = create("baseline").fit(schedule, schema)
    assert model.continuities == [] and _continued(model.sample(n_events=2000)) < 0.5
