"""Dropout: a gap with no events (a producer, host or log shipper goes silent)."""

from __future__ import annotations

import numpy as np
import polars as pl
from streamsynth.scenarios.injectors.base import ChangeInjector


class Dropout(ChangeInjector, kind="dropout", label="ops.dropout"):
    def alter(self, batch: pl.DataFrame, mask: np.ndarray) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        self.removed += int(mask.sum())
        return batch.filter(~pl.Series(mask)), None
