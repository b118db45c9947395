"""Latency spike: targeted requests in the window get slower by a heavy-tailed (Pareto) factor."""

from __future__ import annotations

import numpy as np
import polars as pl
from pydantic import Field
from streamsynth.scenarios.injectors.base import ChangeInjector, Params


class LatencySpikeParams(Params):
    column: str = "latency_ms"
    multiplier: float = Field(5.0, ge=1, description="typical slowdown")
    tail: float = Field(1.5, gt=0, description="Pareto shape: smaller means a heavier tail")
    max_factor: float = Field(200.0, ge=1)


class LatencySpike(ChangeInjector, kind="latency_spike", label="ops.latency_spike", params=LatencySpikeParams):
    column_params = ("column",)

    def alter(self, batch: pl.DataFrame, mask: np.ndarray) -> tuple[pl.DataFrame, pl.DataFrame | None]:
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
