"""``--workers N``: worker K's share of a run, the requests K, K+N, K+2N, ... of the one schedule.

A round robin over the one schedule rather than ``--shard K/N``: a shard is a hash of the entity
ids, so the shards differ in size (and a recorded file without an entity column has none), while
each worker sends at exactly R/N. Taking every Nth request gives each worker an exact share, and
together the workers send exactly what one process would: the same requests, each once, at the
same scheduled times, with the same ``--batch`` grouping. The cost is that every worker reads the
whole source and drops the others' rows before rendering (rendering, not reading, is the CPU).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import polars as pl
from streamsynth.connectors.loadtest.schedule import Segment, arrival_times


@dataclass(frozen=True)
class Share:
    """Requests ``index``, ``index + count``, ... of a run (the whole run by default)."""

    index: int = 0
    count: int = 1

    def times(self, segments: list[Segment]) -> Iterator[float]:
        """This share's arrival times: every ``count``-th of the schedule's."""
        times = arrival_times(segments)
        return times if self.count == 1 else itertools.islice(times, self.index, None, self.count)

    def max_in_flight(self, total: int) -> int:
        """This share's part of ``--max-in-flight``: the parts differ by at most one and sum to it."""
        return total // self.count + (1 if self.index < total % self.count else 0)

    def events(self, stream: Iterator[pl.DataFrame], per_request: int) -> Iterator[pl.DataFrame]:
        """The rows of this share's requests. A request is ``per_request`` rows of one source
        batch (:meth:`.RequestTemplate.render` never spans two), numbered across batches; this
        share keeps request r when r % count == index, so its rows render into the same requests."""
        if self.count == 1:
            yield from stream
            return
        first = 0  # the number of the batch's first request
        for batch in stream:
            request = (pl.int_range(batch.height, eager=True) // per_request + first) % self.count
            yield batch.filter(request == self.index)
            first += math.ceil(batch.height / per_request)
