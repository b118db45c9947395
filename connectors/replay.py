"""The replay loop: read a stream, pace it, hand it to a sink, checkpoint what is acknowledged.

The source is read on a background thread into a small bounded queue, so a slow sink holds the
source back (flat memory) instead of events piling up. A stop event (set by SIGINT/SIGTERM in the
CLI) ends the loop between slices; the sink is then flushed and closed, and the final checkpoint
names exactly the events acknowledged. From the moment of the stop the sink's waits are cut off
after ``shutdown_timeout`` seconds: a broker that is down cannot hold the shutdown, and the events
it did not acknowledge are counted in the result (a resumed replay sends them again).

The loop also keeps account of where its time goes: waiting for the source (generation), in the
sink's ``write``/``poll`` (serialising and handing over) and in ``flush`` (waiting for the
endpoint's acknowledgements). When a ``--rate`` replay stays below its target for a whole
``rate_window``, it warns once with both rates and that breakdown, naming the bottleneck.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import polars as pl
from streamsynth.connectors.base import ShutdownTimeout, Sink
from streamsynth.connectors.metrics import ReplayMetrics
from streamsynth.connectors.pacing import Pacing, Schedule

from streamsynth.manifest import ManifestCounter

_END = object()
_TICK = 0.002  # send events due within this many seconds together (no per-event sleeping)
log = logging.getLogger(__name__)
#: where the loop's time goes, as named in the timings and the slow-rate warning
STAGES = {"source": "the source (generation)", "sink": "the sink (serialising, handing over)",
          "acks": "the endpoint (waiting for acknowledgements)"}


@dataclass
class ReplayResult:
    """What one replay run did: acknowledged events (this run and in total) and how it ended."""

    sent: int
    position: int
    seconds: float
    stopped: bool
    dead_lettered: int
    counter: ManifestCounter
    max_lag: float = 0.0
    send_seconds: float = 0.0  # from the first event handed to the sink to the last
    first_send_at: float = 0.0  # time.monotonic() when the first event was handed over
    #: events handed to the sink but never acknowledged (a stop cut the wait for them short)
    unacknowledged: int = 0
    target_rate: float | None = None
    timings: dict[str, float] = field(default_factory=dict)  # seconds per STAGES key
    warnings: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0

    @property
    def achieved_rate(self) -> float:
        """Events handed over per second while sending (what pacing achieved)."""
        handed = self.sent + self.unacknowledged
        if handed < 2 or self.send_seconds <= 0:
            return self.rate
        return (handed - 1) / self.send_seconds


class _Clock:
    """Seconds spent per stage, and the once-only warning of a rate that stays below target."""

    def __init__(self, sink: Sink, target: float | None, window: float, tolerance: float,
                 warn: Callable[[str], None]) -> None:
        self.sink, self._blocked = sink, sink.blocked
        self.spent = dict.fromkeys(STAGES, 0.0)
        self.target, self.window, self.tolerance = target, window, tolerance
        self.where, self.warn = sink.describe(), warn
        self.warnings: list[str] = []
        self._start: tuple[float, int, dict[str, float]] | None = None

    def add(self, stage: str, since: float) -> float:
        """Count the time since ``since`` to ``stage``; what the sink spent in it waiting for its
        endpoint to take more (``Sink.blocked`` grows only inside its calls) goes to the endpoint."""
        now = time.monotonic()
        blocked, self._blocked = self.sink.blocked - self._blocked, self.sink.blocked
        self.spent[stage] += now - since - blocked
        self.spent["acks"] += blocked
        return now

    def check(self, handed: int) -> None:
        """Called as events are handed over: compare each full window's rate with the target."""
        if self.target is None or self.warnings:
            return
        now = time.monotonic()
        if self._start is None:
            self._start = (now, handed, dict(self.spent))
            return
        began, handed_then, spent_then = self._start
        if now - began < self.window:
            return
        achieved = (handed - handed_then) / (now - began)
        self._start = (now, handed, dict(self.spent))
        if achieved >= self.target * (1 - self.tolerance):
            return
        spent = {k: self.spent[k] - spent_then[k] for k in STAGES}
        total = sum(spent.values()) or 1.0
        worst = max(spent, key=spent.get)
        shares = ", ".join(f"{STAGES[k]} {spent[k] / total:.0%}" for k in STAGES)
        message = (f"achieved {achieved:,.0f} events/s of the {self.target:,.0f} asked for over "
                   f"{now - began:.1f} s into {self.where}; time went to {shares}: "
                   f"{STAGES[worst]} is the bottleneck")
        self.warnings.append(message)
        self.warn(message)


@dataclass
class _Ledger:
    """Label counts of written events, moved into ``done`` when the sink acknowledges them.

    Sinks acknowledge everything written so far at once (``acked`` only ever jumps to
    ``written``), so one running counter of the unacknowledged events is enough: memory stays
    flat however long a file part stays open.
    """

    done: ManifestCounter
    time_column: str | None = None
    pending: ManifestCounter | None = None

    def add(self, part: pl.DataFrame) -> None:
        if self.pending is None:
            self.pending = ManifestCounter(time=self.time_column)
        self.pending.add(part)

    def settle(self, acked: int, written: int) -> None:
        if acked == written and self.pending is not None:
            merge_counters(self.done, self.pending)
            self.pending = None


def merge_counters(into: ManifestCounter, other: ManifestCounter) -> None:
    into.events += other.events
    into.anomalies += other.anomalies
    into.labels.update(other.labels)
    for attr, pick in (("first_time", min), ("last_time", max)):
        mine, theirs = getattr(into, attr), getattr(other, attr)
        if theirs is not None:
            setattr(into, attr, theirs if mine is None else pick(mine, theirs))


def _read(stream: Iterable[pl.DataFrame], skip: int, out: queue.Queue, stop: threading.Event) -> None:
    """Source thread: skip ``skip`` events, then queue batches until the end or a stop."""

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    iterator = iter(stream)
    try:
        for batch in iterator:
            if skip:
                if batch.height <= skip:
                    skip -= batch.height
                    continue
                batch, skip = batch.slice(skip), 0
            if batch.height and not put(batch):
                return
        put(_END)
    except BaseException as exc:  # handed to the main thread, which raises it
        put(exc)
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


@dataclass
class ReplayOptions:
    """How :func:`replay` runs: pacing and resuming, when to checkpoint, and who hears of it.

    ``on_checkpoint(position, counter)`` is called whenever the acknowledged position advances
    and at the end; ``position`` counts source events from the very start (``skip`` included),
    ``counter`` the labels of exactly those events (continuing ``counter`` when resuming).
    Once ``stop`` is set, the sink gets ``shutdown_timeout`` seconds to acknowledge what it
    holds; what it does not is left out of the position and counted in ``unacknowledged``.
    ``on_warning`` gets the slow-rate warning (``rate_window`` seconds more than
    ``rate_tolerance`` below ``pacing.rate``); by default it is logged.
    """

    time_column: str | None = None
    pacing: Pacing | None = None
    metrics: ReplayMetrics | None = None  # default: the sink's
    skip: int = 0  # source events already delivered (a resumed replay)
    counter: ManifestCounter | None = None  # their label counts, continued
    stop: threading.Event | None = None
    on_checkpoint: Callable[[int, ManifestCounter], None] | None = None
    on_progress: Callable[[int], None] | None = None
    flush_every: float = 1.0
    queue_size: int = 2
    shutdown_timeout: float = 30.0
    rate_window: float = 10.0
    rate_tolerance: float = 0.05
    on_warning: Callable[[str], None] | None = None


def replay(stream: Iterable[pl.DataFrame], sink: Sink, options: ReplayOptions | None = None,
           **values: Any) -> ReplayResult:
    """Deliver ``stream`` to ``sink`` (which it closes), as ``options`` say (or its fields given
    by name: ``replay(stream, sink, time_column="ts", pacing=Pacing(rate=100))``)."""
    return _Replay(stream, sink, replace(options or ReplayOptions(), **values)).run()


class _Replay:
    """One run of the loop: the source thread, pacing, the sink's writes, flushes and checkpoints."""

    def __init__(self, stream: Iterable[pl.DataFrame], sink: Sink, options: ReplayOptions) -> None:
        self.sink, self.options = sink, options
        self.pacing = options.pacing or Pacing()
        self.metrics = options.metrics or sink.metrics
        self.stop = options.stop or threading.Event()
        self.skip = options.skip
        self.clock = _Clock(sink, self.pacing.rate, options.rate_window, options.rate_tolerance,
                            options.on_warning or log.warning)
        self.schedule = Schedule(self.pacing, options.time_column)
        self.ledger = _Ledger(done=options.counter or ManifestCounter(time=options.time_column),
                              time_column=options.time_column)
        self.batches: queue.Queue = queue.Queue(maxsize=options.queue_size)
        self.reader_stop = threading.Event()
        self.reader = threading.Thread(target=_read, args=(stream, self.skip, self.batches, self.reader_stop),
                                       name="replay-source", daemon=True)
        self.finished = threading.Event()
        self.started = self.last_flush = time.monotonic()
        self.last_acked = -1
        self.max_lag = self.first_send = self.last_send = 0.0
        self.unacknowledged = 0

    def run(self) -> ReplayResult:
        sink = self.sink
        self.reader.start()
        threading.Thread(target=self._arm_cutoff, name="replay-cutoff", daemon=True).start()
        try:
            self._deliver_all()
            self.reader_stop.set()
            closing = time.monotonic()
            sink.close()
            self.clock.add("acks", closing)
        except BaseException as exc:
            self.reader_stop.set()
            # What was acknowledged before the failure stays checkpointed; the rest is resent later.
            sink.abort()
            if not (isinstance(exc, ShutdownTimeout) and self.stop.is_set()):
                self._checkpoint()
                raise
            # Stopping, and the endpoint did not answer in time: keep what it acknowledged, count the
            # rest (a resumed replay sends it again) and end like any other stop.
            self.unacknowledged = sink.written - sink.acked
        finally:
            self.finished.set()
            self.metrics.end_outage(ended=False)  # an outage still open when the run ends is logged too
        self._checkpoint()
        self.reader.join(timeout=5)
        return self._result()

    def _arm_cutoff(self) -> None:
        # A stop ends generation at once and bounds every wait of the sink from then on; this
        # runs beside the loop because the loop itself may be blocked in the sink when it comes.
        while not self.finished.is_set():
            if self.stop.wait(0.05):
                self.sink.cutoff = time.monotonic() + self.options.shutdown_timeout
                self.reader_stop.set()
                return

    def _checkpoint(self) -> None:
        sink = self.sink
        self.ledger.settle(sink.acked, sink.written)
        self.metrics.position.set(self.skip + sink.acked)
        if self.options.on_checkpoint is not None and sink.acked != self.last_acked:
            self.options.on_checkpoint(self.skip + sink.acked, self.ledger.done)
            self.last_acked = sink.acked

    def _deliver_all(self) -> None:
        """Take batches from the source thread until its end (or a stop) and deliver each."""
        sink, clock = self.sink, self.clock
        while not self.stop.is_set():
            waited = time.monotonic()
            try:
                item = self.batches.get(timeout=0.05)
            except queue.Empty:
                waited = clock.add("source", waited)
                sink.poll()
                clock.add("sink", waited)
                self.ledger.settle(sink.acked, sink.written)
                clock.check(sink.written)
                continue
            clock.add("source", waited)
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            self._deliver(item)

    def _deliver(self, batch: pl.DataFrame) -> None:
        """Hand ``batch`` to the sink in slices as they fall due, flushing and checkpointing on time."""
        sink, clock, ledger, stop = self.sink, self.clock, self.ledger, self.stop
        due = self.schedule.due(batch)
        i, n = 0, batch.height
        while i < n and not stop.is_set():
            if due is None:
                j = n
            else:
                now = time.monotonic()
                j = int(np.searchsorted(due, now + _TICK, side="right"))
                if j <= i:
                    sink.poll()
                    clock.add("sink", now)
                    ledger.settle(sink.acked, sink.written)
                    stop.wait(min(due[i] - now, 0.05))
                    continue
                lag = max(now - due[i], 0.0)
                self.max_lag = max(self.max_lag, lag)
                self.metrics.schedule_lag.set(lag)
            part = batch.slice(i, j - i) if (i or j < n) else batch
            handing = time.monotonic()
            sink.write(part)
            self.last_send = clock.add("sink", handing)
            self.first_send = self.first_send or self.last_send
            # Settle at once: a sink acknowledges only at the end of a write, poll or flush.
            ledger.add(part)
            ledger.settle(sink.acked, sink.written)
            i = j
            if self.options.on_progress is not None:
                self.options.on_progress(self.skip + sink.written)
            clock.check(sink.written)
            if time.monotonic() - self.last_flush >= self.options.flush_every:
                flushing = time.monotonic()
                sink.flush()
                self.last_flush = clock.add("acks", flushing)
                self._checkpoint()

    def _result(self) -> ReplayResult:
        sink = self.sink
        return ReplayResult(
            sent=sink.acked,
            position=self.skip + sink.acked,
            seconds=time.monotonic() - self.started,
            stopped=self.stop.is_set(),
            dead_lettered=sink.dead_lettered,
            counter=self.ledger.done,
            max_lag=self.max_lag,
            send_seconds=self.last_send - self.first_send,
            first_send_at=self.first_send,
            unacknowledged=self.unacknowledged,
            target_rate=self.pacing.rate,
            timings={k: round(v, 3) for k, v in self.clock.spent.items()},
            warnings=self.clock.warnings,
        )
