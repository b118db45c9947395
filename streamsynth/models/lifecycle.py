"""Entity lifecycles: when each entity's first event falls in its window, when its last, and how
many events it has, learned from the training entities and drawn jointly for sampled ones.

The transformer plans every entity with one before generating it: the first event is put at the
drawn birth and the network sees how many events and how much time are left at every step. Where
entities are born and gone inside the span (sessions, trips, a cohort) the plan also bounds them:
the last event at the planned end, no gap past it, the entity ending after the drawn count. So a
sample keeps the data's inflow (a cohort born in the first weeks, a steady inflow, a ramp), its
lifetimes and its events-per-entity distribution, which an end-of-sequence token learned alone did
not (events-per-entity KS 0.16-0.36 on held-out data). Entities living through the span (customers)
keep only the birth: bounding them cost a purchase stream its daily profile.

Drawing is a smoothed bootstrap: a training entity's (birth, lifetime, count) is picked by a
counter-based uniform of (seed, entity), then its birth moves uniformly within half the distance
to its neighbours in birth order, and by at most a quarter of an hour, so no sampled entity repeats
a real one's exact times while the shape of the inflow (a tenth of the span with no births stays
empty) and the births' time of day stay (customers a day apart would otherwise be born at any hour).
A stream without entities is cut into segments (``segments``) whose lifecycles are *tiled*:
sampled segment ``i`` takes training segment ``i`` (modulo their number) with its times exact, so
the segments cover the window as the training stream did.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from streamsynth import rng

SAMPLES = 4096  # shapes kept, drawn from the training entities (the model file stays small; both models)
_PICK, _MOVE = 0x11FE, 0x11FF  # rng keys of the shape drawn and of its birth's move
MAX_MOVE_S = 900.0
BOUNDED_LIFE = 0.5
BOUNDED_MIN = 20


def born_and_gone(lives: np.ndarray) -> bool:
    """True when entities are born and gone inside the span: from BOUNDED_MIN entities, the median
    lifetime (as a share of the span) below BOUNDED_LIFE. The rule both models plan lifecycles by."""
    return len(lives) >= BOUNDED_MIN and float(np.median(lives)) < BOUNDED_LIFE


@dataclass(frozen=True)
class Lifecycles:
    """Shapes of training entities, sorted by birth: seconds from the window start of the first
    and the last event, and the event count."""

    birth: np.ndarray
    last: np.ndarray
    count: np.ndarray
    span_s: float
    # Entities born and gone inside the span (from BOUNDED_MIN entities, the median living less
    # than BOUNDED_LIFE of it: sessions, trips, a cohort): their plans bound them (count, last
    # event); entities living through the span only take their birth from it.
    bounded: bool = True
    # Segments of one stream (``segments``): entity i takes shape i modulo their number, exactly.
    tiled: bool = False

    @classmethod
    def fit(cls, first_s: np.ndarray, last_s: np.ndarray, counts: np.ndarray, span_s: float,
            seed: int, tiled: bool = False) -> Lifecycles:
        """From each training entity's first and last event time (seconds from the window start)
        and event count; up to :data:`SAMPLES` of them are kept (every segment when ``tiled``)."""
        first_s, last_s = np.asarray(first_s, np.float64), np.asarray(last_s, np.float64)
        counts = np.asarray(counts, np.int64)
        if len(counts) > SAMPLES and not tiled:
            keep = np.random.default_rng(seed).choice(len(counts), SAMPLES, replace=False)
            first_s, last_s, counts = first_s[keep], last_s[keep], counts[keep]
        order = np.argsort(first_s, kind="stable")
        bounded = tiled or born_and_gone((last_s - first_s) / span_s)
        return cls(first_s[order], np.maximum(last_s[order], first_s[order]), np.maximum(counts[order], 1),
                   float(span_s), bounded, tiled)

    def draw(self, seed: int, entities: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(birth, last event, count) of each entity number in ``entities``, in seconds from its
        window start; the same entity always gets the same."""
        entities = np.asarray(entities, dtype=np.int64)
        if self.tiled:
            pick = entities % len(self.count)
            return self.birth[pick], self.last[pick], self.count[pick]
        pick = rng.integers(seed, len(self.count), entities, _PICK)
        lo, hi = self._room
        u = rng.uniform(seed, entities, _MOVE)
        birth = np.clip(lo[pick] + u * (hi[pick] - lo[pick]), 0.0, self.span_s)
        life = self.last[pick] - self.birth[pick]
        return birth, np.minimum(birth + life, self.span_s), self.count[pick]

    @cached_property
    def _room(self) -> tuple[np.ndarray, np.ndarray]:
        """Where each birth may move: half-way to the births before and after it (not past the
        first or the last birth: a cohort's edge stays sharp), and at most MAX_MOVE_S."""
        b = self.birth
        if len(b) < 2:
            return b, b
        mid = (b[1:] + b[:-1]) / 2
        lo, hi = np.concatenate([[b[0]], mid]), np.concatenate([mid, [b[-1]]])
        return np.maximum(lo, b - MAX_MOVE_S), np.minimum(hi, b + MAX_MOVE_S)

    def to_json(self) -> dict[str, Any]:
        return {"birth": np.round(self.birth, 6).tolist(), "last": np.round(self.last, 6).tolist(),
                "count": self.count.tolist(), "span_s": self.span_s, "bounded": self.bounded, "tiled": self.tiled}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Lifecycles | None:
        if data is None:
            return None
        return cls(np.asarray(data["birth"], np.float64), np.asarray(data["last"], np.float64),
                   np.asarray(data["count"], np.int64), float(data["span_s"]), bool(data["bounded"]),
                   bool(data.get("tiled", False)))
