"""``--workers N``: N sender processes, one run. One process's event loop is bound by one core
(rendering and sending a request costs tens of microseconds of Python); N of them send N times
the requests, and the parent keeps the run whole.

Each worker (a "spawn" process: no state forked from a parent holding threads and sockets) opens
the source itself, runs :func:`.runner.run_load` on its :class:`.Share` (every Nth request at
every Nth scheduled time, 1/N of ``--max-in-flight``, its own connections) and talks to the parent
over a pipe: "ready" once its connections are open and its first requests rendered, then a
progress message a second (its :meth:`.Measurements.snapshot`, ``--expect`` matrix, requests in
flight and Prometheus samples), then its result. The parent:

- starts every worker's clock at the same moment (``time.monotonic()``, which is the event loop's
  clock and the same in every process), so the shares interleave into the one schedule;
- merges the workers' progress into one :class:`.Measurements` (HDR histograms through their own
  encoding and ``add``) for the live status line, ``--abort-on-fail`` and ``--metrics-port``, and
  their results into one :class:`.LoadResult`: one summary, JSON, report and exit code;
- owns the signals: the workers ignore SIGINT and SIGTERM (a Ctrl-C reaches the whole process
  group; one decision, not N), the parent's first signal stops them all, the second gives up on
  their requests in flight, a third kills those still running;
- watches each worker's process: one that exits without its result is reported with its exit code,
  the others are stopped, and the run ends with what every worker measured up to its last progress
  message, marked as lost (the command exits 2). A worker also stops when the parent's end of
  its pipe closes (the parent killed), rather than load a service for nobody.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection, wait
from typing import Any

import polars as pl
from streamsynth.connectors.loadtest import eventloop
from streamsynth.connectors.loadtest.expect import Confusion
from streamsynth.connectors.loadtest.measure import Measurements
from streamsynth.connectors.loadtest.prometheus import LoadMetrics, WorkerMetrics
from streamsynth.connectors.loadtest.runner import LoadResult, LoadSettings, run_load
from streamsynth.connectors.loadtest.share import Share
from streamsynth.connectors.loadtest.summary import figures, status_line
from streamsynth.connectors.loadtest.thresholds import crossed

from streamsynth.errors import StreamsynthError

#: opens the source in a worker (picklable: a module-level function or a partial of one); its
#: argument says a line (``--loop``'s passes) on the parent's stderr
OpenStream = Callable[[Callable[[str], None]], Iterator[pl.DataFrame]]

_START_MARGIN = 0.05  # seconds between the start message and the clock's start: the pipes' latency
_REPORT_LAG = 0.2  # the parent's status line follows the workers' once-a-second progress by this much
_POLL = 0.1  # at most this long between looks at the signals
_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run_workers(settings: LoadSettings, open_stream: OpenStream, workers: int,
                say: Callable[[str], None] = lambda line: None) -> LoadResult:
    """Run the load test of ``settings`` in ``workers`` processes and return the merged result.
    ``settings.metrics``, when given, is a :class:`.WorkerMetrics` the caller serves."""
    context = multiprocessing.get_context("spawn")
    # the loop is chosen here, so a wrong $STREAMSYNTH_EVENT_LOOP is one error before any worker starts
    settings = replace(settings, event_loop=eventloop.chosen(settings.event_loop))
    own = replace(settings, thresholds=[], abort_on_fail=False, metrics=None)
    watch = threading.current_thread() is threading.main_thread()  # signal handlers live there only
    # ignored while the workers start: a spawned process inherits an ignored signal from its birth,
    # so a Ctrl-C while it imports cannot kill it with a traceback before it ignores them itself
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in _SIGNALS} if watch else {}
    try:
        team = []
        for index in range(workers):
            share = Share(index, workers)
            parent_end, child_end = context.Pipe()
            process = context.Process(
                target=_worker, name=f"load-worker-{index}", daemon=True,
                args=(replace(own, share=share, max_in_flight=share.max_in_flight(settings.max_in_flight)),
                      open_stream, child_end, settings.metrics is not None))
            process.start()
            child_end.close()  # so that the worker's death reads as the end of its pipe here
            team.append(_Worker(index, process, parent_end))
        parent = _Parent(settings, team, say)
        for sig in previous:
            signal.signal(sig, parent.on_signal)
        return parent.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass
class _Worker:
    """The parent's view of one worker: its process, its pipe, and what it reported last."""

    index: int
    process: Any  # multiprocessing's SpawnProcess
    pipe: Connection
    ready: bool = False
    measurements: Measurements = field(default_factory=lambda: Measurements([]))
    confusion: Confusion | None = None
    in_flight: int = 0
    result: dict[str, Any] | None = None  # its final message: ended, elapsed
    gone: bool = False  # its pipe is closed: it finished or died


class _Parent:
    """The parent's side of a run: starts the workers' clocks together, merges what they report,
    heeds the signals and the thresholds, and notices a worker's death."""

    def __init__(self, settings: LoadSettings, team: list[_Worker], say: Callable[[str], None]) -> None:
        self.settings = settings
        self.team = team
        self.say = say
        self.signals = 0  # counted by the handler, acted on by the loop
        self.heeded = 0
        self.ended: str | None = None  # why the parent stopped the run, if it did
        self.lost: list[str] = []
        self.error: StreamsynthError | None = None
        self.start = 0.0

    def run(self) -> LoadResult:
        try:
            self._until(lambda: all(w.ready or w.gone for w in self.team) or self.ended is not None)
            if self.ended is None:
                self.start = time.monotonic() + _START_MARGIN
                self._tell(("start", self.start))
            else:  # a worker failed, or a signal came, before the start: no request leaves
                self._tell(("stop", self.ended))
            self._until(lambda: all(w.gone for w in self.team), status=self.ended is None)
        finally:
            for worker in self.team:
                worker.process.join(timeout=5.0)
                if worker.process.is_alive():  # deaf to its pipe: it must not outlive the run
                    worker.process.kill()
                    worker.process.join()
                worker.pipe.close()
        if self.error is not None:
            raise self.error
        return self._result()

    # -- signals and orders ----------------------------------------------------------------------------
    def on_signal(self, signum: int, frame: object) -> None:
        # only counted: the loop acts within _POLL, so that no order to the workers is written to
        # a pipe from inside the handler while the loop itself is writing one
        self.signals += 1

    def _heed_signals(self) -> None:
        while self.heeded < self.signals:
            self.heeded += 1
            if self.heeded == 1:
                self._stop("interrupted")
            elif self.heeded == 2:  # the workers give up on their requests in flight
                self._tell(("cancel",))
            else:  # a worker deaf to its pipe (still opening a slow source, say): the user has asked thrice
                for worker in self.team:
                    if worker.process.is_alive():
                        worker.process.kill()

    def _stop(self, why: str) -> None:
        if self.ended is None:
            self.ended = why
            self._tell(("stop", why))

    def _tell(self, message: tuple[Any, ...]) -> None:
        for worker in self.team:
            if not worker.gone:
                try:
                    worker.pipe.send(message)
                except OSError:  # it is exiting; its sentinel says how
                    pass

    # -- the loop ---------------------------------------------------------------------------------------
    def _until(self, done: Callable[[], bool], status: bool = False) -> None:
        """Read the workers' messages until ``done()``; each second (``status``) the merged
        status line, the Prometheus samples and, with --abort-on-fail, the thresholds."""
        every = self.settings.status_every
        tick = 1
        while True:
            self._heed_signals()
            if done():
                return
            timeout = _POLL
            if status:
                timeout = min(max(self.start + tick * every + _REPORT_LAG - time.monotonic(), 0), _POLL)
            pipes = {w.pipe: w for w in self.team if not w.gone}
            for pipe in wait(list(pipes), timeout):
                self._receive(pipes[pipe])
            if status and time.monotonic() >= self.start + tick * every + _REPORT_LAG:
                self._status(time.monotonic() - self.start)
                tick += 1

    def _receive(self, worker: _Worker) -> None:
        try:
            kind, *body = worker.pipe.recv()
        except (EOFError, OSError):  # the pipe closed: after its result, or it died
            worker.gone = True
            if worker.result is None and self.error is None:
                worker.process.join(timeout=5.0)
                code = worker.process.exitcode
                self.lost.append(f"worker {worker.index} exited with code {code} before its result")
                self.say(f"error: {self.lost[-1]}; stopping the others")
                self._stop(f"worker {worker.index} died (exit code {code})")
            return
        if kind == "ready":
            worker.ready = True
        elif kind == "say":
            if worker.index == 0:  # every worker reads the same source, so says the same
                self.say(body[0])
        elif kind == "error":  # a StreamsynthError: said as one process would say it
            message, hint = body
            if self.error is None:
                self.error = StreamsynthError(message, hint=hint)
            self._stop("error")
        elif kind in ("progress", "result"):
            progress = body[0]
            worker.measurements.apply(progress["snapshot"])
            worker.confusion = progress["confusion"]
            worker.in_flight = progress["in_flight"]
            if self.settings.metrics is not None and progress["metrics"] is not None:
                self.settings.metrics.update(worker.index, progress["metrics"])
            if kind == "result":
                worker.result = progress

    def _merged(self) -> tuple[Measurements, Confusion | None]:
        measurements = Measurements([])
        confusion = Confusion() if self.settings.expect is not None else None
        for worker in self.team:
            measurements.add(worker.measurements)
            if confusion is not None and worker.confusion is not None:
                confusion.merge(worker.confusion)
        return measurements, confusion

    def _status(self, elapsed: float) -> None:
        measurements, confusion = self._merged()
        numbers = figures(measurements, confusion, elapsed, self.settings.thresholds)
        self.say(status_line(measurements, numbers, elapsed, sum(w.in_flight for w in self.team)))
        if self.settings.abort_on_fail:
            failed = crossed(self.settings.thresholds, numbers)
            if failed:
                self._stop(f"aborted: {failed[0].text}")

    def _result(self) -> LoadResult:
        measurements, confusion = self._merged()
        results = [w.result for w in self.team if w.result is not None]
        elapsed = max((r["elapsed"] for r in results), default=time.monotonic() - self.start if self.start else 0.0)
        ended = self.ended or next((r["ended"] for r in results if r["ended"] != "done"), "done")
        thresholds = self.settings.thresholds
        numbers = figures(measurements, confusion, elapsed, thresholds)
        return LoadResult(measurements, confusion, elapsed, ended,
                          crossed(thresholds, numbers, seen=measurements.labels), numbers, list(thresholds),
                          workers=len(self.team), lost=self.lost,
                          event_loop="/".join(sorted({r["event_loop"] for r in results}))
                          or self.settings.event_loop or "asyncio")


# -- the worker's side ---------------------------------------------------------------------------------
class _Link:
    """A worker's end of its pipe (the :class:`.runner.Link` its run reports through)."""

    def __init__(self, pipe: Connection, metrics: LoadMetrics | None) -> None:
        self.pipe = pipe
        self.metrics = metrics
        self.started: asyncio.Future[float | None] | None = None
        self.sending = threading.Lock()  # the feeder thread says lines (--loop) while the loop reports

    def send(self, message: tuple[Any, ...]) -> None:
        with self.sending:
            self.pipe.send(message)

    async def start(self, run: Any) -> float | None:
        loop = asyncio.get_running_loop()
        self.started = loop.create_future()
        loop.add_reader(self.pipe.fileno(), self._orders, run, loop)
        self.send(("ready",))
        return await self.started

    def _orders(self, run: Any, loop: asyncio.AbstractEventLoop) -> None:
        try:
            kind, *body = self.pipe.recv()
        except (EOFError, OSError):  # the parent is gone: nobody is left to report to
            loop.remove_reader(self.pipe.fileno())
            kind, body = "stop", ["interrupted"]
        if kind == "start":
            self._started(body[0])
        elif kind == "stop":
            run.stop(body[0])
            self._started(None)
        elif kind == "cancel":
            run.cancel()

    def _started(self, start: float | None) -> None:
        if self.started is not None and not self.started.done():
            self.started.set_result(start)

    def report(self, run: Any) -> None:
        self.send(("progress", self.progress(run.measurements, run.confusion, run.in_flight)))

    def progress(self, measurements: Measurements, confusion: Confusion | None, in_flight: int) -> dict[str, Any]:
        return {"snapshot": measurements.snapshot(), "confusion": confusion, "in_flight": in_flight,
                "metrics": WorkerMetrics.samples(self.metrics) if self.metrics is not None else None}


def _worker(settings: LoadSettings, open_stream: OpenStream, pipe: Connection, metrics: bool) -> None:
    """A worker process's main: run the share and send the result (or the error) to the parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides (see the module's docstring)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    link = _Link(pipe, LoadMetrics() if metrics else None)
    settings = replace(settings, metrics=link.metrics)
    try:
        result = run_load(settings, open_stream(lambda line: link.send(("say", line))), link=link)
    except StreamsynthError as exc:
        link.send(("error", exc.message, exc.hint))
        return
    progress = link.progress(result.measurements, result.confusion, 0)
    link.send(("result", progress | {"ended": result.ended, "elapsed": result.elapsed,
                                     "event_loop": result.event_loop}))
