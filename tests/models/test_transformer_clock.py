"""The transformer's clock: gaps are learned and sampled in the weekly profile's warped time, so
a schedule's empty night hours stay empty; the torch clock equals the numpy one; models saved
before the clock sample in real seconds."""

from __future__ import annotations

import warnings

import numpy as np
import polars as pl
import pytest
import torch

from streamsynth.datasets.flights import flights
from streamsynth.models import create
from streamsynth.models.arrivals import TorchClock, WeeklyProfile
from streamsynth.models.transformer_codec import EventCodec
from streamsynth.schema import Schema


def test_the_torch_clock_equals_the_numpy_one():
    rng = np.random.default_rng(0)
    times = (1.709e15 + rng.uniform(0, 30 * 86_400e6, 5000)).astype(np.int64)
    profile = WeeklyProfile.fit(times)
    origin_s = 1.709e9 + 1234.5
    clock = TorchClock(profile, origin_s, "cpu")
    t = torch.as_tensor(rng.uniform(0, 40 * 86_400, 1000), dtype=torch.float64)
    warped = clock.warp(t)
    expected = profile.warp(np.round((origin_s + t.numpy()) * 1e6).astype(np.int64)) * 3600
    assert np.abs(warped.numpy() - expected).max() < 1e-5
    assert float((clock.unwarp(warped) - t).abs().max()) < 1e-5
    same = TorchClock(None, origin_s, "cpu")
    assert same.warp(t) is t and same.unwarp(t) is t


def _schedule() -> tuple[pl.DataFrame, Schema]:
    frame = flights(n_aircraft=60, days=14, n_airports=12, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return frame, Schema.infer(frame, time="dep_time", entity="tail_number")


def test_a_codec_saved_before_the_clock_measures_real_seconds():
    frame, schema = _schedule()
    start = frame["dep_time"].min()
    codec = EventCodec().fit(frame.sort("tail_number", "dep_time"), schema, start, 14 * 86_400.0)
    assert codec.clock is not None and codec.clock.intensity[:6].max() < 0.1  # no departures before 06:00
    data = codec.to_json()
    data.pop("clock")
    old = EventCodec.from_json(data)
    assert old.clock is None
    assert old.warped_s(np.array([1_000_000, 3_000_000])).tolist() == [1.0, 3.0]


@pytest.mark.slow
def test_the_transformer_keeps_a_schedules_empty_night_hours():
    frame, schema = _schedule()
    model = create("transformer", seed=0, epochs=3, device="cpu", progress=False).fit(frame, schema)
    sample = model.sample(n_events=4000, seed=1)
    hours = sample["dep_time"].dt.hour()
    assert (hours < 6).mean() < 0.02  # real: none; before the clock about a quarter
    real = np.bincount(frame["dep_time"].dt.hour().to_numpy(), minlength=24) / frame.height
    synth = np.bincount(hours.to_numpy(), minlength=24) / sample.height
    assert 0.5 * np.abs(real - synth).sum() < 0.1
