"""The replay loop: read a stream, pace it, hand it to a sink, checkpoint what is acknowledged.

The source is read on a background thread into a small bounded queue, so a slow sink holds the
source back (flat memory) instead of events piling up. A stop event (set by SIGINT/SIGTERM in the
CLI) ends the loop between slices; the sink is then flushed and closed, and the final checkpoint
names exactly the events acknowledged.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import polars as pl

from connectors.base import Sink
from connectors.metrics import ReplayMetrics
from connectors.pacing import Pacing, Schedule
from streamsynth.manifest import ManifestCounter

_END = object()
_TICK = 0.002  # send events due within this many seconds together (no per-event sleeping)


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


    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


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


def replay(
    stream: Iterable[pl.DataFrame],
    sink: Sink,
    *,
    time_column: str | None = None,
    pacing: Pacing | None = None,
    metrics: ReplayMetrics | None = None,
    skip: int = 0,
    counter: ManifestCounter | None = None,
    stop: threading.Event | None = None,
    on_checkpoint: Callable[[int, ManifestCounter], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    flush_every: float = 1.0,
    queue_size: int = 2,
) -> ReplayResult:
    """Deliver ``stream`` to ``sink`` (which it closes), starting after ``skip`` events.

    ``on_checkpoint(position, counter)`` is called whenever the acknowledged position advances
    and at the end; ``position`` counts source events from the very start (``skip`` included),
    ``counter`` the labels of exactly those events (continuing ``counter`` when resuming).
    """
    pacing = pacing or Pacing()
    metrics = metrics or sink.metrics
    stop = stop or threading.Event()
    schedule = Schedule(pacing, time_column)
    ledger = _Ledger(done=counter or ManifestCounter(time=time_column), time_column=time_column)
    batches: queue.Queue = queue.Queue(maxsize=queue_size)
    reader_stop = threading.Event()
    reader = threading.Thread(target=_read, args=(stream, skip, batches, reader_stop),
                              name="replay-source", daemon=True)
    started = time.monotonic()
    last_flush = started
    last_acked = -1
    max_lag = 0.0
    first_send = last_send = 0.0

    def checkpoint() -> None:
        nonlocal last_acked
        ledger.settle(sink.acked, sink.written)
        metrics.position.set(skip + sink.acked)
        if on_checkpoint is not None and sink.acked != last_acked:
            on_checkpoint(skip + sink.acked, ledger.done)
            last_acked = sink.acked

    reader.start()
    try:
        while not stop.is_set():
            try:
                item = batches.get(timeout=0.05)
            except queue.Empty:
                sink.poll()
                ledger.settle(sink.acked, sink.written)
                continue
            if item is _END:
                break
            if isinstance(item, BaseException):
                raise item
            batch: pl.DataFrame = item
            due = schedule.due(batch)
            i, n = 0, batch.height
            while i < n and not stop.is_set():
                if due is None:
                    j = n
                else:
                    now = time.monotonic()
                    j = int(np.searchsorted(due, now + _TICK, side="right"))
                    if j <= i:
                        sink.poll()
                        ledger.settle(sink.acked, sink.written)
                        stop.wait(min(due[i] - now, 0.05))
                        continue
                    lag = max(now - due[i], 0.0)
                    max_lag = max(max_lag, lag)
                    metrics.schedule_lag.set(lag)
                part = batch.slice(i, j - i) if (i or j < n) else batch
                sink.write(part)
                last_send = time.monotonic()
                first_send = first_send or last_send
                # Settle at once: a sink acknowledges only at the end of a write, poll or flush.
                ledger.add(part)
                ledger.settle(sink.acked, sink.written)
                i = j
                if on_progress is not None:
                    on_progress(skip + sink.written)
                if time.monotonic() - last_flush >= flush_every:
                    sink.flush()
                    checkpoint()
                    last_flush = time.monotonic()
        reader_stop.set()
        sink.close()
    except BaseException:
        reader_stop.set()
        # What was acknowledged before the failure stays checkpointed; the rest is resent later.
        sink.abort()
        checkpoint()
        raise
    checkpoint()
    reader.join(timeout=5)
    return ReplayResult(
        sent=sink.acked,
        position=skip + sink.acked,
        seconds=time.monotonic() - started,
        stopped=stop.is_set(),
        dead_lettered=sink.dead_lettered,
        counter=ledger.done,
        max_lag=max_lag,
        send_seconds=last_send - first_send,
        first_send_at=first_send,
    )
