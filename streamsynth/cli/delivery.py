"""Delivery commands: ``replay`` a source to Kafka, HTTP, files or stdout, and ``verify`` it arrived.

This is where a SOURCE becomes a stream (:meth:`SourceOptions.open`, via :mod:`streamsynth.pipeline`);
everything after that is the ``connectors`` package. The manifest of a replay records the source's arguments, so
``verify`` can regenerate exactly what was sent and reconcile it with what a sink holds.
"""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from streamsynth.cli import app
from streamsynth.cli.source_options import SourceOptions, source_options
from streamsynth.connectors import open_sink, read_back
from streamsynth.connectors.base import SinkURL
from streamsynth.connectors.checkpoint import Checkpoint, CheckpointLock
from streamsynth.connectors.file import target_path
from streamsynth.connectors.metrics import Outage, ReplayMetrics
from streamsynth.connectors.pacing import Pacing
from streamsynth.connectors.replay import ReplayResult, replay
from streamsynth.connectors.verify import reconcile
from streamsynth.contract import EVENT_ID, LABEL, take
from streamsynth.errors import StreamsynthError
from streamsynth.manifest import ManifestCounter, build_manifest
from streamsynth.progress import Progress

EXIT_LOSS = 1
EXIT_ABORTED = 130
DEFAULT_SHUTDOWN_TIMEOUT = 30.0
DEFAULT_MANIFEST = "replay.manifest.json"


@app.command("replay")
@source_options(batch_size=True)
def replay_command(
    source: SourceOptions,
    to: Annotated[str, typer.Option("--to", help="kafka://host:9092/topic, http(s)://host/path, "
                                    "file:///dir/out.parquet (.jsonl, .csv), or - for stdout.")],
    speed: Annotated[float | None, typer.Option("--speed", help="Event time per wall-clock time: "
                                                "1 = real time, 60 = a minute per second.")] = None,
    rate: Annotated[float | None, typer.Option("--rate", help="Events per second.")] = None,
    metrics_port: Annotated[int | None, typer.Option("--metrics-port", min=0, max=65535,
                                                     help="Serve Prometheus metrics on this port.")] = None,
    metrics_host: Annotated[str, typer.Option("--metrics-host", help="Address for the metrics "
                                              "endpoint (0.0.0.0 to expose it).")] = "127.0.0.1",
    checkpoint: Annotated[Path | None, typer.Option("--checkpoint", help="Resume from and record "
                                                    "progress in this file.")] = None,
    manifest: Annotated[Path | None, typer.Option("--manifest", help="Where to write the manifest "
                                                  "(default: beside a file output, else "
                                                  f"./{DEFAULT_MANIFEST}).")] = None,
    flush_every: Annotated[float, typer.Option("--flush-every", min=0.001, help="Seconds between "
                                               "acknowledgement checkpoints.")] = 1.0,
    shutdown_timeout: Annotated[float, typer.Option(
        "--shutdown-timeout", min=0,
        help="On SIGINT/SIGTERM, how many seconds to wait for the sink to acknowledge what it "
        "holds before giving up on it (the events left are counted in the manifest and sent "
        "again on resume).")] = DEFAULT_SHUTDOWN_TIMEOUT,
) -> None:
    """Replay a source in real time, at a rate, or flat out, to a sink; Ctrl-C or SIGTERM stop it
    cleanly after a flush (bounded by --shutdown-timeout); a second one stops it at once.

    With --checkpoint, a replay started again with the same arguments resumes after the last
    acknowledged event (at-least-once: only events after the last checkpoint are sent again).
    Every run that gets going writes a manifest, however it ends (a signal during start-up
    included; a sink or source that cannot be opened leaves an earlier one alone). Exit codes: 0 done
    or stopped with everything acknowledged; 1 stopped with events unacknowledged; 2 an error;
    130 stopped at once by a second signal.
    """
    # The handlers come first: a signal during start-up (loading a model, connecting) must not
    # kill the process without its manifest.
    try:
        with _signals() as signals:
            pacing = Pacing(speed=speed, rate=rate)
            sink_url = SinkURL.parse(to)
            lock = CheckpointLock(checkpoint).acquire() if checkpoint is not None else None
            try:
                _replay_locked(signals, pacing, sink_url, source, checkpoint, manifest, metrics_port,
                               metrics_host, flush_every, shutdown_timeout)
            finally:
                if lock is not None:
                    lock.release()
    except _Interrupted as exc:
        typer.echo(f"{exc}{exc.details}", err=True)
        raise typer.Exit(EXIT_ABORTED) from None


class _Progress:
    """What a run has acknowledged so far: kept up to date by the checkpoint callback, so the
    manifest can be written on every exit path, with or without a result."""

    def __init__(self, position: int, counter: ManifestCounter | None) -> None:
        self.position = position
        self.counter = counter or ManifestCounter(time=None)
        self.repeated = 0  # events a resumed file sink writes a second time (see FileSink)


def _replay_locked(signals: _signals, pacing: Pacing, sink_url: SinkURL, source: SourceOptions,
                   checkpoint: Path | None, manifest: Path | None, metrics_port: int | None,
                   metrics_host: str, flush_every: float, shutdown_timeout: float) -> None:
    args = source.as_args()  # what the checkpoint and the manifest record of the source
    skip, counter, state = 0, None, None
    if checkpoint is not None:
        state = Checkpoint.load(checkpoint)
        if state is not None:
            state.check_matches(args, sink_url.redacted(), checkpoint)
            if state.done:
                typer.echo(f"replay already complete ({state.position:,} events); nothing to do "
                           f"(remove {checkpoint} to replay again)", err=True)
                return
            skip, counter = state.position, _counter_from(state.counts)
        else:
            state = Checkpoint(source=args, sink=sink_url.redacted())
    manifest_file = manifest or _default_manifest(sink_url)
    progress = _Progress(skip, counter)
    metrics = ReplayMetrics()
    metrics.on_outage = _tell_outage
    result: ReplayResult | None = None
    failure: BaseException | None = None
    src = None
    try:
        if metrics_port is not None:
            port = metrics.serve(metrics_port, metrics_host)
            typer.echo(f"metrics on http://{metrics_host}:{port}/metrics", err=True)
        src = source.open()
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
            typer.echo(f"resuming after {skip:,} acknowledged events ({checkpoint})"
                       + (f"; {progress.repeated:,} events after it were already written (a crash "
                          "after the last rotation): they are written again, as duplicates"
                          if progress.repeated else ""), err=True)
        with Progress(label="replay", total=source.n_events, done=skip, unit="events") as bar:
            signals.phase = "running"
            result = replay(src.stream, sink, time_column=src.time, pacing=pacing, metrics=metrics,
                            skip=skip, counter=counter, stop=signals.stop, on_checkpoint=save,
                            on_progress=bar.update, flush_every=flush_every,
                            shutdown_timeout=shutdown_timeout,
                            on_warning=lambda message: typer.echo(f"warning: {message}", err=True))
        signals.phase = "finishing"
        if checkpoint is not None and not result.stopped:
            state.done = True
            state.save(checkpoint)
    except BaseException as exc:
        failure = exc
        raise
    finally:
        # A source or sink that cannot be opened (bad option, unreachable) is an input error, not
        # a run: it leaves the manifest of an earlier run alone. Every other ending writes one.
        began = signals.phase != "starting" or not isinstance(failure, StreamsynthError)
        signals.phase = "finishing"
        metrics.close()
        if began:
            _write_manifest(manifest_file, failure, _replay_manifest(
                source, sink_url, pacing, progress, result, failure, metrics,
                src.description if src is not None else None))
        if isinstance(failure, _Interrupted):
            failure.details = (f": position {progress.position:,} acknowledged"
                               + (f" (checkpoint {checkpoint})" if checkpoint else "")
                               + f"; manifest {manifest_file}")
    _summary(result, sink_url, manifest_file, checkpoint, shutdown_timeout, metrics)
    if result.unacknowledged:
        raise typer.Exit(EXIT_LOSS)


def _tell_outage(outage: Outage, over: bool) -> None:
    """The live log of outages, on stderr: when one begins and when it is over."""
    if not over:
        typer.echo(f"outage: {outage.sink} failing since {outage.started_at[11:19]} UTC "
                   f"({outage.first_error}); retrying", err=True)
    else:
        typer.echo(f"outage {'over' if outage.ended else 'still on at the end'}: {outage.sink}, "
                   f"{outage.seconds:.1f} s, {outage.retries} retries", err=True)


def _write_manifest(path: Path, failure: BaseException | None, record: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2, default=str) + "\n")
    except OSError as exc:
        if failure is None:  # otherwise the error that ended the run is the one to report
            raise StreamsynthError(f"cannot write the manifest {path}: {exc.strerror}",
                                   hint="choose a writable path with --manifest") from None


def _summary(result: ReplayResult, sink_url: SinkURL, manifest_file: Path, checkpoint: Path | None,
             shutdown_timeout: float, metrics: ReplayMetrics) -> None:
    how = "stopped" if result.stopped else "replayed"
    outages = _outage_words(metrics.outage_report())
    line = (f"{how}: {result.sent:,} events acknowledged by {sink_url.redacted()} in "
            f"{result.seconds:.1f} s ({result.achieved_rate:,.0f} events/s"
            + (f" of {result.target_rate:,.0f} asked for" if result.target_rate else "")
            + f"); position {result.position:,}"
            + (f"; {result.dead_lettered:,} dead-lettered" if result.dead_lettered else "")
            + (f"; {result.unacknowledged:,} not acknowledged within the {shutdown_timeout:g} s "
               "shutdown timeout" if result.unacknowledged else "")
            + (f"; {outages}" if outages else "")
            + f"; manifest {manifest_file}")
    if result.stopped and checkpoint is not None:
        line += f"; resume with the same command (checkpoint {checkpoint})"
    typer.echo(line, err=True)


def _outage_words(totals: dict[str, Any]) -> str:
    if not totals.get("count"):
        return ""
    n = totals["count"]
    return (f"{n} outage{'s' if n != 1 else ''} ({totals['seconds']:.1f} s in all, "
            f"{totals['retries']} retries)")


def _replay_manifest(source: SourceOptions, sink_url: SinkURL, pacing: Pacing, progress: _Progress,
                     result: ReplayResult | None, failure: BaseException | None,
                     metrics: ReplayMetrics, src_description: Any) -> dict[str, Any]:
    """The manifest of a replay, however it ended: what was acknowledged, and why it stopped."""
    if result is not None:
        position, counter = result.position, result.counter
        ended = "stopped" if result.stopped else "complete"
    else:
        position, counter = progress.position, progress.counter
        ended = "aborted" if isinstance(failure, _Interrupted) else "failed"
    replay_info: dict[str, Any] = pacing.describe() | {
        "dead_lettered": result.dead_lettered if result else 0,
        "achieved_rate": round(result.achieved_rate, 1) if result else None,
        "unacknowledged": result.unacknowledged if result else None,
        "timings_s": result.timings if result else None,
        "warnings": result.warnings if result else [],
        "repeated_on_resume": progress.repeated,
    }
    extra = {"source_args": source.as_args(), "sink": sink_url.redacted(),
             "sent": {"from": 0, "to": position}, "complete": ended == "complete",
             "ended": ended, "replay": replay_info, "outages": metrics.outage_report()}
    if failure is not None:
        extra["error"] = sink_url.scrub(str(getattr(failure, "message", None) or failure))
    return build_manifest(counter=counter, output=sink_url.redacted(), model=src_description,
                          seed=source.resolved_seed(src_description), extra=extra)


@app.command("verify")
def verify_command(
    from_: Annotated[str, typer.Option("--from", help="The kafka:// topic or the file (or file:// "
                                       "URL) the replay wrote to.")],
    manifest: Annotated[Path, typer.Option("--manifest", help="The manifest the replay wrote.")],
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait on a stalled read.")] = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Reconcile every event_id and label a sink holds against what the replay sent.

    Exits 1 when events are missing or mislabelled; duplicates are reported (delivery is
    at-least-once) but do not fail.
    """
    record = _load_manifest(manifest)
    args = record["source_args"]
    sent = int(record["sent"]["to"])
    src = SourceOptions.from_args(args).open()
    expected = (b.select(EVENT_ID, LABEL) for b in take(src.stream, sent))
    report = reconcile(expected, read_back(from_, timeout=timeout))
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        typer.echo(f"expected {report.expected:,}, received {report.received:,}: "
                   f"{report.missing:,} missing, {report.duplicated:,} duplicated, "
                   f"{report.mislabelled:,} mislabelled, {report.unexpected:,} unexpected"
                   + (f", {report.header_mismatch:,} with headers disagreeing"
                      if report.header_mismatch else ""))
        for kind, ids in report.examples.items():
            if kind == "missing" and report.missing_ranges:
                more = report.missing_ranges_total - len(report.missing_ranges)
                typer.echo(f"  missing: {', '.join(report.missing_ranges)}"
                           + (f" and {more:,} more ranges" if more else ""))
                continue
            typer.echo(f"  {kind}: {', '.join(ids)}")
    if not report.ok:
        raise typer.Exit(EXIT_LOSS)


def _default_manifest(url: SinkURL) -> Path:
    from streamsynth.manifest import manifest_path

    if url.scheme == "file":
        return manifest_path(target_path(url))
    return Path(DEFAULT_MANIFEST)


def _load_manifest(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
    except OSError as exc:
        raise StreamsynthError(f"cannot read manifest {path}: {exc.strerror}",
                               hint="give the manifest the replay wrote") from None
    except ValueError:
        raise StreamsynthError(f"manifest {path} is not JSON", hint="give the manifest the replay wrote") from None
    if "source_args" not in record or "sent" not in record:
        raise StreamsynthError(f"manifest {path} was not written by `streamsynth replay`",
                               hint="verify needs a replay manifest (it records what was sent)")
    return record


def _counter_from(counts: dict[str, Any]) -> ManifestCounter:
    from collections import Counter
    from datetime import datetime

    counter = ManifestCounter(time=None)
    counter.events = int(counts.get("events", 0))
    counter.anomalies = int(counts.get("anomalies", 0))
    counter.labels = Counter(counts.get("labels", {}))
    for name in ("first_time", "last_time"):
        if counts.get(name):
            setattr(counter, name, datetime.fromisoformat(counts[name]))
    return counter


class _Interrupted(BaseException):
    """A signal that ends the run at once: a second one, or one before the replay began.

    A BaseException, like KeyboardInterrupt, so no ``except Exception`` on the way swallows it.
    """

    def __init__(self, how: str) -> None:
        super().__init__(how)
        self.details = ""


class _signals:
    """SIGINT/SIGTERM for the whole replay command, installed before any work.

    ``phase`` says what a signal does: ``starting`` (nothing sent yet, nothing to flush) ends the
    run at once; ``running``: the first sets ``stop`` (flush within the shutdown timeout, then
    exit), a second ends it at once; ``finishing`` (the checkpoint and manifest are being
    written, which takes moments) lets that finish. Ending at once raises :class:`_Interrupted`,
    which the command turns into one line and exit code 130; should cleaning up hang, a watchdog
    exits the process a few seconds later (the checkpoint is replaced atomically, so it stays
    whole).
    """

    WATCHDOG_SECONDS = 5.0

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.phase = "starting"
        self.previous: dict[int, Any] = {}
        self._interrupted = False

    def _handle(self, signum: int, frame: Any) -> None:
        name = signal.Signals(signum).name
        if self._interrupted or self.phase == "finishing":
            return
        if self.phase == "running" and not self.stop.is_set():
            self.stop.set()
            typer.echo(f"\n{name}: stopping; flushing what was sent (again to stop at once)", err=True)
            return
        self._interrupted = True
        watchdog = threading.Timer(self.WATCHDOG_SECONDS, os._exit, args=(EXIT_ABORTED,))
        watchdog.daemon = True
        watchdog.start()
        self.stop.set()
        raise _Interrupted(f"stopped at once by {'a second ' if self.phase == 'running' else ''}{name}")

    def __enter__(self) -> _signals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
