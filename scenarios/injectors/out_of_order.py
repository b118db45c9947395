"""Out-of-order events: late arrivals, as from a producer with a skewed clock or a slow link.

Representation: the stream contract orders batches by the time column, which the replay uses
for pacing, so a late event is *moved*: its time column becomes its arrival time (event time
plus a delay) and positions and paces it there, and the new column ``original_<time>`` (e.g.
``original_ts``) keeps the event time its producer stamped. The event keeps its ``event_id``;
``original_<time>`` is null on every row this injector did not move.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl
from pydantic import Field
from streamsynth.scenarios.fields import Duration
from streamsynth.scenarios.injectors.base import ChangeInjector, Params

from streamsynth.errors import StreamsynthError


class OutOfOrderParams(Params):
    min_delay: Duration = Field(default=timedelta(seconds=1))
    max_delay: Duration = Field(default=timedelta(seconds=60))


class OutOfOrder(ChangeInjector, kind="out_of_order", label="ops.out_of_order", params=OutOfOrderParams):
    default_share = 0.1

    def extra_columns(self, time: str) -> dict[str, pl.DataType]:
        return {f"original_{time}": pl.Datetime("us", "UTC")}

    def _bind(self) -> None:
        if self.params.max_delay < self.params.min_delay:

            raise StreamsynthError(
                f"{self.ctx.source}: events[{self.index}].params.max_delay: is shorter than min_delay"
            )

    def alter(self, batch: pl.DataFrame, mask: np.ndarray) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        time = self.ctx.time
        keep = pl.Series(mask)
        late = batch.filter(keep)
        lo = self.params.min_delay.total_seconds() * 1e6
        hi = self.params.max_delay.total_seconds() * 1e6
        delay_us = np.round(lo + self.row_uniform(late, 1) * (hi - lo)).astype(np.int64)
        late = late.with_columns(
            pl.col(time).alias(f"original_{time}"),
            (pl.col(time) + pl.duration(microseconds=pl.Series(delay_us))).alias(time),
        )
        self.changed += late.height
        return batch.filter(~keep), self.mark(late)
