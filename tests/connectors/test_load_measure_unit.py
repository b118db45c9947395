"""The load test's percentile reading: the same values as the HDR library's own, from one pass."""

from __future__ import annotations

import numpy as np
import pytest
from streamsynth.connectors.loadtest.measure import latency_summary, new_histogram, values_at

PERCENTILES = (0.0, 50.0, 90.0, 95.0, 99.0, 99.9, 100.0)


@pytest.mark.parametrize("values", [
    np.random.default_rng(1).lognormal(7, 1, 20_000),  # a latency-like spread of microseconds
    np.random.default_rng(2).lognormal(14, 2, 3_000),  # seconds to an hour
    np.random.default_rng(3).uniform(1, 5, 10),
    np.array([3.0]),
    np.array([1.0] * 50 + [3_600_000_000.0]),  # the range's ends
])
def test_values_at_match_the_library(values):
    histogram = new_histogram()
    for v in values.astype(np.int64):
        histogram.record_value(int(v))
    assert values_at(histogram, PERCENTILES) == [histogram.get_value_at_percentile(p) for p in PERCENTILES]


def test_an_empty_histogram_has_no_percentiles():
    assert set(latency_summary(new_histogram()).values()) == {None}
