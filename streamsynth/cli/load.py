"""The ``load`` command: an open-loop load test of an HTTP service with learned, labelled traffic.

A SOURCE becomes a stream (:meth:`SourceOptions.open`), each event a request that leaves on the
schedule of ``--rate``/``--duration`` or ``--stages``; the work is the
``streamsynth.connectors.loadtest`` package, imported inside the command so that ``--help`` does
not load aiohttp. ``--workers N`` runs it in N processes (:mod:`~streamsynth.connectors.loadtest.workers`),
reported as one run.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from streamsynth.cli import app
from streamsynth.cli.options import MetricsHost, MetricsPort
from streamsynth.cli.source_options import SourceOptions, source_options
from streamsynth.errors import StreamsynthError

EXIT_THRESHOLD = 1
EXIT_LOST = 2  # a worker died: its requests in flight, and what it measured since its last report, are lost


@app.command("load")
@source_options(batch_size=True)
def load_command(
    source: SourceOptions,
    to: Annotated[str, typer.Option("--to", help="The service: http(s)://host:port/path; the path may name "
                                    "event columns in braces, e.g. /accounts/{customer_id}/tx.")],
    rate: Annotated[float | None, typer.Option("--rate", help="Requests per second (with --duration).")] = None,
    duration: Annotated[str | None, typer.Option("--duration", help="How long to send at --rate, e.g. "
                                                 "30s, 5m.")] = None,
    stages: Annotated[str | None, typer.Option("--stages", help="Ramping rate instead of --rate: "
                                               "DURATION:RATE,..., each stage ramping linearly from the "
                                               "previous rate, e.g. 30s:100,2m:2000,30s:0.")] = None,
    loop: Annotated[bool, typer.Option("--loop", help="Replay a finite SOURCE (a file, a sample with "
                                       "--events) from the start when it runs out before the schedule "
                                       "ends, event ids suffixed per pass.")] = False,
    max_in_flight: Annotated[int, typer.Option("--max-in-flight", min=1, help="Requests awaiting an answer "
                                               "at most; an arrival beyond it is dropped and counted.")] = 1000,
    batch: Annotated[int, typer.Option("--batch", min=1, help="Events per request (a JSON array when "
                                       "above 1).")] = 1,
    method: Annotated[str, typer.Option("--method", help="HTTP method.")] = "POST",
    header: Annotated[list[str] | None, typer.Option("--header", "-H", help="NAME: VALUE, the value may "
                                                     "name event columns in braces. Repeatable.")] = None,
    timeout: Annotated[str, typer.Option("--timeout", help="Give up on a request after this long.")] = "10s",
    expect: Annotated[str | None, typer.Option("--expect", help="What the service should answer, scored "
                                               "against the ground truth, e.g. 'status==402 if is_anomaly'; "
                                               "the truth after 'if' may read the event's columns, e.g. "
                                               "'status==402 if amount > 1000'.")] = None,
    threshold: Annotated[list[str] | None, typer.Option("--threshold", help="Pass/fail criterion, e.g. "
                                                        "'p99<250ms', 'errors<0.1%', 'recall>0.9'; "
                                                        "'p99{label=NAME}<250ms' for one label's "
                                                        "requests. Repeatable.")] = None,
    abort_on_fail: Annotated[bool, typer.Option("--abort-on-fail", help="Stop as soon as a threshold is "
                                                "crossed.")] = False,
    summary_json: Annotated[Path | None, typer.Option("--summary-json", help="Also write the summary "
                                                      "as JSON to this file.")] = None,
    report: Annotated[Path | None, typer.Option("--report", help="Also write an HTML report (summary, "
                                                "--expect matrix, thresholds, latency and rate per "
                                                "second) to this file.")] = None,
    metrics_port: MetricsPort = None,
    metrics_host: MetricsHost = "127.0.0.1",
    workers: Annotated[int, typer.Option("--workers", min=1, help="Sender processes, each sending every "
                                         "Nth request of the schedule at 1/N of the rate with 1/N of "
                                         "--max-in-flight; one process sends up to a few thousand "
                                         "requests a second. Reported as one run.")] = 1,
) -> None:
    """Load-test an HTTP service: requests leave on schedule whatever its latency (open loop), and
    latency is measured from the scheduled and from the actual send time, per label.

    A live status line goes to stderr each second, the summary to stdout. Exit codes: 0 done with
    every threshold holding; 1 a threshold crossed; 2 an error (or a worker died). Ctrl-C stops and
    still reports.
    """
    from streamsynth.connectors.loadtest.expect import Expectation
    from streamsynth.connectors.loadtest.prometheus import LoadMetrics, WorkerMetrics
    from streamsynth.connectors.loadtest.requests import RequestTemplate
    from streamsynth.connectors.loadtest.runner import LoadSettings, run_load
    from streamsynth.connectors.loadtest.schedule import from_options
    from streamsynth.connectors.loadtest.thresholds import Threshold

    segments = from_options(rate, duration, stages)
    seconds = _checked(timeout, report)
    if max_in_flight < workers:
        raise StreamsynthError(f"--max-in-flight {max_in_flight} is below --workers {workers}",
                               hint="each worker needs at least one request in flight: raise --max-in-flight")
    settings = LoadSettings(
        segments=segments, template=RequestTemplate.build(to, method=method, headers=header, batch=batch),
        max_in_flight=max_in_flight, timeout=seconds, abort_on_fail=abort_on_fail,
        expect=Expectation.parse(expect) if expect is not None else None,
        thresholds=[Threshold.parse(t) for t in threshold or []],
        metrics=(LoadMetrics() if workers == 1 else WorkerMetrics()) if metrics_port is not None else None,
    )
    open_stream = functools.partial(_open_stream, source, loop)
    stream = open_stream(_say) if workers == 1 else None  # workers open their own
    if settings.metrics is not None:
        port = settings.metrics.serve(metrics_port or 0, metrics_host)
        _say(f"metrics on http://{metrics_host}:{port}/metrics")
    try:
        if stream is not None:
            result = run_load(settings, stream, say=_say)
        else:
            from streamsynth.connectors.loadtest.workers import run_workers

            result = run_workers(settings, open_stream, workers, say=_say)
    finally:
        if settings.metrics is not None:
            settings.metrics.close()
    _report(result, summary_json, report)
    if result.lost:
        raise typer.Exit(EXIT_LOST)
    if result.crossed:
        raise typer.Exit(EXIT_THRESHOLD)


def _open_stream(source: SourceOptions, loop: bool, say: Callable[[str], None]) -> Iterator[Any]:
    """SOURCE's batches, replayed with ``--loop`` (a worker of ``--workers`` calls it in its process)."""
    stream = source.open(endless=True).stream
    if loop:
        from streamsynth.connectors.loadtest.looping import looped

        stream = looped(stream, lambda: source.open(endless=True).stream, say=say)
    return stream


def _checked(timeout: str, report: Path | None) -> float:
    """--timeout in seconds; and the report's folder, checked before the run: a report that
    cannot be written should not cost the run itself."""
    from streamsynth.connectors.loadtest.schedule import parse_duration

    seconds = parse_duration(timeout, "--timeout")
    if seconds <= 0:
        raise StreamsynthError("--timeout is 0", hint="give --timeout above 0, e.g. 10s")
    if report is not None and not report.parent.is_dir():
        raise StreamsynthError(f"--report {report}: the folder {report.parent} does not exist",
                               hint="create the folder first, or give a path in an existing one")
    return seconds


def _say(line: str) -> None:
    typer.echo(line, err=True)


def _report(result: object, summary_json: Path | None, report: Path | None) -> None:
    """The summary table on stdout, then the JSON summary and the HTML report where asked for."""
    from streamsynth.connectors.loadtest.summary import table, to_dict
    from streamsynth.outputs import write_text

    typer.echo(table(result))
    if summary_json is not None:
        write_text(summary_json, json.dumps(to_dict(result), indent=2) + "\n")
    if report is not None:
        from streamsynth.connectors.loadtest.report import write_report

        write_report(result, report)
