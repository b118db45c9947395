"""The ``dependencies`` check: how many synthetic rows break a dependency the real data holds.

The dependencies are found in the real table as at fit (:func:`streamsynth.dependencies.discover`).
A synthetic row breaks one when its determinant values were seen in the real data and its
determined value is not the real one, or, for determinant values the real data never had, when
it differs from the value most synthetic rows with those determinants carry (a new terminal must
keep one merchant category too). The score is the share of synthetic rows that break at least
one; each dependency is listed with its own share and an example row, worst first.
"""

from __future__ import annotations

import polars as pl

from streamsynth.dependencies import Dependency, discover
from streamsynth.evaluate.data import Prepared
from streamsynth.evaluate.result import DependencyCheck, DependencyResult


def dependency_check(prep: Prepared) -> DependencyCheck | None:
    """None when the real data holds no dependency."""
    deps = discover(prep.real, prep.schema)
    if not deps or prep.synth.height == 0:
        return None
    broken_any = pl.Series([False] * prep.synth.height)
    results = []
    for dep in deps:
        broken, example = _broken(prep, dep)
        broken_any = broken_any | broken
        results.append(DependencyResult(
            rule=dep.describe(), determinants=list(dep.determinants), determines=dep.determines,
            real_support=dep.support, broken_share=float(broken.mean()), example=example,
        ))
    results.sort(key=lambda r: -r.broken_share)
    return DependencyCheck(broken_share=float(broken_any.mean()), dependencies=results)


def _broken(prep: Prepared, dep: Dependency) -> tuple[pl.Series, dict[str, str] | None]:
    keys, target = list(dep.determinants), dep.determines
    synth = prep.synth.select(*keys, target).with_row_index("__row")
    # the real data's value per determinant values: the lookup the dependency learned from it
    real = dep.lookup(synth.schema).rename({**{f"__k{i}": k for i, k in enumerate(keys)}, "__v": "__real"})
    own = synth.group_by([*keys, target]).len().sort("len", descending=True).unique(keys, keep="first")
    own = own.select(*keys, pl.col(target).alias("__own"))
    joined = (synth.join(real, on=keys, how="left", nulls_equal=True)
              .join(own, on=keys, how="left", nulls_equal=True).sort("__row"))
    expected = pl.coalesce(pl.col("__real"), pl.col("__own"))
    flags = joined.select((pl.col(target).cast(pl.String) != expected.cast(pl.String)).fill_null(False).alias("b"))
    broken = flags.to_series()
    example = None
    if broken.any():
        row = joined.filter(broken).row(0, named=True)
        example = {k: str(row[k]) for k in (*keys, target)}
        example["expected " + target] = str(row["__real"] if row["__real"] is not None else row["__own"])
    return broken, example
