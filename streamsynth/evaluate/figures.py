"""Plot data for the report: histograms, quantiles, category shares and sample sequences.

Small lists of numbers only (bins, quantiles, a few sequences), so they also go in the JSON.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from streamsynth.evaluate.data import GAP, SEQ, Prepared
from streamsynth.evaluate.fidelity import events_per_entity, shares

BINS = 30
MAX_PLOTTED_COLUMNS = 24
TOP_CATEGORIES = 12
SAMPLE_SEQUENCES = 3
SAMPLE_EVENTS = 60


def figure_data(prep: Prepared, seed: int = 0) -> dict[str, Any]:
    real, synth = prep.real, prep.synth
    out: dict[str, Any] = {"histograms": {}, "qq": {}, "categories": {}}
    for name in prep.numeric[:MAX_PLOTTED_COLUMNS]:
        r, s = _values(real[name]), _values(synth[name])
        out["histograms"][name] = histogram(r, s)
        probs = np.linspace(0.01, 0.99, 99)
        if len(r) and len(s):
            out["qq"][name] = {
                "real": _round(np.quantile(r, probs)),
                "synth": _round(np.quantile(s, probs)),
            }
    for name in prep.categorical[:MAX_PLOTTED_COLUMNS]:
        p, q = shares(real[name]), shares(synth[name])
        top = sorted(p, key=lambda v: -p[v])[:TOP_CATEGORIES]
        out["categories"][name] = {
            "labels": top,
            "real": [round(p[v], 6) for v in top],
            "synth": [round(q.get(v, 0.0), 6) for v in top],
        }
    if prep.time:
        r, s = _values(real[GAP]), _values(synth[GAP])
        out["inter_arrival"] = histogram(np.log10(1 + r), np.log10(1 + s))
        out["inter_arrival"]["x_label"] = "log10(1 + seconds between events of an entity)"
        out["samples"] = {
            "real": samples(prep, real, seed),
            "synth": samples(prep, synth, seed),
            "column": prep.numeric[0] if prep.numeric else "inter-arrival (s)",
        }
    if prep.entity:
        out["events_per_entity"] = histogram(
            np.log10(events_per_entity(real).astype(float)),
            np.log10(events_per_entity(synth).astype(float)),
        )
        out["events_per_entity"]["x_label"] = "log10(events per entity)"
    return out


def _values(series: pl.Series) -> np.ndarray:
    values = series.drop_nulls().to_numpy().astype(np.float64)
    return values[np.isfinite(values)]


def _round(values: np.ndarray) -> list[float]:
    return [float(f"{v:.6g}") for v in values]


def histogram(real: np.ndarray, synth: np.ndarray, bins: int = BINS) -> dict[str, Any]:
    """Shares per bin over the real 0.5-99.5% range (values outside land in the end bins)."""
    if len(real) == 0:
        return {"edges": [0.0, 1.0], "real": [0.0], "synth": [0.0]}
    lo, hi = np.quantile(real, [0.005, 0.995])
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, bins + 1)

    def shares_of(values: np.ndarray) -> list[float]:
        if len(values) == 0:
            return [0.0] * bins
        counts = np.bincount(
            np.clip(np.searchsorted(edges, values, "right") - 1, 0, bins - 1), minlength=bins
        )
        return _round(counts / counts.sum())

    return {"edges": _round(edges), "real": shares_of(real), "synth": shares_of(synth)}


def samples(prep: Prepared, frame: pl.DataFrame, seed: int) -> list[dict[str, Any]]:
    """A few entities with many events: hours since their first event and one column's values."""
    counts = events_per_entity(frame)
    if len(counts) == 0:
        return []
    rng = np.random.default_rng(seed)
    busy = np.nonzero(counts >= min(np.quantile(counts, 0.75), 10))[0]
    if len(busy) == 0:
        busy = np.arange(len(counts))
    chosen = np.sort(rng.choice(busy, min(SAMPLE_SEQUENCES, len(busy)), replace=False))
    column = prep.numeric[0] if prep.numeric else GAP
    out = []
    for seq in chosen:
        rows = frame.filter(pl.col(SEQ) == int(seq)).head(SAMPLE_EVENTS)
        ts = rows[prep.time]
        hours = ((ts - ts.min()).dt.total_seconds() / 3600.0).to_numpy()
        values = rows[column].fill_null(float("nan")).to_numpy().astype(float)
        out.append(
            {
                "entity": str(rows[prep.entity][0]) if prep.entity else "all",
                "hours": _round(hours),
                "values": [None if not np.isfinite(v) else float(f"{v:.6g}") for v in values],
            }
        )
    return out
