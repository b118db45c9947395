"""The payments simulator: columns, determinism, cycles, amounts and the fraud scenarios."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import polars as pl
import pytest

from streamsynth import StreamsynthError
from streamsynth.datasets import payments
from streamsynth.schema import Role, Schema

EXPECTED_SCHEMA = {
    "tx_id": pl.String,
    "ts": pl.Datetime("us", "UTC"),
    "customer_id": pl.String,
    "card_number": pl.String,
    "terminal_id": pl.String,
    "merchant_category": pl.String,
    "amount": pl.Float64,
    "channel": pl.String,
    "country": pl.String,
    "is_fraud": pl.Boolean,
    "fraud_scenario": pl.String,
}
FRAUD_SCENARIOS = {"compromised_terminal", "cnp_credential_leak", "card_testing", "stolen_card"}


@pytest.fixture(scope="module")
def default() -> pl.DataFrame:
    return payments()


@pytest.fixture(scope="module")
def small() -> pl.DataFrame:
    return payments(n_customers=200, n_terminals=60, n_days=7, seed=5)


def luhn_ok(number: str) -> bool:
    digits = [int(c) for c in reversed(number)]
    odd = sum(digits[0::2])
    even = sum(sum(divmod(2 * d, 10)) for d in digits[1::2])
    return (odd + even) % 10 == 0


def test_columns_and_dtypes_are_exact(small: pl.DataFrame) -> None:
    assert dict(small.schema) == EXPECTED_SCHEMA
    assert small.null_count().sum_horizontal().item() == 0
    assert small["tx_id"].n_unique() == small.height
    assert not {"event_id", "label"} & set(small.columns)


def test_default_size_and_values(default: pl.DataFrame) -> None:
    assert 100_000 <= default.height <= 200_000
    assert default["customer_id"].str.contains(r"^C\d{6}$").all()
    assert default["terminal_id"].str.contains(r"^T\d{5}$").all()
    assert default["country"].str.contains(r"^[A-Z]{2}$").all()
    assert set(default["channel"].unique()) == {"pos", "contactless", "online", "atm"}
    assert (default["amount"] > 0).all()
    cents = default["amount"] * 100
    assert ((cents - cents.round()).abs() < 1e-6).all()
    assert (default.filter(pl.col("channel") == "atm")["merchant_category"] == "atm").all()
    # Contactless taps stay under the limit; larger card-present payments use chip and PIN.
    assert default.filter(pl.col("channel") == "contactless")["amount"].max() <= 50.0


def test_sorted_by_time_within_the_requested_days() -> None:
    start = datetime(2024, 3, 4, 15, 30, tzinfo=timezone(timedelta(hours=2)))
    frame = payments(n_customers=100, n_terminals=30, n_days=3, start=start, seed=1)
    assert frame["ts"].is_sorted()
    first_day = datetime(2024, 3, 4, tzinfo=UTC)
    assert frame["ts"].min() >= first_day
    assert frame["ts"].max() < first_day + timedelta(days=3)
    assert payments(n_customers=20, n_days=1, start="2024-03-04")["ts"].min() >= first_day



def test_same_seed_same_frame_other_seed_differs() -> None:
    args = dict(n_customers=150, n_terminals=40, n_days=5)
    first = payments(**args, seed=11)
    assert first.equals(payments(**args, seed=11))
    other = payments(**args, seed=12)
    assert not first.equals(other)
    assert set(first["card_number"]) != set(other["card_number"])


def test_card_numbers_are_luhn_valid_one_per_customer(default: pl.DataFrame) -> None:
    cards = default.select("customer_id", "card_number").unique()
    assert cards["card_number"].str.contains(r"^\d{16}$").all()
    assert all(luhn_ok(c) for c in cards["card_number"])
    assert not luhn_ok("4111111111111112")  # the checker itself can say no
    # One card per customer and no card shared between customers.
    assert cards.height == default["customer_id"].n_unique() == default["card_number"].n_unique()


def test_fraud_rate_in_band_and_scenarios_consistent(default: pl.DataFrame) -> None:
    rate = default["is_fraud"].mean()
    assert 0.005 <= rate <= 0.02
    assert set(default["fraud_scenario"].unique()) == FRAUD_SCENARIOS | {"none"}
    assert (default["is_fraud"] == (default["fraud_scenario"] != "none")).all()


def test_fraud_rate_argument_steers_the_share() -> None:
    args = dict(n_customers=600, n_terminals=150, n_days=14, seed=2)
    assert not payments(**args, fraud_rate=0.0)["is_fraud"].any()
    high = payments(**args, fraud_rate=0.05)["is_fraud"].mean()
    assert 0.03 <= high <= 0.07


def test_daily_and_weekly_cycles(default: pl.DataFrame) -> None:
    genuine = default.filter(~pl.col("is_fraud"))
    by_hour = genuine.group_by(pl.col("ts").dt.hour().alias("hour")).len()
    counts = dict(zip(by_hour["hour"], by_hour["len"], strict=True))
    night = sum(counts.get(h, 0) for h in range(1, 5))
    midday = sum(counts.get(h, 0) for h in range(11, 15))
    assert night * 5 < midday
    assert counts[3] < counts[12] / 5 and counts[3] < counts[19] / 5
    # Grocery shops are mostly shut on Sunday (2024-01-07 is a Sunday, 2024-01-06 a Saturday).
    grocery = genuine.filter(pl.col("merchant_category") == "grocery")
    per_day = grocery.group_by(pl.col("ts").dt.weekday().alias("dow")).len()
    days = dict(zip(per_day["dow"], per_day["len"], strict=True))
    assert days[7] * 3 < days[6]


def test_amounts_depend_on_merchant_category(default: pl.DataFrame) -> None:
    medians = dict(
        default.filter(~pl.col("is_fraud"))
        .group_by("merchant_category")
        .agg(pl.col("amount").median())
        .iter_rows()
    )
    assert medians["electronics"] > 3 * medians["grocery"]
    assert medians["travel"] > 3 * medians["fuel"]
    assert medians["fuel"] > medians["digital_services"]
    # Heavy tail: the top percentile sits far above the median.
    amounts = default["amount"]
    assert amounts.quantile(0.999) > 20 * amounts.median()


def test_card_testing_bursts_are_tiny_and_seconds_apart(default: pl.DataFrame) -> None:
    testing = default.filter(pl.col("fraud_scenario") == "card_testing").sort("customer_id", "ts")
    assert testing.height >= 20
    assert testing["amount"].max() < 5.0
    assert (testing["channel"] == "online").all()
    gaps = testing.select(
        pl.col("ts").diff().over("customer_id").dt.total_seconds(fractional=True).alias("gap")
    )["gap"].drop_nulls()
    # Within a burst gaps are seconds; the median is far under a minute.
    assert gaps.filter(gaps < 3600).median() < 60
    genuine_gap = (
        default.filter(~pl.col("is_fraud"))
        .sort("customer_id", "ts")
        .select(pl.col("ts").diff().over("customer_id").dt.total_seconds().alias("gap"))["gap"]
        .drop_nulls()
        .median()
    )
    assert genuine_gap > 3600


def test_other_scenarios_have_their_signatures(default: pl.DataFrame) -> None:
    leak = default.filter(pl.col("fraud_scenario") == "cnp_credential_leak")
    assert (leak["channel"] == "online").all()
    online = default.filter((pl.col("channel") == "online") & ~pl.col("is_fraud"))
    assert leak["amount"].median() > 2 * online["amount"].median()
    stolen = default.filter(pl.col("fraud_scenario") == "stolen_card")
    assert (stolen["channel"] == "contactless").all() and stolen["amount"].max() < 50
    # A compromised terminal: every transaction there during its window is fraud.
    hit = default.filter(pl.col("fraud_scenario") == "compromised_terminal")
    windows = hit.group_by("terminal_id").agg(
        pl.col("ts").min().alias("first"), pl.col("ts").max().alias("last")
    )
    inside = default.join(windows, on="terminal_id").filter(
        pl.col("ts").is_between(pl.col("first"), pl.col("last"))
    )
    assert inside.height >= hit.height > 0
    assert inside["is_fraud"].all()


def test_small_populations_keep_the_rate_not_a_floor() -> None:
    frames = [payments(n_customers=10, n_terminals=5, n_days=2, seed=s) for s in range(40)]
    rates = [frame["is_fraud"].mean() for frame in frames]
    assert sum(rates) / len(rates) < 0.05


@pytest.mark.parametrize(
    "kwargs",
    [
        {"n_customers": 0},
        {"n_customers": 2.5},
        {"n_terminals": 1},
        {"n_days": 0},
        {"seed": -1},
        {"fraud_rate": 1.0},
        {"fraud_rate": -0.1},
        {"fraud_rate": "0.1"},
        {"start": "not a date"},
        {"start": 20240101},
    ],
)
def test_bad_arguments_raise(kwargs: dict) -> None:
    with pytest.raises(StreamsynthError) as info:
        payments(**kwargs)
    assert next(iter(kwargs)) in info.value.message


def test_schema_inference_reads_the_roles(small: pl.DataFrame) -> None:
    schema = Schema.infer(small)
    assert schema.time == "ts"
    assert schema.entity == "customer_id"
    assert schema.label == "is_fraud"
    card = schema["card_number"]
    assert (card.role, card.kind) == (Role.IDENTIFIER, "credit_card")
