"""What came back, per label: latency histograms, status codes, error classes, bytes, and a
per-second series of target, sent, completed and dropped requests.

Latency goes into HDR histograms (the ``hdrh`` package, the HdrHistogram of wrk2 and Gatling):
microsecond resolution from 1 us to an hour at three significant digits, in fixed memory, and
mergeable, so the overall figures are the sum of the per-label ones (and, with ``--workers``, the
parent's are the sum of the workers': :meth:`Measurements.snapshot` in each, :meth:`Measurements.apply`
and :meth:`Measurements.add` in the parent, the histograms crossing the pipe in the library's own
encoding). Two per label: from the
scheduled send time (what a user arriving on schedule waits, queueing in the load generator
included: no coordinated omission) and from the actual send time (what the service took).

A request's two latencies are buffered (a list append) and folded into the histograms in bulk
(:mod:`.fold`, numpy) whenever a histogram is read: the library records in pure Python, a
microsecond or more a value.

Everything here runs on the event loop's thread, so nothing needs a lock; the live status line and
the thresholds read it from the same thread.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from hdrh.histogram import HdrHistogram
from streamsynth.connectors.loadtest.fold import HIGHEST_US as _HIGHEST_US
from streamsynth.connectors.loadtest.fold import LOWEST_US as _LOWEST_US
from streamsynth.connectors.loadtest.fold import fold as fold_into
from streamsynth.connectors.loadtest.fold import new_histogram
from streamsynth.connectors.loadtest.prometheus import LoadMetrics

#: the error classes a failed request falls into
ERROR_CLASSES = ("timeout", "refused", "reset", "other")
PERCENTILES = (50.0, 90.0, 95.0, 99.0, 99.9)
#: latencies buffered per label before a fold is forced (~0.5 MB of list), so a run whose
#: figures nobody reads (no status line) still holds bounded memory
_FOLD_AT = 65_536


def values_at(histogram: HdrHistogram, percentiles: tuple[float, ...]) -> list[int]:
    """The histogram's values at ``percentiles``, as its own ``get_value_at_percentile`` gives
    them, from one cumulative sum over its counts: the library walks its buckets in Python, a
    few milliseconds a percentile, which the once-a-second status line cannot afford."""
    cumulative = np.cumsum(np.ctypeslib.as_array(histogram.counts))
    out = []
    for p in percentiles:
        index = int(np.searchsorted(cumulative, histogram.get_target_count_at_percentile(p)))
        value = histogram.get_value_from_index(min(index, histogram.counts_len - 1))
        out.append(histogram.get_highest_equivalent_value(value) if p else histogram.get_lowest_equivalent_value(value))
    return out


def latency_summary(histogram: HdrHistogram) -> dict[str, float | None]:
    """p50 ... p99.9 and max in milliseconds (None without samples)."""
    if histogram.get_total_count() == 0:
        return {**{_pname(p): None for p in PERCENTILES}, "max": None}
    values = values_at(histogram, PERCENTILES)
    out: dict[str, float | None] = {_pname(p): v / 1000 for p, v in zip(PERCENTILES, values, strict=True)}
    out["max"] = histogram.get_max_value() / 1000
    return out


def _pname(p: float) -> str:
    return f"p{p:g}"


@dataclass
class LabelStats:
    """The measurements of the requests of one label.

    Latencies arrive in ``pending_scheduled`` and ``pending_sent`` (a list append per request) and
    reach the HDR histograms in bulk (:func:`.fold.fold`) whenever ``from_scheduled`` or
    ``from_sent`` is read, so every reader (status line, thresholds, summary, report, the workers'
    snapshots, merges) sees every latency recorded so far.
    """

    scheduled: int = 0
    sent: int = 0
    dropped: int = 0
    answered: int = 0  # a response arrived, whatever its status
    statuses: Counter[int] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    bytes_sent: int = 0
    bytes_received: int = 0
    hdr_scheduled: HdrHistogram = field(default_factory=new_histogram, repr=False)
    hdr_sent: HdrHistogram = field(default_factory=new_histogram, repr=False)
    pending_scheduled: list[float] = field(default_factory=list, repr=False)  # seconds, not yet folded
    pending_sent: list[float] = field(default_factory=list, repr=False)

    @property
    def from_scheduled(self) -> HdrHistogram:
        """Latency from the scheduled send time, every latency recorded so far folded in."""
        self.fold()
        return self.hdr_scheduled

    @property
    def from_sent(self) -> HdrHistogram:
        """Latency from the actual send time, every latency recorded so far folded in."""
        self.fold()
        return self.hdr_sent

    def record(self, from_scheduled: float, from_sent: float) -> None:
        """Buffer one answer's two latencies (seconds); folded in when read, or when many wait."""
        self.pending_scheduled.append(from_scheduled)
        self.pending_sent.append(from_sent)
        if len(self.pending_sent) >= _FOLD_AT:
            self.fold()

    def fold(self) -> None:
        """Move the buffered latencies into the histograms."""
        fold_into(self.hdr_scheduled, self.pending_scheduled)
        fold_into(self.hdr_sent, self.pending_sent)

    @property
    def failed(self) -> int:
        """Requests counted as errors: no response (timeout, refused, reset, other) or a 5xx."""
        return sum(self.errors.values()) + sum(n for s, n in self.statuses.items() if s >= 500)

    def add(self, other: LabelStats) -> None:
        # this one's own buffer may stay: it holds latencies of this one, folded on reading
        self.hdr_scheduled.add(other.from_scheduled)
        self.hdr_sent.add(other.from_sent)
        for name in ("scheduled", "sent", "dropped", "answered", "bytes_sent", "bytes_received"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.statuses.update(other.statuses)
        self.errors.update(other.errors)

    def encode(self) -> dict[str, object]:
        """The stats in a picklable form (HdrHistogram is a ctypes structure): the histograms, the
        buffers folded in, in the library's compressed encoding, which :meth:`decode` reads back exactly."""
        self.fold()
        return {name: (value.encode() if isinstance(value, HdrHistogram) else value)
                for name, value in vars(self).items() if not name.startswith("pending_")}

    @classmethod
    def decode(cls, encoded: dict[str, object]) -> LabelStats:
        return cls(**{name: (HdrHistogram.decode(value) if isinstance(value, bytes) else value)
                      for name, value in encoded.items()})


#: per-second latency buckets grow by 1% (log scale), so a per-second percentile is within 1%
_BUCKET_GROWTH = math.log(1.01)


def _bucket(seconds: float) -> int:
    """The per-second latency bucket of a latency."""
    return int(math.log(min(max(seconds * 1e6, _LOWEST_US), _HIGHEST_US)) / _BUCKET_GROWTH)


@dataclass
class Second:
    """One second of the run (by the scheduled time for target and dropped, by the clock for the rest).

    ``latency`` holds the from-scheduled latencies of the requests answered in this second, as
    counts per 1%-wide log bucket: a sparse Counter, so a second costs memory for the few dozen
    buckets its latencies actually fall in (a full HDR histogram per second would cost ~100 KB each,
    too much for an hour-long run), and recording is one log and one dict update.
    """

    target: int = 0
    sent: int = 0
    completed: int = 0
    dropped: int = 0
    failed: int = 0
    latency: Counter[int] = field(default_factory=Counter)

    def record_latency(self, seconds: float) -> None:
        self.latency[_bucket(seconds)] += 1

    def add(self, other: Second) -> None:
        for name in ("target", "sent", "completed", "dropped", "failed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.latency.update(other.latency)

    def latency_ms(self, percentile: float) -> float | None:
        """The from-scheduled latency at ``percentile`` (0-100) of this second's answers, in
        milliseconds (the upper edge of its bucket), or None when nothing was answered."""
        total = sum(self.latency.values())
        if total == 0:
            return None
        rank = max(math.ceil(percentile / 100 * total), 1)  # nearest-rank, as HdrHistogram does
        seen = 0
        for bucket in sorted(self.latency):
            seen += self.latency[bucket]
            if seen >= rank:
                return math.exp((bucket + 1) * _BUCKET_GROWTH) / 1000
        raise AssertionError("unreachable: rank <= total")


class Measurements:
    """Per-label statistics and the per-second series of one run."""

    def __init__(self, target_per_second: list[int], metrics: LoadMetrics | None = None) -> None:
        self.metrics = metrics  # Prometheus, fed the same events when --metrics-port is given
        self.labels: dict[str, LabelStats] = {}
        self.seconds = [Second(target=n) for n in target_per_second]
        self.unfinished = 0  # in flight when the run was stopped
        self._changed_from = 0  # seconds[_changed_from:] changed since the last snapshot

    # Every request passes through ``scheduled``, ``sent`` and ``answered``: each looks its label
    # and its second up inline first (``labels.get``; an index already in the series and not below
    # ``_changed_from``), the methods below only when that misses; the same result, some hundreds
    # of nanoseconds of calls a request less.
    def _label(self, label: str) -> LabelStats:
        stats = self.labels.get(label)
        if stats is None:
            stats = self.labels[label] = LabelStats()
        return stats

    def _second(self, offset: float) -> Second:
        index = int(offset)
        if self._changed_from <= index < len(self.seconds):
            return self.seconds[index]
        index = max(index, 0)
        while index >= len(self.seconds):  # completions after the schedule's end (draining)
            self.seconds.append(Second())
        if index < self._changed_from:
            self._changed_from = index
        return self.seconds[index]

    def scheduled(self, label: str) -> None:
        (self.labels.get(label) or self._label(label)).scheduled += 1

    def dropped(self, label: str, scheduled_offset: float) -> None:
        self._label(label).dropped += 1
        self._second(scheduled_offset).dropped += 1
        if self.metrics is not None:
            self.metrics.drop(label)

    def sent(self, label: str, offset: float, size: int) -> None:
        stats = self.labels.get(label) or self._label(label)
        stats.sent += 1
        stats.bytes_sent += size
        self._second(offset).sent += 1

    def answered(self, label: str, status: int, from_scheduled: float, from_sent: float,
                 offset: float, size: int) -> None:
        stats = self.labels.get(label) or self._label(label)
        stats.answered += 1
        stats.statuses[status] += 1
        stats.bytes_received += size
        stats.record(from_scheduled, from_sent)
        second = self._second(offset)
        second.completed += 1
        second.latency[_bucket(from_scheduled)] += 1
        if status >= 500:
            second.failed += 1
        if self.metrics is not None:
            self.metrics.answered(label, status, from_scheduled, from_sent)

    def failed(self, label: str, error: str, offset: float) -> None:
        self._label(label).errors[error] += 1
        second = self._second(offset)
        second.completed += 1
        second.failed += 1
        if self.metrics is not None:
            self.metrics.failed(label, error)

    def snapshot(self) -> Snapshot:
        """The measurements so far, for the parent of ``--workers`` (:meth:`apply`): the labels
        whole (a few kilobytes), the seconds only from the first one changed since the previous
        snapshot, so an hour-long run does not send its whole series every second."""
        changed, self._changed_from = self._changed_from, len(self.seconds)
        return Snapshot({label: stats.encode() for label, stats in self.labels.items()},
                        changed, self.seconds[changed:], self.unfinished)

    def apply(self, snapshot: Snapshot) -> None:
        """Bring this copy of one worker's measurements up to its ``snapshot``."""
        self.labels = {label: LabelStats.decode(encoded) for label, encoded in snapshot.labels.items()}
        del self.seconds[snapshot.first_second:]
        self.seconds.extend(snapshot.seconds)
        self.unfinished = snapshot.unfinished

    def add(self, other: Measurements) -> None:
        """Add another run's measurements to these (the workers' shares into one run): counts
        and histograms per label, and second by second the series."""
        for label, stats in other.labels.items():
            self._label(label).add(stats)
        for index, second in enumerate(other.seconds):
            self._second(index).add(second)
        self.unfinished += other.unfinished

    def total(self) -> LabelStats:
        """All labels together."""
        out = LabelStats()
        for stats in self.labels.values():
            out.add(stats)
        return out


@dataclass
class Snapshot:
    """What :meth:`Measurements.snapshot` sends (picklable): every label's stats encoded, and the
    per-second series from ``first_second`` on."""

    labels: dict[str, dict[str, object]]
    first_second: int
    seconds: list[Second]
    unfinished: int
