"""Latencies folded into the HDR histograms in bulk read exactly as recorded one by one."""

from __future__ import annotations

import numpy as np
import pytest
from hdrh.histogram import HdrHistogram
from streamsynth.connectors.loadtest import measure
from streamsynth.connectors.loadtest.fold import counts_index, fold, new_histogram, record_us, to_us
from streamsynth.connectors.loadtest.measure import LabelStats, Measurements, latency_summary, values_at

PERCENTILES = (0.0, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0)

SAMPLES = [
    np.random.default_rng(1).lognormal(-7, 1, 20_000),  # ~1 ms, a latency-like spread (seconds)
    np.random.default_rng(2).lognormal(0, 2, 3_000),  # a second to an hour, and past it (clamped)
    np.random.default_rng(3).uniform(0, 5e-6, 50),  # around the 1 us floor, 0 included (clamped)
    np.array([-0.5, 1e-6, 2.5e-6, 3.5e-6, 0.0020475, 0.0020485, 7200.0]),  # clamps, rounding ties
    np.array([0.004]),
]


def one_by_one(seconds: np.ndarray) -> HdrHistogram:
    histogram = new_histogram()
    for s in seconds.tolist():
        histogram.record_value(record_us(s))
    return histogram


def in_bulk(seconds: np.ndarray, parts: int = 3) -> HdrHistogram:
    histogram = new_histogram()
    for part in np.array_split(seconds, parts):  # several folds, as a run makes one a second
        fold(histogram, part.tolist())
    return histogram


@pytest.mark.parametrize("seconds", SAMPLES)
def test_bulk_fold_reads_as_recording_one_by_one(seconds):
    slow, fast = one_by_one(seconds), in_bulk(seconds)
    assert fast.get_total_count() == slow.get_total_count() == len(seconds)
    assert np.array_equal(np.ctypeslib.as_array(fast.counts), np.ctypeslib.as_array(slow.counts))
    assert [fast.get_value_at_percentile(p) for p in PERCENTILES] == \
        [slow.get_value_at_percentile(p) for p in PERCENTILES]
    assert values_at(fast, PERCENTILES) == values_at(slow, PERCENTILES)
    assert latency_summary(fast) == latency_summary(slow)
    assert (fast.get_min_value(), fast.get_max_value()) == (slow.get_min_value(), slow.get_max_value())
    assert (fast.min_value, fast.max_value) == (slow.min_value, slow.max_value)  # the raw extremes too
    assert fast.encode() == slow.encode()  # what crosses the workers' pipe, byte for byte
    # what crosses the workers' pipe decodes to the same histogram
    assert values_at(HdrHistogram.decode(fast.encode()), PERCENTILES) == values_at(slow, PERCENTILES)


def test_bulk_percentiles_are_within_the_histograms_precision_of_the_exact_ones():
    seconds = SAMPLES[0]
    exact = np.percentile(to_us(seconds), [50, 90, 99], method="inverted_cdf")
    read = values_at(in_bulk(seconds), (50.0, 90.0, 99.0))
    assert np.allclose(read, exact, rtol=1e-3, atol=1)  # three significant digits


def test_rounding_to_microseconds_matches_the_scalar_one():
    seconds = np.concatenate(SAMPLES)
    assert to_us(seconds).tolist() == [record_us(s) for s in seconds.tolist()]


def test_counts_index_is_the_librarys():
    histogram = new_histogram()
    powers = [2 ** k + d for k in range(32) for d in (-1, 0, 1) if 1 <= 2 ** k + d <= 3_600_000_000]
    values = np.array(sorted({*powers, *range(1, 5000), *to_us(np.concatenate(SAMPLES)).tolist(), 3_600_000_000}),
                      dtype=np.int64)
    # the library's own (private) index function, one value at a time
    assert counts_index(histogram, values).tolist() == [histogram._counts_index_for(v) for v in values.tolist()]


def test_a_fold_empties_the_buffer_and_an_empty_one_records_nothing():
    histogram, buffer = new_histogram(), [0.001, 0.002]
    fold(histogram, buffer)
    fold(histogram, buffer)
    assert buffer == [] and histogram.get_total_count() == 2


def test_label_stats_fold_before_every_reading(monkeypatch):
    stats = LabelStats()
    seconds = SAMPLES[0][:1000]
    for s in seconds.tolist():
        stats.record(s, s / 2)
    assert stats.pending_sent  # buffered, not yet in the histograms
    assert values_at(stats.from_scheduled, PERCENTILES) == values_at(one_by_one(seconds), PERCENTILES)
    assert values_at(stats.from_sent, PERCENTILES) == values_at(one_by_one(seconds / 2), PERCENTILES)
    stats.record(0.5, 0.5)  # buffered again after a reading; the encoding (the workers' pipe) folds it
    decoded = LabelStats.decode(stats.encode())
    assert decoded.from_scheduled.get_total_count() == 1001 and decoded.from_scheduled.get_max_value() >= 500_000
    # a merge folds the other's buffer
    other = LabelStats()
    other.record(0.25, 0.25)
    stats.add(other)
    assert stats.from_sent.get_total_count() == 1002
    # many latencies nobody reads are folded anyway, so the buffer stays bounded
    monkeypatch.setattr(measure, "_FOLD_AT", 10)
    for _ in range(25):
        other.record(0.001, 0.001)
    assert len(other.pending_sent) < 10 and other.hdr_sent.get_total_count() >= 20


def test_measurements_total_and_snapshot_see_buffered_latencies():
    m = Measurements([10, 10])
    for i in range(200):
        m.answered("normal" if i % 4 else "fraud", 200, from_scheduled=0.001 * (i + 1), from_sent=0.0005,
                   offset=i / 100, size=0)
    assert m.total().from_scheduled.get_total_count() == 200
    assert latency_summary(m.labels["fraud"].from_scheduled)["max"] == pytest.approx(197.0, rel=1e-3)
    m.answered("normal", 200, from_scheduled=0.9, from_sent=0.0005, offset=1.5, size=0)
    copy = Measurements([])
    copy.apply(m.snapshot())
    assert copy.total().from_scheduled.get_total_count() == 201
    assert latency_summary(copy.total().from_scheduled)["max"] == pytest.approx(900.0, rel=1e-3)
