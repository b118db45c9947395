"""A seeded simulator of an airline schedule: columns that depend on each other, and tail numbers.

Each aircraft (``tail_number``, the entity: ``N`` and digits and letters as US registrations
are) flies legs from airport to airport. Distance is fixed by the route (origin and destination,
rounded to whole miles), air time follows distance (cruise speed plus climb and descent, with
wind noise), taxi times depend on the origin, departures fall between 06:00 and 22:00, and
the carrier is the aircraft's own. A test fixture and a demonstration of what a schedule asks
of a model: a pair of columns fixing a third, a numeric column following another, and an
identifier with a shape.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl

from streamsynth.errors import StreamsynthError

CARRIERS = ("AA", "DL", "UA", "WN", "B6", "AS")
_FIRST_DEPARTURE_H, _LAST_DEPARTURE_H = 6.0, 22.0
_TURNAROUND_MIN = 35.0  # on the ground between two legs, at least


def _airports(rng: np.random.Generator, n: int) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Three-letter codes, positions in miles on a 2,400 x 1,200 plane, and mean taxi-out minutes."""
    letters = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ"))
    codes: set[str] = set()
    while len(codes) < n:
        codes.add("".join(rng.choice(letters, 3)))
    where = rng.uniform([0, 0], [2400, 1200], size=(n, 2))
    taxi = rng.uniform(8, 25, size=n)
    return sorted(codes), where, taxi


def _tails(rng: np.random.Generator, n: int) -> list[str]:
    out: set[str] = set()
    letters = "ABCDEFGHJKLMNPRSTUVWXYZ"
    while len(out) < n:
        digits = str(rng.integers(1, 9999))
        tail = "".join(rng.choice(list(letters), int(rng.integers(0, 3))))
        out.add(f"N{digits}{tail}"[:6])
    return sorted(out)


def flights(n_aircraft: int = 200, days: int = 14, n_airports: int = 40, seed: int = 0,
            start: datetime = datetime(2024, 3, 4, tzinfo=UTC)) -> pl.DataFrame:
    """About five legs per aircraft a day: ``tail_number, dep_time, carrier, origin, dest,
    distance, taxi_out, air_time, arr_delay``."""
    for name, value, least in (("n_aircraft", n_aircraft, 1), ("days", days, 1), ("n_airports", n_airports, 2)):
        if not isinstance(value, int) or value < least:
            raise StreamsynthError(f"{name}={value!r}", hint=f"give a whole number of at least {least}")
    rng = np.random.default_rng(seed)
    codes, where, taxi = _airports(rng, n_airports)
    # hubs: a few airports see most traffic
    weight = rng.pareto(1.2, size=n_airports) + 0.2
    weight /= weight.sum()
    rows: list[tuple] = []
    for tail in _tails(rng, n_aircraft):
        carrier = CARRIERS[int(rng.integers(len(CARRIERS)))]
        speed = rng.uniform(7.2, 8.4)  # miles a minute in cruise, by aircraft type
        at = int(rng.choice(n_airports, p=weight))
        for day in range(days):
            clock = _FIRST_DEPARTURE_H * 60 + rng.exponential(60)
            while clock < _LAST_DEPARTURE_H * 60:
                dest = int(rng.choice(n_airports, p=weight))
                if dest == at:
                    continue
                distance = int(round(float(np.hypot(*(where[dest] - where[at])))))
                taxi_out = max(3.0, rng.normal(taxi[at], 4.0))
                air = distance / speed + 18 + rng.normal(0, 0.03 * distance / speed + 2)
                delay = rng.exponential(12) - 8
                departs = start + timedelta(days=day, minutes=float(clock))
                rows.append((tail, departs, carrier, codes[at], codes[dest], distance, round(taxi_out),
                             round(air), round(delay)))
                clock += taxi_out + air + _TURNAROUND_MIN + rng.exponential(40)
                at = dest
    frame = pl.DataFrame(rows, schema=["tail_number", "dep_time", "carrier", "origin", "dest", "distance",
                                       "taxi_out", "air_time", "arr_delay"], orient="row")
    return frame.with_columns(pl.col("dep_time").dt.cast_time_unit("us")).sort("dep_time", "tail_number")
