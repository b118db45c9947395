"""The statistical baseline through its public API: fit, sample, stream, save, load."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from streamsynth.contract import TIME_DTYPE, check_stream
from streamsynth.errors import StreamsynthError
from streamsynth.models import load_model
from streamsynth.models.baseline import BaselineSynthesizer
from streamsynth.models.textchain import scrub
from streamsynth.schema import Schema, luhn_ok

START = datetime(2024, 2, 1, tzinfo=UTC)


def test_sample_keeps_the_contract_and_the_columns(baseline_model, payments_small):
    out = baseline_model.sample(n_events=5_000, start=START)
    assert out.height == 5_000
    assert out.columns[:3] == ["event_id", "ts", "customer_id"]
    assert out.columns[-3:] == ["label", "is_anomaly", "scenario_id"]
    for name in payments_small.columns:
        assert out.schema[name] == payments_small.schema[name], name
    list(check_stream([out], time="ts", entity="customer_id"))
    assert out["ts"].min() >= START
    # Categories only from the training vocabulary.
    assert set(out["merchant_category"].unique()) <= set(payments_small["merchant_category"].unique())
    # Labels follow the learned ground truth column.
    assert (out["is_anomaly"] == out["is_fraud"]).all()
    assert set(out.filter(pl.col("is_fraud"))["label"].unique()) <= {"fraud"}


def test_stream_is_endless_and_time_ordered(baseline_model):
    stream = baseline_model.stream(start=START, batch_size=2_000)
    batches = [next(stream) for _ in range(30)]
    checked = list(check_stream(batches, time="ts", entity="customer_id"))
    assert sum(b.height for b in checked) > 30_000


def test_same_seed_same_events_other_seed_other_events(baseline_model):
    a = baseline_model.sample(n_events=3_000, start=START, seed=5)
    b = baseline_model.sample(n_events=3_000, start=START, seed=5)
    c = baseline_model.sample(n_events=3_000, start=START, seed=6)
    assert a.equals(b)
    assert not a.equals(c)


def test_output_does_not_depend_on_batch_size(baseline_model):
    small = pl.concat(list(_first(baseline_model.stream(start=START, batch_size=300), 4_000)))
    large = pl.concat(list(_first(baseline_model.stream(start=START, batch_size=5_000), 4_000)))
    assert small.head(4_000).equals(large.head(4_000))


def test_shards_partition_the_unsharded_stream(baseline_model):
    end = datetime(2024, 2, 3, tzinfo=UTC)
    whole = baseline_model.sample(start=START, end=end, n_entities=200)
    parts = [baseline_model.sample(start=START, end=end, n_entities=200, shard=(k, 3)) for k in range(3)]
    ids = [set(p["event_id"]) for p in parts]
    assert not (ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2])
    union = pl.concat(parts).sort("ts", "event_id")
    assert union.equals(whole.sort("ts", "event_id"))


def test_save_load_gives_identical_samples(tmp_path, baseline_model):
    baseline_model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "checksums.sha256", "config.json", "encoders.json", "weights.safetensors",
    ]
    loaded = load_model(tmp_path / "m")
    assert isinstance(loaded, BaselineSynthesizer)
    a = baseline_model.sample(n_events=4_000, start=START)
    b = loaded.sample(n_events=4_000, start=START)
    assert a.equals(b)


def test_identifiers_are_faked_consistently_and_never_copied(baseline_model, payments_small):
    out = baseline_model.sample(n_events=20_000, start=START)
    cards = out["card_number"]
    assert all(luhn_ok(c) and len(c) == 16 for c in cards.unique().to_list())
    assert not set(cards) & set(payments_small["card_number"])
    assert not set(out["customer_id"]) & set(payments_small["customer_id"])
    assert not set(out["tx_id"]) & set(payments_small["tx_id"])
    assert out["tx_id"].n_unique() == out.height
    per_entity = out.group_by("customer_id").agg(pl.col("card_number").n_unique())
    assert (per_entity["card_number"] == 1).all()  # one card per customer, as in training


def test_fidelity_of_marginals_and_daily_cycle(baseline_model, payments_small):
    out = baseline_model.sample(start=START, end=datetime(2024, 2, 11, tzinfo=UTC))
    real_amount = payments_small["amount"].to_numpy()
    synth_amount = out["amount"].to_numpy()
    for q in (0.5, 0.9, 0.99):
        assert np.quantile(synth_amount, q) == pytest.approx(np.quantile(real_amount, q), rel=0.15)
    real_hours = np.bincount(payments_small["ts"].dt.hour().to_numpy(), minlength=24) / payments_small.height
    synth_hours = np.bincount(out["ts"].dt.hour().to_numpy(), minlength=24) / out.height
    assert np.abs(real_hours - synth_hours).sum() / 2 < 0.08  # total variation of the hour profile
    assert out.height == pytest.approx(payments_small.height, rel=0.25)  # same span, same rate
    # Amount depends on merchant category as in the data.
    med = out.group_by("merchant_category").agg(pl.col("amount").median()).sort("amount")
    assert med["merchant_category"][-1] in ("travel", "electronics", "atm")


def test_conditions_raise_the_label_rate(baseline_model):
    plain = baseline_model.sample(n_events=5_000, start=START)
    fraud = baseline_model.sample(n_events=5_000, start=START, conditions={"is_fraud": True})
    assert plain["is_fraud"].mean() < 0.1
    assert fraud["is_fraud"].all()
    assert (fraud["fraud_scenario"] != "none").mean() > 0.95
    with pytest.raises(StreamsynthError, match="condition on unknown column 'fraud'"):
        baseline_model.sample(n_events=10, conditions={"fraud": True})
    with pytest.raises(StreamsynthError, match="never saw that value"):
        baseline_model.sample(n_events=10, conditions={"channel": "carrier-pigeon"})


def test_single_sequence_without_entity_column():
    times = pl.datetime_range(START, datetime(2024, 2, 8, tzinfo=UTC), "5m", eager=True, time_unit="us")
    frame = pl.DataFrame({"timestamp": times, "cpu": np.sin(np.arange(times.len()) / 50.0) * 20 + 50})
    model = BaselineSynthesizer().fit(frame)
    out = model.sample(n_events=500)
    assert out.columns == ["event_id", "timestamp", "cpu", "label", "is_anomaly", "scenario_id"]
    assert out.schema["timestamp"] == TIME_DTYPE
    assert out["cpu"].min() >= frame["cpu"].min() - 1e-9


def test_text_columns_are_generated_from_learned_tokens(shared_data):
    from streamsynth import io

    frame = io.read(shared_data / "loghub" / "OpenSSH_2k.log_structured.csv")
    model = BaselineSynthesizer().fit(frame)
    out = model.sample(n_events=300)
    # Words follow the training vocabulary once identifiers are masked on both sides ...
    vocab = set(" ".join(scrub(frame["Content"]).to_list()).split(" "))
    words = set(" ".join(scrub(out["Content"]).to_list()).split(" ")) - {""}
    assert words and words <= vocab
    # ... and the IPs embedded in the real log lines are never replayed; fakes stand in their place.
    real_ips = set(frame["Content"].str.extract_all(r"\d+\.\d+\.\d+\.\d+").explode().drop_nulls())
    synth_ips = set(out["Content"].str.extract_all(r"\d+\.\d+\.\d+\.\d+").explode().drop_nulls())
    assert real_ips and synth_ips and not real_ips & synth_ips


# -- bad input ---------------------------------------------------------------------------------
def test_fit_needs_a_time_column():
    with pytest.raises(StreamsynthError, match="needs an event-time column"):
        BaselineSynthesizer().fit(pl.DataFrame({"a": [1.0, 2.0, 3.0]}))


def test_model_directory_from_another_version(tmp_path, baseline_model):
    baseline_model.save(tmp_path / "m")
    config = json.loads((tmp_path / "m" / "config.json").read_text())
    config["format_version"] = 99
    (tmp_path / "m" / "config.json").write_text(json.dumps(config))
    with pytest.raises(StreamsynthError, match="saved in model format 99"):
        load_model(tmp_path / "m")


def test_corrupt_weights_file(tmp_path, baseline_model):
    baseline_model.save(tmp_path / "m")
    (tmp_path / "m" / "weights.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(StreamsynthError, match="weights.safetensors is damaged: its checksum"):
        load_model(tmp_path / "m")
    (tmp_path / "m" / "checksums.sha256").unlink()  # as a model saved before checksums
    with pytest.raises(StreamsynthError, match="weights.safetensors is corrupt"):
        load_model(tmp_path / "m")


def test_not_a_model_directory(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(StreamsynthError, match="not a model directory"):
        load_model(tmp_path / "empty")


def _first(stream, n):
    seen = 0
    for batch in stream:
        yield batch
        seen += batch.height
        if seen >= n:
            return


def test_bursty_entities_keep_their_event_count():
    """Log-like data: each entity has one short burst in a long window. The window start falls
    in a long quiet gap (length-biased), so entities do not repeat their burst all window long."""
    rng = np.random.default_rng(3)
    n = 400
    starts = rng.uniform(0, 10 * 86_400, n)  # a burst of two events, hours apart, in 10 days
    offsets = np.stack([starts, starts + rng.uniform(2 * 3600, 6 * 3600, n)], axis=1).reshape(-1)
    origin = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1e6)
    frame = pl.DataFrame({
        "ts": pl.Series((origin + offsets * 1e6).astype(np.int64)).cast(TIME_DTYPE),
        "node": np.repeat([f"n{i}" for i in range(n)], 2),
        "level": rng.choice(["INFO", "WARN"], 2 * n),
    }).sort("ts")
    model = BaselineSynthesizer(seed=0).fit(frame, Schema.infer(frame, entity="node"))
    start = model.default_start()
    end = start + model.fitted_span
    # n_events caps a regression (the burst repeated all window long) at 2x.
    counts = [model.sample(seed=s, start=start, end=end, n_events=2 * frame.height).height for s in (1, 2, 3)]
    assert all(0.7 * frame.height < c < 1.4 * frame.height for c in counts), counts


def _bursts(hours_apart: float) -> pl.DataFrame:
    """30 customers, five events each, all five at one instant; one customer per ``hours_apart``."""
    start = datetime(2024, 1, 1, tzinfo=UTC)
    return pl.DataFrame({
        "ts": [start + (e * hours_apart) * (datetime(2024, 1, 1, 1, tzinfo=UTC) - start)
               for e in range(30) for _ in range(5)],
        "customer_id": [f"c{e}" for e in range(30) for _ in range(5)],
        "amount": [float(k) for _ in range(30) for k in range(5)],
    })


def test_entities_whose_events_share_one_instant_sample_finite_bursts():
    """No gap above zero in the data: bursts must still end (this sampled nothing, forever)."""
    model = BaselineSynthesizer().fit(_bursts(1.0), Schema.infer(_bursts(1.0)))
    done: list[pl.DataFrame] = []
    worker = threading.Thread(target=lambda: done.append(
        model.sample(n_events=200, seed=1, start=datetime(2024, 1, 1, tzinfo=UTC))), daemon=True)
    worker.start()
    worker.join(60)  # a regression must fail, not hang the suite
    assert done, "sampling did not finish within 60 s"
    frame = done[0]
    assert frame.height == 200
    per_instant = frame.group_by("customer_id", "ts").len()["len"]
    assert per_instant.mean() < 20  # about the data's five, not unbounded



def _cohort(n_entities: int = 300, seed: int = 4) -> pl.DataFrame:
    """Sessions of a cohort: every entity is born in the first tenth of a 100-day span and lives a
    few hours to two days, with 1 to 12 events."""
    r = np.random.default_rng(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    rows = []
    for e in range(n_entities):
        born = r.uniform(0, 10 * 86_400)
        life = r.uniform(3_600, 2 * 86_400)
        n = int(r.integers(1, 13))
        offsets = np.sort(r.uniform(0, life, n)) if n > 1 else np.zeros(1)
        rows += [(start + timedelta(seconds=float(born + o)), f"s{e:04d}", float(r.gamma(2, 20)))
                 for o in offsets]
    rows.append((start + timedelta(days=100), "s9999", 1.0))  # the span's end
    return pl.DataFrame(rows, schema={"ts": pl.Datetime("us", "UTC"), "session_id": pl.String,
                                      "amount": pl.Float64}, orient="row")


def test_a_cohort_keeps_its_births_lifetimes_and_entity_count():
    """Entities born and gone inside the span: each sampled entity takes a training entity's birth,
    lifetime and count, so the default sample has as many entities, as many events each, all born
    in the first tenth of the span (before, they lived the whole span at a rate)."""
    real = _cohort()
    model = BaselineSynthesizer(seed=3).fit(real, Schema.infer(real))
    sample = model.sample()
    per = sample.group_by("session_id").agg(pl.len().alias("n"), pl.col("ts").min().alias("born"),
                                            (pl.col("ts").max() - pl.col("ts").min()).alias("life"))
    real_per = real.group_by("session_id").agg(pl.len().alias("n"))
    assert abs(per.height - real_per.height) <= 0.02 * real_per.height
    start = real["ts"].min()
    assert (per["born"] < start + timedelta(days=10.5)).mean() > 0.98
    assert (per["life"] <= timedelta(days=2, hours=1)).mean() > 0.98
    assert abs(per["n"].mean() - real_per["n"].mean()) < 0.5


def test_entities_that_live_through_the_span_keep_their_rates(payments_small):
    model = BaselineSynthesizer(seed=1).fit(payments_small, Schema.infer(payments_small))
    assert model.lifecycle is None  # customers buy all through the span: no lifecycle is learned


def test_a_stream_past_the_span_brings_new_cohorts_in_time_order():
    real = _cohort(120)
    model = BaselineSynthesizer(seed=3).fit(real, Schema.infer(real))
    start = datetime(2024, 1, 1, tzinfo=UTC)
    frames = list(model.stream(start=start, end=start + timedelta(days=250), batch_size=500))
    out = pl.concat(frames)
    assert out["ts"].is_sorted()
    born = out.group_by("session_id").agg(pl.col("ts").min())["ts"]
    assert (born >= start + timedelta(days=100)).sum() > 0  # the second span's population
    assert out["session_id"].n_unique() > 1.5 * 120


def test_cohort_shards_add_up_to_the_whole_stream():
    real = _cohort(120)
    model = BaselineSynthesizer(seed=3).fit(real, Schema.infer(real))
    whole = model.sample(seed=5).sort("event_id")
    parts = pl.concat([model.sample(seed=5, shard=(k, 3)) for k in range(3)]).sort("event_id")
    assert parts.equals(whole)


def test_lifecycle_can_be_switched_on_and_off(payments_small):
    on = BaselineSynthesizer(seed=1, lifecycle="on").fit(payments_small, Schema.infer(payments_small))
    real_entities = payments_small["customer_id"].n_unique()
    assert on.lifecycle is not None and abs(on.sample()["customer_id"].n_unique() - real_entities) <= 2
    real = _cohort(60)
    assert BaselineSynthesizer(lifecycle="off").fit(real, Schema.infer(real)).lifecycle is None
    with pytest.raises(StreamsynthError, match="lifecycle='sometimes'"):
        BaselineSynthesizer(lifecycle="sometimes")


def test_a_saved_lifecycle_samples_the_same_after_loading(tmp_path):
    real = _cohort(80)
    model = BaselineSynthesizer(seed=3).fit(real, Schema.infer(real))
    loaded = load_model(model.save(tmp_path / "m"))
    assert loaded.sample(seed=2).equals(model.sample(seed=2))
