"""Categories that follow the entity's previous one: a session's steps, a log's event sequence.

An SSH connection logs a reverse-mapping warning, then an invalid user, then a disconnect; drawn
independently, the same event ids come in any order, and the order gives every sample away. For
a categorical column whose next value is predicted by the entity's previous one (on entities it
was not learned from, better than by the column's marginal), :class:`Transitions` keeps a table
of next-value probabilities given the previous value (plus a row for an entity's first event and
a column for its last), and sampling walks that chain along each entity's events (the copula's
uniform for the column picks within the row, so the column keeps its ties to the event's other
columns). Where the model knows how many events an entity has (entities born and gone inside
the span), the walk is drawn conditioned on ending with the entity, so a session that always
ends with a logout still does.
"""

from __future__ import annotations

import numpy as np

from streamsynth.models.entity_runs import Carry, Runs

#: held-out log-likelihood per event that the previous value must add (nats)
MIN_GAIN = 0.05
#: pseudo-counts of the marginal in each row (a previous value seen a few times keeps it close)
PRIOR = 0.5
#: pairs of consecutive events needed per category of the column
MIN_PAIRS_PER_VALUE = 3
#: how many events ahead the chain looks for its end (an entity with more left draws as if this many)
AHEAD = 256


def learn(code: np.ndarray, entity: np.ndarray, size: int) -> np.ndarray | None:
    """The table (``size + 1`` rows: each previous code, then "first event"; ``size + 1``
    columns: each next code, then "last event") for a column's codes along entities (rows sorted
    by entity, then time), or None when the previous value does not predict the next one on
    held-out entities."""
    if size < 2:
        return None
    has_previous = np.r_[False, entity[1:] == entity[:-1]]
    if int(has_previous.sum()) < MIN_PAIRS_PER_VALUE * size:
        return None
    previous = np.where(has_previous, np.r_[0, code[:-1]], size)  # `size`: no previous event
    last = np.r_[entity[1:] != entity[:-1], True]
    # Held out: every other entity, or the later half of a single sequence.
    held_out = entity % 2 == 1 if entity[-1] != entity[0] else np.arange(code.size) >= code.size // 2
    gains = []
    for fit in (~held_out, held_out):
        test = ~fit & has_previous
        if not test.any():
            return None
        table = _table(code[fit], previous[fit], last[fit], size)[:, :size]
        chain = table[previous[test], code[test]] / table[previous[test]].sum(axis=1)
        marginal = np.bincount(code[fit], minlength=size) + 1.0
        marginal /= marginal.sum()
        gains.append(float(np.log(chain).mean() - np.log(marginal[code[test]]).mean()))
    return _table(code, previous, last, size) if min(gains) >= MIN_GAIN else None


def _table(code: np.ndarray, previous: np.ndarray, last: np.ndarray, size: int) -> np.ndarray:
    counts = np.zeros((size + 1, size + 1))
    np.add.at(counts, (previous, code), 1.0)
    np.add.at(counts, (code[last], size), 1.0)
    marginal = (counts.sum(0) + 1.0) / (counts.sum() + size + 1)
    return (counts + PRIOR * marginal) / (counts.sum(1, keepdims=True) + PRIOR)


def _ahead(table: np.ndarray) -> np.ndarray:
    """Row m, state s: how likely a chain that just drew s draws exactly m more values, then
    ends (each row scaled to a maximum of 1: only ratios within a row are used)."""
    size = table.shape[1] - 1
    step, end = table[:size, :size], table[:size, size]
    rows = [end / max(end.max(), 1e-300)]
    for _ in range(AHEAD):
        nxt = step @ rows[-1]
        rows.append(nxt / max(nxt.max(), 1e-300))
    return np.array(rows)


def draw_rows(weights: np.ndarray, u: np.ndarray) -> np.ndarray:
    """One class per row of ``weights`` (unnormalised), by inverse CDF with the uniforms ``u``."""
    cum = np.cumsum(weights, axis=1)
    return np.minimum((cum < (u * cum[:, -1])[:, None]).sum(axis=1), weights.shape[1] - 1)


class Transitions:
    """Next-value tables of the categorical columns that follow their previous value."""

    def __init__(self, tables: dict[str, np.ndarray] | None = None) -> None:
        self.tables = dict(tables or {})
        self._ahead = {name: _ahead(t) for name, t in self.tables.items()}

    def __contains__(self, name: str) -> bool:
        return name in self.tables

    def carry(self, n_entities: int) -> dict[str, Carry]:
        return {name: Carry.empty(n_entities, (), np.int64) for name in self.tables}

    def draw(self, name: str, u: np.ndarray, entity: np.ndarray, seq: np.ndarray, carry: dict[str, Carry],
             remaining: np.ndarray | None = None) -> np.ndarray:
        """Codes of column ``name`` for events ``seq`` of entity rows ``entity`` (uniforms ``u``),
        each drawn from the row of the entity's previous code; ``carry`` is updated. With
        ``remaining`` (how many events each entity has after this one), a chain that ends
        (a session's logout) reaches its end on the entity's last event: each draw is weighted
        by how likely the chain is to end after exactly that many more."""
        table, ahead = self.tables[name], self._ahead[name]
        size = table.shape[1] - 1
        kept = carry[name]
        runs = Runs.of(entity, seq)
        uu = u[runs.order]
        left = None if remaining is None else np.minimum(remaining[runs.order], AHEAD)

        def pick(before: np.ndarray, at: np.ndarray) -> np.ndarray:
            weights = table[before, :size]
            if left is not None:
                ending = weights * ahead[left[at]]
                weights = np.where(ending.sum(axis=1, keepdims=True) > 0, ending, weights)
            return draw_rows(weights, uu[at])

        drawn = np.empty(uu.size, dtype=np.int64)
        starts = runs.starts
        drawn[starts] = pick(np.where(runs.follows(kept), kept.last[runs.entity[starts]], size), starts)
        for at in runs.steps(np.ones(starts.size, dtype=bool)):
            drawn[at] = pick(drawn[at - 1], at)
        runs.keep_last(drawn, kept)
        out = np.empty_like(drawn)
        out[runs.order] = drawn
        return out
