"""Row-and-lag discriminator: gradient boosting tells real events from synthetic ones.

Each event becomes one row of features: its data columns (numeric as is and their number of
decimals, categorical as native categorical features), the same columns of the previous event
of its entity, log1p of the gap to that event, hour of day, day of week and its position in the
entity's sequence. A
``HistGradientBoostingClassifier`` learns real against synthetic on a balanced, seeded sample,
cross-validated with folds grouped by entity (an entity's rows never sit in train and test
together, so it scores held-out entities, not memorised ones). The score is the mean held-out ROC
AUC (0.5: indistinguishable); the importance of a feature is the mean drop of that AUC when the
feature is shuffled within a held-out fold, which tells a user which column, lag or gap gives the
synthetic data away.
"""

from __future__ import annotations

import numpy as np
import polars as pl
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from streamsynth.contract import LABEL_COLUMNS
from streamsynth.evaluate.auc import roc_auc
from streamsynth.evaluate.data import GAP, SEQ, Prepared
from streamsynth.evaluate.leakage import leaking_columns
from streamsynth.evaluate.result import FeatureImportance, RowDiscriminator

#: Rows per side. At 25k the fold AUCs of the demo agree to about 0.005, and the three fits take
#: about 10 s of one core; more rows mostly buy time.
MAX_ROWS = 25_000
FOLDS = 3
#: Held-out rows per fold that the importance shuffles (each feature costs one prediction of them).
IMPORTANCE_ROWS = 5_000
#: HistGradientBoosting takes at most 255 categories per feature; rarer values share one code.
MAX_CATEGORIES = 250
#: Without an entity column, folds hold blocks of this many consecutive events (lags stay inside).
BLOCK = 1000
PREVIOUS = " (previous event)"
DECIMALS = " (decimals)"
#: Digits after the point that the decimals feature tells apart; more count as this many plus one.
MAX_DECIMALS = 6
GAP_FEATURE = "gap to previous event (log1p s)"
HOUR, WEEKDAY, POSITION = "hour of day", "day of week", "position in sequence"


def row_discriminator(prep: Prepared, seed: int = 0, max_rows: int = MAX_ROWS) -> RowDiscriminator | None:
    """Cross-validated AUC and permutation importance; None when there is nothing to compare."""
    excluded = _excluded(prep, seed)
    numeric = [c for c in prep.numeric if c not in excluded]
    categorical = [c for c in prep.categorical if c not in excluded]
    lookups = {name: _lookup(prep, name) for name in categorical}
    real = _features(prep.real, prep, numeric, categorical, lookups)
    synth = _features(prep.synth, prep, numeric, categorical, lookups)
    names = real.columns
    if not names:
        return None
    rng = np.random.default_rng(seed)
    n = min(prep.real.height, prep.synth.height, max_rows)
    if n < 2 * FOLDS:
        return None
    # Balanced sides: the AUC is then about how the rows look, not about which side has more.
    r_rows = np.sort(rng.choice(prep.real.height, n, replace=False))
    s_rows = np.sort(rng.choice(prep.synth.height, n, replace=False))
    x = np.vstack([_matrix(real, r_rows), _matrix(synth, s_rows)])
    y = np.r_[np.ones(n, dtype=bool), np.zeros(n, dtype=bool)]
    r_groups, s_groups = _groups(prep)
    # One fold per entity id, shared by both sides: when the synthetic data reuses real ids (or
    # real is compared with real), an id's rows on the two sides are held out together. Folds
    # drawn per side let the model learn an entity's traits from its rows on the other side
    # alone and score it backwards, an AUC well below 0.5.
    fold_of = rng.integers(0, FOLDS, int(max(r_groups.max(), s_groups.max())) + 1)
    fold = np.r_[fold_of[r_groups[r_rows]], fold_of[s_groups[s_rows]]]
    is_categorical = np.array([name in categorical or name.removesuffix(PREVIOUS) in categorical for name in names])
    aucs, drops = [], np.zeros(len(names))
    # One OpenMP thread: on shared cores the trees' threads spin-wait for each other, and two
    # threads measured 15x slower than one on a loaded 2-core machine (see utility.small_model_threads).
    with threadpool_limits(limits=1, user_api="openmp"):
        for k in range(FOLDS):
            test = fold == k
            if y[test].all() or not y[test].any() or y[~test].all() or not y[~test].any():
                continue
            model = _model(is_categorical, seed).fit(x[~test], y[~test])
            aucs.append(roc_auc(y[test], model.predict_proba(x[test])[:, 1]))
            drops += _importance(model, x[test], y[test], rng)
    if not aucs:
        return None
    drops /= len(aucs)
    order = np.argsort(-drops, kind="stable")
    return RowDiscriminator(
        auc=float(np.mean(aucs)),
        auc_std=float(np.std(aucs)),
        folds=len(aucs),
        rows_per_side=n,
        features=list(names),
        importance=[FeatureImportance(names[j], float(drops[j])) for j in order],
        columns=_by_column(names, drops),
        excluded=sorted(excluded & set(prep.numeric + prep.categorical)),
    )


def _importance(
    model: HistGradientBoostingClassifier, x: np.ndarray, y: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """Drop of the AUC on (a sample of) held-out rows when each feature alone is shuffled."""
    if len(y) > IMPORTANCE_ROWS:
        keep = rng.choice(len(y), IMPORTANCE_ROWS, replace=False)
        x, y = x[keep], y[keep]
    base = roc_auc(y, model.predict_proba(x)[:, 1])
    drops = np.zeros(x.shape[1])
    for j in range(x.shape[1]):
        shuffled = x.copy()
        shuffled[:, j] = rng.permutation(shuffled[:, j])
        drops[j] = base - roc_auc(y, model.predict_proba(shuffled)[:, 1])
    return drops


def _by_column(names: list[str], drops: np.ndarray) -> list[FeatureImportance]:
    """A column's importance: its value's, its decimals' and its previous event's (a broken
    column breaks them together)."""
    totals: dict[str, float] = {}
    for name, drop in zip(names, drops, strict=True):
        column = name.removesuffix(PREVIOUS).removesuffix(DECIMALS)
        totals[column] = totals.get(column, 0.0) + float(drop)
    return [FeatureImportance(c, v) for c, v in sorted(totals.items(), key=lambda kv: -kv[1])]


def _excluded(prep: Prepared, seed: int) -> set[str]:
    """Label columns and the columns that alone give the label away (a fraud-scenario name):
    rebalancing the labels is a legitimate use, and it should not count as a fidelity defect."""
    leaks = {leak.column for leak in leaking_columns(prep, seed)}
    return set(LABEL_COLUMNS) | leaks | ({prep.label} if prep.label else set())


def _lookup(prep: Prepared, name: str) -> dict[str, int]:
    """Codes of the most common values of both sides together: values the model invents get a
    code of their own, so a discriminator can see them; the rest share code ``MAX_CATEGORIES``."""
    both = pl.concat([prep.real[name], prep.synth[name]]).drop_nulls()
    top = both.value_counts(sort=True)[name].head(MAX_CATEGORIES).to_list()
    return {v: i for i, v in enumerate(top)}


def _features(
    frame: pl.DataFrame,
    prep: Prepared,
    numeric: list[str],
    categorical: list[str],
    lookups: dict[str, dict[str, int]],
) -> pl.DataFrame:
    columns = {name: pl.col(name).cast(pl.Float64) for name in numeric}
    for name in categorical:
        lookup = lookups[name]
        columns[name] = pl.col(name).replace_strict(lookup, default=len(lookup), return_dtype=pl.Float64)
    exprs = [e.alias(n) for n, e in columns.items()]
    # Rows are sorted by (entity, time) in ``prepare``: the previous row of the entity is its
    # previous event (its first event has none: missing, which the trees handle).
    exprs += [e.shift(1).over(SEQ).alias(n + PREVIOUS) for n, e in columns.items()]
    # A value's shape, beside its size: trees split on magnitudes and cannot see that real
    # amounts have two decimals and synthetic ones twelve (rounding removed).
    exprs += [_decimals(pl.col(name).cast(pl.Float64)).alias(name + DECIMALS) for name in numeric]
    if prep.time:
        t = pl.col(prep.time)
        exprs += [
            pl.col(GAP).clip(lower_bound=0).log1p().alias(GAP_FEATURE),
            (t.dt.hour().cast(pl.Float64) + t.dt.minute().cast(pl.Float64) / 60).alias(HOUR),
            t.dt.weekday().cast(pl.Float64).alias(WEEKDAY),
        ]
    if prep.entity:
        # An event's place in its entity's sequence. Without an entity the whole table is one
        # sequence and the place is a row number: with the day of week it names the stretch of
        # time a row came from, which tells two halves of one stationary series apart (0.97).
        exprs.append(pl.int_range(pl.len()).over(SEQ).cast(pl.Float64).alias(POSITION))
    return frame.select(exprs) if exprs else pl.DataFrame()


def _decimals(value: pl.Expr) -> pl.Expr:
    """Digits after the decimal point (0..MAX_DECIMALS, or one more for longer values)."""
    out = pl.when(value.is_null() | ~value.is_finite()).then(None)
    for k in range(MAX_DECIMALS + 1):
        scaled = value * 10.0**k
        # relative tolerance: 27.58 * 100 is 2757.9999999999995 in floating point
        out = out.when((scaled - scaled.round()).abs() <= 1e-9 * scaled.abs().clip(lower_bound=1.0)).then(k)
    return out.otherwise(MAX_DECIMALS + 1).cast(pl.Float64)


def _matrix(features: pl.DataFrame, rows: np.ndarray) -> np.ndarray:
    x = features[rows].to_numpy().astype(np.float64)
    x[~np.isfinite(x)] = np.nan  # the trees take missing values, not infinities
    return x


def _groups(prep: Prepared) -> tuple[np.ndarray, np.ndarray]:
    """Group numbers of the real and synthetic rows: entity ids numbered over both sides, or
    without an entity blocks of consecutive rows (lags stay inside a block)."""
    if prep.entity:
        ids = pl.concat([prep.real[prep.entity], prep.synth[prep.entity]]).fill_null("<null>")
        codes = (ids.rank("dense").cast(pl.Int64) - 1).to_numpy()
        return codes[: prep.real.height], codes[prep.real.height :]
    # small tables still get enough blocks to fill every fold
    block = max(1, min(BLOCK, min(prep.real.height, prep.synth.height) // (10 * FOLDS)))
    # Block k of each side shares its number, so the two always fall in the same fold: numbered
    # apart, a fold tested real rows at positions whose synthetic rows it trained on (and the
    # reverse), and the judge learned the side from the position, scoring below 0.5.
    return np.arange(prep.real.height) // block, np.arange(prep.synth.height) // block


def _model(is_categorical: np.ndarray, seed: int) -> HistGradientBoostingClassifier:
    # Early stopping on an internal 10% keeps an easy case (a broken column) fast and a hard
    # one (real against real) from overfitting noise into a score above 0.5.
    return HistGradientBoostingClassifier(
        max_iter=200,
        learning_rate=0.1,
        max_leaf_nodes=31,
        categorical_features=is_categorical if is_categorical.any() else None,
        early_stopping=True,
        validation_fraction=0.1,
        n_iter_no_change=10,
        random_state=seed,
    )
