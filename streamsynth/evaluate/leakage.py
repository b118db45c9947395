"""Label leakage: feature columns that alone give the label away on the real data.

A column such as a fraud-scenario name next to ``is_fraud`` makes the train-on-synthetic,
test-on-real task trivial (AUC 1 against 1 says nothing about the synthetic data). Each
feature column is scored on its own, on the real table: a numeric column by the ROC AUC of its
raw values (either direction: a threshold), a categorical column (and a numeric one with few distinct values)
by the AUC of a one-column model, the positive rate of each value, fitted on half of the entities
and scored on the other half and back. Fitting out of fold keeps identifiers with a value per row
(nothing learnt carries over) from counting as perfect predictors: only values with support in
both halves can give the label away.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from streamsynth.evaluate.auc import roc_auc
from streamsynth.evaluate.data import POSITIVE, SEQ, Prepared
from streamsynth.evaluate.result import LeakingColumn

#: A column whose one-column AUC on real data reaches this is dropped from the fraud task.
LEAK_AUC = 0.99
#: Numeric columns with at most this many distinct values are also scored value by value.
FEW_VALUES = 20


def leaking_columns(prep: Prepared, seed: int = 0) -> list[LeakingColumn]:
    """The numeric and categorical columns whose one-column AUC on real rows is >= ``LEAK_AUC``."""
    if not prep.label:
        return []
    real = prep.real
    y = real[POSITIVE].to_numpy()
    if y.all() or not y.any():
        return []
    # Two halves of the entities (of the rows, without an entity column): a test entity's other
    # events never fit its own score.
    groups = real[SEQ].to_numpy() if prep.entity else np.arange(real.height)
    fold = (np.random.default_rng(seed).random(int(groups.max()) + 1) < 0.5)[groups]
    leaks = []
    for name in prep.numeric + prep.categorical:
        column = real[name]
        scored = []
        if name in prep.numeric:
            # Missing values rank below or above all others, whichever separates better.
            for fill in (-np.inf, np.inf):
                auc = roc_auc(y, column.fill_null(fill).to_numpy())
                scored.append((max(auc, 1 - auc), "threshold"))
            if column.n_unique() <= FEW_VALUES:
                scored.append((_value_map_auc(column, y, fold), "value map"))
        else:
            scored.append((_value_map_auc(column, y, fold), "value map"))
        auc, how = max([s for s in scored if not np.isnan(s[0])], default=(0.0, ""))
        if auc >= LEAK_AUC:
            leaks.append(LeakingColumn(name, float(auc), how))
    return leaks


def _value_map_auc(column: pl.Series, y: np.ndarray, fold: np.ndarray) -> float:
    """AUC of the positive rate of each value, learnt on one fold of rows, scored on the other."""
    codes = (column.cast(pl.String).fill_null("<null>").rank("dense").cast(pl.Int64) - 1).to_numpy()
    scores = np.empty(len(y), dtype=np.float64)
    for fit in (fold, ~fold):
        if not fit.any() or fit.all():
            return float("nan")
        rows = np.bincount(codes[fit], minlength=codes.max() + 1)
        hits = np.bincount(codes[fit], weights=y[fit].astype(np.float64), minlength=codes.max() + 1)
        # Values unseen in the fitting fold get its overall rate: no information either way.
        rate = np.where(rows > 0, hits / np.maximum(rows, 1), y[fit].mean())
        scores[~fit] = rate[codes[~fit]]
    return roc_auc(y, scores)
