"""Error spike: a share of the targeted requests in the window fail with the given status codes."""

from __future__ import annotations

import numpy as np
import polars as pl
from pydantic import Field
from streamsynth.scenarios.fields import Scalar
from streamsynth.scenarios.injectors.base import ChangeInjector, Params

from streamsynth.errors import StreamsynthError


class ErrorSpikeParams(Params):
    column: str = "status"
    values: list[Scalar] = Field(default_factory=lambda: [503], min_length=1)
    weights: list[float] | None = Field(None, description="relative weight of each value")


class ErrorSpike(ChangeInjector, kind="error_spike", label="ops.error_spike", params=ErrorSpikeParams):
    default_share = 0.5

    column_params = ("column",)

    def _bind(self) -> None:
        p = self.params
        if p.weights is not None and len(p.weights) != len(p.values):

            raise StreamsynthError(
                f"{self.ctx.source}: events[{self.index}].params.weights: {len(p.weights)} weights "
                f"for {len(p.values)} values",
                hint="give one weight per value",
            )
        weights = np.asarray(p.weights or [1.0] * len(p.values), dtype=float)
        self.cdf = np.cumsum(weights) / weights.sum()

    def alter(self, batch: pl.DataFrame, mask: np.ndarray) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        pick = np.minimum(np.searchsorted(self.cdf, self.row_uniform(batch, 1)), len(self.cdf) - 1)
        values = pl.Series(self.params.values, strict=False).cast(batch[self.params.column].dtype, strict=False)
        return self.change(batch, mask, {self.params.column: values.gather(pl.Series(pick))}), None
