"""Every injector on a base stream built here: exact labels, untouched rows identical, windows
respected, the stream contract kept, and the same seed giving the same output."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest
from streamsynth.scenarios import Context, inject, parse_scenario

from streamsynth.contract import EVENT_ID, LABEL_COLUMNS, SCENARIO_ID, check_stream, with_label_columns
from streamsynth.identifiers import fake
from streamsynth.schema import Schema

START = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
BASE_COLUMNS = [
    "event_id", "ts", "customer_id", "tx_id", "card_number", "terminal_id", "merchant_category",
    "amount", "channel", "country", "status", "latency_ms", "is_fraud",
]


def base_frame(n_customers: int = 300, hours: float = 3.0, seed: int = 5) -> pl.DataFrame:
    """A small payments-and-requests stream: what the injectors act on."""
    rng = np.random.default_rng(seed)
    n = int(n_customers * hours * 12)
    cust = rng.integers(0, n_customers, n)
    offsets = np.sort(rng.uniform(0, hours * 3600, n))
    frame = pl.DataFrame(
        {
            "event_id": [f"base-{i}" for i in range(n)],
            "ts": pl.Series([START + timedelta(seconds=float(s)) for s in offsets]).cast(pl.Datetime("us", "UTC")),
            "customer_id": [f"C{c:05d}" for c in cust],
            "tx_id": fake("code", np.arange(n), 1),
            "card_number": fake("credit_card", cust, 2),
            "terminal_id": [f"T{t:04d}" for t in rng.integers(0, 80, n)],
            "merchant_category": rng.choice(["grocery", "fuel", "travel", "online_retail"], n),
            "amount": np.round(rng.lognormal(3.3, 0.8, n), 2),
            "channel": rng.choice(["pos", "online", "contactless"], n),
            "country": rng.choice(["DE", "NL", "AT"], n),
            "status": rng.choice([200, 200, 200, 201, 404, 500], n),
            "latency_ms": np.round(rng.lognormal(4, 0.4, n), 1),
            "is_fraud": rng.uniform(size=n) < 0.005,
        }
    )
    frame = frame.with_columns(
        pl.when(pl.col("is_fraud")).then(pl.lit("fraud")).otherwise(pl.lit("normal")).alias("label"),
        pl.col("is_fraud").alias("is_anomaly"),
    )
    return with_label_columns(frame)


BASE = base_frame()
# The schema a model base hands the engine (with a file base it is inferred from the first batch).
SCHEMA = Schema.infer(BASE.drop(list(LABEL_COLUMNS)), time="ts", entity="customer_id")


def batches(frame: pl.DataFrame, size: int):
    return (frame.slice(i, size) for i in range(0, frame.height, size))


def run(events: list[dict], *, batch_size: int = 700, seed: int = 9, frame: pl.DataFrame = BASE) -> pl.DataFrame:
    scenario = parse_scenario(
        {"name": "t", "seed": seed, "base": {"source": "demo", "duration": "3h"}, "events": events}
    )
    ctx = Context(time="ts", entity="customer_id", label_column="is_fraud", schema=SCHEMA)
    stream = inject(scenario, batches(frame, batch_size), ctx, anchor=START)
    parts = list(check_stream(stream, "ts", "customer_id"))
    return pl.concat(parts, how="vertical")


def window(event: dict) -> tuple[datetime, datetime]:
    from streamsynth.scenarios.fields import parse_duration

    lo = START + parse_duration(event["at"])
    return lo, lo + parse_duration(event["duration"])


CASES = {
    "card_testing": {"params": {"cards": 4, "attempts": 10}},
    "account_takeover": {"params": {"accounts": 3, "transactions": 4}},
    "velocity_burst": {"params": {"entities": 3, "transactions": 8}},
    "mule_fan_in": {"params": {"senders": 12, "mule_id": "MULE-1"}},
    "mule_fan_out": {"params": {"recipients": 10, "mule_id": "MULE-1"}},
    "compromised_merchant": {"params": {"cards": 15}},
    "error_spike": {"params": {"values": [503]}, "targets": {"where": {"channel": "online"}, "share": 0.6}},
    "latency_spike": {"params": {"multiplier": 4}},
    "dropout": {},
    "duplicate_events": {"params": {"delay": "3m"}, "targets": {"share": 0.3}},
    "out_of_order": {"params": {"max_delay": "90s"}, "targets": {"share": 0.3}},
    "traffic_surge": {"params": {"factor": 2.5, "jitter": "30s"}},
    "drift": {"params": {"column": "amount", "mode": "scale", "amount": 3.0}},
}
GENERATED = {"card_testing", "account_takeover", "velocity_burst", "mule_fan_in", "mule_fan_out",
             "compromised_merchant"}


def event_of(kind: str) -> dict:
    return {"kind": kind, "at": "40m", "duration": "30m", **CASES[kind]}


@pytest.mark.parametrize("kind", sorted(CASES))
def test_labelled_rows_are_exactly_the_added_or_changed_ones(kind):
    event = event_of(kind)
    out = run([event])
    lo, hi = window(event)
    data = [c for c in BASE_COLUMNS if c != EVENT_ID]
    joined = out.join(BASE, on=EVENT_ID, how="left", suffix="_base")
    in_base = joined["ts_base"].is_not_null()
    labelled = joined[SCENARIO_ID].is_not_null()
    # Differs in some base column from the base row with the same id.
    differs = pl.Series([False] * joined.height)
    for c in data:
        differs = differs | joined[c].ne_missing(joined[f"{c}_base"])
    differs = differs & in_base
    assert (labelled == (~in_base | differs)).all(), "a labelled row is neither new nor changed, or vice versa"
    if kind == "dropout":  # removes rows, labels none (see test_dropout_leaves_a_gap_and_nothing_else)
        assert labelled.sum() == 0
        return
    assert labelled.sum() > 0, f"{kind} touched nothing"
    # Untouched rows are byte-identical to the base, label columns included; added columns are null.
    untouched = out.filter(pl.col(SCENARIO_ID).is_null())
    reference = BASE.filter(pl.col(EVENT_ID).is_in(untouched[EVENT_ID].implode()))
    assert untouched.select(BASE.columns).equals(reference.select(BASE.columns))
    for extra in set(out.columns) - set(BASE.columns):
        assert untouched[extra].null_count() == untouched.height
    # The labels are the event's.
    touched = out.filter(pl.col(SCENARIO_ID).is_not_null())
    assert touched[SCENARIO_ID].unique().to_list() == [f"t/0-{kind}"]
    assert touched["is_anomaly"].all()
    assert touched["label"].n_unique() == 1 and touched["label"][0].split(".")[0] in ("fraud", "ops", "traffic")
    # Timing: what was made or changed lies in the window (moved and delayed rows by their event time).
    when = touched["original_ts"] if "original_ts" in touched.columns else touched["ts"]
    when = when.fill_null(touched["ts"])
    assert when.min() >= lo and when.max() < hi
    if kind in GENERATED:
        assert touched["is_fraud"].all()
        assert not touched[EVENT_ID].is_in(BASE[EVENT_ID].implode()).any()


def test_dropout_leaves_a_gap_and_nothing_else():
    event = event_of("dropout")
    out = run([event])
    lo, hi = window(event)
    assert out.filter((pl.col("ts") >= lo) & (pl.col("ts") < hi)).height == 0
    outside = BASE.filter((pl.col("ts") < lo) | (pl.col("ts") >= hi))
    assert out.equals(outside)


def test_duplicates_point_at_their_originals_and_keep_the_payload():
    out = run([event_of("duplicate_events")])
    dups = out.filter(pl.col("duplicate_of").is_not_null())
    assert dups.height > 0 and dups[EVENT_ID].n_unique() == dups.height
    originals = BASE.join(dups, left_on=EVENT_ID, right_on="duplicate_of", suffix="_dup")
    assert originals.height == dups.height
    for c in BASE_COLUMNS:
        if c in (EVENT_ID, "ts"):
            continue
        assert originals[c].equals(originals[f"{c}_dup"], check_names=False), c
    assert (originals["ts_dup"] - originals["ts"] == timedelta(minutes=3)).all()
    assert (originals["original_ts"] == originals["ts"]).all()


def test_late_events_are_positioned_at_arrival_and_keep_their_event_time():
    out = run([event_of("out_of_order")])
    late = out.filter(pl.col("original_ts").is_not_null())
    assert late.height > 0
    delay = late["ts"] - late["original_ts"]
    assert delay.min() >= timedelta(seconds=1) and delay.max() <= timedelta(seconds=90)
    # Same events as the base (moved, not copied): the id set is unchanged.
    assert sorted(out[EVENT_ID].to_list()) == sorted(BASE[EVENT_ID].to_list())
    # In stream order some event times now go backwards: that is the point.
    event_time = out["original_ts"].fill_null(out["ts"])
    assert not event_time.is_sorted()


def test_surge_multiplies_the_rate_in_the_window():
    event = event_of("traffic_surge")
    out = run([event])
    lo, hi = window(event)
    inside = BASE.filter((pl.col("ts") >= lo) & (pl.col("ts") < hi)).height
    added = out.filter(pl.col(SCENARIO_ID).is_not_null()).height
    assert 1.3 < added / inside < 1.7  # factor 2.5: 1.5 extra copies per event on average
    assert out["tx_id"].n_unique() == out.height  # per-event identifiers are made anew


def test_drift_grows_over_the_window():
    event = event_of("drift")
    out = run([event]).join(BASE.select(EVENT_ID, pl.col("amount").alias("before")), on=EVENT_ID)
    lo, hi = window(event)
    inside = out.filter((pl.col("ts") >= lo) & (pl.col("ts") < hi)).with_columns(
        (pl.col("amount") / pl.col("before")).alias("factor")
    )
    early = inside.filter(pl.col("ts") < lo + timedelta(minutes=5))["factor"].mean()
    late = inside.filter(pl.col("ts") >= hi - timedelta(minutes=5))["factor"].mean()
    assert 1.0 <= early < 1.5 and 2.6 < late <= 3.0


def test_error_spike_only_hits_targeted_rows():
    out = run([event_of("error_spike")])
    hit = out.filter(pl.col(SCENARIO_ID).is_not_null())
    assert (hit["channel"] == "online").all() and (hit["status"] == 503).all()


def test_card_testing_is_small_amounts_at_new_merchants():
    out = run([event_of("card_testing")])
    rows = out.filter(pl.col("label") == "fraud.card_testing")
    assert rows.height == 40
    assert rows["amount"].max() <= 5.0 and (rows["channel"] == "online").all()
    assert not rows["terminal_id"].is_in(BASE["terminal_id"].implode()).any()
    assert rows["terminal_id"].n_unique() == rows.height
    # Each tested card keeps its owner's card number.
    pairs = rows.select("customer_id", "card_number").unique()
    owners = BASE.select("customer_id", "card_number").unique()
    assert pairs.join(owners, on=["customer_id", "card_number"]).height == pairs.height


def test_mule_ring_links_fan_in_and_fan_out():
    fan_in = {"kind": "mule_fan_in", "at": "10m", "duration": "30m", "params": {"senders": 10, "mule_id": "M-9"}}
    fan_out = {"kind": "mule_fan_out", "at": "50m", "duration": "30m", "params": {"recipients": 8, "mule_id": "M-9"}}
    out = run([fan_in, fan_out])
    into = out.filter(pl.col("label") == "fraud.mule_fan_in")
    outof = out.filter(pl.col("label") == "fraud.mule_fan_out")
    assert (into["terminal_id"] == "M-9").all() and into["customer_id"].n_unique() == 10
    assert (outof["customer_id"] == "M-9").all() and outof["terminal_id"].n_unique() == 8
    assert outof["card_number"].n_unique() == 1
    assert not outof["card_number"].is_in(BASE["card_number"].implode()).any()


def test_same_seed_same_output_other_seed_other_output():
    events = [event_of(k) for k in ("card_testing", "error_spike", "duplicate_events", "out_of_order", "drift")]
    assert run(events).equals(run(events))
    assert not run(events).equals(run(events, seed=10))


@pytest.mark.parametrize("kind", sorted(CASES))
def test_injectors_do_not_depend_on_batch_size(kind):
    """Fraud injectors too: their victims and templates are the base rows before the window."""
    event = event_of(kind)
    assert run([event], batch_size=250).equals(run([event], batch_size=4000))


def test_overlapping_events_keep_the_contract_and_count_exactly():
    events = [
        {"kind": "traffic_surge", "at": "20m", "duration": "60m", "params": {"factor": 2}},
        {"kind": "out_of_order", "at": "30m", "duration": "60m", "params": {"max_delay": "10m"},
         "targets": {"share": 0.5}},
        {"kind": "duplicate_events", "at": "30m", "duration": "60m", "params": {"delay": "20m"}},
        {"kind": "dropout", "at": "70m", "duration": "5m"},
        {"kind": "card_testing", "at": "50m", "duration": "20m"},
    ]
    scenario = parse_scenario({"name": "t", "base": {"source": "demo", "duration": "3h"}, "events": events})
    ctx = Context(time="ts", entity="customer_id", label_column="is_fraud", schema=SCHEMA)
    report: dict = {}
    out = pl.concat(list(check_stream(inject(scenario, batches(BASE, 500), ctx, START, report), "ts", "customer_id")))
    added = sum(e["rows_added"] for e in report["events"])
    removed = sum(e["rows_removed"] for e in report["events"])
    assert out.height == BASE.height + added - removed
    labelled = out.filter(pl.col(SCENARIO_ID).is_not_null()).height
    changed = sum(e["rows_changed"] for e in report["events"])
    assert labelled <= added + changed and labelled >= added


def test_label_columns_cover_every_batch():
    out = run([event_of("out_of_order"), event_of("duplicate_events")])
    assert set(LABEL_COLUMNS) <= set(out.columns)
    assert out.columns[-3:] == list(LABEL_COLUMNS)
