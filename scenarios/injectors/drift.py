"""Drift: a column's distribution shifts gradually over the window (a leak, a slow regression).

Modes: ``shift`` adds up to ``amount``; ``scale`` multiplies by up to ``amount``; ``toward``
moves values toward ``amount`` (e.g. memory to 97%); ``replace`` swaps a growing share of a
categorical column's values for ``to``. The effect ramps from 0 at the window start to full
after ``ramp`` of the window and ends with the window.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import polars as pl
from pydantic import Field, model_validator
from streamsynth.scenarios.fields import Scalar
from streamsynth.scenarios.injectors.base import ChangeInjector, Params


class DriftParams(Params):
    column: str
    mode: Literal["shift", "scale", "toward", "replace"] = "shift"
    amount: float | None = None
    to: Scalar | None = None
    ramp: float = Field(1.0, gt=0, le=1, description="share of the window until the full effect")
    clip: tuple[float, float] | None = Field(None, description="keep values within [low, high]")

    @model_validator(mode="after")
    def _needs(self) -> DriftParams:
        if self.mode == "replace" and self.to is None:
            raise ValueError("mode 'replace' needs 'to', the value that takes over")
        if self.mode != "replace" and self.amount is None:
            raise ValueError(f"mode {self.mode!r} needs 'amount'")
        return self


class Drift(ChangeInjector, kind="drift", label="ops.drift", params=DriftParams):
    column_params = ("column",)

    def alter(self, batch: pl.DataFrame, mask: np.ndarray) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        p = self.params
        level = np.minimum(self.progress(batch) / p.ramp, 1.0)
        old = batch[p.column]
        if p.mode == "replace":
            hit = self.row_uniform(batch, 1) < level
            new = pl.Series([p.to] * batch.height).cast(old.dtype, strict=False)
            return self.change(batch, mask & hit, {p.column: new}), None
        x = old.cast(pl.Float64).to_numpy()
        if p.mode == "shift":
            y = x + p.amount * level
        elif p.mode == "scale":
            y = x * (1 + (p.amount - 1) * level)
        else:
            y = x + (p.amount - x) * level
        if p.clip is not None:
            y = np.clip(y, *p.clip)
        if old.dtype.is_integer():
            y = np.round(y)
        elif old.dtype.is_float():
            y = np.round(y, 4)
        return self.change(batch, mask, {p.column: pl.Series(y)}), None
