"""Traffic surge: the event rate inside the window is multiplied by ``factor``.

Each targeted event gets ``factor - 1`` extra copies on average (new event ids, new per-event
identifiers), spread over ``jitter`` after it, so the surge keeps the base's mix and daily shape.
"""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import polars as pl
from pydantic import Field
from streamsynth.scenarios.fields import Duration
from streamsynth.scenarios.injectors.base import ChangeInjector, Params, row_keys

from streamsynth import rng
from streamsynth.contract import EVENT_ID
from streamsynth.identifiers import fake


class SurgeParams(Params):
    factor: float = Field(3.0, gt=1, description="rate multiplier")
    jitter: Duration = Field(default=timedelta(seconds=60), description="copies land within this after")


class TrafficSurge(ChangeInjector, kind="traffic_surge", label="traffic.surge", params=SurgeParams):
    def alter(self, batch: pl.DataFrame, mask: np.ndarray) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        rows = batch.filter(pl.Series(mask))
        extra = self.params.factor - 1
        whole, frac = int(extra), extra - int(extra)
        copies = whole + (self.row_uniform(rows, 1) < frac).astype(np.int64)
        if copies.sum() == 0:
            return batch, None
        idx = np.repeat(np.arange(rows.height), copies)
        nth = np.arange(idx.size) - np.repeat(np.cumsum(copies) - copies, copies)
        clones = rows[idx]
        keys = row_keys(clones)
        shift = np.round(rng.uniform(self.seed, keys, nth, 2) * self.params.jitter.total_seconds() * 1e6)
        time = self.ctx.time
        last = self.end - timedelta(microseconds=1)  # copies stay inside the window
        shifted = pl.col(time) + pl.duration(microseconds=pl.Series(shift.astype(np.int64)))
        changes = [
            self.new_ids(clones[EVENT_ID], "/" + pl.Series(nth).cast(pl.String)),
            pl.min_horizontal(shifted, pl.lit(last).cast(clones.schema[time])).alias(time),
        ]
        for column, kind in sorted(self.ctx.event_identifiers.items()):
            id_keys = rng.hash64(self.seed, keys, nth).view(np.int64) & 0x7FFFFFFFFFFF
            changes.append(fake(kind, id_keys, rng.child_seed(self.seed, column)).alias(column))
        clones = clones.with_columns(changes)
        self.added += clones.height
        return batch, self.mark(clones)
