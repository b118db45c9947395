"""The open-loop runner: requests leave at their scheduled times whatever the service does.

The client is :mod:`.client`: each request rendered to its bytes on the feeder thread, written to
a keep-alive connection, the response parsed by httptools. (aiohttp, the client before it, cost
three times the CPU a request, which capped one process near 2,500 requests a second.)

Three parts, none waiting on another's slow path: a feeder thread pulls the source's polars
batches and renders them into requests, handing chunks over a bounded queue; the scheduler
coroutine sleeps until each arrival's time and starts its request as a task, never awaiting a
response, so a slow service cannot slow the arrivals (the coordinated omission of closed-loop
tools); when ``--max-in-flight`` requests are already out, an arrival is dropped and counted, as
k6 counts ``dropped_iterations``, rather than sent late. A status task prints one line a second
and, with ``--abort-on-fail``, checks the thresholds.

Ctrl-C or SIGTERM stops the schedule, gives the requests in flight a short grace and still
returns every figure; a second one stops at once.

With ``--workers`` each worker process runs one of these on its :class:`.Share` of the schedule,
with a :class:`Link` to the parent (:mod:`.workers`) in place of the signals, the clock's start
and the status line: the parent owns those for the whole run.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import itertools
import queue
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

import polars as pl
from streamsynth.connectors.loadtest import eventloop
from streamsynth.connectors.loadtest.client import ConnectionPool, Framer
from streamsynth.connectors.loadtest.expect import Confusion, Expectation
from streamsynth.connectors.loadtest.measure import Measurements
from streamsynth.connectors.loadtest.prometheus import LoadMetrics
from streamsynth.connectors.loadtest.requests import Request, RequestTemplate
from streamsynth.connectors.loadtest.schedule import Segment, target_per_second
from streamsynth.connectors.loadtest.share import Share
from streamsynth.connectors.loadtest.summary import figures, status_line
from streamsynth.connectors.loadtest.thresholds import Threshold, crossed

from streamsynth.errors import StreamsynthError

_CHUNK = 512  # requests per hand-over from the feeder: few queue operations, little latency
_QUEUED_CHUNKS = 8  # bounded, so an endless source stays a few thousand requests ahead
_INTERRUPT_GRACE = 2.0  # seconds the requests in flight get after Ctrl-C
_CONNECT_CHECK = 5.0  # seconds to reach the service before the clock starts
_BODYLESS = ("GET", "DELETE")
_WARM_CONNECTIONS = 4  # opened before the clock starts; more open as requests need them
#: the shortest sleep of the schedule under uvloop, seconds: its timers are whole milliseconds, and
#: a shorter delay rounds to none (a busy wait). asyncio's selector already waits whole
#: milliseconds, rounded up, and its timers never fire early: there a sleep is the delay itself
#: (a tick on top of it could wake just before the timer's time and wait a second millisecond).
_TICK = {"uvloop": 0.001, "asyncio": 0.0}
#: every time a run measures: asyncio's loop.time() is this clock, uvloop's is libuv's in whole
#: milliseconds, and the workers of --workers share this one (CLOCK_MONOTONIC) with their parent
_now = time.monotonic


@dataclass
class LoadSettings:
    """What one ``streamsynth load`` run does."""

    segments: list[Segment]
    template: RequestTemplate
    max_in_flight: int = 1000
    timeout: float = 10.0
    expect: Expectation | None = None
    thresholds: list[Threshold] = field(default_factory=list)
    abort_on_fail: bool = False
    status_every: float = 1.0
    metrics: LoadMetrics | None = None  # Prometheus (served by the caller, which also closes it)
    share: Share = Share()  # the requests this process sends: all of them, or a worker's share
    event_loop: str | None = None  # "auto", "uvloop" or "asyncio"; None: $STREAMSYNTH_EVENT_LOOP (.eventloop)


@dataclass
class LoadResult:
    """Everything a run measured, and why it ended."""

    measurements: Measurements
    confusion: Confusion | None
    elapsed: float
    ended: str  # "done", "interrupted", "source exhausted", or "aborted: THRESHOLD"
    crossed: list[Threshold]
    figures: dict[str, float | None]
    thresholds: list[Threshold] = field(default_factory=list)  # all asked for, crossed or not
    workers: int = 1  # the processes that sent the requests
    lost: list[str] = field(default_factory=list)  # the workers that died, each with its exit code
    event_loop: str = "asyncio"  # the loop that sent the requests: "uvloop" or "asyncio"


class Link(Protocol):
    """A worker's line to its parent (:mod:`.workers`), which starts, stops and watches the run."""

    async def start(self, run: _Run) -> float | None:
        """Wait for the parent's start time (``time.monotonic()``); None when told to stop first."""

    def report(self, run: _Run) -> None:
        """Send the run's progress, once a second."""


def classify(exc: BaseException) -> str:
    """The error class of a request that got no response: timeout, refused, reset or other."""
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "refused"
    if isinstance(exc, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
        return "reset"
    if isinstance(exc, OSError) and exc.errno in (errno.ECONNRESET, errno.EPIPE):
        return "reset"
    return "other"


def run_load(settings: LoadSettings, stream: Iterator[pl.DataFrame],
             say: Callable[[str], None] = lambda line: None, link: Link | None = None) -> LoadResult:
    """Run the load test on ``stream`` (its requests in ``settings.share``) and return its
    measurements; ``link``: run as a worker of :mod:`.workers`.

    The first batch is read and the service reached before the clock starts, so a wrong column
    name or an unreachable host is an error before any request, not a run of failures.
    """
    loop = eventloop.chosen(settings.event_loop)
    first = next(stream, None)
    if first is None or first.height == 0:
        raise StreamsynthError("the source has no events", hint="give a SOURCE that yields events")
    settings.template.check(first)
    if settings.expect is not None:
        settings.expect.check(first.columns)
    events = settings.share.events(itertools.chain([first], stream), settings.template.batch)
    with asyncio.Runner(loop_factory=eventloop.factory(loop)) as runner:
        result = runner.run(_Run(settings, events, say, link, tick=_TICK[loop]).main())
    result.event_loop = loop
    return result


class _Run:
    """The state of one run, owned by the event loop's thread (the feeder only touches the queue)."""

    def __init__(self, settings: LoadSettings, stream: Iterator[pl.DataFrame], say: Callable[[str], None],
                 link: Link | None = None, tick: float = 0.0) -> None:
        self.settings = settings
        self.bodyless = settings.template.method in _BODYLESS
        self.tick = tick  # the shortest sleep between arrivals (_TICK)
        self.stream = stream
        self.say = say
        self.link = link
        self.measurements = Measurements(
            target_per_second(settings.segments, settings.share.times(settings.segments)), settings.metrics)
        self.confusion = Confusion() if settings.expect is not None else None
        self.pool = ConnectionPool(settings.template.url, settings.timeout)
        self.chunks: queue.Queue[list[tuple[Request, bytes]] | None] = queue.Queue(_QUEUED_CHUNKS)
        self.feed_error: BaseException | None = None
        self.halt = threading.Event()  # tells the feeder to stop
        self.primed = threading.Event()  # the feeder has filled the queue, or waits on the source
        self.pending: list[tuple[Request, bytes]] = []
        self.source_done = False
        self.in_flight = 0
        self.requests: set[asyncio.Future[tuple[int, bytes]]] = set()  # in flight
        self.ended = "done"
        self.signals = 0
        self.start = 0.0
        self.stopped = asyncio.Event()

    # -- the feeder thread -------------------------------------------------------------------------
    def _feed(self) -> None:
        try:
            template = self.settings.template
            truths = self.settings.expect.truths if self.settings.expect is not None else None
            frame = Framer(template.method, self.pool, with_body=not self.bodyless)
            for batch in self.stream:
                # chunk by chunk, so the first requests of a batch are ready after 512 renders, not
                # after the whole batch's (tens of milliseconds the schedule would wait on)
                requests = template.render(batch, truths)
                while chunk := [(r, frame(r.url, r.headers, r.body)) for r in itertools.islice(requests, _CHUNK)]:
                    if not self._hand_over(chunk):
                        return
                self.primed.set()  # a source slower than the queue: the clock need not wait for it
        except BaseException as exc:  # noqa: BLE001 - re-raised on the loop's thread
            self.feed_error = exc
        self._hand_over(None)

    def _hand_over(self, chunk: list[tuple[Request, bytes]] | None) -> bool:
        if chunk is None:
            self.primed.set()
        while not self.halt.is_set():
            if self.chunks.full():
                self.primed.set()
            try:
                self.chunks.put(chunk, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    async def _next_request(self) -> tuple[Request, bytes] | None:
        """The next prepared request; None once the source is exhausted (or the run stops)."""
        while not self.pending:
            if self.source_done or self.halt.is_set():
                return None
            try:
                chunk = self.chunks.get_nowait()
            except queue.Empty:
                await asyncio.sleep(0.001)  # the source is behind: the lateness shows in from-scheduled latency
                continue
            if chunk is None:
                self.source_done = True
                if self.feed_error is not None:
                    raise self.feed_error
                return None
            chunk.reverse()  # popped from the end
            self.pending = chunk
        return self.pending.pop()

    # -- the loop --------------------------------------------------------------------------------------
    async def main(self) -> LoadResult:
        loop = asyncio.get_running_loop()
        await self._check_reachable()
        watched = self._watch_signals(loop) if self.link is None else []  # a worker's parent watches them
        feeder = threading.Thread(target=self._feed, name="load-feeder", daemon=True)
        feeder.start()
        try:
            await self._ready()
            start = _now() if self.link is None else await self.link.start(self)
            if start is None:  # told to stop before the start: nothing was sent
                start = _now()
            self.start = start
            if start > _now():  # every worker starts the one schedule at the same moment
                await asyncio.sleep(start - _now())
            status = asyncio.create_task(self._status())
            try:
                await self._schedule()
                await self._drain(self.settings.timeout + 1.0 if self.ended != "interrupted" else _INTERRUPT_GRACE)
            finally:
                status.cancel()
                for request in list(self.requests):
                    request.cancel()
                await asyncio.gather(status, *self.requests, return_exceptions=True)
            elapsed = _now() - self.start
            self._gauges(elapsed)
        finally:
            self.pool.close()
            self.halt.set()
            feeder.join(timeout=5.0)
            for sig in watched:
                loop.remove_signal_handler(sig)
        thresholds = self.settings.thresholds
        numbers = figures(self.measurements, self.confusion, elapsed, thresholds)
        return LoadResult(self.measurements, self.confusion, elapsed, self.ended,
                          crossed(thresholds, numbers, seen=self.measurements.labels), numbers, list(thresholds))

    async def _check_reachable(self) -> None:
        parts = urlsplit(self.settings.template.url)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(parts.hostname, port), _CONNECT_CHECK)
        except (OSError, TimeoutError) as exc:
            why = "timed out" if isinstance(exc, TimeoutError) else (exc.strerror or str(exc))
            raise StreamsynthError(f"--to {self.settings.template.url!r}: cannot connect to "
                                   f"{parts.hostname}:{port} ({why})",
                                   hint="start the service, or fix the host and port in --to") from None
        writer.close()

    async def _ready(self) -> None:
        """Wait, before the clock starts, for the feeder to fill its queue (or render all of the
        source's first batch) and for a few open connections. Rendering the first chunks while
        the first requests left cost them tens of milliseconds (the feeder holding the GIL), which
        showed in a short run's p99; once the queue is full, the feeder renders one chunk each
        time the schedule takes one."""
        await self.pool.open(min(self.settings.max_in_flight, _WARM_CONNECTIONS))
        while not self.primed.is_set() and not self.halt.is_set():
            await asyncio.sleep(0.001)

    def _watch_signals(self, loop: asyncio.AbstractEventLoop) -> list[int]:
        if threading.current_thread() is not threading.main_thread():
            return []
        watched = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal)
            watched.append(sig)
        return watched

    def _on_signal(self) -> None:
        self.signals += 1
        self.stop("interrupted")
        if self.signals > 1:  # the second one: give up on the requests in flight at once
            self.cancel()

    def cancel(self) -> None:
        """Give up on the requests in flight now."""
        for request in list(self.requests):
            request.cancel()

    def stop(self, why: str) -> None:
        if not self.stopped.is_set():
            self.ended = why
            self.stopped.set()
            self.halt.set()

    async def _schedule(self) -> None:
        m, most = self.measurements, self.settings.max_in_flight
        for offset in self.settings.share.times(self.settings.segments):
            if self.stopped.is_set():
                return
            prepared = self.pending.pop() if self.pending else await self._next_request()
            if prepared is None:
                if not self.stopped.is_set():
                    self.stop("source exhausted")
                return
            request = prepared[0]
            due = self.start + offset
            while (delay := due - _now()) > 0:  # never early: a loop's timer may fire before its time
                if delay > 0.05:  # a long wait (a low rate) must still notice Ctrl-C or an abort
                    try:
                        await asyncio.wait_for(self.stopped.wait(), delay)
                        return
                    except TimeoutError:
                        continue
                # at least a tick: the arrivals due meanwhile leave together after it, one wake-up
                # (a timer, a future, a task step) a millisecond rather than one an arrival
                await asyncio.sleep(max(delay, self.tick))
            m.scheduled(request.label)
            if self.in_flight >= most:
                m.dropped(request.label, offset)
                continue
            self._send(*prepared, due)

    def _send(self, request: Request, data: bytes, due: float) -> None:
        """Send now: on an idle connection without a task (a task, its coroutine and their
        callbacks cost more CPU than the rest of a request), or in a task that connects first."""
        self.in_flight += 1
        sent = _now()
        self.measurements.sent(request.label, sent - self.start,
                               0 if self.bodyless else len(request.body))
        done = functools.partial(self._answered, request, due, sent)
        answer = self.pool.send(data, done)  # ``done`` runs in the pool's own done callback
        if answer is None:
            answer = asyncio.ensure_future(self.pool.request(data))
            answer.add_done_callback(done)
        self.requests.add(answer)

    def _answered(self, request: Request, due: float, sent: float, answer: asyncio.Future[tuple[int, bytes]]) -> None:
        self.in_flight -= 1
        self.requests.discard(answer)
        m = self.measurements
        if answer.cancelled():
            m.unfinished += 1
            return
        done = _now()
        failure = answer.exception()
        if failure is not None:  # every failure is classified and counted
            m.failed(request.label, classify(failure), done - self.start)
            if self.confusion is not None:
                self.confusion.unanswered += 1
            return
        status, body = answer.result()
        m.answered(request.label, status, done - due, done - sent, done - self.start, len(body))
        expect = self.settings.expect
        if expect is not None and self.confusion is not None:
            self.confusion.add(request.label, expect.predict(status, body), bool(request.truth))

    async def _drain(self, grace: float) -> None:
        """Wait for the requests in flight (each bounded by --timeout), then give up on the rest."""
        if self.requests:
            await asyncio.wait(list(self.requests), timeout=grace)

    def _gauges(self, elapsed: float) -> None:
        metrics = self.settings.metrics
        if metrics is not None:
            seconds = self.measurements.seconds
            metrics.in_flight.set(self.in_flight)
            metrics.target_rate.set(seconds[int(elapsed)].target if int(elapsed) < len(seconds) else 0)

    async def _status(self) -> None:
        every = self.settings.status_every
        tick = 1
        while True:
            await asyncio.sleep(max(self.start + tick * every - _now(), 0))
            elapsed = _now() - self.start
            self._gauges(elapsed)
            if self.link is not None:  # the parent shows the line and checks the thresholds for all workers
                self.link.report(self)
                tick += 1
                continue
            numbers = figures(self.measurements, self.confusion, elapsed, self.settings.thresholds)
            self.say(status_line(self.measurements, numbers, elapsed, self.in_flight))
            if self.settings.abort_on_fail:
                failed = crossed(self.settings.thresholds, numbers)
                if failed:
                    self.stop(f"aborted: {failed[0].text}")
            tick += 1

