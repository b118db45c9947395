"""Delivery commands: ``replay`` a source to Kafka, HTTP, files or stdout, and ``verify`` it arrived.

This is where a SOURCE becomes a stream (via :mod:`streamsynth.pipeline`); everything after that
is the ``connectors`` package. The manifest of a replay records the source's arguments, so
``verify`` can regenerate exactly what was sent and reconcile it with what a sink holds.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from connectors import open_sink, read_back
from connectors.base import SinkURL
from connectors.checkpoint import Checkpoint
from connectors.file import target_path
from connectors.metrics import ReplayMetrics
from connectors.pacing import Pacing
from connectors.replay import ReplayResult, replay
from connectors.verify import reconcile
from streamsynth.cli import app
from streamsynth.cli.core import (
    ConditionOpt,
    EndOpt,
    EntitiesOpt,
    EventsOpt,
    SeedOpt,
    ShardOpt,
    SourceArg,
    StartOpt,
    open_for_cli,
)
from streamsynth.contract import EVENT_ID, LABEL, take
from streamsynth.errors import StreamsynthError
from streamsynth.manifest import ManifestCounter, build_manifest

EXIT_LOSS = 1
DEFAULT_MANIFEST = "replay.manifest.json"


@app.command("replay")
def replay_command(
    source: SourceArg,
    to: Annotated[str, typer.Option("--to", help="kafka://host:9092/topic, http(s)://host/path, "
                                    "file:///dir/out.parquet (.jsonl, .csv), or - for stdout.")],
    speed: Annotated[float | None, typer.Option("--speed", help="Event time per wall-clock time: "
                                                "1 = real time, 60 = a minute per second.")] = None,
    rate: Annotated[float | None, typer.Option("--rate", help="Events per second.")] = None,
    metrics_port: Annotated[int | None, typer.Option("--metrics-port",
                                                     help="Serve Prometheus metrics on this port.")] = None,
    metrics_host: Annotated[str, typer.Option("--metrics-host", help="Address for the metrics "
                                              "endpoint (0.0.0.0 to expose it).")] = "127.0.0.1",
    checkpoint: Annotated[Path | None, typer.Option("--checkpoint", help="Resume from and record "
                                                    "progress in this file.")] = None,
    manifest: Annotated[Path | None, typer.Option("--manifest", help="Where to write the manifest "
                                                  "(default: beside a file output, else "
                                                  f"./{DEFAULT_MANIFEST}).")] = None,
    n_events: EventsOpt = None,
    end: EndOpt = None,
    entities: EntitiesOpt = None,
    start: StartOpt = None,
    seed: SeedOpt = None,
    shard: ShardOpt = None,
    condition: ConditionOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Events per source batch.")] = 10_000,
    flush_every: Annotated[float, typer.Option("--flush-every", help="Seconds between "
                                               "acknowledgement checkpoints.")] = 1.0,
) -> None:
    """Replay a source in real time, at a rate, or flat out, to a sink; Ctrl-C or SIGTERM stop it
    cleanly after a flush.

    With --checkpoint, a replay started again with the same arguments resumes after the last
    acknowledged event (at-least-once: only events after the last checkpoint are sent again).
    """
    pacing = Pacing(speed=speed, rate=rate)
    sink_url = SinkURL.parse(to)
    args = {"source": source, "seed": seed, "start": start, "end": end, "entities": entities,
            "n_events": n_events, "shard": shard, "condition": condition, "batch_size": batch_size}
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
    src = open_source_args(args)
    manifest_file = manifest or _default_manifest(sink_url)
    metrics = ReplayMetrics()
    if metrics_port is not None:
        port = metrics.serve(metrics_port, metrics_host)
        typer.echo(f"metrics on http://{metrics_host}:{port}/metrics", err=True)
    stop = threading.Event()
    result: ReplayResult | None = None
    try:
        sink = open_sink(to, time=src.time, entity=src.entity, metrics=metrics, append=skip > 0)

        def save(position: int, done_counter: ManifestCounter) -> None:
            if checkpoint is not None:
                state.position, state.counts = position, done_counter.to_dict()
                state.save(checkpoint)

        if skip:
            typer.echo(f"resuming after {skip:,} acknowledged events ({checkpoint})", err=True)
        with _signals(stop), _ProgressBar(n_events, skip) as bar:
            result = replay(src.stream, sink, time_column=src.time, pacing=pacing, metrics=metrics,
                            skip=skip, counter=counter, stop=stop, on_checkpoint=save,
                            on_progress=bar.update, flush_every=flush_every)
    finally:
        metrics.close()
    if checkpoint is not None and not result.stopped:
        state.done = True
        state.save(checkpoint)
    record = build_manifest(
        counter=result.counter, output=sink_url.redacted(), model=src.description, seed=seed,
        extra={"source_args": args, "sink": sink_url.redacted(),
               "sent": {"from": 0, "to": result.position}, "complete": not result.stopped,
               "replay": pacing.describe() | {"dead_lettered": result.dead_lettered}},
    )
    manifest_file.parent.mkdir(parents=True, exist_ok=True)
    manifest_file.write_text(json.dumps(record, indent=2, default=str) + "\n")
    how = "stopped" if result.stopped else "replayed"
    typer.echo(f"{how}: {result.sent:,} events acknowledged by {sink_url.redacted()} in "
               f"{result.seconds:.1f} s ({result.rate:,.0f} events/s); position {result.position:,}"
               + (f"; {result.dead_lettered:,} dead-lettered" if result.dead_lettered else "")
               + f"; manifest {manifest_file}", err=True)
    if result.stopped and checkpoint is not None:
        typer.echo(f"resume with the same command (checkpoint {checkpoint})", err=True)


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
    src = open_source_args(args)
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
            typer.echo(f"  {kind}: {', '.join(ids)}")
    if not report.ok:
        raise typer.Exit(EXIT_LOSS)


def open_source_args(args: dict[str, Any]) -> Any:
    """Open a source from the arguments a replay recorded (the same arguments, the same events)."""
    return open_for_cli(args["source"], args.get("seed"), args.get("start"), args.get("end"),
                 args.get("entities"), args.get("n_events"), args.get("shard"),
                 args.get("condition"),
                 batch_size=10_000 if args.get("batch_size") is None else args["batch_size"])  # 0 is checked


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


class _signals:
    """SIGINT/SIGTERM set ``stop`` (flush and exit cleanly); a second one aborts at once."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.stop.is_set():
            raise KeyboardInterrupt
        self.stop.set()
        typer.echo(f"\n{signal.Signals(signum).name}: flushing and stopping "
                   "(again to abort at once)", err=True)

    def __enter__(self) -> _signals:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self.previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)


class _ProgressBar:
    """Events acknowledged, as a rich bar on a terminal; silent otherwise."""

    def __init__(self, total: int | None, done: int) -> None:
        self.total, self.done = total, done
        self._bar = None
        self._task = None

    def __enter__(self) -> _ProgressBar:
        if sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

            from streamsynth.cli.options import err_console

            self._bar = Progress("[progress.description]{task.description}", BarColumn(),
                                 MofNCompleteColumn(), TimeElapsedColumn(), console=err_console,
                                 transient=True)
            self._bar.start()
            self._task = self._bar.add_task("replay", total=self.total, completed=self.done)
        return self

    def update(self, position: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=position)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
