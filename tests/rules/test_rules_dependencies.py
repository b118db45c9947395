"""Dependencies stated in a rules schema: the determined field is drawn once per combination of
its determinants' values, so every row agrees, in any batch or shard; bad statements are errors
naming the key."""

from __future__ import annotations

from typing import Any

import polars as pl
import pytest

from streamsynth.dependencies import discover
from streamsynth.errors import StreamsynthError
from streamsynth.models.rules import RuleSynthesizer

ROUTES = {
    "origin": {"distribution": {"kind": "choice", "values": ["JFK", "LAX", "ORD", "ATL", "SEA", "DEN"]}},
    "dest": {"distribution": {"kind": "choice", "values": ["JFK", "LAX", "ORD", "ATL", "SEA", "DEN"]}},
    "distance": {"distribution": {"kind": "uniform", "low": 200, "high": 2800}, "round": 0, "dtype": "int"},
    "terminal": {"distribution": {"kind": "zipf", "s": 1.1, "n": 500}, "dtype": "str"},
    "merchant": {"faker": "merchant"},
    "fare": {"distribution": {"kind": "normal", "mean": "100 + distance / 10", "std": 5}},
}
STATED = [{"determinants": ["origin", "dest"], "determines": "distance"},
          {"determinants": ["terminal"], "determines": "merchant"}]


def _model(fields: dict[str, Any] = ROUTES, dependencies: list[dict[str, Any]] = STATED) -> RuleSynthesizer:
    return RuleSynthesizer.from_spec({
        "name": "t", "entity": {"name": "user", "count": 2_000},
        "arrival": {"sessions_per_day": 24}, "events": {"fields": fields}, "dependencies": dependencies,
    })


def _values_per_key(frame: pl.DataFrame, keys: list[str], column: str) -> int:
    return int(frame.group_by(keys).agg(pl.col(column).n_unique())[column].max())


def test_every_row_agrees_with_the_stated_dependency():
    frame = _model().sample(n_events=200_000)
    assert _values_per_key(frame, ["origin", "dest"], "distance") == 1
    assert _values_per_key(frame, ["terminal"], "merchant") == 1
    assert frame["distance"].n_unique() > 20 and frame["merchant"].n_unique() > 50  # still drawn, not one value
    found = {d.determines: d.determinants for d in discover(frame, _model().schema)}
    assert found["distance"] == ("origin", "dest") or found["distance"] == ("dest", "origin")
    # without the statement, the same field varies per event
    free = _model(dependencies=[]).sample(n_events=20_000)
    assert _values_per_key(free, ["origin", "dest"], "distance") > 1


def test_batches_and_shards_draw_the_same_values():
    model = _model()
    whole = model.sample(n_events=30_000, seed=4)
    assert model.sample(n_events=30_000, seed=4, batch_size=777).equals(whole)
    shards = pl.concat([model.sample(n_events=30_000, seed=4, shard=(k, 3)) for k in range(3)])
    both = pl.concat([whole, shards]).unique(["origin", "dest", "distance"])
    assert _values_per_key(both, ["origin", "dest"], "distance") == 1


@pytest.mark.parametrize("dependencies, message", [
    ([{"determinants": ["origin"], "determines": "nope"}], r"dependencies\[0\]\.determines: 'nope' is not an event"),
    ([{"determinants": ["nope"], "determines": "distance"}], r"dependencies\[0\]\.determinants: 'nope'"),
    ([{"determinants": ["origin"], "determines": "fare"}], r"fare.*reads 'distance'"),
    ([{"determinants": ["origin", "dest"], "determines": "distance"}] * 2, "stated twice"),
    ([{"determinants": [], "determines": "distance"}], "determinants"),
    ([{"determines": "distance"}], "determinants"),
])
def test_bad_statements_name_the_key(dependencies, message):
    with pytest.raises(StreamsynthError, match=message):
        _model(dependencies=dependencies)


def test_an_expression_field_cannot_be_stated():
    fields = {**ROUTES, "km": {"expr": "distance * 1.609"}}
    with pytest.raises(StreamsynthError, match="is an expr"):
        _model(fields, [{"determinants": ["origin"], "determines": "km"}])
