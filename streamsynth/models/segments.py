"""A stream without an entity column (a service's log, a metric series) as the transformer learns
it: consecutive segments of one stream, each a sequence.

The transformer learns sequences; a stream of one entity is one sequence of thousands of events,
far past a block the network can attend over, and would be sampled one event at a time. Cut into
consecutive segments of at most :data:`MAX_LENGTH` events, it trains on every event and samples
all segments of a window side by side. Each sampled segment is planned as its training segment was
lived (``Lifecycles(tiled=True)``): it starts at that segment's first event time and ends at its
last with as many events, so the segments tile the window as the training stream did, with no
overlap and no hole; a longer window repeats the tiling. What is lost is the context across a
boundary (one event in each segment starts a new sequence).

Columns constant over the whole stream stay one value per stream (not per segment), and no column
is an attribute of a segment: a segment is a cut, not a thing in the data.
"""

from __future__ import annotations

import polars as pl

SEGMENT = "_segment"  # the sequence key added to a stream without an entity column
MAX_LENGTH = 128  # events in a segment: the block the network attends over stays small
MIN_SEGMENTS = 16  # a short stream is cut into at least this many (the network sees starts)
MIN_LENGTH = 16


def segment_length(n_events: int) -> int:
    """Events per segment for a stream of ``n_events``."""
    return max(MIN_LENGTH, min(MAX_LENGTH, n_events // MIN_SEGMENTS))


def with_segments(frame: pl.DataFrame, length: int) -> pl.DataFrame:
    """``frame`` (one stream, sorted by time) with its segment number in :data:`SEGMENT`."""
    return frame.with_columns((pl.int_range(pl.len(), dtype=pl.Int64) // length).alias(SEGMENT))
