"""Statistical fidelity: per-column distances, dependence between columns, and sequence shape.

Numeric columns: KS and Wasserstein; categorical and boolean: total variation; Spearman
correlation and Cramer's V matrices; autocorrelation within entities; inter-arrival times,
events per entity and calendar profiles.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from scipy import stats

from streamsynth.evaluate.data import GAP, SEQ, Prepared
from streamsynth.evaluate.result import (
    Autocorrelation,
    CategoricalColumn,
    DistributionComparison,
    Fidelity,
    MatrixComparison,
    NumericColumn,
    Profile,
)

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
MAX_LAG = 10
MATRIX_ROWS = 300_000  # rows per side for correlation and association matrices
MAX_ASSOCIATION_COLUMNS = 16
ASSOCIATION_TOP = 20


def fidelity(prep: Prepared, seed: int = 0) -> Fidelity:
    real, synth = prep.real, prep.synth
    out = Fidelity()
    for name in prep.numeric:
        out.numeric.append(numeric_column(name, real[name], synth[name]))
    for name in prep.categorical:
        out.categorical.append(categorical_column(name, real[name], synth[name]))
    real_m, synth_m = _sample(real, seed), _sample(synth, seed + 1)
    if len(prep.numeric) >= 2:
        out.correlation = _compare(
            prep.numeric, spearman(real_m, prep.numeric), spearman(synth_m, prep.numeric)
        )
    assoc = prep.categorical[:MAX_ASSOCIATION_COLUMNS]
    if len(assoc) >= 2:
        out.association = _compare(assoc, cramers_v(real_m, assoc), cramers_v(synth_m, assoc))
    if prep.time:
        for name in prep.numeric:
            r = autocorrelation(real, name)
            s = autocorrelation(synth, name)
            diff = _nanmean(np.abs(np.array(r) - np.array(s)))
            out.autocorrelation.append(
                Autocorrelation(name, list(range(1, MAX_LAG + 1)), r, s, diff)
            )
        out.inter_arrival = compare_samples(
            real[GAP].drop_nulls().to_numpy(), synth[GAP].drop_nulls().to_numpy()
        )
        out.hour_of_day = profile(real, synth, pl.col(prep.time).dt.hour(), 24, 0)
        out.day_of_week = profile(real, synth, pl.col(prep.time).dt.weekday(), 7, 1)
    if prep.entity:
        out.events_per_entity = compare_samples(
            events_per_entity(real).astype(np.float64), events_per_entity(synth).astype(np.float64)
        )
    return out


# -- per column ---------------------------------------------------------------------------
def ks_statistic(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic (sup |F_a - F_b|), computed by sorting."""
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    a, b = np.sort(a), np.sort(b)
    points = np.concatenate([a, b])
    fa = np.searchsorted(a, points, side="right") / len(a)
    fb = np.searchsorted(b, points, side="right") / len(b)
    return float(np.max(np.abs(fa - fb)))


def numeric_column(name: str, real: pl.Series, synth: pl.Series) -> NumericColumn:
    r = real.drop_nulls().to_numpy()
    s = synth.drop_nulls().to_numpy()
    r, s = r[np.isfinite(r)], s[np.isfinite(s)]
    empty = len(r) == 0 or len(s) == 0
    wass = float("nan") if empty else float(stats.wasserstein_distance(r, s))
    std = float(np.std(r)) if len(r) else float("nan")
    return NumericColumn(
        name=name,
        ks=ks_statistic(r, s),
        wasserstein=wass,
        wasserstein_norm=wass / std if std > 0 else (0.0 if wass == 0 else float("inf")),
        real_mean=float(np.mean(r)) if len(r) else float("nan"),
        synth_mean=float(np.mean(s)) if len(s) else float("nan"),
        real_std=std,
        synth_std=float(np.std(s)) if len(s) else float("nan"),
        real_nulls=real.null_count() / max(real.len(), 1),
        synth_nulls=synth.null_count() / max(synth.len(), 1),
    )


def shares(series: pl.Series) -> dict[str, float]:
    counts = series.fill_null("<null>").value_counts()
    total = counts["count"].sum()
    return dict(
        zip(counts[series.name].to_list(), (counts["count"] / total).to_list(), strict=True)
    )


def total_variation(p: dict[str, float], q: dict[str, float]) -> float:
    keys = set(p) | set(q)
    return 0.5 * sum(abs(p.get(k, 0.0) - q.get(k, 0.0)) for k in keys)


def categorical_column(name: str, real: pl.Series, synth: pl.Series) -> CategoricalColumn:
    p, q = shares(real), shares(synth)
    return CategoricalColumn(
        name=name,
        tv=total_variation(p, q),
        real_categories=len(p),
        synth_categories=len(q),
        unseen_in_synth=len(set(p) - set(q)),
        new_in_synth=len(set(q) - set(p)),
    )


# -- between columns ----------------------------------------------------------------------
def _sample(frame: pl.DataFrame, seed: int) -> pl.DataFrame:
    if frame.height <= MATRIX_ROWS:
        return frame
    return frame.sample(MATRIX_ROWS, seed=seed)


def spearman(frame: pl.DataFrame, columns: list[str]) -> np.ndarray:
    """Spearman rank correlations (robust to the heavy tails of amounts and latencies)."""
    ranks = frame.select(
        pl.col(c).rank("average").cast(pl.Float64).fill_null(pl.col(c).rank("average").mean())
        for c in columns
    ).to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        corr = np.corrcoef(ranks, rowvar=False)
    corr = np.atleast_2d(corr)
    np.fill_diagonal(corr, 1.0)
    return np.nan_to_num(corr, nan=0.0)


def cramers_v(frame: pl.DataFrame, columns: list[str]) -> np.ndarray:
    """Cramer's V of every pair of categorical columns (top values, the rest pooled)."""
    codes = []
    for name in columns:
        col = frame[name].fill_null("<null>")
        top = col.value_counts(sort=True)[name].head(ASSOCIATION_TOP).to_list()
        lookup = {v: i for i, v in enumerate(top)}
        codes.append(col.replace_strict(lookup, default=len(top), return_dtype=pl.Int64).to_numpy())
    k = len(columns)
    out = np.eye(k)
    for i in range(k):
        for j in range(i + 1, k):
            out[i, j] = out[j, i] = _cramers_v(codes[i], codes[j])
    return out


def _cramers_v(a: np.ndarray, b: np.ndarray) -> float:
    ka, kb = int(a.max()) + 1, int(b.max()) + 1
    table = np.bincount(a * kb + b, minlength=ka * kb).reshape(ka, kb).astype(np.float64)
    table = table[table.sum(1) > 0][:, table.sum(0) > 0]
    r, c = table.shape
    if min(r, c) < 2:
        return 0.0
    n = table.sum()
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / n
    chi2 = float(((table - expected) ** 2 / expected).sum())
    return float(np.sqrt(chi2 / (n * (min(r, c) - 1))))


def _compare(columns: list[str], real: np.ndarray, synth: np.ndarray) -> MatrixComparison:
    k = len(columns)
    off = ~np.eye(k, dtype=bool)
    diff = np.abs(real - synth)[off]
    return MatrixComparison(
        columns=list(columns),
        real=np.round(real, 6).tolist(),
        synth=np.round(synth, 6).tolist(),
        mean_abs_diff=float(diff.mean()),
        max_abs_diff=float(diff.max()),
    )


# -- within sequences ---------------------------------------------------------------------
def autocorrelation(frame: pl.DataFrame, name: str, max_lag: int = MAX_LAG) -> list[float]:
    """Pooled autocorrelation of a column's ranks at lags 1..max_lag, pairs within one entity."""
    ranks = frame[name].rank("average").cast(pl.Float64).to_numpy()
    seq = frame[SEQ].to_numpy()
    out = []
    for lag in range(1, max_lag + 1):
        same = seq[lag:] == seq[:-lag] if len(seq) > lag else np.zeros(0, dtype=bool)
        x, y = ranks[:-lag][same], ranks[lag:][same]
        ok = np.isfinite(x) & np.isfinite(y)
        x, y = x[ok], y[ok]
        if len(x) < 3 or x.std() == 0 or y.std() == 0:
            out.append(float("nan"))
            continue
        out.append(float(np.corrcoef(x, y)[0, 1]))
    return out


def events_per_entity(frame: pl.DataFrame) -> np.ndarray:
    return np.bincount(frame[SEQ].to_numpy())


def _quantiles(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {}
    q = np.quantile(values, QUANTILES)
    return {f"p{round(p * 100)}": float(v) for p, v in zip(QUANTILES, q, strict=True)}


def compare_samples(real: np.ndarray, synth: np.ndarray) -> DistributionComparison:
    """KS, Wasserstein of log10(1 + x), means and quantiles of two nonnegative samples."""
    empty = len(real) == 0 or len(synth) == 0
    log_w = (
        float("nan")
        if empty
        else float(
            stats.wasserstein_distance(np.log10(1 + np.abs(real)), np.log10(1 + np.abs(synth)))
        )
    )
    return DistributionComparison(
        ks=ks_statistic(real, synth),
        wasserstein_log=log_w,
        real_mean=float(np.mean(real)) if len(real) else float("nan"),
        synth_mean=float(np.mean(synth)) if len(synth) else float("nan"),
        real_quantiles=_quantiles(real),
        synth_quantiles=_quantiles(synth),
    )


def profile(
    real: pl.DataFrame, synth: pl.DataFrame, expr: pl.Expr, bins: int, first: int
) -> Profile:
    def shares_of(frame: pl.DataFrame) -> list[float]:
        codes = frame.select(expr.alias("b"))["b"].drop_nulls().to_numpy().astype(np.int64) - first
        counts = np.bincount(codes, minlength=bins)[:bins].astype(np.float64)
        return (counts / max(counts.sum(), 1)).tolist()

    r, s = shares_of(real), shares_of(synth)
    tv = 0.5 * float(np.abs(np.array(r) - np.array(s)).sum())
    return Profile(real=r, synth=s, tv=tv)


def _nanmean(values: np.ndarray) -> float:
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else float("nan")
