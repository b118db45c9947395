"""``load --report``: the HTML report of a run through the command line against the demo service on
loopback, and the per-second latency percentiles its latency chart draws.

Counts are exact; timings are not asserted (two shared cores).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from aiohttp import web
from loopback_app import LoopbackApp
from streamsynth.connectors.loadtest.demo_service import make_app
from streamsynth.connectors.loadtest.measure import Measurements, Second

from streamsynth.cli import main
from streamsynth.contract import LABEL


class DemoService(LoopbackApp):
    """The demo scoring service on loopback, counting the requests it gets."""

    def __init__(self, app: web.Application) -> None:
        self.requests = 0
        app.middlewares.append(self._count)
        super().__init__(app)

    @web.middleware
    async def _count(self, request: web.Request, handler):  # noqa: ANN001 (aiohttp's handler type)
        self.requests += 1
        return await handler(request)


@pytest.fixture
def demo() -> Iterator[DemoService]:
    # declines exactly the anomalies, so the --expect matrix is known: every anomaly a tp, no fp
    srv = DemoService(make_app(catch=1.0, false_alarm=0.0, delay_ms=1.0))
    yield srv
    srv.close()


@pytest.fixture
def events(written_events) -> tuple[Path, pl.DataFrame]:
    return written_events(500, seed=7, fraud=0.2)


def test_the_report_holds_labels_matrix_thresholds_and_both_charts(demo, events, tmp_path, capsys):
    path, frame = events
    report = tmp_path / "load.html"
    code = main(["load", str(path), "--to", demo.url(), "--rate", "60", "--duration", "2s",
                 "--expect", "status==402 if is_anomaly", "--threshold", "p99<30s", "--threshold", "p50<0.001ms",
                 "--report", str(report)])
    assert code == 1  # p50 under a microsecond cannot hold
    capsys.readouterr()
    page = report.read_text()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched

    # every label that was sent has its row, and the total row too
    summary = json.loads(re.search(r'<script type="application/json" id="summary">(.*?)</script>',
                                   page, re.S).group(1))
    labels = set(summary["labels"])
    assert labels and labels <= set(frame[LABEL].unique())
    for label in [*labels, "total"]:
        assert f"<td>{label}</td>" in page
    assert summary["total"]["scheduled"] == 120 == demo.requests

    # the confusion matrix: the demo declines exactly the anomalies
    c = summary["confusion"]
    assert c["fp"] == c["fn"] == 0 and c["tp"] > 0 and c["tp"] + c["tn"] == 120
    assert "Expectation (--expect)" in page and f"<td>{c['tp']}</td>" in page

    # thresholds with their verdicts
    assert '<tr class="held"><td>p99&lt;30s</td>' in page
    assert '<tr class="crossed"><td>p50&lt;0.001ms</td>' in page

    # two charts, each with lines drawn and its own key
    charts = re.findall(r'<svg class="fig".*?</svg>', page, re.S)
    assert len(charts) == 2
    latency, rate = charts
    assert "Latency from the scheduled send" in latency and ">p50<" in latency and ">p99<" in latency
    assert "Achieved (answered) against target rate" in rate and ">target<" in rate and ">answered<" in rate
    for chart in charts:
        points = re.findall(r'<polyline points="([^"]*)"', chart)
        assert len(points) == 2 and all(len(p.split()) >= 2 for p in points)


def test_a_report_in_a_missing_folder_is_an_error_before_any_request(demo, events, tmp_path, capsys):
    path, _ = events
    report = tmp_path / "no" / "such" / "load.html"
    assert main(["load", str(path), "--to", demo.url(), "--rate", "20", "--duration", "1s",
                 "--report", str(report)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: --report") and "does not exist" in err[0]
    assert not (tmp_path / "no").exists() and demo.requests == 0


def test_per_second_percentiles_are_within_one_percent():
    second = Second()
    assert second.latency_ms(50) is None
    for ms in range(1, 101):  # 1 ms ... 100 ms, one each
        second.record_latency(ms / 1000)
    for percentile, expected in ((50, 50.0), (99, 99.0), (100, 100.0), (1, 1.0)):
        got = second.latency_ms(percentile)
        assert got is not None and expected <= got <= expected * 1.0101, (percentile, got)


def test_answers_land_in_the_second_they_completed():
    m = Measurements([10, 10])
    m.answered("normal", 200, from_scheduled=0.004, from_sent=0.001, offset=0.5, size=0)
    m.answered("normal", 200, from_scheduled=0.250, from_sent=0.001, offset=1.2, size=0)
    m.failed("normal", "timeout", offset=1.5)  # no latency: it never got an answer
    first, second = m.seconds
    assert sum(first.latency.values()) == 1 and sum(second.latency.values()) == 1
    assert 4.0 <= first.latency_ms(99) <= 4.05 and 250.0 <= second.latency_ms(50) <= 252.6
