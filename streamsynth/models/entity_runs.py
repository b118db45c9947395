"""Events in runs along each entity, for draws that depend on the entity's previous event.

A batch of a stream holds events of many entities in time order. A draw that continues the
entity's previous one (a smooth value, a session's next step) runs over each entity's events in
order: :class:`Runs` sorts a batch's rows by (entity, event number) and cuts them into runs of
consecutive events of one entity; :class:`Carry` keeps, per entity, the last event drawn and what
was drawn for it, so a run continues the entity's previous batch and an entity's draws do not
depend on where the stream is cut into batches.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass
class Carry:
    """One stream's last event number per entity (rows of its entity state) and its draw."""

    last_seq: np.ndarray
    last: np.ndarray

    @classmethod
    def empty(cls, n_entities: int, shape: tuple[int, ...], dtype: type) -> Carry:
        return cls(np.full(n_entities, -2, dtype=np.int64), np.zeros((n_entities, *shape), dtype=dtype))


@dataclass
class Runs:
    """A batch's rows in (entity, event number) order, cut into runs of consecutive events."""

    order: np.ndarray  # the batch's rows, sorted
    entity: np.ndarray  # sorted
    seq: np.ndarray  # sorted
    starts: np.ndarray  # each run's first position in the sorted rows
    lengths: np.ndarray

    @classmethod
    def of(cls, entity: np.ndarray, seq: np.ndarray) -> Runs:
        order = np.lexsort((seq, entity))
        e, s = entity[order], seq[order]
        starts = np.flatnonzero(np.r_[True, (e[1:] != e[:-1]) | (s[1:] != s[:-1] + 1)])
        return cls(order, e, s, starts, np.diff(np.r_[starts, e.size]))

    def follows(self, carry: Carry) -> np.ndarray:
        """Per run: whether it continues the entity's last event before this batch."""
        return carry.last_seq[self.entity[self.starts]] == self.seq[self.starts] - 1

    def steps(self, among: np.ndarray) -> Iterator[np.ndarray]:
        """Positions of the k-th event of the runs ``among`` selects, for k = 1, 2, ...: each
        follows the position just before it, so a loop over these draws every run in order."""
        for k in range(1, int(self.lengths[among].max(initial=1))):
            yield self.starts[among & (self.lengths > k)] + k

    def keep_last(self, drawn: np.ndarray, carry: Carry) -> None:
        """Store each entity's last event here and its draw (``drawn``: in sorted order)."""
        ends = np.flatnonzero(np.r_[self.entity[1:] != self.entity[:-1], True])
        carry.last_seq[self.entity[ends]] = self.seq[ends]
        carry.last[self.entity[ends]] = drawn[ends]
