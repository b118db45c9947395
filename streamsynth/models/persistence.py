"""Numeric values that persist along an entity's events: a temperature, a queue length, a price.

The baseline's copula draws each event's scores afresh, so a series that moves smoothly in the
data (a machine's temperature, each reading close to the one before) comes out as white noise
around the same marginal, and the previous value gives every sample away. :class:`Persistence`
keeps, per copula column, the lag-one correlation of its normal scores between consecutive events
of one entity (learned at fit), and sampling draws each column's scores as a stationary AR(1)
along each entity's events::

    y[0] = z[0]              y[k] = rho * y[k-1] + sqrt(1 - rho^2) * z[k]

with ``z`` the copula's correlated draws, so each column keeps its marginal and the copula its
correlation between columns (learned on the innovations, see :meth:`Persistence.innovations`),
and only the order of values along an entity changes. The recursion runs over whole entities
in event order: within a batch vectorised over entities (short runs) or with a linear filter
(long runs, a one-entity series), and across batches from the last score kept per entity in a
:class:`Carry`, so an entity's values do not depend on how the stream is cut into batches.
"""

from __future__ import annotations

import numpy as np
from scipy.signal import lfilter

from streamsynth.models.entity_runs import Carry, Runs

#: a lag correlation weaker than this is not kept (draws stay independent and cost nothing)
MIN_RHO = 0.1
#: kept below 1, so a new draw always moves the value a little
MAX_RHO = 0.995
#: pairs of consecutive events needed to estimate it
MIN_PAIRS = 30
#: runs longer than this go through the linear filter, shorter ones through the vectorised loop
LONG_RUN = 64


class Persistence:
    """Lag-one correlations of the copula's columns (0: drawn independently)."""

    def __init__(self, rho: np.ndarray) -> None:
        self.rho = np.asarray(rho, dtype=np.float64)
        self.columns = np.flatnonzero(self.rho)

    @classmethod
    def none(cls, d: int) -> Persistence:
        return cls(np.zeros(d))

    @classmethod
    def fit(cls, scores: np.ndarray, previous: np.ndarray, has_previous: np.ndarray, kept: np.ndarray) -> Persistence:
        """From each row's normal scores and its entity's previous event's (where
        ``has_previous``), for the columns ``kept`` marks (numeric values drawn by the copula)."""
        rho = np.zeros(scores.shape[1])
        if int(has_previous.sum()) < MIN_PAIRS:
            return cls(rho)
        now, before = scores[has_previous], previous[has_previous]
        for j in np.flatnonzero(kept):
            if now[:, j].std() == 0 or before[:, j].std() == 0:
                continue
            r = float(np.corrcoef(now[:, j], before[:, j])[0, 1])
            if np.isfinite(r) and abs(r) >= MIN_RHO:
                rho[j] = float(np.clip(r, -MAX_RHO, MAX_RHO))
        return cls(rho)

    def innovations(self, scores: np.ndarray, previous: np.ndarray, has_previous: np.ndarray) -> np.ndarray:
        """The scores with each persistent column's part carried over from the previous event
        taken out (rescaled to unit variance): the copula's correlation is learned on these, so
        a column correlated with another only through its own past does not count twice."""
        out = scores.copy()
        if self.columns.size == 0:
            return out
        rho = self.rho[self.columns]
        rows = np.flatnonzero(has_previous)
        now = scores[np.ix_(rows, self.columns)]
        before = previous[np.ix_(rows, self.columns)]
        out[np.ix_(rows, self.columns)] = (now - rho * before) / np.sqrt(1.0 - rho**2)
        return out

    def carry(self, n_entities: int) -> Carry:
        return Carry.empty(n_entities, (self.columns.size,), np.float64)

    def apply(self, z: np.ndarray, entity: np.ndarray, seq: np.ndarray, carry: Carry) -> np.ndarray:
        """``z`` (rows: events ``seq`` of entity rows ``entity``) with the persistent columns
        turned into each entity's AR(1) path, continuing from ``carry``, which is updated."""
        if self.columns.size == 0 or z.shape[0] == 0:
            return z
        rho = self.rho[self.columns]
        fresh = np.sqrt(1.0 - rho**2)
        runs = Runs.of(entity, seq)
        x = z[np.ix_(runs.order, self.columns)]
        starts, lengths = runs.starts, runs.lengths
        first = x[starts]
        # y[0] = fresh * z[0] + init, so init is rho * (the carried score) or (1 - fresh) * z[0]
        init = np.where(runs.follows(carry)[:, None], rho * carry.last[runs.entity[starts]], (1.0 - fresh) * first)
        y = np.empty_like(x)
        y[starts] = fresh * first + init
        short = lengths <= LONG_RUN
        for at in runs.steps(short):
            y[at] = rho * y[at - 1] + fresh * x[at]
        for run in np.flatnonzero(~short):
            lo, hi = starts[run], starts[run] + lengths[run]
            for c in range(self.columns.size):
                y[lo:hi, c] = lfilter([fresh[c]], [1.0, -rho[c]], x[lo:hi, c], zi=[init[run, c]])[0]
        runs.keep_last(y, carry)
        out = z.copy()
        out[np.ix_(runs.order, self.columns)] = y
        return out
