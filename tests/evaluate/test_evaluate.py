"""evaluate(): metrics that stay near zero for a copy, grow for shifted or shuffled data, and
flag synthetic data that copies real rows."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest

from streamsynth.errors import StreamsynthError
from streamsynth.evaluate import SequenceOptions, evaluate
from streamsynth.schema import Schema

TINY = SequenceOptions(
    window=8, max_windows=200, discriminative_iterations=40, predictive_iterations=30
)
FAST = SequenceOptions(
    window=8, max_windows=600, discriminative_iterations=500, predictive_iterations=100
)


def events(n_entities: int = 200, seed: int = 0, per_entity: int = 30) -> pl.DataFrame:
    """Card payments: per-customer amount levels, daily rhythm, fraud more common online."""
    rng = np.random.default_rng(seed)
    counts = rng.poisson(per_entity, n_entities) + 2
    entity = np.repeat(np.arange(n_entities), counts)
    n = len(entity)
    gaps = pl.Series(rng.exponential(3 * 3600, n))
    offsets = rng.uniform(0, 3 * 86400, n_entities)[entity]
    seconds = (
        offsets
        + pl.DataFrame({"e": entity, "g": gaps})
        .select(pl.col("g").cum_sum().over("e"))["g"]
        .to_numpy()
    )
    level = rng.normal(3, 0.6, n_entities)[entity]
    # An AR(1) wobble around each customer's level, so amounts autocorrelate within entities.
    wobble = np.zeros(n)
    noise = rng.normal(0, 0.3, n)
    for i in range(1, n):
        wobble[i] = 0.7 * wobble[i - 1] * (entity[i] == entity[i - 1]) + noise[i]
    category = rng.choice(["grocery", "online", "travel", "fuel"], n, p=[0.5, 0.3, 0.1, 0.1])
    channel = np.where(category == "online", "web", rng.choice(["pos", "web"], n, p=[0.85, 0.15]))
    fraud = rng.random(n) < np.where(category == "online", 0.1, 0.01)
    amount = np.exp(level + wobble) * np.where(fraud, 4.0, 1.0)
    start = datetime(2024, 3, 4, tzinfo=UTC)
    ts = pl.Series((seconds * 1e6).astype(np.int64)).cast(pl.Duration("us")) + start
    frame = pl.DataFrame(
        {
            "customer_id": [f"cust{e:04d}" for e in entity],
            "ts": ts.cast(pl.Datetime("us", "UTC")),
            "amount": amount.round(2),
            "latency_ms": rng.gamma(2.0, 10.0, n)
            + 5 * np.sqrt(amount)
            + 20 * (category == "online"),
            "merchant_category": category,
            "channel": channel,
            "is_fraud": fraud,
        }
    )
    # A daily rhythm: most night-time events (00:00-07:00 UTC) never happen.
    night = frame["ts"].dt.hour().to_numpy() < 7
    keep = ~night | (rng.random(n) < 0.2)
    return frame.filter(pl.Series(keep)).sort("ts")


REAL = events(seed=1)
OTHER = events(seed=2)


@pytest.fixture(scope="module")
def self_result():
    return evaluate(REAL, REAL.clone(), sequences=FAST)


def test_a_frame_against_itself_scores_near_zero(self_result) -> None:
    r = self_result
    assert r.schema["entity"] == "customer_id" and r.schema["label"] == "is_fraud"
    assert all(c.ks == 0 and c.wasserstein == 0 for c in r.fidelity.numeric)
    assert all(c.tv == 0 for c in r.fidelity.categorical)
    assert r.fidelity.correlation.max_abs_diff < 1e-9
    assert r.fidelity.association.max_abs_diff < 1e-9
    assert all(a.mean_abs_diff < 1e-9 for a in r.fidelity.autocorrelation)
    assert r.fidelity.inter_arrival.ks == 0 and r.fidelity.events_per_entity.ks == 0
    assert r.fidelity.hour_of_day.tv == 0 and r.fidelity.day_of_week.tv == 0
    # An exact copy puts the same windows in both classes' training sets, so the classifier
    # memorises some test windows under the wrong class: near 0, not exactly 0.
    assert r.utility.discriminative <= 0.15
    assert r.balance.rate_diff == 0
    # Real autocorrelation of amounts is visible at lag 1 (the AR(1) wobble).
    amount = next(a for a in r.fidelity.autocorrelation if a.column == "amount")
    assert amount.real[0] > 0.5


def test_the_privacy_check_flags_a_copy(self_result) -> None:
    p = self_result.privacy
    assert p.row_copies == 1.0 and p.row_copies_baseline < 0.01
    assert p.sequence_copies == 1.0 and p.sequence_copies_excess > 0.9
    assert p.dcr_synth_median == 0.0 < p.dcr_holdout_median
    assert p.dcr_ratio < 0.01
    failed = {c.key for c in self_result.scorecard if c.passed is False}
    assert {"row_copies_excess", "sequence_copies_excess", "dcr_ratio"} <= failed


def test_a_partial_copy_is_flagged_too() -> None:
    copied = REAL.sample(1000, seed=5)
    synth = pl.concat([OTHER.head(OTHER.height - 1000), copied]).sort("ts")
    result = evaluate(REAL, synth, gru=False)
    assert result.privacy.row_copies_excess > 0.1
    assert result.metric("row_copies_excess") == result.privacy.row_copies_excess
    assert not next(c for c in result.scorecard if c.key == "row_copies_excess").passed


def test_an_independent_sample_passes() -> None:
    result = evaluate(REAL, OTHER, sequences=FAST)
    f = result.fidelity
    assert max(c.ks for c in f.numeric) < 0.1
    assert max(c.tv for c in f.categorical) < 0.05
    assert f.inter_arrival.ks < 0.05
    assert result.privacy.row_copies == 0 and result.privacy.sequence_copies == 0
    assert 0.7 < result.privacy.dcr_ratio < 1.5
    assert result.utility.discriminative < 0.15
    assert result.utility.fraud.ratio > 0.9
    # No column alone gives is_fraud away here (amount comes closest, AUC ~0.89): none dropped.
    assert result.utility.fraud.dropped == []
    assert not any("dropped from the features" in n for n in result.utility.notes)
    failed = [c.key for c in result.scorecard if c.passed is False]
    assert failed == []


def test_a_shifted_copy_grows_the_distances() -> None:
    shifted = OTHER.with_columns(pl.col("amount") * 3, pl.col("ts") + pl.duration(hours=7))
    result = evaluate(REAL, shifted, sequences=FAST)
    amount = next(c for c in result.fidelity.numeric if c.name == "amount")
    assert amount.ks > 0.4 and amount.wasserstein_norm > 0.5
    assert result.fidelity.hour_of_day.tv > 0.1
    assert result.utility.discriminative > 0.3
    failed = {c.key for c in result.scorecard if c.passed is False}
    assert {"ks", "wasserstein", "hour_of_day", "discriminative"} <= failed


def test_a_shuffled_copy_breaks_dependence_and_sequences() -> None:
    rng = np.random.default_rng(0)
    perm = rng.permutation(OTHER.height)
    shuffled = OTHER.with_columns(
        pl.Series("amount", OTHER["amount"].to_numpy()[perm]),
        pl.Series("channel", OTHER["channel"].to_numpy()[rng.permutation(OTHER.height)]),
    )
    result = evaluate(REAL, shuffled, sequences=FAST)
    f = result.fidelity
    assert next(c for c in f.numeric if c.name == "amount").ks < 0.1  # marginals intact
    assert next(a for a in f.autocorrelation if a.column == "amount").mean_abs_diff > 0.3
    assert f.association.max_abs_diff > 0.3
    assert f.correlation.max_abs_diff > 0.1


def test_fraud_utility_drops_when_labels_are_noise() -> None:
    noisy = OTHER.with_columns(
        pl.Series("is_fraud", np.random.default_rng(1).random(OTHER.height) < 0.04)
    )
    result = evaluate(REAL, noisy, gru=False)
    fraud = result.utility.fraud
    assert fraud.auc_real > 0.8
    assert fraud.ratio < 0.75
    assert result.balance.real_rate > 0.02


def test_balance_reports_rates_per_category() -> None:
    boosted = pl.concat([OTHER, OTHER.filter(pl.col("is_fraud"))]).sort("ts")
    b = evaluate(REAL, boosted, gru=False).balance
    assert b.label == "is_fraud"
    assert b.synth_rate > 1.5 * b.real_rate
    online = next(r for r in b.per_category["merchant_category"] if r.value == "online")
    grocery = next(r for r in b.per_category["merchant_category"] if r.value == "grocery")
    assert online.real_rate > 3 * grocery.real_rate


def test_results_are_deterministic() -> None:
    first = evaluate(REAL, OTHER, sequences=TINY, seed=3).to_dict()
    second = evaluate(REAL, OTHER, sequences=TINY, seed=3).to_dict()
    first.pop("timings"), second.pop("timings")
    assert first == second


def test_gates_from_fail_under() -> None:
    result = evaluate(REAL, OTHER, gru=False, fail_under={"ks": 0.0001, "tv.channel": 0.5})
    gates = {c.key: c for c in result.scorecard if c.gate}
    assert set(gates) == {"ks", "tv.channel"}
    assert [c.key for c in result.failed_gates] == ["ks"]
    # A gate on a metric that was not computed fails rather than passing silently.
    skipped = evaluate(REAL, OTHER, gru=False, fail_under={"discriminative": 0.2})
    assert [c.key for c in skipped.failed_gates] == ["discriminative"]


def test_missing_columns_and_types_give_clear_errors() -> None:
    with pytest.raises(StreamsynthError, match="synthetic data has no column 'latency_ms'"):
        evaluate(REAL, OTHER.drop("latency_ms"), gru=False)
    bad = OTHER.with_columns(pl.col("amount").cast(pl.String))
    with pytest.raises(StreamsynthError, match="'amount' is String, but the schema says numeric"):
        evaluate(REAL, bad, gru=False)


def test_tables_without_entity_or_label_still_evaluate() -> None:
    schema = Schema.infer(REAL.drop("customer_id", "is_fraud"))
    assert schema.entity is None and schema.label is None
    real = REAL.drop("customer_id", "is_fraud")
    result = evaluate(real, OTHER.drop("customer_id", "is_fraud"), schema, sequences=TINY)
    assert result.balance is None and result.utility.fraud is None
    assert result.fidelity.events_per_entity is None
    assert result.utility.window_length == 8 and result.utility.discriminative is not None
    assert result.privacy.sequence_copies is None
