"""Numeric columns as quantile bins plus a within-bin offset, with CDF and inverse CDF.

Knots sit at quantiles of the training values, denser in both tails, and heavy-tailed positive
columns are interpolated in log space, so amounts and latencies keep their tails. The same
knots give ``cdf``/``ppf`` for copulas and ``encode``/``decode`` (bin, offset) for sequence models.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
import polars as pl

from streamsynth.encoders.base import Encoder
from streamsynth.errors import StreamsynthError

_TAILS = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2)


class QuantileEncoder(Encoder):
    """Piecewise-linear quantile function over ``n_bins`` bins (in log space when skewed)."""

    type = "quantile"

    def __init__(self, n_bins: int = 64, log: bool | None = None) -> None:
        self.n_bins = n_bins
        self.log = log
        self.probs = np.zeros(0)
        self.knots = np.zeros(0)
        self.integer = False
        self.null_rate = 0.0
        self.name = ""

    @property
    def size(self) -> int:
        """Number of bins."""
        return len(self.knots) - 1

    def fit(self, values: pl.Series) -> Self:
        self.name = values.name
        self.integer = values.dtype.is_integer()
        self.null_rate = values.null_count() / max(values.len(), 1)
        x = values.drop_nulls().cast(pl.Float64).to_numpy()
        x = x[np.isfinite(x)]
        if x.size == 0:
            raise StreamsynthError(
                f"column {values.name!r} has no numeric values to learn from",
                hint="drop the column or declare another role for it in a schema file",
            )
        if self.log is None:
            positive = x.min() > 0
            median = float(np.median(x))
            self.log = bool(positive and median > 0 and x.max() / median > 20)
        if self.log and x.min() <= 0:
            raise StreamsynthError(f"column {values.name!r}: log encoding needs positive values")
        z = np.log(x) if self.log else x
        self.probs = _grid(self.n_bins, x.size)
        self.knots = np.quantile(z, self.probs)
        return self

    # -- copula view -------------------------------------------------------------------------
    def ppf(self, u: np.ndarray) -> np.ndarray:
        """Values at probabilities ``u`` in (0, 1) (the inverse CDF)."""
        return self._out(np.interp(u, self.probs, self.knots))

    def cdf(self, values: np.ndarray, jitter: np.ndarray | None = None) -> np.ndarray:
        """Probabilities of ``values``; on point masses (repeated knots) ``jitter`` in (0, 1)
        spreads ties across the mass, which a Gaussian copula needs."""
        z = self._in(np.asarray(values, dtype=np.float64))
        lo = np.searchsorted(self.knots, z, side="left")
        hi = np.searchsorted(self.knots, z, side="right")
        inner = np.interp(z, self.knots, self.probs)
        tied = hi - lo > 1
        if jitter is not None and tied.any():
            p_lo = self.probs[np.clip(lo, 0, len(self.probs) - 1)]
            p_hi = self.probs[np.clip(hi - 1, 0, len(self.probs) - 1)]
            inner = np.where(tied, p_lo + jitter * (p_hi - p_lo), inner)
        return np.clip(inner, 1e-9, 1 - 1e-9)

    # -- sequence-model view -----------------------------------------------------------------
    def encode(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(bin index in ``0..size-1``, offset in [0, 1)) per value."""
        z = np.clip(self._in(np.asarray(values, dtype=np.float64)), self.knots[0], self.knots[-1])
        bins = np.clip(np.searchsorted(self.knots, z, side="right") - 1, 0, self.size - 1)
        left, right = self.knots[bins], self.knots[bins + 1]
        width = right - left
        offset = np.where(width > 0, (z - left) / np.where(width > 0, width, 1.0), 0.0)
        return bins.astype(np.int64), np.clip(offset, 0.0, 1.0 - 1e-9)

    def decode(self, bins: np.ndarray, offset: np.ndarray) -> np.ndarray:
        bins = np.clip(np.asarray(bins, dtype=np.int64), 0, self.size - 1)
        left, right = self.knots[bins], self.knots[bins + 1]
        return self._out(left + np.asarray(offset) * (right - left))

    def bin_probs(self) -> np.ndarray:
        """Training probability mass of each bin."""
        return np.diff(self.probs)

    # -- persistence -------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "name": self.name,
            "n_bins": self.n_bins,
            "log": self.log,
            "integer": self.integer,
            "null_rate": self.null_rate,
            "probs": self.probs.tolist(),
            "knots": self.knots.tolist(),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Self:
        enc = cls(n_bins=data["n_bins"], log=data["log"])
        enc.name = data.get("name", "")
        enc.integer = data["integer"]
        enc.null_rate = data["null_rate"]
        enc.probs = np.asarray(data["probs"], dtype=np.float64)
        enc.knots = np.asarray(data["knots"], dtype=np.float64)
        return enc

    def _in(self, x: np.ndarray) -> np.ndarray:
        if self.log:
            with np.errstate(divide="ignore"):
                return np.log(np.maximum(x, np.exp(self.knots[0])))
        return x

    def _out(self, z: np.ndarray) -> np.ndarray:
        x = np.exp(z) if self.log else z
        return np.round(x) if self.integer else x


def _grid(n_bins: int, n_values: int) -> np.ndarray:
    """Equal-probability knots plus denser tail knots the sample size can support."""
    core = np.linspace(0.0, 1.0, n_bins + 1)
    floor = 1.0 / max(n_values, 1)
    tails = [p for p in _TAILS if p > floor] + [1 - p for p in _TAILS if p > floor]
    return np.unique(np.concatenate([core, tails]))
