"""When sessions start: Poisson with hour-of-day and day-of-week profiles, or a regular clock.

Sessions are drawn one UTC hour at a time. Each draw is keyed by (seed, entity, hour, index)
through :mod:`streamsynth.rng`, so an entity's sessions are the same whichever shard or batch
size generates them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamsynth import rng
from streamsynth.rules import distributions as D
from streamsynth.rules.plan import Plan

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)


@dataclass
class Sessions:
    """One hour's sessions, sorted by start time (ties by entity, then index)."""

    entity: np.ndarray  # uint64 entity numbers
    index: np.ndarray  # int64 position of the entity in the shard's entity table
    start: np.ndarray  # int64 microseconds since the epoch, UTC
    key: np.ndarray  # uint64, a unique-per-session key for every later draw
    burst: np.ndarray  # bool

    def __len__(self) -> int:
        return int(self.start.shape[0])

    @staticmethod
    def concat(parts: list[Sessions]) -> Sessions:
        """Consecutive hours, each sorted, stay sorted when concatenated."""
        if len(parts) == 1:
            return parts[0]
        return Sessions(*(np.concatenate([getattr(p, f) for p in parts]) for f in _FIELDS))

    def take(self, sel: np.ndarray | slice) -> Sessions:
        return Sessions(
            self.entity[sel], self.index[sel], self.start[sel], self.key[sel], self.burst[sel]
        )


_FIELDS = ("entity", "index", "start", "key", "burst")


def profile_weight(plan: Plan, t_us: np.ndarray) -> np.ndarray:
    """The arrival profile (hour-of-day x day-of-week, mean 1) at each time."""
    hour = (t_us // HOUR_US) % 24
    weekday = (t_us // DAY_US + _EPOCH_WEEKDAY) % 7
    return plan.hour_profile[hour] * plan.day_profile[weekday]


def hour_sessions(
    plan: Plan,
    seed: int,
    hour: int,
    entities: np.ndarray,
    rate_multiplier: np.ndarray | None,
    not_before: int,
) -> Sessions:
    """Sessions of ``entities`` starting in UTC hour number ``hour`` (hours since the epoch)."""
    arrival = plan.spec.arrival
    h0 = hour * HOUR_US
    if arrival.process == "poisson":
        weight = profile_weight(plan, np.array([h0]))[0]
        mean = arrival.sessions_per_day / 24.0 * weight
        lam = mean * rate_multiplier if rate_multiplier is not None else np.full(entities.shape, mean)
        counts = D.poisson(rng.uniform(rng.child_seed(seed, "arrival", "count"), entities, hour), lam)
        idx = np.repeat(np.arange(entities.shape[0]), counts)
        first = np.cumsum(counts) - counts
        j = np.arange(idx.shape[0]) - np.repeat(first, counts)
        ent = entities[idx]
        offset = rng.uniform(rng.child_seed(seed, "arrival", "start"), ent, hour, j) * HOUR_US
        start = h0 + offset.astype(np.int64)
        key = rng.hash64(rng.child_seed(seed, "arrival", "session"), ent, hour, j)
    else:
        interval = int(round(arrival.interval * 1e6))
        jitter = int(round(arrival.jitter * 1e6))
        phase = (rng.uniform(rng.child_seed(seed, "arrival", "phase"), entities) * interval).astype(
            np.int64
        )
        # Ticks whose jittered time may land in this hour: one spare on each side.
        lo = -((phase - h0) // interval) - 1
        hi = -((phase - h0 - HOUR_US) // interval) + 1
        counts = (hi - lo).astype(np.int64)
        idx = np.repeat(np.arange(entities.shape[0]), counts)
        first = np.cumsum(counts) - counts
        tick = lo[idx] + np.arange(idx.shape[0]) - np.repeat(first, counts)
        ent = entities[idx]
        start = phase[idx] + tick * interval
        if jitter:
            u = rng.uniform(rng.child_seed(seed, "arrival", "jitter"), ent, tick.astype(np.uint64))
            start = start + ((2 * u - 1) * jitter).astype(np.int64)
        keep = (start >= h0) & (start < h0 + HOUR_US)
        idx, ent, start, tick = idx[keep], ent[keep], start[keep], tick[keep]
        key = rng.hash64(rng.child_seed(seed, "arrival", "tick"), ent, tick.astype(np.uint64))
    keep = start >= not_before
    if not keep.all():
        idx, ent, start, key = idx[keep], ent[keep], start[keep], key[keep]
    bursts = arrival.bursts
    if bursts is not None and bursts.probability > 0:
        burst = rng.uniform(rng.child_seed(seed, "arrival", "burst"), key) < bursts.probability
    else:
        burst = np.zeros(start.shape, dtype=bool)
    order = np.lexsort((key, ent, start))
    return Sessions(ent[order], idx[order], start[order], key[order], burst[order])
