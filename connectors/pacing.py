"""Pacing: when each event is due on the wall clock, by event time (``speed``) or by ``rate``.

Due times are computed for a whole batch at once (numpy), and the replay loop sends every event
already due in one slice, so high rates cost no per-event sleep.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import polars as pl

from streamsynth.errors import StreamsynthError


@dataclass(frozen=True)
class Pacing:
    """``speed``: event time runs this many times faster than the wall clock (1 = real time);
    ``rate``: a fixed number of events per second; neither: as fast as the sink takes them."""

    speed: float | None = None
    rate: float | None = None

    def __post_init__(self) -> None:
        if self.speed is not None and self.rate is not None:
            raise StreamsynthError("give either --speed or --rate, not both",
                                   hint="--speed follows event time; --rate sends N events/s")
        for name in ("speed", "rate"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise StreamsynthError(f"--{name} must be above 0, got {value}",
                                       hint="leave out --speed and --rate to send as fast as possible")

    @property
    def paced(self) -> bool:
        return self.speed is not None or self.rate is not None

    def describe(self) -> dict[str, float | None]:
        return {"speed": self.speed, "rate": self.rate}


class Schedule:
    """Due times on ``time.monotonic()`` for consecutive batches of one replay."""

    def __init__(self, pacing: Pacing, time_column: str | None) -> None:
        if pacing.speed is not None and not time_column:
            raise StreamsynthError("--speed needs the stream's time column",
                                   hint="use --rate for a stream without event times")
        self.pacing = pacing
        self.time_column = time_column
        self.start: float | None = None
        self.first_us: int | None = None
        self.count = 0

    def due(self, batch: pl.DataFrame) -> np.ndarray | None:
        """Due time of each event of ``batch`` (nondecreasing), or ``None`` when unpaced."""
        if not self.pacing.paced or batch.height == 0:
            return None
        if self.start is None:
            self.start = time.monotonic()
        if self.pacing.rate is not None:
            positions = np.arange(self.count, self.count + batch.height, dtype=np.float64)
            due = self.start + positions / self.pacing.rate
        else:
            micros = batch[self.time_column].dt.epoch("us").to_numpy().astype(np.int64)
            if self.first_us is None:
                self.first_us = int(micros[0])
            due = self.start + (micros - self.first_us) / 1e6 / self.pacing.speed
            # Events that are out of order within a batch must not move the schedule backwards.
            due = np.maximum.accumulate(due)
        self.count += batch.height
        return due
