"""Latencies recorded into an HDR histogram in bulk: a buffer of floats per request, folded in once
in a while by numpy.

Why: the ``hdrh`` library's ``record_value`` is pure Python (a bucket index from ``bin()``, min,
max, a ctypes store), one to a few microseconds a call, and a request records two latencies.
Appending a float to a list costs tens of nanoseconds. Calling ``record_value(value, count)`` once
per distinct value at fold time does not save enough: below 2 ms the histograms' buckets are 1 us
wide, so a second's latencies are mostly distinct values, and a load generator that falls behind
spreads them over milliseconds to seconds. So the fold does what ``record_value`` does, for the
whole buffer at once: the same counts index (the library's bucket arithmetic, vectorised), one
``bincount`` added into the histogram's own counts array (a ctypes array numpy views in place, as
:func:`.measure.values_at` reads it), and the same ``total_count``, ``min_value`` and ``max_value``
updates. The histogram is then the one recording one by one gives: every percentile, the max, the
encoding the workers send and the merges read the same (tests/connectors/test_load_fold.py).
"""

from __future__ import annotations

import numpy as np
from hdrh.histogram import HdrHistogram

#: the histograms' range and precision: 1 us to an hour at three significant digits
LOWEST_US, HIGHEST_US, DIGITS = 1, 3_600_000_000, 3


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)


def record_us(seconds: float) -> int:
    """A latency in whole microseconds, clamped into the histograms' range (a clock step must not raise)."""
    return min(max(round(seconds * 1e6), LOWEST_US), HIGHEST_US)


def to_us(seconds: np.ndarray) -> np.ndarray:
    """:func:`record_us` of each (``np.rint`` rounds half to even, as ``round`` does)."""
    return np.clip(np.rint(seconds * 1e6), LOWEST_US, HIGHEST_US).astype(np.int64)


def counts_index(histogram: HdrHistogram, values: np.ndarray) -> np.ndarray:
    """The index into ``histogram.counts`` of each value (positive int64 below 2**53), as the
    library's ``_counts_index_for`` computes it one at a time: the bucket is where the value's
    highest bit lies, ``bit_length(value | sub_bucket_mask) - unit_magnitude -
    (sub_bucket_half_count_magnitude + 1)``; the sub-bucket is the value shifted right by ``bucket
    + unit_magnitude``. ``frexp`` gives the bit length exactly for integers a float64 holds exactly.
    """
    half_magnitude = histogram.sub_bucket_half_count_magnitude
    bit_length = np.frexp((values | histogram.sub_bucket_mask).astype(np.float64))[1].astype(np.int64)
    bucket = bit_length - histogram.unit_magnitude - (half_magnitude + 1)
    sub_bucket = values >> (bucket + histogram.unit_magnitude)
    return ((bucket + 1) << half_magnitude) + (sub_bucket - histogram.sub_bucket_half_count)


def record_all(histogram: HdrHistogram, values: np.ndarray) -> None:
    """``histogram.record_value(v)`` for each of ``values`` (int64 microseconds in the range)."""
    if values.size == 0:
        return
    counts = np.ctypeslib.as_array(histogram.counts)  # a view: the adds land in the histogram itself
    counts += np.bincount(counts_index(histogram, values), minlength=histogram.counts_len).astype(counts.dtype)
    histogram.total_count += int(values.size)
    histogram.min_value = min(histogram.min_value, int(values.min()))
    histogram.max_value = max(histogram.max_value, int(values.max()))


def fold(histogram: HdrHistogram, seconds: list[float]) -> None:
    """Record the latencies ``seconds`` into ``histogram`` and empty the list."""
    if not seconds:
        return
    values = to_us(np.asarray(seconds, dtype=np.float64))
    seconds.clear()
    record_all(histogram, values)
