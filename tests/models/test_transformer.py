"""TransformerSynthesizer: fit on the payments sample, then sample, stream, condition, save, load."""

from __future__ import annotations

import resource
import subprocess
import sys
from datetime import timedelta

import numpy as np
import polars as pl
import pytest
import torch

from streamsynth import rng
from streamsynth.contract import CONTRACT_COLUMNS, check_stream, take
from streamsynth.datasets import payments
from streamsynth.errors import StreamsynthError
from streamsynth.models import create, load_model
from streamsynth.rng_torch import torch_uniform

TINY = {"n_layer": 1, "n_head": 2, "n_embd": 32, "epochs": 2, "batch_size": 8, "progress": False}


@pytest.fixture(scope="module")
def data() -> pl.DataFrame:
    return payments(n_customers=60, n_days=5, seed=3)


@pytest.fixture(scope="module")
def model(data: pl.DataFrame):
    return create("transformer", seed=1, **TINY).fit(data)


def test_sample_has_the_schema_columns_types_and_vocabulary(data, model):
    out = model.sample()
    assert out.height > 0
    expected = ["event_id", "ts", "customer_id"] + [
        c for c in data.columns if c not in ("ts", "customer_id")
    ] + list(CONTRACT_COLUMNS)[1:]
    assert sorted(out.columns) == sorted(expected)
    for name in data.columns:
        assert out.schema[name] == data.schema[name], name
    for name in ("merchant_category", "channel", "country", "fraud_scenario"):
        assert set(out[name].unique()) <= set(data[name].unique()), name
    assert out["amount"].min() > 0  # log-encoded amounts stay positive
    # the sample covers the training span, starting where the training data started
    assert out["ts"].min() >= data["ts"].min()
    assert out["ts"].max() <= data["ts"].min() + (data["ts"].max() - data["ts"].min())
    # new entity ids and card numbers, never copied from the training data
    assert not set(out["customer_id"]) & set(data["customer_id"])
    assert not set(out["card_number"]) & set(data["card_number"])
    # one card per customer, as in the training data
    assert out.group_by("customer_id").agg(pl.col("card_number").n_unique())["card_number"].max() == 1
    # per entity, events come in time order and in sequence order
    seq = out["event_id"].str.split("-").list.get(2).cast(pl.Int64)
    per = out.with_columns(seq=seq).group_by("customer_id", maintain_order=True).agg("seq", "ts")
    for s, t in zip(per["seq"], per["ts"], strict=True):
        assert s.to_list() == sorted(s.to_list()) and t.is_sorted()
    list(check_stream([out], time="ts", entity="customer_id"))


def test_same_seed_same_events_other_seed_other_events(model):
    a = model.sample(n_entities=30)
    assert a.equals(model.sample(n_entities=30))
    assert not a.equals(model.sample(n_entities=30, seed=99))


def test_kv_cache_gives_exactly_the_events_of_full_recomputation(model):
    try:
        cached = model.sample(n_entities=25)
        model.configure(use_cache=False)
        recomputed = model.sample(n_entities=25)
    finally:
        model.configure(use_cache=True)
    assert cached.height > 100
    assert cached.equals(recomputed)


def test_key_value_heads_per_query_head_and_models_saved_before_the_option(data, tmp_path):
    # n_kv_head=None: one key/value head per query head, the layout of every model saved before
    # grouped-query attention; its cache must match recomputation, and a saved config without
    # the key must load as that layout (not the new default of one shared head).
    import json

    per_head = create("transformer", seed=1, **{**TINY, "n_kv_head": None}).fit(data)
    cached = per_head.sample(n_entities=20)
    assert cached.equals(per_head.configure(use_cache=False).sample(n_entities=20))
    per_head.configure(use_cache=True).save(tmp_path / "m")
    config_path = tmp_path / "m" / "config.json"
    config = json.loads(config_path.read_text())
    del config["config"]["model"]["n_kv_head"]
    config_path.write_text(json.dumps(config))
    (tmp_path / "m" / "checksums.sha256").unlink()  # nor checksums, in models saved before the option
    assert load_model(tmp_path / "m").sample(n_entities=20).equals(cached)
    with pytest.raises(StreamsynthError, match="n_kv_head"):
        create("transformer", n_head=4, n_kv_head=3)


def test_pool_size_and_shards_do_not_change_the_events(model):
    whole = model.sample(n_entities=24)
    try:
        model.configure(entity_batch=5)
        assert model.sample(n_entities=24).equals(whole)
    finally:
        model.configure(entity_batch=None)
    parts = [model.sample(n_entities=24, shard=(k, 3)) for k in range(3)]
    for k, part in enumerate(parts):
        numbers = part["event_id"].str.split("-").list.get(1).cast(pl.Int64)
        assert (numbers % 3 == k).all()
    union = pl.concat(parts).sort("ts", "event_id")
    assert union.equals(whole.sort("ts", "event_id"))


def test_large_pools_sorted_into_row_blocks_give_the_same_events(model):
    # 300 slots: the sampler sorts them by position and attends in blocks of 128 rows, each up
    # to its own longest row; neither may change any event (recompute and a small pool agree).
    try:
        model.configure(entity_batch=300)
        pooled = model.sample(n_entities=300)
        pooled_bf16 = model.configure(precision="bf16").sample(n_entities=300)
        model.configure(entity_batch=300, precision="fp32", use_cache=False)
        recomputed = model.sample(n_entities=300)
        model.configure(entity_batch=7, use_cache=True)
        small = model.sample(n_entities=300)
        small_bf16 = model.configure(precision="bf16").sample(n_entities=300)
    finally:
        model.configure(entity_batch=None, precision="fp32", use_cache=True)
    assert pooled.height > 2000
    assert pooled.equals(recomputed)
    assert pooled.equals(small)
    assert pooled_bf16.height > 2000 and pooled_bf16.equals(small_bf16)


@pytest.mark.parametrize("pool, use_cache", [(None, True), (7, True), (300, True), (7, False)])
def test_finite_samples_are_the_first_events_of_the_stream(model, pool, use_cache):
    # sample(n_events=, end=) lets the sampler drop entities already past the last event needed
    # and shrink its pool: the events must be exactly those of the endless stream, cut there.
    end = model.default_start() + timedelta(days=2, hours=3)
    try:
        model.configure(entity_batch=pool, use_cache=use_cache)
        stream = pl.concat(list(take(model.stream(n_entities=40), 6_000)))
        for n in (1, 777, 5_000):
            assert model.sample(n_entities=40, n_events=n).equals(stream.head(n)), n
        before_end = model.sample(n_entities=40, end=end)
    finally:
        model.configure(entity_batch=None, use_cache=True)
    assert before_end.height > 100
    assert before_end.equals(stream.filter(pl.col("ts") < end))


def test_save_and_load_give_identical_samples(model, tmp_path):
    model.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "checksums.sha256", "config.json", "encoders.json", "weights.safetensors",
    ]
    loaded = load_model(tmp_path / "m")
    assert type(loaded).__name__ == "TransformerSynthesizer"
    assert loaded.sample(n_entities=20).equals(model.sample(n_entities=20))


def test_stream_is_endless_time_ordered_with_entities_arriving(data, model):
    span = data["ts"].max() - data["ts"].min()
    batches = list(take(model.stream(n_entities=10, batch_size=100), 1500))
    out = pl.concat(list(check_stream(batches, time="ts", entity="customer_id")))
    assert out.height == 1500
    assert out["ts"].max() - out["ts"].min() > span  # runs past one training span
    assert out["customer_id"].n_unique() > 10  # later windows bring new entities
    assert max(b.height for b in batches) <= 100


def test_condition_on_an_event_field_fixes_it_and_bad_conditions_fail(model):
    online = model.sample(n_entities=20, conditions={"channel": "online"})
    assert online.height and (online["channel"] == "online").all()
    with pytest.raises(StreamsynthError, match="never saw that value"):
        model.sample(n_entities=5, conditions={"channel": "carrier pigeon"})
    with pytest.raises(StreamsynthError, match="does not learn column"):
        model.sample(n_entities=5, conditions={"tx_id": "x"})
    with pytest.raises(StreamsynthError, match="unknown column"):
        model.sample(n_entities=5, conditions={"nope": 1})


def test_bf16_sampling_keeps_the_schema(model):
    try:
        model.configure(precision="bf16")
        out = model.sample(n_entities=20)
    finally:
        model.configure(precision="fp32")
    assert out.height and out.schema["amount"] == pl.Float64


@pytest.mark.parametrize("native", [False, True])
def test_bf16_on_a_cpu_without_bf16_instructions_warns(model, monkeypatch, native):
    import platform
    import warnings

    monkeypatch.setattr(platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    try:
        model.configure(precision="bf16")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = model.sample(n_entities=5)
    finally:
        model.configure(precision="fp32")
    slow = [w for w in caught if "without bf16 instructions" in str(w.message)]
    assert out.height
    assert len(slow) == (0 if native else 1)
    if slow:
        assert slow[0].category is RuntimeWarning and "precision='fp32'" in str(slow[0].message)


@pytest.mark.skipif(sys.platform != "linux" or __import__("platform").libc_ver()[0] != "glibc",
                    reason="the heap thresholds are glibc's")
def test_cpu_sampling_keeps_freed_memory_mapped(model):
    import ctypes

    from streamsynth.models import heap

    model.sample(n_entities=5)
    assert heap._done is True  # set by the sampler, and accepted by glibc
    # In effect: a freed 8 MB block (above glibc's default mmap threshold) stays mapped, so
    # using it again faults no pages in (glibc's defaults unmap it: about 2,000 faults).
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size = 8 << 20

    def touch_and_free() -> int:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        block = libc.malloc(size)
        ctypes.memset(block, 1, size)
        libc.free(block)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

    touch_and_free()
    assert touch_and_free() < 200


def test_torch_uniforms_are_the_rng_module_uniforms():
    e = np.array([0, 5, 2**40, 123_456_789, 2**62])
    p = np.array([0, 1, 7, 255, 3])
    expected = rng.uniform(42, e, p, 3)
    got = torch_uniform(42, torch.from_numpy(e), torch.from_numpy(p), 3).numpy()
    assert np.array_equal(expected, got)


@pytest.mark.slow
def test_conditioning_on_the_label_raises_the_fraud_rate():
    frame = payments(n_customers=300, n_days=14, seed=1, fraud_rate=0.03)
    model = create(
        "transformer", seed=0, n_layer=2, n_head=2, n_embd=64, epochs=12, batch_size=8, progress=False
    ).fit(frame)
    plain = model.sample(n_entities=300)
    fraud = model.sample(n_entities=300, conditions={"is_fraud": True})
    assert fraud["is_fraud"].mean() > 2 * max(plain["is_fraud"].mean(), 1e-3)
    assert (fraud["label"] == "fraud").mean() == fraud["is_fraud"].mean()


@pytest.mark.slow
def test_two_process_torchrun_fit_loads_and_samples(tmp_path, torchrun):
    data = tmp_path / "payments.parquet"
    payments(n_customers=40, n_days=3, seed=2).write_parquet(data)
    out = tmp_path / "model"
    options = [f"--option={k}={v}" for k, v in TINY.items()]
    torchrun(2, "fit", str(data), "--model", "transformer", "-o", str(out), *options)
    model = load_model(out)
    assert model.metadata["epochs_run"] == 2
    sample = model.sample(n_entities=10)
    assert sample.height > 0 and sample["ts"].is_sorted()
    assert sample["ts"].max() - sample["ts"].min() <= timedelta(days=3)


def test_cli_fit_and_sample_with_the_transformer(tmp_path):
    data = tmp_path / "payments.csv"
    payments(n_customers=30, n_days=2, seed=4).write_csv(data)
    options = [f"--option={k}={v}" for k, v in TINY.items()]
    cmd = [sys.executable, "-m", "streamsynth"]
    fit = subprocess.run(
        [*cmd, "fit", str(data), "--model", "transformer", "-o", str(tmp_path / "m"), *options],
        capture_output=True, text=True, timeout=120,
    )
    assert fit.returncode == 0, fit.stderr[-3000:]
    out = tmp_path / "s.parquet"
    sample = subprocess.run(
        [*cmd, "sample", str(tmp_path / "m"), "-o", str(out), "--condition", "channel=atm"],
        capture_output=True, text=True, timeout=120,
    )
    assert sample.returncode == 0, sample.stderr[-3000:]
    frame = pl.read_parquet(out)
    assert frame.height > 0 and (frame["channel"] == "atm").all()


@pytest.mark.slow
def test_a_cohort_keeps_its_entity_count_and_births():
    """Entities born in the first tenth of the span and gone within two days: the default sample
    has as many entities (within 2%), born early, with as many events each (each entity's planned
    lifecycle; an end-of-sequence token alone gave a KS of 0.16-0.36 on held-out data)."""
    from scipy.stats import ks_2samp
    from test_baseline import _cohort

    real = _cohort()
    model = create("transformer", seed=0, epochs=4, device="cpu", progress=False).fit(real)
    sample = model.sample(seed=1)
    per = sample.group_by("session_id").agg(pl.len().alias("n"), pl.col("ts").min().alias("born"))
    real_per = real.group_by("session_id").agg(pl.len().alias("n"))
    assert abs(per.height - real_per.height) <= 0.02 * real_per.height
    assert (per["born"] < real["ts"].min() + timedelta(days=10.5)).mean() > 0.97  # real: 0.997
    assert ks_2samp(per["n"].to_numpy(), real_per["n"].to_numpy()).statistic <= 0.05


def test_the_start_tokens_see_the_training_start_s_clock_wherever_the_window_starts():
    """Each entity's first event is drawn from the start and attribute tokens alone, which in
    training always sat at the training start: at a window twelve hours later they must see the
    same inputs, so the same first events are drawn (the birth's gap aside: no clock warp here)."""
    data = payments(n_customers=40, n_days=1, seed=6)  # under a day: gaps in real seconds
    model = create("transformer", seed=0, **TINY).fit(data)

    def first_events(shift: timedelta) -> pl.DataFrame:
        sample = model.sample(start=model.fitted_start + shift, seed=3, n_entities=200)
        return sample.filter(pl.col("event_id").str.ends_with("-0")).drop("ts", "customer_id").sort("event_id")

    at_start, later = first_events(timedelta(0)), first_events(timedelta(hours=12))
    assert at_start.height == 200 and at_start.equals(later)
