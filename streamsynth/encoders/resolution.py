"""The resolution a column's values sit on (whole cents, multiples of 5, midnight-only dates,
5-minute schedules), learned from training data and applied to generated values.

A :class:`Grid` is a few nested levels, coarsest first (whole dollars inside whole cents; a 5-minute
schedule inside whole seconds), each with the probability that a generated value is put on exactly
that level; the rest keep their generated value. Which level a value goes to is decided by a
counter-based uniform the model draws per event (:mod:`streamsynth.rng`), so snapping does not
depend on batches or shards. Numbers snap to the nearest grid point inside the learned range; times
snap down (a monotone map), and :class:`TimeSnapper` keeps a stream in time order when only a
share of times is snapped. Models saved before grids existed have none and sample as before.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Self

import numpy as np
import polars as pl

_ON_GRID = 0.99  # a coarser step replaces a finer one when it keeps this share of its values
_MIN_SHARE = 0.05  # a level must hold at least this share of values ...
_EXCESS = 1.5  # ... and this many times what the finer level puts on it by chance
_MIN_VALUES = 20
_FIT_VALUES = 200_000
_MAX_QUOTIENT = 2.0**52  # steps finer than float precision say nothing
_BY_MAX_VALUES = 64  # a grid is conditioned on a column of at most this many values ...
_BY_MIN_ROWS = 50  # ... each value with this many rows to learn its own weights ...
_BY_MIN_MOVED = 0.03  # ... when its values' weights move this share of all values between levels

#: Steps of numeric grids: 1, 2, 2.5, 5 x 10^k.
NUMERIC_STEPS = tuple(m * 10.0**k for k in range(-6, 7) for m in (1.0, 2.0, 2.5, 5.0))
_US = {"ms": 1_000, "s": 1_000_000, "min": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000}
#: Steps of time grids in microseconds: ms, s, min, 5/10/15/30 min, hour, day.
TIME_STEPS = (
    _US["ms"], _US["s"], _US["min"], 5 * _US["min"], 10 * _US["min"], 15 * _US["min"], 30 * _US["min"],
    _US["h"], _US["d"],
)
_PHASED = 5 * _US["min"]  # grids from 5 minutes up may sit at an offset (every 5 min from :04; midnight at +02:00)


@dataclass
class Grid:
    """Nested grid levels, coarsest first: ``steps`` and ``phases`` (grid points are
    ``phase + n * step``), and ``weights``, the probability a value is snapped to each level."""

    steps: list[float]
    phases: list[float]
    weights: list[float]
    shares: list[float]  # the training shares on each level, for reports and tests
    by: GridCondition | None = None  # the weights by another column's value (numeric grids only)

    @property
    def always(self) -> bool:
        """One level that every value goes to: no draw needed, and snapping is monotone."""
        return len(self.steps) == 1 and self.weights[0] >= 1.0 and self.by is None

    # -- learning ------------------------------------------------------------------------------
    @classmethod
    def learn_numeric(cls, values: np.ndarray, integer: bool = False) -> Grid | None:
        """The grid of a numeric column's finite values, or None when they sit on none coarser
        than what the column's type already keeps (an integer column's whole numbers)."""
        x = _sample(np.asarray(values, dtype=np.float64))
        x = x[np.isfinite(x) & (x != 0)]  # zero lies on every grid: it says nothing
        if x.size < _MIN_VALUES:
            return None
        top = float(np.abs(x).max())

        def share(step: float, phase: float) -> float:
            if top / step > _MAX_QUOTIENT:
                return 0.0
            return float(_on_step(x, step).mean())

        steps = [s for s in NUMERIC_STEPS if s >= 1.0] if integer else list(NUMERIC_STEPS)
        grid = cls._learn(steps, share, lambda step: 0.0, chance=0.0)
        if grid is not None and integer and grid.steps == [1.0]:
            return None
        return grid

    def condition_on(self, values: np.ndarray, candidates: dict[str, np.ndarray]) -> Grid:
        """This numeric grid with its weights by the candidate column (each an array of values,
        row for row with ``values``) whose values move the most values between levels, when one
        moves enough: ATM withdrawals all on whole tens, card payments on cents."""
        x = np.asarray(values, dtype=np.float64)
        finite = np.isfinite(x)
        best: tuple[float, GridCondition] | None = None
        for name, parent in candidates.items():
            condition = _condition(self, name, x[finite], np.asarray(parent, dtype=object)[finite])
            if condition is not None and (best is None or condition[0] > best[0]):
                best = condition
        if best is not None:
            self.by = best[1]
        return self

    @classmethod
    def learn_times(cls, micros: np.ndarray) -> Grid | None:
        """The grid of event times in microseconds since the epoch (UTC)."""
        t = _sample(np.asarray(micros, dtype=np.int64))
        if t.size < _MIN_VALUES:
            return None

        def phase(step: int) -> int:
            if step < _PHASED:
                return 0
            residues, counts = np.unique(t % step, return_counts=True)
            return int(residues[counts.argmax()])

        def share(step: int, at: int) -> float:
            return float(((t - at) % step == 0).mean())

        return cls._learn(list(TIME_STEPS), share, phase, chance=1.0)

    @classmethod
    def _learn(cls, ladder: list, share: Any, phase: Any, chance: float) -> Grid | None:
        """Walk the ladder fine to coarse, keeping levels that hold clearly more values than the
        finer level puts on them by chance; a coarser step that keeps (nearly) all of a level's
        values replaces it. ``chance`` is the step of unsnapped values (0: continuous)."""
        levels: list[tuple[Any, Any, float]] = []  # fine to coarse
        for step in ladder:
            if levels:
                fine, fine_at, fine_share = levels[-1]
                ratio = step / fine
                if abs(ratio - round(ratio)) > 1e-9:
                    continue  # not nested in the finer level (2.5 after 2)
                expected = fine_share / ratio
            else:
                expected = chance / step
            at = phase(step)
            if levels and not _aligned(at - fine_at, fine):
                continue
            s = share(step, at)
            if levels and s >= _ON_GRID * fine_share:
                levels[-1] = (step, at, s)
            elif s >= max(_MIN_SHARE, _EXCESS * expected):
                levels.append((step, at, s))
        if not levels:
            return None
        levels = _prune(levels)
        levels.reverse()
        steps = [s for s, _, _ in levels]
        phases = [a for _, a, _ in levels]
        shares = [s for _, _, s in levels]
        return cls(steps, phases, _weights(steps, shares, chance), shares)

    # -- applying ------------------------------------------------------------------------------
    def levels(self, u: np.ndarray | None, n: int, parent: Any = None) -> np.ndarray:
        """Each value's level (an index into ``steps``; ``len(steps)``: left as generated), from
        one uniform per value (``None`` only for a grid every value goes to); with a condition,
        by the weights of each row's ``parent`` value (a value not seen in training: the overall
        weights)."""
        if self.always or u is None:
            return np.zeros(n, dtype=np.int64)
        if self.by is not None and parent is not None:
            cum = np.cumsum(self.by.rows(parent, self.weights), axis=1)
            return (cum <= np.asarray(u)[:, None]).sum(axis=1)
        return np.searchsorted(np.cumsum(self.weights), u, side="right")

    def snap_values(self, x: np.ndarray, u: np.ndarray | None, lo: float, hi: float,
                    parent: Any = None) -> np.ndarray:
        """Numbers rounded to their level's nearest grid point within [lo, hi] (the learned range,
        so signs and bounds hold); a level with no point in the range leaves values as they are.
        ``parent``: the values of the column the grid is conditioned on, row for row."""
        x = np.array(x, dtype=np.float64)
        level = self.levels(u, x.size, parent)
        for k, step in enumerate(self.steps):
            rows = level == k
            if not rows.any():
                continue
            low, high = np.ceil(lo / step - 1e-9), np.floor(hi / step + 1e-9)
            if low > high:
                continue
            n = np.clip(np.round(x[rows] / step), low, high)
            # Dividing by the whole number 1/step gives the nearest double (3 / 10, not 3 * 0.1).
            x[rows] = n / round(1.0 / step) if step < 1 and _aligned(1.0 / step, 1.0) else n * step
        return x

    def floor_times(self, t: np.ndarray, u: np.ndarray | None, start: int) -> np.ndarray:
        """Times (us) moved down to their level's grid; those that would fall before ``start``
        go up to the level's first point at or after it instead."""
        t = np.array(t, dtype=np.int64)
        level = self.levels(u, t.size)
        for k, (step, at) in enumerate(zip(self.steps, self.phases, strict=True)):
            rows = level == k
            if not rows.any():
                continue
            floored = at + ((t[rows] - at) // step) * step
            first = at + -((at - start) // step) * step  # ceil onto the grid
            t[rows] = np.where(floored < start, first, floored)
        return t

    def floor_coarsest(self, t: int) -> int:
        """The coarsest level's grid point at or below ``t``: no time at or after ``t`` snaps
        below it (levels are nested, and every level floors)."""
        step, at = self.steps[0], self.phases[0]
        return int(at + ((t - at) // step) * step)

    # -- persistence ---------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        data = {"steps": self.steps, "phases": self.phases, "weights": self.weights, "shares": self.shares}
        if self.by is not None:
            data["by"] = {"column": self.by.column, "values": self.by.values, "weights": self.by.weights}
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Self | None:
        if data is None:
            return None
        by = data.get("by")  # models saved before conditions have none
        condition = GridCondition(by["column"], list(by["values"]), [list(w) for w in by["weights"]]) if by else None
        return cls(list(data["steps"]), list(data["phases"]), list(data["weights"]), list(data["shares"]), condition)


@dataclass
class GridCondition:
    """A grid's level weights by the value of another column: ``weights[i]`` for ``values[i]``."""

    column: str
    values: list[Any]
    weights: list[list[float]]

    def rows(self, parent: Any, default: list[float]) -> np.ndarray:
        """Each row's weights (n x levels): its parent value's, or ``default`` for another value."""
        table = np.array([*self.weights, default], dtype=np.float64)
        index = {value: i for i, value in enumerate(self.values)}
        keys = parent.to_list() if hasattr(parent, "to_list") else list(parent)
        return table[[index.get(key, len(self.values)) for key in keys]]


class TimeSnapper:
    """Snaps the times of a time-ordered stream of row chunks (dicts of equal-length arrays)
    and keeps the stream ordered: a snapped row is held back until no later row can snap
    below it. With a grid every value goes to, snapping is monotone and nothing is held."""

    def __init__(self, grid: Grid, start_us: int, time: str, raw_order: tuple[str, ...]) -> None:
        self.grid = grid
        self.start = start_us
        self.time = time
        self.raw_order = raw_order  # keys that order rows of one raw time (entity, position)
        self.pending: dict[str, np.ndarray] | None = None

    def push(self, rows: dict[str, np.ndarray], u: np.ndarray | None) -> Iterator[dict[str, np.ndarray]]:
        """The rows ready to go after adding ``rows`` (raw times nondecreasing across pushes)."""
        raw = rows[self.time]
        if raw.size == 0:
            return
        rows = {**rows, self.time: self.grid.floor_times(raw, u, self.start), "__raw": raw}
        if self.grid.always:
            yield _without_raw(rows)
            return
        if self.pending is not None:
            rows = {k: np.concatenate([self.pending[k], v]) for k, v in rows.items()}
        rows = self._in_entity_order(rows)
        keys = [rows[k] for k in reversed(self.raw_order)] + [rows["__raw"], rows[self.time]]
        order = np.lexsort(keys)
        rows = {k: v[order] for k, v in rows.items()}
        ready = rows[self.time] < self.grid.floor_coarsest(int(raw[-1]))
        self.pending = {k: v[~ready] for k, v in rows.items()} if not ready.all() else None
        if ready.any():
            yield _without_raw({k: v[ready] for k, v in rows.items()})

    def _in_entity_order(self, rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Each entity's snapped times handed to its events in their order: levels floor by
        different steps, so an event snapped to the minute can land before its predecessor
        snapped to the second, and a session would log out before its last page view. Rows
        released earlier never need it: a later row snaps at or above the coarsest grid point
        below the raw times already seen, and every released row lies below that point."""
        entity, position = rows[self.raw_order[0]], rows[self.raw_order[1]]
        times = rows[self.time]
        by_position = np.lexsort((position, entity))
        e, t = entity[by_position], times[by_position]
        back = np.flatnonzero((e[1:] == e[:-1]) & (t[1:] < t[:-1]))
        if back.size == 0:  # the common case: nothing to hand over
            return rows
        # Re-sort only the entities that have an event snapped before its predecessor.
        crossed = np.isin(e, e[back])
        at = by_position[crossed]
        ordered = times.copy()
        ordered[at] = times[at][np.lexsort((times[at], entity[at]))]
        return {**rows, self.time: ordered}

    def flush(self) -> Iterator[dict[str, np.ndarray]]:
        """The rows still held, once the stream has ended."""
        if self.pending is not None:
            rows, self.pending = self.pending, None
            yield _without_raw(rows)


def condition_grids(grids: dict[str, Grid], frame: pl.DataFrame, categorical: list[str], seed: int = 0) -> None:
    """Condition each numeric grid (by column name) on the column of ``categorical`` that changes
    it most (:meth:`Grid.condition_on`), learned on at most :data:`_FIT_VALUES` rows of ``frame``."""
    if not grids or not categorical:
        return
    sample = frame if frame.height <= _FIT_VALUES else frame.sample(_FIT_VALUES, seed=seed)
    candidates = {name: sample[name].to_numpy() for name in categorical}
    for name, grid in grids.items():
        grid.condition_on(sample[name].cast(pl.Float64).to_numpy(),
                          {c: v for c, v in candidates.items() if c != name})


def _condition(grid: Grid, name: str, x: np.ndarray, parent: np.ndarray) -> tuple[float, GridCondition] | None:
    """The grid's weights by each value of ``parent`` holding enough rows, and how many values
    (a share of all) they put on another level than the overall weights do; None below
    :data:`_BY_MIN_MOVED` or with too many distinct values."""
    keys, inverse, counts = np.unique(parent.astype(str), return_inverse=True, return_counts=True)
    if len(keys) < 2 or len(keys) > _BY_MAX_VALUES:
        return None
    values, weights, moved = [], [], 0.0
    overall = np.array([*grid.weights, max(0.0, 1.0 - sum(grid.weights))])
    for i in np.nonzero(counts >= _BY_MIN_ROWS)[0]:
        on = x[inverse == i]
        on = on[on != 0]
        if on.size < _BY_MIN_ROWS:
            continue
        shares = [float(_on_step(on, step).mean()) for step in grid.steps]
        w = _weights(grid.steps, shares, 0.0)
        mine = np.array([*w, max(0.0, 1.0 - sum(w))])
        moved += counts[i] / x.size * 0.5 * float(np.abs(mine - overall).sum())
        values.append(parent[inverse == i][0])
        weights.append(w)
    if moved < _BY_MIN_MOVED:
        return None
    return moved, GridCondition(name, [_plain(v) for v in values], weights)


def _on_step(x: np.ndarray, step: float) -> np.ndarray:
    """Whether each value is a whole multiple of ``step`` (within the float error of a decimal)."""
    q = x / step
    return np.abs(q - np.round(q)) <= 1e-9 + 8e-16 * np.abs(q)


def _plain(value: Any) -> Any:
    """A value as JSON keeps it (numpy scalars as Python ones)."""
    return value.item() if isinstance(value, np.generic) else value


def _prune(levels: list[tuple[Any, Any, float]]) -> list[tuple[Any, Any, float]]:
    """Drop middle levels (fine to coarse) whose share the levels either side explain: whole
    dollars among cents put 0.1, 0.05 ... above the cents' chance, but not above what dollars
    plus cents put there."""
    levels = list(levels)
    while len(levels) > 2:
        excess = []
        for i in range(1, len(levels) - 1):
            (fine, _, fine_share), (step, _, share), (_, _, coarse_share) = levels[i - 1 : i + 2]
            predicted = coarse_share + (fine_share - coarse_share) * fine / step
            excess.append((share - max(predicted + _MIN_SHARE, _EXCESS * predicted), i))
        worst, i = min(excess)
        if worst >= 0:
            break
        del levels[i]
    return levels


def _without_raw(rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v for k, v in rows.items() if k != "__raw"}


def _weights(steps: list, shares: list[float], chance: float) -> list[float]:
    """Probabilities of snapping to each level such that the generated shares on the levels
    match the training shares: a value snapped to a finer level (or left unsnapped on steps of
    ``chance``) lands on a coarser one by chance, in proportion to their steps."""
    m = len(steps)
    a = np.empty((m, m))
    for j in range(m):
        for k in range(m):
            a[j, k] = (1.0 if k <= j else steps[k] / steps[j]) - chance / steps[j]
    target = np.asarray(shares) - np.array([chance / s for s in steps])
    try:
        w = np.linalg.solve(a, target)
    except np.linalg.LinAlgError:
        w = np.diff(np.concatenate([[0.0], shares]))
    w = np.clip(w, 0.0, 1.0)
    if w.sum() <= 0:
        return [1.0 if shares[-1] >= _ON_GRID else shares[-1]] + [0.0] * (m - 1)
    if w.sum() > 1.0 or shares[-1] >= _ON_GRID:
        w = w / w.sum()  # the finest level holds (nearly) all values: snap them all
    return w.tolist()


def _aligned(offset: float, step: float) -> bool:
    ratio = offset / step
    return abs(ratio - round(ratio)) <= 1e-9


def _sample(x: np.ndarray) -> np.ndarray:
    if x.size <= _FIT_VALUES:
        return x
    return x[np.random.default_rng(0).choice(x.size, _FIT_VALUES, replace=False)]
