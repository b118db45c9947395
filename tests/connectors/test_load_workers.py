"""``streamsynth load --workers N``: N sender processes reported as one run, against a loopback
service (:class:`test_load.Service`) that records every request's event id.

Counts -- each event exactly once, labels, the confusion matrix -- are exact; latency uses the
single-process tests' tolerance. Each run is a second or two plus the workers' start (spawned
processes import polars and the runner: about a second on a busy two-core machine).
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
from prometheus_client.parser import text_string_to_metric_families
from streamsynth.connectors.loadtest.expect import Expectation
from streamsynth.connectors.loadtest.prometheus import WorkerMetrics
from streamsynth.connectors.loadtest.requests import RequestTemplate
from streamsynth.connectors.loadtest.runner import LoadSettings
from streamsynth.connectors.loadtest.schedule import arrival_times, parse_stages
from streamsynth.connectors.loadtest.share import Share
from streamsynth.connectors.loadtest.workers import run_workers
from test_load import Stalls, assert_latency_matches, known_decisions, ok
from test_load import service as service  # the fixture

from streamsynth.cli import main
from streamsynth.cli.load import _open_stream
from streamsynth.cli.source_options import SourceOptions
from streamsynth.contract import EVENT_ID, LABEL


def _ids(srv) -> Counter[str]:
    """The event ids the service received, counted (a batch's body is a JSON array)."""
    ids: Counter[str] = Counter()
    for _, _, _, body in srv.requests:
        events = json.loads(body)
        ids.update(e[EVENT_ID] for e in (events if isinstance(events, list) else [events]))
    return ids


def test_shares_split_the_schedule_and_the_requests_exactly():
    segments = parse_stages("1s:40,1s:10")
    whole = list(arrival_times(segments))
    shares = [Share(k, 3) for k in range(3)]
    assert sorted(t for s in shares for t in s.times(segments)) == whole
    assert [s.max_in_flight(10) for s in shares] == [4, 3, 3]
    # two source batches of 7 and 5 rows, 2 rows a request: requests 0-3 in the first (the last of
    # one row), 4-6 in the second; worker k sends requests k, k+3, ...
    batches = [pl.DataFrame({"n": range(7)}), pl.DataFrame({"n": range(7, 12)})]
    rows = [[b["n"].to_list() for b in s.events(iter(batches), 2)] for s in shares]
    assert rows == [[[0, 1, 6], [11]], [[2, 3], [7, 8]], [[4, 5], [9, 10]]]


@pytest.fixture
def labelled(tmp_path: Path, make_events) -> tuple[Path, pl.DataFrame]:
    events = make_events(300, seed=3, fraud=0.2)
    path = tmp_path / "events.parquet"
    events.write_parquet(path)
    return path, events


def test_two_workers_send_each_event_once_and_merge_exactly(service, labelled, tmp_path):
    """The single-process test of labels and the confusion matrix, with two workers and a 50 ms
    answer: the service sees every event exactly once, the merged counts are exact, and the
    percentiles are the injected delay's, within the single-process tests' tolerance."""
    path, events = labelled
    anomalous, normal, decide = known_decisions(events, delay=0.05)
    srv = service(decide)
    out = tmp_path / "summary.json"
    with Stalls() as stalls:
        code = main(["load", str(path), "--to", srv.url(), "--rate", "150", "--duration", "2s", "--workers", "2",
                     "--expect", "status==402 if is_anomaly", "--threshold", "p99<5s", "--threshold", "errors<0.1%",
                     "--summary-json", str(out), "--report", str(tmp_path / "report.html")])
    assert code == 0  # thresholds held
    assert _ids(srv) == Counter(events[EVENT_ID].to_list())  # all 300, each once
    s = json.loads(out.read_text())
    assert s["workers"] == 2 and s["workers_lost"] == [] and s["ended"] == "done"
    assert "by 2 workers" in (tmp_path / "report.html").read_text()
    counts = dict(events.group_by(LABEL).len().iter_rows())
    assert {label: stats["scheduled"] for label, stats in s["labels"].items()} == counts
    assert s["labels"]["fraud.card_testing"]["status"] == {"200": 7, "402": len(anomalous) - 7}
    assert s["labels"]["normal"]["status"] == {"200": len(normal) - 11, "402": 11}
    c = s["confusion"]
    assert (c["tp"], c["fn"], c["fp"], c["tn"]) == (len(anomalous) - 7, 7, 11, len(normal) - 11)
    assert c["by_label"]["fraud.card_testing"] == {"tp": len(anomalous) - 7, "fn": 7, "fp": 0, "tn": 0}
    assert [sec["target"] for sec in s["per_second"][:2]] == [150, 150]
    assert len(srv.handled) == 300
    assert_latency_matches(s["total"]["latency_ms"]["from_sent"], srv, stalls)


def test_a_crossed_threshold_aborts_every_worker_and_sets_the_exit_code(service, labelled, capsys):
    """(The merge test above holds its thresholds and exits 0.) The parent checks the merged
    figures each second and stops both workers well before the schedule's 20 s."""
    srv = service(ok)
    assert main(["load", str(labelled[0]), "--to", srv.url(), "--rate", "50", "--duration", "20s", "--loop",
                 "--workers", "2", "--threshold", "p50<0.001ms", "--threshold", "p99<5s", "--abort-on-fail"]) == 1
    printed = capsys.readouterr().out
    assert "ended: aborted: p50<0.001ms" in printed and "by 2 workers" in printed
    assert "threshold crossed: p50<0.001ms" in printed and "threshold held: p99<5s" in printed
    assert len(srv.requests) < 200  # 1 s in: about 50 sent


@pytest.mark.parametrize(("extra", "option"), [(["--workers", "0"], "--workers"),
                                               (["--workers", "3", "--max-in-flight", "2"], "--max-in-flight")])
def test_bad_workers_options_are_named(extra, option, labelled, capsys):
    code = main(["load", str(labelled[0]), "--to", "http://127.0.0.1:9/x", "--rate", "5", "--duration", "1s",
                 *extra])
    assert code == 2
    assert option in capsys.readouterr().err


def test_merged_prometheus_metrics_agree_with_the_summary(service, labelled):
    srv = service(ok)
    metrics = WorkerMetrics()
    port = metrics.serve(0)
    settings = LoadSettings(segments=parse_stages("1s:100"), template=RequestTemplate.build(srv.url()),
                            expect=Expectation.parse("status==402"), metrics=metrics)
    try:
        result = run_workers(settings, functools.partial(_open_stream, SourceOptions(str(labelled[0])), False), 2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
    finally:
        metrics.close()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert result.workers == 2 and result.measurements.total().answered == 50  # a ramp 0 -> 100/s over 1 s
    for label, stats in result.measurements.labels.items():
        assert samples[("streamsynth_load_requests_total", (("label", label), ("status", "200")))] == stats.answered
        key = ("streamsynth_load_latency_seconds_count", (("from", "sent"), ("label", label)))
        assert samples[key] == stats.answered
    assert samples[("streamsynth_load_in_flight", ())] == 0


def _workers(pid: int) -> list[int]:
    """The worker processes of the ``load`` process ``pid`` (not multiprocessing's resource tracker)."""
    children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return [c for c in children if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def _started(path: Path, url: str) -> subprocess.Popen[str]:
    """A minute-long ``load --workers 2`` in a process of its own, once its first status line is out."""
    process = subprocess.Popen([sys.executable, "-m", "streamsynth", "load", str(path), "--to", url, "--rate", "20",
                                "--duration", "60s", "--loop", "--workers", "2"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert process.stderr is not None
    for line in process.stderr:  # --loop's passes are said too, before the first status line
        if line.startswith("["):
            return process
    raise AssertionError(f"no status line; exit {process.wait()}")


def test_ctrl_c_stops_every_worker_and_still_prints_the_merged_summary(service, labelled):
    srv = service(ok)
    with _started(labelled[0], srv.url()) as process:
        workers = _workers(process.pid)
        assert len(workers) == 2
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "ended: interrupted" in out and "by 2 workers" in out and "Traceback" not in err
    sent = int(next(line for line in out.splitlines() if line.startswith("total")).split()[2])
    assert sent == sum(_ids(srv).values()) and 0 < sent < 200  # every request sent is counted
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)


def test_a_worker_that_dies_is_reported_and_the_run_exits_2(service, labelled):
    srv = service(ok)
    with _started(labelled[0], srv.url()) as process:
        victim = _workers(process.pid)[-1]
        os.kill(victim, signal.SIGKILL)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 2, err
    assert "exited with code -9" in err and "lost: worker" in out and "total" in out
