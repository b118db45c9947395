"""When each request leaves: a constant rate or k6-style ramping stages, as exact arrival times.

A stage ``30s:100`` ramps the arrival rate linearly from the previous stage's target (0 before the
first stage) to 100 requests/s over 30 seconds, as k6's ramping-arrival-rate executor does. The
number of arrivals up to time t is the integral of the rate, N(t); arrival k (k = 0, 1, ...) is
scheduled at the t where N(t) = k. So a constant 100/s for 3 s gives exactly 300 arrivals, 100 in
each second, at 0, 10 ms, 20 ms ... -- evenly spaced, not Poisson: a load test wants the rate
it states, and an even spacing makes "achieved vs target per second" exact to compare.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from streamsynth.errors import StreamsynthError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "": 1.0}
_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|)\s*")


def parse_duration(text: str, option: str) -> float:
    """Seconds from ``250ms``, ``30s``, ``5m``, ``1h`` or a bare number of seconds."""
    match = _DURATION.fullmatch(text)
    if not match:
        raise StreamsynthError(f"{option} {text!r} is not a duration",
                               hint=f"write {option} like 30s, 5m, 1h or 250ms")
    return float(match.group(1)) * _UNITS[match.group(2)]


@dataclass(frozen=True)
class Segment:
    """A stretch of ``seconds`` over which the rate goes linearly from ``start_rate`` to ``end_rate``."""

    seconds: float
    start_rate: float
    end_rate: float

    @property
    def arrivals(self) -> float:
        """The integral of the rate over the segment: how many arrivals it holds (fractional)."""
        return (self.start_rate + self.end_rate) / 2 * self.seconds


def parse_stages(text: str) -> list[Segment]:
    """``30s:100,2m:2000,30s:0`` -> segments ramping from the previous target (0 at first)."""
    segments: list[Segment] = []
    previous = 0.0
    for part in text.split(","):
        duration, sep, target = part.strip().partition(":")
        if not sep:
            raise StreamsynthError(f"--stages part {part.strip()!r} has no ':'",
                                   hint="write --stages DURATION:RATE,..., e.g. 30s:100,2m:2000,30s:0")
        seconds = parse_duration(duration, "--stages")
        try:
            rate = float(target)
        except ValueError:
            rate = -1.0
        if not math.isfinite(rate) or rate < 0:
            raise StreamsynthError(f"--stages target {target.strip()!r} is not a rate",
                                   hint="each stage ends at a number of requests per second >= 0, e.g. 30s:100")
        if seconds <= 0:
            raise StreamsynthError(f"--stages stage {part.strip()!r} lasts no time",
                                   hint="give every stage a duration above 0, e.g. 30s:100")
        segments.append(Segment(seconds, previous, rate))
        previous = rate
    return segments


def constant(rate: float, seconds: float) -> list[Segment]:
    """A constant ``rate`` for ``seconds`` (``--rate`` with ``--duration``)."""
    if not math.isfinite(rate) or rate <= 0:
        raise StreamsynthError(f"--rate {rate:g} is not a rate", hint="give --rate above 0 requests per second")
    if seconds <= 0:
        raise StreamsynthError("--duration is 0", hint="give --duration above 0, e.g. 30s")
    return [Segment(seconds, rate, rate)]


def from_options(rate: float | None, duration: str | None, stages: str | None) -> list[Segment]:
    """The schedule the command line asks for: ``--stages``, or ``--rate`` with ``--duration``."""
    if stages is not None:
        if rate is not None or duration is not None:
            raise StreamsynthError("--stages and --rate/--duration both given",
                                   hint="give either --stages or --rate with --duration")
        return parse_stages(stages)
    if rate is None or duration is None:
        raise StreamsynthError(f"{'--duration' if duration is None else '--rate'} is missing",
                               hint="give --rate N with --duration, e.g. --rate 100 --duration 30s, or --stages")
    return constant(rate, parse_duration(duration, "--duration"))


def total_seconds(segments: list[Segment]) -> float:
    return sum(s.seconds for s in segments)


def arrival_times(segments: list[Segment]) -> Iterator[float]:
    """The offset in seconds from the start of every arrival, in order.

    Within a segment starting at arrival count K0, arrival k solves a t^2 + b t = m with
    m = k - K0, b = start rate and a = slope / 2. The root is written 2m / (b + sqrt(b^2 + 4am)),
    which stays exact for a flat segment (a = 0) and a ramp down (a < 0), where the textbook
    formula divides by a or cancels badly. A flat segment's root is m / b, the same float: b + b
    and 2m are exact doublings and sqrt(b * b) is b, so the loop skips the square root there.
    """
    offset = 0.0
    done = 0.0  # arrivals before this segment (fractional: a segment may end between two)
    k = 0
    for seg in segments:
        end = done + seg.arrivals
        a = (seg.end_rate - seg.start_rate) / (2 * seg.seconds)
        b = seg.start_rate
        last = end - 1e-9  # the tolerance keeps float error from adding one arrival at a boundary
        if a == 0 and b > 0:
            while k < last:
                yield offset + min((k - done) / b, seg.seconds)
                k += 1
        while k < last:
            m = k - done
            root = math.sqrt(max(b * b + 4 * a * m, 0.0))
            t = 0.0 if m == 0 else 2 * m / (b + root)
            yield offset + min(t, seg.seconds)
            k += 1
        done = end
        offset += seg.seconds


def target_per_second(segments: list[Segment], times: Iterable[float] | None = None) -> list[int]:
    """How many arrivals the schedule puts in each whole second of the run (of ``times``, some
    of its arrivals, when given: a worker's share)."""
    counts = [0] * math.ceil(total_seconds(segments) - 1e-9)
    for t in arrival_times(segments) if times is None else times:
        counts[min(int(t), len(counts) - 1)] += 1
    return counts
