"""Functional dependencies between columns: found in real data, kept exactly in samples.

A column is *determined* by one column, or by a pair, when nearly every row agrees with a lookup
from the determinant values (a terminal fixes its merchant category, a route fixes its distance,
a log template id fixes its text and component). :func:`discover` finds them among categorical,
boolean, identifier and discrete numeric columns: a candidate holds in at least
:data:`THRESHOLD` of the rows (a little noise does not hide one), its determinant values repeat
(a row id determines everything and means nothing), and the determined column is not nearly
constant already. Each determined column keeps one dependency, the best, and the dependencies
form no loop (of a one-to-one pair only one direction is kept), so they can be applied in order.

:class:`Dependency` carries what sampling needs: the lookup (each determinant value's most
frequent determined value) and the determined column's overall distribution, from which a
determinant value never seen in training draws its value once, by a hash of the value and the
seed, so every row with that value agrees, in any batch, shard or process.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from streamsynth.errors import StreamsynthError
from streamsynth.rng import child_seed, stable_int, uniform
from streamsynth.schema import Role, Schema

#: the share of rows a dependency must hold in
THRESHOLD = 0.995
#: determinant values must repeat: at most this share of the rows are distinct
MAX_DISTINCT_SHARE = 0.5
#: numeric columns with more distinct values than this (or than a tenth of the rows) are not discrete
MAX_DISCRETE = 5000
#: pairs of determinants are tried among at most this many columns, screened on this many rows
MAX_PAIR_COLUMNS = 12
PAIR_SCREEN_ROWS = 5_000
#: the search for dependencies reads at most this many rows (a seeded sample)
SEARCH_ROWS = 20_000
_ROLES = (Role.CATEGORICAL, Role.BOOLEAN, Role.IDENTIFIER, Role.NUMERIC)


@dataclass
class Dependency:
    """``determines`` is fixed by ``determinants`` in ``support`` of the training rows."""

    determinants: tuple[str, ...]
    determines: str
    support: float
    #: determinant values (one list per determinant, row-aligned) -> the determined value
    keys: list[list[Any]] = field(default_factory=list, repr=False)
    values: list[Any] = field(default_factory=list, repr=False)
    #: the determined column's distribution, for determinant values never seen in training
    marginal_values: list[Any] = field(default_factory=list, repr=False)
    marginal_weights: list[float] = field(default_factory=list, repr=False)
    #: for a pair: the determinant with the fewest values, and the determined column's
    #: distribution per value of it (text of the value -> [values, weights]), so a new pair draws
    #: from what its known half allows (a new card's fraud rows from the fraud scenarios)
    fallback_on: str | None = None
    fallback: dict[str, list[list[Any]]] = field(default_factory=dict, repr=False)

    def describe(self) -> str:
        return f"{' + '.join(self.determinants)} -> {self.determines} ({self.support:.2%} of rows)"

    def to_json(self) -> dict[str, Any]:
        return {"determinants": list(self.determinants), "determines": self.determines, "support": self.support,
                "keys": self.keys, "values": self.values, "marginal_values": self.marginal_values,
                "marginal_weights": self.marginal_weights, "fallback_on": self.fallback_on,
                "fallback": self.fallback}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Dependency:
        return cls(tuple(data["determinants"]), data["determines"], float(data["support"]), data["keys"],
                   data["values"], data["marginal_values"], data["marginal_weights"], data.get("fallback_on"),
                   data.get("fallback") or {})

    # -- applying -------------------------------------------------------------------------------
    def apply(self, frame: pl.DataFrame, seed: int) -> tuple[pl.DataFrame, int]:
        """``frame`` with the determined column set from the lookup, and how many rows had a
        determinant value never seen in training (their value drawn once, by hash)."""
        if frame.height == 0 or any(c not in frame.columns for c in (*self.determinants, self.determines)):
            return frame, 0
        target = self.determines
        dtype = frame.schema[target]
        names = [f"__k{i}" for i in range(len(self.determinants))]
        keyed = frame.select(pl.col(n).alias(k) for n, k in zip(self.determinants, names, strict=True))
        joined = keyed.join(self.lookup(frame.schema), on=names, how="left", maintain_order="left",
                            nulls_equal=True)
        if joined["__v"].null_count() == 0:  # every determinant value seen in training: the usual case
            return frame.with_columns(joined["__v"].alias(target)), 0
        has_key = joined.select(pl.all_horizontal(pl.col(f"__k{i}").is_not_null()
                                                  for i in range(len(self.determinants))))
        unseen = joined["__v"].is_null() & has_key.to_series()
        n_unseen = int(unseen.sum())
        filled = joined["__v"]
        if n_unseen:
            drawn = _scatter(joined.height, unseen, self._drawn(joined.filter(unseen), seed), dtype)
            filled = pl.select(pl.coalesce(filled, drawn)).to_series()
        # rows whose determinants are null keep the model's value
        out = frame.with_columns(pl.coalesce(filled.cast(dtype), pl.col(target)).alias(target))
        return out, n_unseen

    def lookup(self, schema: pl.Schema) -> pl.DataFrame:
        """The lookup as a frame in the types of ``schema`` (determinants ``__k0``, ``__k1``, the
        value ``__v``), built once per set of types."""
        types = tuple(schema[n] for n in (*self.determinants, self.determines))
        cached = self.__dict__.setdefault("_lookups", {})
        if types not in cached:
            columns = {f"__k{i}": pl.Series(keys, dtype=dtype, strict=False)
                       for i, (keys, dtype) in enumerate(zip(self.keys, types[:-1], strict=True))}
            cached[types] = pl.DataFrame({**columns, "__v": pl.Series(self.values, dtype=types[-1], strict=False)})
        return cached[types]

    def _drawn(self, rows: pl.DataFrame, seed: int) -> pl.Series:
        """One value per row, the same for the same determinant values: from the distribution
        its known half allows (a pair's fallback), else from the column's overall one."""
        text = rows.select(pl.concat_str([pl.col(f"__k{i}").cast(pl.String).fill_null("")
                                          for i in range(len(self.determinants))], separator="\x1f"))
        # a polars hash of the text would change between polars versions; the counter-based one does not
        keys = np.array([stable_int(t) for t in text.to_series().to_list()], dtype=np.uint64)
        u = uniform(child_seed(seed, "dependency", self.determines), keys)
        if self.fallback_on is None:
            groups = np.zeros(rows.height, dtype=object)
        else:
            position = self.determinants.index(self.fallback_on)
            groups = np.array(rows[f"__k{position}"].cast(pl.String).to_list(), dtype=object)
        out = np.empty(rows.height, dtype=object)
        for group in set(groups.tolist()):
            rows_of = groups == group
            values, weights = self.fallback.get(group) or (self.marginal_values, self.marginal_weights)
            cumulative = np.cumsum(np.asarray(weights, dtype=np.float64))
            picks = np.searchsorted(cumulative / cumulative[-1], u[rows_of], side="right").clip(max=len(values) - 1)
            out[rows_of] = [values[i] for i in picks]
        return pl.Series(out.tolist())


def _scatter(height: int, mask: pl.Series, values: pl.Series, dtype: pl.DataType) -> pl.Series:
    out = pl.Series([None] * height, dtype=dtype)
    positions = np.flatnonzero(mask.to_numpy())
    return out.scatter(positions, values.cast(dtype, strict=False))


def apply_all(frame: pl.DataFrame, dependencies: list[Dependency], seed: int,
              skip: set[str] = frozenset()) -> tuple[pl.DataFrame, int]:
    """Every dependency in order (they are stored in an order where determinants come first),
    except those determining a column in ``skip`` (a condition fixes it)."""
    unseen = 0
    for dep in dependencies:
        if dep.determines not in skip:
            frame, n = dep.apply(frame, seed)
            unseen += n
    return frame, unseen


# -- discovery ------------------------------------------------------------------------------------
def candidates(frame: pl.DataFrame, schema: Schema) -> list[str]:
    """Columns that may determine or be determined: discrete, not the time, entity or label
    columns of the contract."""
    out = []
    for column in schema.columns:
        name = column.name
        if name not in frame.columns or column.role not in _ROLES or name in (schema.time, schema.entity):
            continue
        series = frame[name]
        if series.dtype.is_float() and not (series.drop_nulls() == series.drop_nulls().round(0)).all():
            continue
        if column.role is Role.NUMERIC and series.n_unique() > min(MAX_DISCRETE, max(frame.height // 10, 2)):
            continue
        out.append(name)
    return out


def discover(frame: pl.DataFrame, schema: Schema, *, threshold: float = THRESHOLD) -> list[Dependency]:
    """The dependencies of ``frame``, at most one per determined column, in applying order;
    ``schema.dependencies`` switches them off, or adds and drops stated ones."""
    if schema.dependencies == "off":
        return []
    stated = schema.dependencies if isinstance(schema.dependencies, list) else []
    n = frame.height
    # Searched on a sample of rows (the search's group-bys dominate a fit otherwise), then each
    # one found is measured on every row.
    rows = frame if n <= SEARCH_ROWS else frame.sample(SEARCH_ROWS, seed=0)
    names = candidates(rows, schema)
    found: dict[str, tuple[tuple[str, ...], float]] = {}
    if n >= 2 and len(names) >= 2:
        searched = _found(rows, names, threshold)
        if rows is not frame:  # measured again on every row
            rules = [(determinants, target) for target, (determinants, _) in searched.items()]
            searched = {t: (d, support) for (d, t), support in zip(rules, _supports(frame, rules), strict=True)}
        found = {t: rule for t, rule in searched.items() if rule[1] >= threshold}
    for i, item in enumerate(stated):
        target = item["determines"]
        for column in (target, *item.get("determinants", ())):
            if column not in frame.columns:
                raise StreamsynthError(
                    f"schema dependencies[{i}] names column {column!r}, which is not in the data",
                    hint=f"columns are: {', '.join(frame.columns)}",
                )
        if item.get("off"):
            found.pop(target, None)
        else:
            determinants = tuple(item["determinants"])
            found[target] = (determinants, _supports(frame, [(determinants, target)])[0])
    distinct = {t: frame[t].n_unique() for t in found}
    order = _acyclic_order(found, frame.columns, distinct, first={item["determines"] for item in stated})
    return [_learn(frame, found[t][0], t, found[t][1]) for t in order]


def _found(frame: pl.DataFrame, names: list[str], threshold: float) -> dict[str, tuple[tuple[str, ...], float]]:
    """Determined column -> (its best determinants, their support). The candidates of each
    round are measured together (``collect_all``): one query each, run in parallel."""
    n = frame.height
    distinct = {c: frame[c].n_unique() for c in names}
    mode_share = {c: _mode_share(frame, c) for c in names}
    targets = [c for c in names if distinct[c] >= 2 and mode_share[c] < threshold]
    sources = [c for c in names if 2 <= distinct[c] <= MAX_DISTINCT_SHARE * n]
    found: dict[str, tuple[tuple[str, ...], float]] = {}
    singles = [((s,), t) for t in targets for s in sources if s != t]
    for (determinants, target), support in zip(singles, _supports(frame, singles), strict=True):
        # the best: the most rows, then the fewest determinant values (the coarsest rule)
        best = found.get(target)
        rank = (support, -distinct[determinants[0]])
        if support >= threshold and (best is None or rank > (best[1], -distinct[best[0][0]])):
            found[target] = (determinants, support)
    pair_sources = sorted(sources, key=lambda c: distinct[c])[:MAX_PAIR_COLUMNS]
    pairs = [(a, b) for i, a in enumerate(pair_sources) for b in pair_sources[i + 1:]]
    joint = pl.collect_all([frame.lazy().select(pl.struct(a, b).n_unique()) for a, b in pairs]) if pairs else []
    repeating = [p for p, count in zip(pairs, joint, strict=True) if count.item() <= MAX_DISTINCT_SHARE * n]
    open_targets = [t for t in targets if t not in found]
    candidates = [(p, t) for t in open_targets for p in repeating if t not in p]
    # pairs are many: screened on fewer rows, and those that pass measured on all of them
    screen = frame if n <= PAIR_SCREEN_ROWS else frame.sample(PAIR_SCREEN_ROWS, seed=1)
    passed = [c for c, support in zip(candidates, _supports(screen, candidates), strict=True) if support >= threshold]
    for (determinants, target), support in zip(passed, _supports(frame, passed), strict=True):
        best = found.get(target)
        if support >= threshold and (best is None or support > best[1]):
            found[target] = (determinants, support)
    return found


def _supports(frame: pl.DataFrame, rules: list[tuple[tuple[str, ...], str]]) -> list[float]:
    """For each (determinants, target): the share of rows whose target is the most frequent one
    for their determinant values. The queries run together (``collect_all``)."""
    if not rules:
        return []
    lazy = frame.lazy()
    queries = [lazy.group_by([*d, t]).len().group_by(list(d)).agg(pl.col("len").max()).select(pl.col("len").sum())
               for d, t in rules]
    return [float(result.item() or 0) / frame.height for result in pl.collect_all(queries)]


def _mode_share(frame: pl.DataFrame, column: str) -> float:
    counts = frame.group_by(column).len()["len"]
    return float(counts.max()) / frame.height if counts.len() else 1.0


def _acyclic_order(found: dict[str, tuple[tuple[str, ...], float]], names: list[str], distinct: dict[str, int],
                   first: set[str] = frozenset()) -> list[str]:
    """Determined columns in an order where each one's determinants come first.

    Of dependencies that would close a loop (both directions of a one-to-one pair; a route
    fixing its distance while origin and distance fix the destination) the first kept wins:
    stated ones (``first``), then the most rows, then the determined column with the most
    distinct values (the distance rather than the airport: a derived measurement, not a key
    the model's sequences are built on)."""
    order: list[str] = []
    parents: dict[str, tuple[str, ...]] = {}
    for target in sorted(found, key=lambda t: (t not in first, -found[t][1], -distinct[t], names.index(t))):
        determinants = found[target][0]
        if any(_reaches(target, d, parents) for d in determinants):
            continue
        parents[target] = determinants
    placed: set[str] = set()
    while len(placed) < len(parents):
        for target in sorted(parents, key=names.index):
            if target not in placed and all(d not in parents or d in placed for d in parents[target]):
                placed.add(target)
                order.append(target)
    return order


def _reaches(start: str, goal: str, parents: dict[str, tuple[str, ...]]) -> bool:
    """Whether ``start`` is among the determinants upstream of ``goal`` (directly or through
    other determined columns): adding ``start``'s dependency on ``goal`` would close a loop."""
    stack, seen = [goal], set()
    while stack:
        node = stack.pop()
        if node == start:
            return True
        if node in seen:
            continue
        seen.add(node)
        stack.extend(parents.get(node, ()))
    return False


def _learn(frame: pl.DataFrame, determinants: tuple[str, ...], target: str, support: float) -> Dependency:
    counts = frame.group_by([*determinants, target]).len()
    best = counts.sort("len", descending=True, maintain_order=True).unique(list(determinants), keep="first",
                                                                           maintain_order=True)
    best = best.sort(list(determinants), nulls_last=True)
    marginal = frame.group_by(target).len().drop_nulls(target).sort("len", descending=True)
    fallback_on, fallback = None, {}
    if len(determinants) > 1:
        fallback_on = min(determinants, key=lambda d: frame[d].n_unique())
        per = frame.group_by(fallback_on, target).len().drop_nulls(target).sort("len", descending=True)
        for part in per.partition_by(fallback_on, maintain_order=True):
            key = part[fallback_on].cast(pl.String)[0]  # as the rows' values read when applied
            if key is not None:
                fallback[key] = [part[target].to_list(), [float(w) for w in part["len"].to_list()]]
    return Dependency(
        determinants=determinants,
        determines=target,
        support=round(support, 6),
        keys=[best[d].to_list() for d in determinants],
        values=best[target].to_list(),
        marginal_values=marginal[target].to_list(),
        marginal_weights=[float(w) for w in marginal["len"].to_list()],
        fallback_on=fallback_on,
        fallback=fallback,
    )
