"""Latency spike: targeted requests in the window get slower by a heavy-tailed (Pareto) factor."""

from __future__ import annotations

import numpy as np
import polars as pl
from pydantic import Field
from streamsynth.scenarios.injectors.base import Injector, Params


class LatencySpikeParams(Params):
    column: str = "latency_ms"
    multiplier: float = Field(5.0, ge=1, description="typical slowdown")
    tail: float = Field(1.5, gt=0, description="Pareto shape: smaller means a heavier tail")
    max_factor: float = Field(200.0, ge=1)


class LatencySpike(Injector):
    kind = "latency_spike"
    default_label = "ops.latency_spike"
    Params = LatencySpikeParams

    def _bind(self) -> None:
        self.require(self.params.column, "params.column")

    def _apply(self, batch: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        mask = self.selection(batch)
        if not mask.any():
            return batch, None
        p = self.params
        pareto = (1 - self.row_uniform(batch, 1)) ** (-1 / p.tail)
        factor = np.minimum(p.multiplier * pareto, p.max_factor)
        old = batch[p.column].cast(pl.Float64)
        new = old * pl.Series(factor)
        if batch[p.column].dtype.is_integer():
            new = new.round(0)
        elif batch[p.column].dtype.is_float():
            new = new.round(3)
        return self.change(batch, mask, {p.column: new}), None
