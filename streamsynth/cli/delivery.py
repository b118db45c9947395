"""Delivery commands: ``replay`` a source to Kafka, HTTP, files or stdout, and ``verify`` it arrived.

This is where a SOURCE becomes a stream (:meth:`SourceOptions.open`, via :mod:`streamsynth.pipeline`);
everything after that is the ``connectors`` package. The manifest of a replay records the source's arguments, so
``verify`` can regenerate exactly what was sent and reconcile it with what a sink holds.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import polars as pl
import typer

from streamsynth.cli import app
from streamsynth.cli.options import MetricsHost, MetricsPort
from streamsynth.cli.source_options import SourceOptions, source_options
from streamsynth.connectors import read_back
from streamsynth.connectors.job import DEFAULT_MANIFEST, DEFAULT_SHUTDOWN_TIMEOUT, EXIT_LOSS, ReplayJob, ReplaySettings
from streamsynth.connectors.verify import reconcile
from streamsynth.contract import EVENT_ID, LABEL, take
from streamsynth.errors import StreamsynthError, refuse_without


@app.command("replay")
@source_options(batch_size=True)
def replay_command(
    source: SourceOptions,
    to: Annotated[str, typer.Option("--to", help="kafka://host:9092/topic, http(s)://host/path, "
                                    "file:///dir/out.parquet (.jsonl, .csv), or - for stdout.")],
    speed: Annotated[float | None, typer.Option("--speed", help="Event time per wall-clock time: "
                                                "1 = real time, 60 = a minute per second.")] = None,
    rate: Annotated[float | None, typer.Option("--rate", help="Events per second.")] = None,
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = "127.0.0.1",
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
    ray: Annotated[bool, typer.Option("--ray", help="Replay with --workers N Ray actors, each one shard "
                                      "of the entities (needs the ray extra); a local runtime unless "
                                      "--ray-address.")] = False,
    ray_address: Annotated[str | None, typer.Option("--ray-address", help="Join this Ray cluster "
                                                    "('auto', HOST:PORT, ray://HOST:10001); implies --ray.")] = None,
    workers: Annotated[int | None, typer.Option("--workers", help="With --ray: how many workers "
                                                "(shards); --rate is split between them.")] = None,
    checkpoint_dir: Annotated[Path | None, typer.Option("--checkpoint-dir", help="With --ray: each "
                                                        "worker K keeps PATH/worker-K-of-N.checkpoint "
                                                        "and resumes from it.")] = None,
) -> None:
    """Replay a source in real time, at a rate, or flat out, to a sink; Ctrl-C or SIGTERM stop it
    cleanly after a flush (bounded by --shutdown-timeout); a second one stops it at once.

    With --checkpoint, a replay started again with the same arguments resumes after the last
    acknowledged event (at-least-once: only events after the last checkpoint are sent again).
    Every run that gets going writes a manifest, however it ends (a signal during start-up
    included; a sink or source that cannot be opened leaves an earlier one alone). Exit codes: 0 done
    or stopped with everything acknowledged; 1 stopped with events unacknowledged; 2 an error;
    130 stopped at once by a second signal.

    With --ray, --workers N Ray actors each replay shard K/N (at --rate R/N each), keeping their
    own checkpoint in --checkpoint-dir and their own manifest; the driver prints their summed
    progress, restarts a worker that dies (it resumes from its checkpoint) and writes one merged
    manifest that `verify` reads.
    """
    settings = ReplaySettings(to=to, speed=speed, rate=rate, checkpoint=checkpoint, manifest=manifest,
                              metrics_port=metrics_port, metrics_host=metrics_host, flush_every=flush_every,
                              shutdown_timeout=shutdown_timeout)

    def say(line: str) -> None:
        typer.echo(line, err=True)

    if ray or ray_address is not None:
        from streamsynth.ray_replay import replay_on_ray

        if workers is None:
            raise StreamsynthError("--ray needs --workers N: how many Ray workers (shards) replay the source",
                                   hint="e.g. --ray --workers 4")
        code = replay_on_ray(source, settings, workers=workers, checkpoint_dir=checkpoint_dir,
                             address=ray_address, say=say)
    else:
        refuse_without("--ray", "add --ray (and the ray extra), or use --checkpoint FILE for one replay here",
                       workers=workers is not None, checkpoint_dir=checkpoint_dir is not None)
        job = ReplayJob(settings, source.as_args(), source.open, requested_seed=source.seed,
                        n_events=source.n_events, say=say)
        code = job.run()
    if code:
        raise typer.Exit(code)


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
    report = reconcile(_expected(record), read_back(from_, timeout=timeout))
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


def _expected(record: dict[str, Any]) -> Iterator[pl.DataFrame]:
    """The (event_id, label) frames the replay sent: the first ``sent`` events of its source, or,
    for a merged ``replay --ray`` manifest, those of each worker's shard."""
    parts = record.get("workers") or [record]
    for part in parts:
        src = SourceOptions.from_args(part["source_args"]).open()
        yield from (b.select(EVENT_ID, LABEL) for b in take(src.stream, int(part["sent"]["to"])))


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


