"""Numeric columns that follow others: air time with distance, a fee with an amount and a channel.

A functional dependency (:mod:`streamsynth.dependencies`) fixes a column exactly; a *relation* is
its numeric near relative: a numeric column whose value is mostly explained by one or two other
columns. :func:`discover` finds them at fit: for each numeric column, the parent (numeric or
categorical) that best predicts its normal scores, measured on rows it was not fitted on (a split
half, so a parent with many values cannot explain noise), then a second parent when it adds to
that. A :class:`Relation` keeps the child's conditional quantile function on a grid of its
parents' values: numeric parents by quantile bins, interpolated between bin centres (so air time
keeps rising with distance inside a bin), categorical parents by value.

Sampling uses it where a row's parents changed after the model drew the row: a dependency's
lookup set the route's distance, so the air time the model drew for another distance moves to the
same conditional rank at the new one (:func:`keep_after`). Rows whose parents the model drew
itself keep the model's value.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from scipy.special import ndtri

from streamsynth.encoders.resolution import Grid
from streamsynth.schema import Role, Schema

#: a parent must explain at least this share of the child's variance (normal scores, held out)
MIN_SCORE = 0.5
#: a second parent must add at least this much to it
MIN_GAIN = 0.05
#: numeric parents are cut into at most this many quantile bins; categorical ones keep this many values
MAX_BINS = 24
MAX_VALUES = 64
#: rows a cell needs for its own quantile function (fewer: its parent's row, then the marginal)
MIN_CELL_ROWS = 20
#: quantile levels kept per cell
LEVELS = np.linspace(0.0, 1.0, 33)
#: bounds on the search, so wide tables fit in bounded time
SEARCH_ROWS = 20_000
MAX_CHILDREN = 32
MAX_PARENTS = 24
SECOND_PARENT_TRIES = 4


@dataclass
class Axis:
    """One parent's place in the table: numeric bin centres, or categorical values (plus one
    slot for any other value)."""

    name: str
    centres: list[float] | None = None
    values: list[str] | None = None

    @property
    def size(self) -> int:
        return len(self.centres) if self.centres is not None else len(self.values) + 1

    def corners(self, column: pl.Series) -> tuple[list[tuple[np.ndarray, np.ndarray | float]], np.ndarray]:
        """Each row's neighbouring cells with their weights (two for a number between bin centres,
        one for a category), and whether the row's value is known (not null)."""
        if self.centres is None:
            text = column.cast(pl.String)
            index = text.replace_strict(self.values, list(range(len(self.values))), default=len(self.values),
                                        return_dtype=pl.Int64).to_numpy()
            return [(index, 1.0)], text.is_not_null().to_numpy()
        x = column.cast(pl.Float64).to_numpy()
        known = np.isfinite(x)
        centres = np.asarray(self.centres)
        if centres.size == 1:
            return [(np.zeros(len(x), dtype=np.int64), 1.0)], known
        x = np.where(known, x, centres[0])
        low = np.clip(np.searchsorted(centres, x) - 1, 0, centres.size - 2)
        w = np.clip((x - centres[low]) / (centres[low + 1] - centres[low]), 0.0, 1.0)
        return [(low, 1.0 - w), (low + 1, w)], known


@dataclass
class Relation:
    """``child`` follows ``parents``: ``score`` of its variance explained on held-out rows."""

    child: str
    parents: tuple[str, ...]
    score: float
    axes: list[Axis] = field(default_factory=list, repr=False)
    #: quantiles of the child per cell, shape (size of each axis..., len(LEVELS))
    table: np.ndarray = field(default_factory=lambda: np.zeros((0, len(LEVELS))), repr=False)
    integer: bool = False
    step: float | None = None  # the finest step of the child's values (whole cents), if any
    lo: float = -np.inf
    hi: float = np.inf

    def describe(self) -> str:
        return f"{' + '.join(self.parents)} ~> {self.child} ({self.score:.0%} of its variance)"

    def to_json(self) -> dict[str, Any]:
        return {"child": self.child, "parents": list(self.parents), "score": self.score,
                "axes": [{"name": a.name, "centres": a.centres, "values": a.values} for a in self.axes],
                "shape": list(self.table.shape), "table": self.table.ravel().tolist(), "integer": self.integer,
                "step": self.step, "lo": self.lo, "hi": self.hi}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Relation:
        table = np.asarray(data["table"], dtype=np.float64).reshape(data["shape"])
        return cls(data["child"], tuple(data["parents"]), float(data["score"]),
                   [Axis(a["name"], a["centres"], a["values"]) for a in data["axes"]], table,
                   bool(data["integer"]), data["step"], float(data["lo"]), float(data["hi"]))

    # -- the conditional quantile function ----------------------------------------------------------
    def _cells(self, frame: pl.DataFrame) -> tuple[list[tuple[tuple[np.ndarray, ...], Any]], np.ndarray]:
        """Each row's cells of the table with their weights (up to four), and whether every
        parent is known."""
        parts = [axis.corners(frame[axis.name]) for axis in self.axes]
        known = np.logical_and.reduce([p[1] for p in parts])
        cells = []
        for combination in itertools.product(*(p[0] for p in parts)):
            weight: Any = 1.0
            for _, w in combination:
                weight = weight * w
            cells.append((tuple(index for index, _ in combination), weight))
        return cells, known

    def quantiles(self, frame: pl.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Each row's quantile function of the child at its parents' values (rows x levels), and
        whether every parent is known."""
        cells, known = self._cells(frame)
        out = np.zeros((frame.height, len(LEVELS)))
        for index, weight in cells:
            out += (weight[:, None] if isinstance(weight, np.ndarray) else weight) * self.table[index]
        return out, known

    def rank(self, frame: pl.DataFrame) -> np.ndarray:
        """Each row's child value as a conditional probability in [0, 1] given its parents
        (NaN where the child or a parent is null)."""
        q, known = self.quantiles(frame)
        y = frame[self.child].cast(pl.Float64).to_numpy()
        # the levels bracketing each value; a flat stretch (many equal values) gives its middle
        below = (q < y[:, None]).sum(axis=1)
        upto = (q <= y[:, None]).sum(axis=1)
        rows, last = np.arange(len(y)), len(LEVELS) - 1
        k = np.clip(below, 1, last)
        width = q[rows, k] - q[rows, k - 1]
        inside = LEVELS[k - 1] + np.clip((y - q[rows, k - 1]) / np.where(width > 0, width, 1.0), 0, 1) / last
        flat = np.clip((below + upto - 1) / 2, 0, last) / last
        u = np.where(upto > below, flat, np.where(below == 0, 0.0, np.where(below > last, 1.0, inside)))
        return np.where(known & np.isfinite(y), u, np.nan)

    def place(self, frame: pl.DataFrame, u: np.ndarray) -> np.ndarray:
        """The child's value at conditional probability ``u`` given each row's parents, on the
        child's resolution and within its learned range."""
        cells, _ = self._cells(frame)
        position = np.clip(np.nan_to_num(u, nan=0.5), 0.0, 1.0) * (len(LEVELS) - 1)
        low = np.minimum(position.astype(np.int64), len(LEVELS) - 2)
        value = np.zeros(frame.height)
        for index, weight in cells:  # only the two levels around each row's position are read
            below, above = self.table[(*index, low)], self.table[(*index, low + 1)]
            value += weight * (below + (position - low) * (above - below))
        if self.step:
            value = Grid([self.step], [0.0], [1.0], [1.0]).snap_values(value, None, self.lo, self.hi)
        value = np.clip(value, self.lo, self.hi)
        return np.round(value) if self.integer else value


# -- sampling -----------------------------------------------------------------------------------------
def keep_after(relations: list[Relation], change: Callable[[pl.DataFrame], pl.DataFrame],
               frame: pl.DataFrame) -> pl.DataFrame:
    """``change(frame)`` (the dependencies' lookups), then each relation's child moved to its
    conditional rank at the new parent values, in rows where a parent value changed."""
    before = frame
    frame = change(frame)
    for relation in relations:  # stored parents first, so a moved child moves its own children
        moved = np.zeros(frame.height, dtype=bool)
        for parent in relation.parents:
            old, new = before[parent], frame[parent]
            moved |= (old != new).fill_null(False).to_numpy() | (old.is_null() != new.is_null()).to_numpy()
        if not moved.any():
            continue
        rows = pl.Series(moved)
        # the rank the model drew, at the parents it drew (a moved parent's child was drawn for it)
        u = relation.rank(before.filter(rows))
        if not np.isfinite(u).any():
            continue
        moved[np.flatnonzero(moved)[~np.isfinite(u)]] = False
        u = u[np.isfinite(u)]
        child = frame[relation.child]
        placed = relation.place(frame.filter(pl.Series(moved)), u)
        values = child.to_numpy().astype(np.float64, copy=True)
        values[moved] = placed
        frame = frame.with_columns(pl.Series(relation.child, values).cast(child.dtype, strict=False))
    return frame


# -- discovery ------------------------------------------------------------------------------------------
def discover(frame: pl.DataFrame, schema: Schema, *, fixed: set[str] = frozenset(), seed: int = 0) -> list[Relation]:
    """The relations in ``frame``, parents before children; ``fixed``: columns a dependency
    sets or reads (they are never a child: moving them would break the dependency)."""
    contract = {schema.time, schema.entity, schema.label}
    numeric = [c.name for c in schema.data_columns if c.role is Role.NUMERIC and c.name not in contract]
    parents = numeric + [c.name for c in schema.data_columns
                         if c.role in (Role.CATEGORICAL, Role.BOOLEAN) and c.name not in contract]
    children = [n for n in numeric if n not in fixed][:MAX_CHILDREN]
    if not children or len(parents) < 2:
        return []
    sample = frame if frame.height <= SEARCH_ROWS else frame.sample(SEARCH_ROWS, seed=seed)
    half = np.random.default_rng([seed, 0x4E1]).random(sample.height) < 0.5  # its own stream: not the data's
    cells = {p: _cells(sample[p]) for p in parents[:MAX_PARENTS]}
    edges = []
    for child in children:
        z = _scores(sample[child])
        if z is None:
            continue
        single = sorted(((_explained(z, cells[p], half), p) for p in cells if p != child), reverse=True)
        if not single or single[0][0] < MIN_SCORE:
            continue
        best, first = single[0]
        chosen = (first,)
        for _, second in single[1:SECOND_PARENT_TRIES + 1]:
            both = _explained(z, cells[first] * (cells[second].max() + 1) + cells[second], half)
            if both >= best + MIN_GAIN:
                best, chosen = both, (first, second)
        edges.append((best, child, chosen))
    found: dict[str, tuple[float, tuple[str, ...]]] = {}
    for score, child, chosen in sorted(edges, reverse=True):
        if not any(_reaches(p, child, found) for p in chosen):
            found[child] = (score, chosen)
    return [_learn(frame, child, found[child][1], found[child][0]) for child in _parents_first(found)]


def _reaches(start: str, goal: str, found: dict[str, tuple[float, tuple[str, ...]]]) -> bool:
    """Whether ``goal`` is ``start`` or one of its ancestors (a relation there would close a loop)."""
    stack, seen = [start], set()
    while stack:
        node = stack.pop()
        if node == goal:
            return True
        if node not in seen:
            seen.add(node)
            stack.extend(found.get(node, (0.0, ()))[1])
    return False


def _parents_first(found: dict[str, tuple[float, tuple[str, ...]]]) -> list[str]:
    order: list[str] = []

    def visit(node: str) -> None:
        for parent in found.get(node, (0.0, ()))[1]:
            visit(parent)
        if node in found and node not in order:
            order.append(node)

    for child in sorted(found):
        visit(child)
    return order


def _scores(column: pl.Series) -> np.ndarray | None:
    """Normal scores of the values' ranks (NaN for nulls), or None for a nearly constant column."""
    x = column.cast(pl.Float64).to_numpy()
    ok = np.isfinite(x)
    if ok.sum() < 2 * MIN_CELL_ROWS or np.unique(x[ok]).size < 3:
        return None
    ranks = pl.Series(x[ok]).rank("average").to_numpy()
    z = np.full(x.size, np.nan)
    z[ok] = ndtri(ranks / (ok.sum() + 1))
    return z


def _cells(column: pl.Series) -> np.ndarray:
    """A small integer per row for the search: quantile bins of a numeric column, codes of the
    most frequent values of another (the rest, and nulls, share one code)."""
    if column.dtype.is_numeric() and column.n_unique() > MAX_VALUES:
        x = column.cast(pl.Float64).to_numpy()
        edges = np.unique(np.nanquantile(x, np.linspace(0, 1, 17)[1:-1])) if np.isfinite(x).any() else np.array([])
        return np.where(np.isfinite(x), np.searchsorted(edges, x, side="right"), edges.size + 1)
    text = column.cast(pl.String).fill_null("\x00")
    top = text.value_counts(sort=True).head(MAX_VALUES)[text.name].to_list()
    slots = {v: i for i, v in enumerate(top)}
    return np.array([slots.get(v, len(top)) for v in text.to_list()], dtype=np.int64)


def _explained(z: np.ndarray, cells: np.ndarray, half: np.ndarray) -> float:
    """The share of ``z``'s variance that cell means learned on one half explain on the other
    (both ways, averaged): a parent with a value per row explains nothing held out."""
    ok = np.isfinite(z)
    shares = []
    for train in (half, ~half):
        fit, test = ok & train, ok & ~train
        if fit.sum() < MIN_CELL_ROWS or test.sum() < MIN_CELL_ROWS:
            return 0.0
        size = int(cells.max()) + 1
        sums = np.bincount(cells[fit], weights=z[fit], minlength=size)
        counts = np.bincount(cells[fit], minlength=size)
        mean = float(z[fit].mean())
        predicted = np.where(counts > 0, sums / np.maximum(counts, 1), mean)[cells[test]]
        total = float(((z[test] - z[test].mean()) ** 2).sum())
        shares.append(1.0 - float(((z[test] - predicted) ** 2).sum()) / total if total > 0 else 0.0)
    return float(np.mean(shares))


def _axis(column: pl.Series) -> Axis:
    if column.dtype.is_numeric() and column.n_unique() > MAX_VALUES:
        x = column.cast(pl.Float64).drop_nulls().drop_nans().to_numpy()
        bins = max(1, min(MAX_BINS, x.size // (2 * MIN_CELL_ROWS)))
        edges = np.quantile(x, np.linspace(0, 1, bins + 1))
        which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, bins - 1)
        centres = sorted({float(np.median(x[which == b])) for b in range(bins) if (which == b).any()})
        return Axis(column.name, centres=centres)
    text = column.cast(pl.String).drop_nulls()
    return Axis(column.name, values=text.value_counts(sort=True).head(MAX_VALUES)[column.name].to_list())


def _learn(frame: pl.DataFrame, child: str, parents: tuple[str, ...], score: float) -> Relation:
    """The child's quantiles per cell of its parents' values; a cell with too few rows takes
    its first parent's (fewer parents), then the column's overall quantiles."""
    rows = frame.select(child, *parents).drop_nulls()
    y = rows[child].cast(pl.Float64).to_numpy()
    axes = [_axis(rows[p]) for p in parents]
    # each training row counts in the cell of its nearest centre (weight above a half)
    index = []
    for axis in axes:
        corners, _ = axis.corners(rows[axis.name])
        nearest = np.argmax(np.column_stack([np.broadcast_to(w, len(y)) for _, w in corners]), axis=1)
        index.append(np.choose(nearest, [i for i, _ in corners]))
    shape = tuple(a.size for a in axes)
    table = np.broadcast_to(np.quantile(y, LEVELS), (*shape, len(LEVELS))).copy()
    if len(axes) == 2:  # a cell with too few rows takes its first parent's row
        for cell, q in _cell_quantiles(y, index[0], shape[0]).items():
            table[cell] = q
    flat = np.ravel_multi_index(tuple(index), shape)
    for cell, q in _cell_quantiles(y, flat, int(np.prod(shape))).items():
        table[np.unravel_index(cell, shape)] = q
    integer = rows[child].dtype.is_integer()
    grid = Grid.learn_numeric(y, integer)
    return Relation(child, parents, score, axes, table, integer, grid.steps[-1] if grid else None,
                    float(y.min()), float(y.max()))


def _cell_quantiles(y: np.ndarray, cell: np.ndarray, size: int) -> dict[int, np.ndarray]:
    """The quantiles of ``y`` in each cell with enough rows."""
    order = np.argsort(cell, kind="stable")
    bounds = np.searchsorted(cell[order], np.arange(size + 1))
    return {c: np.quantile(y[order[bounds[c]:bounds[c + 1]]], LEVELS)
            for c in range(size) if bounds[c + 1] - bounds[c] >= MIN_CELL_ROWS}
