"""Turn event rows into numbers in [0, 1], fitted on the real side only.

Numeric columns go through the real data's empirical CDF (robust to heavy tails such as
amounts), categoricals are one-hot over the real top values plus "other", the time of day and
the day of week are cyclic, and the inter-arrival time goes through its real CDF.
"""

from __future__ import annotations

from collections.abc import Collection

import numpy as np
import polars as pl

from streamsynth.evaluate.data import GAP, Prepared

OTHER = "__other__"
CDF_SAMPLE = 100_000


class FeatureEncoder:
    """Fitted on the real table (or on both sides with ``fit_both``); ``encode`` works on either
    side (sorted as in ``prepare``). Columns in ``exclude`` are left out."""

    def __init__(
        self,
        prep: Prepared,
        *,
        max_categories: int = 8,
        time_features: bool = True,
        seed: int = 0,
        fit_both: bool = False,
        exclude: Collection[str] = (),
    ) -> None:
        rng = np.random.default_rng(seed)
        real = prep.real
        # Distances between the two sides need one scale for both: a grid fitted on real values
        # alone puts real rows on its steps and synthetic rows between them.
        fit = pl.concat([real, prep.synth], how="diagonal_relaxed") if fit_both else real
        self.numeric = [n for n in prep.numeric if n not in exclude]
        self.categorical = [n for n in prep.categorical if n not in exclude]
        self.time = prep.time if time_features else None
        self.gap = time_features and GAP in real.columns
        self.grids: dict[str, np.ndarray] = {}
        self.nullable: set[str] = set()
        for name in self.numeric:
            values = fit[name].drop_nulls().to_numpy()
            self.grids[name] = _cdf_grid(values, rng)
            if real[name].null_count():
                self.nullable.add(name)
        if self.gap:
            self.grids[GAP] = _cdf_grid(real[GAP].drop_nulls().to_numpy(), rng)
        self.categories: dict[str, list[str]] = {}
        for name in self.categorical:
            counts = real[name].fill_null("<null>").value_counts(sort=True)
            top = counts[name].head(max_categories).to_list()
            self.categories[name] = top + ([OTHER] if counts.height > len(top) else [])
        self.names = self._names()

    def _names(self) -> list[str]:
        names = []
        for name in self.numeric:
            names.append(name)
            if name in self.nullable:
                names.append(f"{name}:null")
        for name in self.categorical:
            names += [f"{name}={v}" for v in self.categories[name]]
        if self.time:
            names += ["hour:sin", "hour:cos", "weekday:sin", "weekday:cos"]
        if self.gap:
            names.append("inter_arrival")
        return names

    @property
    def width(self) -> int:
        return len(self.names)

    def one_hot_mask(self) -> np.ndarray:
        """True for the one-hot columns (their distances get weighted apart from numerics)."""
        return np.array(["=" in n and n.split("=")[0] in self.categories for n in self.names])

    def encode(self, frame: pl.DataFrame) -> np.ndarray:
        """(rows, width) float32 array in [0, 1]."""
        parts: list[np.ndarray] = []
        for name in self.numeric:
            values = frame[name].to_numpy()
            nulls = np.isnan(values)
            parts.append(
                np.where(nulls, 0.0, _cdf(self.grids[name], np.nan_to_num(values)))[:, None]
            )
            if name in self.nullable:
                parts.append(nulls[:, None].astype(np.float64))
        for name in self.categorical:
            cats = self.categories[name]
            lookup = {v: i for i, v in enumerate(cats)}
            other = lookup.get(OTHER, -1)
            codes = (
                frame[name]
                .fill_null("<null>")
                .replace_strict(lookup, default=other, return_dtype=pl.Int64)
                .to_numpy()
            )
            block = np.zeros((frame.height, len(cats)))
            hit = codes >= 0
            block[np.nonzero(hit)[0], codes[hit]] = 1.0
            parts.append(block)
        if self.time:
            ts = frame[self.time]
            hour = (ts.dt.hour().to_numpy() + ts.dt.minute().to_numpy() / 60.0) * (2 * np.pi / 24)
            day = (ts.dt.weekday().to_numpy() - 1) * (2 * np.pi / 7)
            parts += [(f(a)[:, None] + 1) / 2 for a in (hour, day) for f in (np.sin, np.cos)]
        if self.gap:
            gaps = frame[GAP].to_numpy()
            first = np.isnan(gaps)
            parts.append(np.where(first, 0.0, _cdf(self.grids[GAP], np.nan_to_num(gaps)))[:, None])
        if not parts:
            return np.zeros((frame.height, 0), dtype=np.float32)
        return np.hstack(parts).astype(np.float32)


def _cdf_grid(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    values = values[np.isfinite(values)]
    if len(values) > CDF_SAMPLE:
        values = rng.choice(values, CDF_SAMPLE, replace=False)
    return np.sort(values) if len(values) else np.zeros(1)


def _cdf(grid: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Mid-rank empirical CDF: ties get the middle of their step, so constants map to 0.5."""
    lo = np.searchsorted(grid, values, side="left")
    hi = np.searchsorted(grid, values, side="right")
    return (lo + hi) / (2.0 * len(grid))
