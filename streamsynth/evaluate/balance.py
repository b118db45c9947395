"""Label balance: the rate of positive labels (fraud, anomalies) overall and per category."""

from __future__ import annotations

import polars as pl

from streamsynth.evaluate.data import POSITIVE, Prepared
from streamsynth.evaluate.fidelity import shares
from streamsynth.evaluate.result import Balance, CategoryRate

TOP_CATEGORIES = 12


def balance(prep: Prepared) -> Balance | None:
    if not prep.label:
        return None
    real, synth = prep.real, prep.synth
    real_rate = float(real[POSITIVE].mean())
    synth_rate = float(synth[POSITIVE].mean())
    out = Balance(
        label=prep.label,
        real_rate=real_rate,
        synth_rate=synth_rate,
        rate_diff=abs(real_rate - synth_rate),
    )
    label = prep.label
    if real[label].dtype != pl.Boolean and real[label].n_unique() > 2:
        out.real_classes = shares(real[label].cast(pl.String))
        out.synth_classes = shares(synth[label].cast(pl.String))
    for name in prep.categorical:
        out.per_category[name] = _per_category(real, synth, name)
    return out


def _rates(frame: pl.DataFrame, name: str) -> dict[str, tuple[int, float]]:
    grouped = frame.group_by(pl.col(name).fill_null("<null>")).agg(
        pl.len().alias("n"), pl.col(POSITIVE).mean().alias("rate")
    )
    return {v: (n, r) for v, n, r in zip(grouped[name], grouped["n"], grouped["rate"], strict=True)}


def _per_category(real: pl.DataFrame, synth: pl.DataFrame, name: str) -> list[CategoryRate]:
    r, s = _rates(real, name), _rates(synth, name)
    top = sorted(r, key=lambda v: -r[v][0])[:TOP_CATEGORIES]
    return [
        CategoryRate(
            value=v,
            real_rows=r[v][0],
            synth_rows=s.get(v, (0, None))[0],
            real_rate=r[v][1],
            synth_rate=s.get(v, (0, None))[1],
        )
        for v in top
    ]
