"""The transformer on a stream without an entity column: learned as consecutive segments, sampled
as one stream that tiles its window as the training stream did."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from streamsynth.errors import StreamsynthError
from streamsynth.models import create, load_model
from streamsynth.models.segments import segment_length

TINY = {"n_layer": 1, "n_head": 2, "n_embd": 32, "epochs": 2, "batch_size": 8, "progress": False}
START = datetime(2024, 3, 4, tzinfo=UTC)


@pytest.fixture(scope="module")
def metric() -> pl.DataFrame:
    """A minute-by-minute metric with a daily wave, a level and a quiet hour (2,000 rows)."""
    n = 2_000
    rng = np.random.default_rng(3)
    minutes = np.arange(n) * 60
    minutes = minutes + np.where(np.arange(n) > 1_000, 600, 0)  # a ten-minute hole
    value = 50 + 20 * np.sin(minutes / 86_400 * 2 * np.pi) + rng.normal(0, 2, n)
    return pl.DataFrame({
        "ts": [START + timedelta(seconds=int(s)) for s in minutes],
        "cpu": value,
        "level": np.where(value > 60, "high", "ok"),
    })


@pytest.fixture(scope="module")
def model(metric):
    return create("transformer", seed=0, **TINY).fit(metric)


def test_a_stream_without_an_entity_is_sampled_as_one_stream_over_its_span(metric, model):
    sample = model.sample(seed=1, end=metric["ts"].max() + timedelta(seconds=1))
    assert "_segment" not in sample.columns and {"ts", "cpu", "level"} <= set(sample.columns)
    assert sample["ts"].is_sorted()
    assert sample["ts"].min() >= metric["ts"].min() and sample["ts"].max() <= metric["ts"].max()
    # Each segment has its training segment's count and first and last times: the same events.
    assert sample.height == metric.height
    length = segment_length(metric.height)
    firsts = metric["ts"].gather_every(length)
    assert firsts.is_in(sample["ts"].implode()).all()
    assert set(sample["level"].unique()) <= {"high", "ok"}


def test_more_streams_and_longer_windows_tile_again(metric, model):
    span = metric["ts"].max() - metric["ts"].min()
    two = model.sample(seed=1, n_entities=2, end=metric["ts"].max() + timedelta(seconds=1))
    assert two.height == 2 * metric.height and two["ts"].is_sorted()
    longer = model.sample(seed=1, end=metric["ts"].min() + 2 * span)
    assert abs(longer.height - 2 * metric.height) <= 2
    assert longer.filter(pl.col("ts") > metric["ts"].max()).height > 0.9 * metric.height


def test_save_and_load_give_the_same_stream(model, tmp_path):
    model.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert again.sample(seed=2).equals(model.sample(seed=2))


def test_private_training_without_an_entity_is_refused(metric):
    with pytest.raises(StreamsynthError, match="needs an entity column"):
        create("transformer", seed=0, dp_epsilon=5.0, **TINY).fit(metric)


@pytest.mark.slow
def test_a_smooth_series_stays_smooth_at_the_default_budget():
    """A segmented stream learns to follow its previous value (a fit ended on the plateau where
    the network ignores its inputs kept a lag-one correlation near 0.2), in any window."""
    n = 3_000
    rng = np.random.default_rng(5)
    level = np.zeros(n)
    for i in range(1, n):
        level[i] = 0.97 * level[i - 1] + rng.normal(0, 1)
    frame = pl.DataFrame({"ts": [START + timedelta(minutes=5 * i) for i in range(n)], "load": 100 + 5 * level})
    model = create("transformer", seed=0, progress=False).fit(frame)
    for shift in (timedelta(0), timedelta(hours=12)):
        sample = model.sample(seed=1, start=START + shift, n_events=2_000)
        v = sample["load"].to_numpy()
        assert np.corrcoef(v[1:], v[:-1])[0, 1] > 0.6, shift
