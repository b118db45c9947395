"""Duplicate events: some events are delivered twice (at-least-once producers, replays).

A duplicate keeps the payload of its original but gets its own ``event_id`` (the contract's ids
stay unique); ``duplicate_of`` names the original's id. With a ``delay`` the copy arrives
later: it is positioned at original time + delay and ``original_<time>`` holds the payload's
event time (see the out_of_order injector for this convention).
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl
from pydantic import Field
from streamsynth.scenarios.fields import Duration
from streamsynth.scenarios.injectors.base import ChangeInjector, Params

from streamsynth.contract import EVENT_ID

DUPLICATE_OF = "duplicate_of"


class DuplicateParams(Params):
    delay: Duration = Field(default=timedelta(0), description="how much later the copy arrives")


class DuplicateEvents(ChangeInjector, kind="duplicate_events", label="ops.duplicate", params=DuplicateParams):
    default_share = 0.1

    def extra_columns(self, time: str) -> dict[str, pl.DataType]:
        cols: dict[str, pl.DataType] = {DUPLICATE_OF: pl.String()}
        if self.params.delay > timedelta(0):
            cols[f"original_{time}"] = pl.Datetime("us", "UTC")
        return cols

    def alter(self, batch: pl.DataFrame, mask: np.ndarray) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        time = self.ctx.time
        originals = batch.filter(pl.Series(mask))
        copies = originals.with_columns(
            self.new_ids(originals[EVENT_ID]), originals[EVENT_ID].alias(DUPLICATE_OF)
        )
        if self.params.delay > timedelta(0):
            copies = copies.with_columns(
                pl.col(time).alias(f"original_{time}"), (pl.col(time) + self.params.delay).alias(time)
            )
        self.added += copies.height
        return batch, self.mark(copies)
