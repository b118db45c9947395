"""Constraints stated in a schema file hold in every row of a million sampled events: bounds,
non-negative, one-of sets, monotone per entity, and rules implied by another column."""

from __future__ import annotations

import polars as pl
import pytest

from streamsynth.cli import main
from streamsynth.constraints import check_constraints
from streamsynth.errors import StreamsynthError

SCHEMA = """
constraints:
  - {column: amount, min: 5, max: 400}
  - {column: refund, non_negative: true}
  - {column: channel, one_of: [pos, online]}
  - {column: balance, monotone: increasing}
  - {when: {channel: online}, column: country, equals: NL}
"""


@pytest.fixture(scope="module")
def sampled(tmp_path_factory, payments_small) -> pl.DataFrame:
    tmp = tmp_path_factory.mktemp("constraints")
    data = payments_small.sort("customer_id", "ts").with_columns(
        pl.col("amount").cum_sum().over("customer_id").alias("balance"),
        (pl.col("amount") - 60).alias("refund"),
    )
    data.write_parquet(tmp / "data.parquet")
    (tmp / "schema.yaml").write_text(SCHEMA)
    assert main(["fit", str(tmp / "data.parquet"), "-o", str(tmp / "m"), "--schema", str(tmp / "schema.yaml")]) == 0
    assert main(["sample", str(tmp / "m"), "-n", "1000000", "-o", str(tmp / "s.parquet")]) == 0
    out = pl.read_parquet(tmp / "s.parquet")
    assert out.height == 1_000_000
    return out


def test_bounds_hold_in_every_row(sampled):
    assert sampled["amount"].min() >= 5 and sampled["amount"].max() <= 400


def test_non_negative_holds_in_every_row(sampled):
    assert sampled["refund"].min() >= 0


def test_one_of_holds_in_every_row(sampled):
    assert set(sampled["channel"].unique().to_list()) <= {"pos", "online"}


def test_monotone_per_entity_holds_in_every_row(sampled):
    steps = sampled.select(pl.col("balance").diff().over("customer_id").alias("d"))["d"].drop_nulls()
    assert steps.len() > 0 and steps.min() >= 0


def test_an_implied_rule_holds_in_every_row(sampled):
    online = sampled.filter(pl.col("channel") == "online")
    assert online.height > 0 and (online["country"] == "NL").all()
    assert (sampled.filter(pl.col("channel") == "pos")["country"] != "NL").any()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("min 0", "not a list"),
        ([{"min": 0}], "names no column"),
        ([{"column": "a"}], "states no rule"),
        ([{"column": "a", "min": "low"}], "min is 'low', not a number"),
        ([{"column": "a", "monotone": "up"}], "monotone is 'up'"),
        ([{"column": "a", "one_of": []}], "one_of must be a non-empty list"),
        ([{"column": "a", "below": 3}], "unknown keys ['below']"),
    ],
)
def test_bad_constraints_are_named(value, message):
    with pytest.raises(StreamsynthError, match=message.replace("[", r"\[").replace("]", r"\]")):
        check_constraints(value, "s.yaml")
