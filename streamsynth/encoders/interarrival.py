"""The time since an entity's previous event, in log-scale bins plus an offset.

Gaps span microseconds to weeks, so bins are geometric; zero gaps (same-timestamp events,
common in logs) get their own bin 0.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import polars as pl

from streamsynth.encoders.base import Encoder

MIN_GAP_S = 1e-3


class InterArrivalEncoder(Encoder):
    """Bin 0 is a zero gap; bins 1..n cover [min gap, max gap] in equal log steps."""

    type = "interarrival"

    def __init__(self, n_bins: int = 48) -> None:
        self.n_bins = n_bins
        self.edges = np.zeros(0)  # log seconds, n_bins + 1 values
        self.zero_rate = 0.0

    @property
    def size(self) -> int:
        return self.n_bins + 1

    def fit(self, values: pl.Series) -> Self:
        """``values``: gaps in seconds (floats), e.g. from :func:`gaps_seconds`."""
        gaps = values.drop_nulls().cast(pl.Float64).to_numpy()
        positive = gaps[gaps > 0]
        self.zero_rate = float((gaps <= 0).mean()) if gaps.size else 0.0
        lo = np.log(max(positive.min(), MIN_GAP_S)) if positive.size else 0.0
        hi = np.log(positive.max()) if positive.size else 1.0
        hi = max(hi, lo + 1e-6) * 1.0001 + 1e-9
        self.edges = np.linspace(lo, hi, self.n_bins + 1)
        return self

    def encode(self, gaps: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        gaps = np.asarray(gaps, dtype=np.float64)
        zero = gaps <= 0
        z = np.clip(np.log(np.where(zero, 1.0, np.maximum(gaps, MIN_GAP_S))), self.edges[0], self.edges[-1])
        bins = np.clip(np.searchsorted(self.edges, z, side="right") - 1, 0, self.n_bins - 1)
        width = self.edges[bins + 1] - self.edges[bins]
        offset = np.clip((z - self.edges[bins]) / width, 0.0, 1.0 - 1e-9)
        return np.where(zero, 0, bins + 1).astype(np.int64), np.where(zero, 0.0, offset)

    def decode(self, bins: np.ndarray, offset: np.ndarray) -> np.ndarray:
        bins = np.asarray(bins, dtype=np.int64)
        inner = np.clip(bins - 1, 0, self.n_bins - 1)
        z = self.edges[inner] + np.asarray(offset) * (self.edges[inner + 1] - self.edges[inner])
        return np.where(bins == 0, 0.0, np.exp(z))

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "n_bins": self.n_bins, "edges": self.edges.tolist(), "zero_rate": self.zero_rate}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        enc = cls(n_bins=data["n_bins"])
        enc.edges = np.asarray(data["edges"], dtype=np.float64)
        enc.zero_rate = data["zero_rate"]
        return enc


def gaps_seconds(frame: pl.DataFrame, time: str, entity: str | None) -> pl.Series:
    """Seconds since the same entity's previous event (null for each entity's first event).

    ``frame`` must be sorted by (entity, time).
    """
    expr = pl.col(time).diff().dt.total_microseconds() / 1e6
    if entity:
        expr = expr.over(entity)
    return frame.select(expr.alias("gap_s")).to_series()
