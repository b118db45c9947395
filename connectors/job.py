"""A replay run: :class:`ReplayJob` owns the checkpoint and its lock, the signals, pacing, the
metrics endpoint, the outage log and the manifest; the command line only parses options into it.

The job opens its source through a function the caller gives (the app layer resolves what a
SOURCE is; this layer only runs the stream), so that a signal during start-up (loading a model,
connecting) still ends with a manifest. Every run that gets going writes one, however it ends; a
source or sink that cannot be opened is an input error and leaves an earlier manifest alone.
Exit codes: 0 done, or stopped with everything acknowledged; 1 stopped with events
unacknowledged; 130 stopped at once by a second signal (errors raise, and the CLI exits 2).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Self

from streamsynth.connectors.base import SinkURL
from streamsynth.connectors.checkpoint import Checkpoint, CheckpointLock
from streamsynth.connectors.file import target_path
from streamsynth.connectors.metrics import Outage, ReplayMetrics
from streamsynth.connectors.pacing import Pacing
from streamsynth.connectors.registry import open_sink
from streamsynth.connectors.replay import ReplayResult, replay

from streamsynth.errors import StreamsynthError
from streamsynth.manifest import ManifestCounter, build_manifest, manifest_path
from streamsynth.outputs import write_error, write_text
from streamsynth.progress import Progress
from streamsynth.sources import Source

EXIT_LOSS = 1
EXIT_ABORTED = 130
DEFAULT_SHUTDOWN_TIMEOUT = 30.0
DEFAULT_MANIFEST = "replay.manifest.json"


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class ReplaySettings:
    """How to deliver: where, how fast, where to keep progress, how long to wait at shutdown."""

    to: str
    speed: float | None = None
    rate: float | None = None
    checkpoint: Path | None = None
    manifest: Path | None = None
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    flush_every: float = 1.0
    shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT


class ReplayJob:
    """One replay of a source to a sink.

    ``source_args`` is what the checkpoint and the manifest record of the source (a resumed run
    must match it); ``open_source`` opens it; ``requested_seed`` is the seed asked for (the
    manifest's seed when the source never opened); ``n_events`` sizes the progress bar. ``stop``,
    when given, is the event a signal sets: setting it from elsewhere (a Ray worker told to stop)
    stops the run as the first SIGTERM does. ``progress`` holds what the running job has sent and
    acknowledged, for a caller that watches it from another thread.
    """

    def __init__(self, settings: ReplaySettings, source_args: dict[str, Any], open_source: Callable[[], Source],
                 *, requested_seed: int | None = None, n_events: int | None = None,
                 say: Callable[[str], None] = _stderr, stop: threading.Event | None = None) -> None:
        self.settings = settings
        self.source_args = source_args
        self.open_source = open_source
        self.requested_seed = requested_seed
        self.n_events = n_events
        self.say = say
        self.stop = stop
        self.progress: JobProgress | None = None

    def run(self) -> int:
        """Replay; returns the exit code. The signal handlers come first: a signal during
        start-up must not end the process without its manifest."""
        checkpoint = self.settings.checkpoint
        try:
            with Signals(self.say, self.stop) as signals:
                pacing = Pacing(speed=self.settings.speed, rate=self.settings.rate)
                sink_url = SinkURL.parse(self.settings.to)
                lock = CheckpointLock(checkpoint).acquire() if checkpoint is not None else None
                try:
                    return self._run_locked(signals, pacing, sink_url)
                finally:
                    if lock is not None:
                        lock.release()
        except Interrupted as exc:
            self.say(f"{exc}{exc.details}")
            return EXIT_ABORTED

    def _run_locked(self, signals: Signals, pacing: Pacing, sink_url: SinkURL) -> int:
        settings, checkpoint = self.settings, self.settings.checkpoint
        skip, counter, state = 0, None, None
        if checkpoint is not None:
            state = Checkpoint.load(checkpoint)
            if state is not None:
                state.check_matches(self.source_args, sink_url.redacted(), checkpoint)
                if state.done:
                    self.say(f"replay already complete ({state.position:,} events); nothing to do "
                             f"(remove {checkpoint} to replay again)")
                    return 0
                skip, counter = state.position, counter_from(state.counts)
            else:
                state = Checkpoint(source=self.source_args, sink=sink_url.redacted())
        manifest_file = settings.manifest or default_manifest(sink_url)
        progress = self.progress = JobProgress(skip, counter)
        metrics = ReplayMetrics()
        metrics.on_outage = self._tell_outage
        result: ReplayResult | None = None
        failure: BaseException | None = None
        src: Source | None = None
        try:
            if settings.metrics_port is not None:
                port = metrics.serve(settings.metrics_port, settings.metrics_host)
                self.say(f"metrics on http://{settings.metrics_host}:{port}/metrics")
            src = self.open_source()
            sink = open_sink(sink_url.raw, time=src.time, entity=src.entity, metrics=metrics,
                             append=skip > 0, state=state.sink_state if state is not None else None,
                             durable=checkpoint is not None)

            def save(position: int, done_counter: ManifestCounter) -> None:
                progress.position, progress.counter = position, done_counter
                if checkpoint is not None:
                    state.position, state.counts = position, done_counter.to_dict()
                    state.sink_state = sink.state()
                    state.save(checkpoint)

            progress.repeated = getattr(sink, "repeated", 0)
            if skip:
                self.say(f"resuming after {skip:,} acknowledged events ({checkpoint})"
                         + (f"; {progress.repeated:,} events after it were already written (a crash "
                            "after the last rotation): they are written again, as duplicates"
                            if progress.repeated else ""))
            with Progress(label="replay", total=self.n_events, done=skip, unit="events") as bar:
                signals.phase = "running"
                result = replay(src.stream, sink, time_column=src.time, pacing=pacing, metrics=metrics,
                                skip=skip, counter=counter, stop=signals.stop, on_checkpoint=save,
                                on_progress=progress.track(bar.update), flush_every=settings.flush_every,
                                shutdown_timeout=settings.shutdown_timeout,
                                on_warning=lambda message: self.say(f"warning: {message}"))
            signals.phase = "finishing"
            if checkpoint is not None and not result.stopped:
                state.done = True
                state.save(checkpoint)
        except BaseException as exc:
            failure = exc
            raise
        finally:
            # A source or sink that cannot be opened (bad option, unreachable) is an input error,
            # not a run: it leaves the manifest of an earlier run alone. Every other ending writes one.
            began = signals.phase != "starting" or not isinstance(failure, StreamsynthError)
            signals.phase = "finishing"
            metrics.close()
            if began:
                description = src.description if src is not None else None
                _write_manifest(manifest_file, failure, self._manifest(
                    sink_url, pacing, progress, result, failure, metrics, description))
            if isinstance(failure, Interrupted):
                failure.details = (f": position {progress.position:,} acknowledged"
                                   + (f" (checkpoint {checkpoint})" if checkpoint else "")
                                   + f"; manifest {manifest_file}")
        self.say(self._summary(result, sink_url, manifest_file, metrics))
        return EXIT_LOSS if result.unacknowledged else 0

    def _tell_outage(self, outage: Outage, over: bool) -> None:
        """The live log of outages: when one begins and when it is over."""
        if not over:
            self.say(f"outage: {outage.sink} failing since {outage.started_at[11:19]} UTC "
                     f"({outage.first_error}); retrying")
        else:
            self.say(f"outage {'over' if outage.ended else 'still on at the end'}: {outage.sink}, "
                     f"{outage.seconds:.1f} s, {outage.retries} retries")

    def _summary(self, result: ReplayResult, sink_url: SinkURL, manifest_file: Path,
                 metrics: ReplayMetrics) -> str:
        how = "stopped" if result.stopped else "replayed"
        outages = _outage_words(metrics.outage_report())
        line = (f"{how}: {result.sent:,} events acknowledged by {sink_url.redacted()} in "
                f"{result.seconds:.1f} s ({result.achieved_rate:,.0f} events/s"
                + (f" of {result.target_rate:,.0f} asked for" if result.target_rate else "")
                + f"); position {result.position:,}"
                + (f"; {result.dead_lettered:,} dead-lettered" if result.dead_lettered else "")
                + (f"; {result.unacknowledged:,} not acknowledged within the "
                   f"{self.settings.shutdown_timeout:g} s shutdown timeout" if result.unacknowledged else "")
                + (f"; {outages}" if outages else "")
                + f"; manifest {manifest_file}")
        if result.stopped and self.settings.checkpoint is not None:
            line += f"; resume with the same command (checkpoint {self.settings.checkpoint})"
        return line

    def _manifest(self, sink_url: SinkURL, pacing: Pacing, progress: JobProgress, result: ReplayResult | None,
                  failure: BaseException | None, metrics: ReplayMetrics,
                  description: dict[str, Any] | None) -> dict[str, Any]:
        """The manifest of a replay, however it ended: what was acknowledged, and why it stopped."""
        if result is not None:
            position, counter = result.position, result.counter
            ended = "stopped" if result.stopped else "complete"
        else:
            position, counter = progress.position, progress.counter
            ended = "aborted" if isinstance(failure, Interrupted) else "failed"
        replay_info: dict[str, Any] = pacing.describe() | {
            "dead_lettered": result.dead_lettered if result else 0,
            "achieved_rate": round(result.achieved_rate, 1) if result else None,
            "unacknowledged": result.unacknowledged if result else None,
            "timings_s": result.timings if result else None,
            "warnings": result.warnings if result else [],
            "repeated_on_resume": progress.repeated,
        }
        extra = {"source_args": self.source_args, "sink": sink_url.redacted(),
                 "sent": {"from": 0, "to": position}, "complete": ended == "complete",
                 "ended": ended, "replay": replay_info, "outages": metrics.outage_report()}
        if failure is not None:
            extra["error"] = sink_url.scrub(str(getattr(failure, "message", None) or failure))
        # the seed the stream was drawn with: the opened source's, or the one asked for
        seed = description.get("seed") if description is not None else self.requested_seed
        return build_manifest(counter=counter, output=sink_url.redacted(), model=description, seed=seed,
                              extra=extra)


class JobProgress:
    """What a run has acknowledged so far: kept up to date by the checkpoint callback, so the
    manifest can be written on every exit path, with or without a result."""

    def __init__(self, position: int, counter: ManifestCounter | None) -> None:
        self.position = position
        self.counter = counter or ManifestCounter(time=None)
        self.repeated = 0  # events a resumed file sink writes a second time (see FileSink)
        self.written = position  # events handed to the sink, counted from the source's start

    def track(self, update: Callable[[int], None]) -> Callable[[int], None]:
        """``update`` (the progress bar's), also keeping :attr:`written`."""
        def both(written: int) -> None:
            self.written = written
            update(written)
        return both


def default_manifest(url: SinkURL) -> Path:
    """Beside a file output, else ``./replay.manifest.json``."""
    if url.scheme == "file":
        return manifest_path(target_path(url))
    return Path(DEFAULT_MANIFEST)


def counter_from(counts: dict[str, Any]) -> ManifestCounter:
    """A checkpoint's counts as the counter a resumed run goes on from."""
    counter = ManifestCounter(time=None)
    counter.events = int(counts.get("events", 0))
    counter.anomalies = int(counts.get("anomalies", 0))
    counter.labels = Counter(counts.get("labels", {}))
    for name in ("first_time", "last_time"):
        if counts.get(name):
            setattr(counter, name, datetime.fromisoformat(counts[name]))
    return counter


def _write_manifest(path: Path, failure: BaseException | None, record: dict[str, Any]) -> None:
    """Stage the manifest beside its target and rename it into place: a failed write (disk full,
    no permission) leaves an earlier manifest whole, never a truncated one."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(record, indent=2, default=str) + "\n")
    except OSError as exc:
        problem: StreamsynthError = write_error(path, exc)
    except StreamsynthError as exc:
        problem = exc
    else:
        return
    if failure is None:  # otherwise the error that ended the run is the one to report
        raise StreamsynthError(f"{problem.message} (the manifest)",
                               hint="choose a writable path with --manifest") from None


def _outage_words(totals: dict[str, Any]) -> str:
    if not totals.get("count"):
        return ""
    n = totals["count"]
    return (f"{n} outage{'s' if n != 1 else ''} ({totals['seconds']:.1f} s in all, "
            f"{totals['retries']} retries)")


class Interrupted(BaseException):
    """A signal that ends the run at once: a second one, or one before the replay began.

    A BaseException, like KeyboardInterrupt, so no ``except Exception`` on the way swallows it.
    """

    def __init__(self, how: str) -> None:
        super().__init__(how)
        self.details = ""


class SignalTrap:
    """Installs ``self._handle`` for SIGINT and SIGTERM while entered (from the main thread: signals
    reach no other) and puts the previous handlers back on leaving."""

    previous: dict[int, Any]

    def _handle(self, signum: int, frame: Any) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self.previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


class Signals(SignalTrap):
    """SIGINT/SIGTERM for the whole run, installed before any work.

    ``phase`` says what a signal does: ``starting`` (nothing sent yet, nothing to flush) ends the
    run at once; ``running``: the first sets ``stop`` (flush within the shutdown timeout, then
    exit), a second ends it at once; ``finishing`` (the checkpoint and manifest are being
    written, which takes moments) lets that finish. Ending at once raises :class:`Interrupted`,
    which :meth:`ReplayJob.run` turns into one line and exit code 130; should cleaning up hang, a
    watchdog exits the process a few seconds later (the checkpoint is replaced atomically, so it
    stays whole).
    """

    WATCHDOG_SECONDS = 5.0

    def __init__(self, say: Callable[[str], None] = _stderr, stop: threading.Event | None = None) -> None:
        self.stop = stop if stop is not None else threading.Event()
        self.phase = "starting"
        self._interrupted = False
        self.say = say

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self._interrupted or self.phase == "finishing":
            return
        if self.phase == "running" and not self.stop.is_set():
            self.stop.set()
            self.say(f"\n{name}: stopping; flushing what was sent (again to stop at once)")
            return
        self._interrupted = True
        watchdog = threading.Timer(self.WATCHDOG_SECONDS, os._exit, args=(EXIT_ABORTED,))
        watchdog.daemon = True
        watchdog.start()
        self.stop.set()
        raise Interrupted(f"stopped at once by {'a second ' if self.phase == 'running' else ''}{name}")
