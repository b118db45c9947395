"""Dropout: a gap with no events (a producer, host or log shipper goes silent)."""

from __future__ import annotations

import polars as pl
from streamsynth.scenarios.injectors.base import Injector


class Dropout(Injector):
    kind = "dropout"
    default_label = "ops.dropout"

    def _apply(self, batch: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        mask = self.selection(batch)
        if not mask.any():
            return batch, None
        self.removed += int(mask.sum())
        return batch.filter(~pl.Series(mask)), None
