"""``streamsynth load`` options of issue 20 through the command line, against a loopback service:
thresholds on one label's figures, ``--expect`` truths over the event's own columns, and ``--loop``.

The service's answers depend only on the event it gets, so the counts asserted are exact; no
latency is asserted (two shared cores).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pytest
from aiohttp import web
from loopback_app import LoopbackApp

from streamsynth.cli import main
from streamsynth.contract import EVENT_ID, IS_ANOMALY

FRAUD = "fraud.card_testing"


class Service(LoopbackApp):
    """Answers each event with ``decide(event)``'s status, keeping the events it got."""

    def __init__(self, decide: Callable[[dict], int]) -> None:
        self.decide = decide
        self.events: list[dict] = []
        app = web.Application()
        app.router.add_post("/score", self._handle)
        super().__init__(app)

    async def _handle(self, request: web.Request) -> web.Response:
        event = json.loads(await request.read())
        self.events.append(event)
        return web.Response(status=self.decide(event))


@pytest.fixture
def service() -> Iterator[Callable[[Callable[[dict], int]], Service]]:
    started: list[Service] = []

    def start(decide: Callable[[dict], int]) -> Service:
        started.append(Service(decide))
        return started[-1]

    yield start
    for s in started:
        s.close()


@pytest.fixture
def events(written_events) -> tuple[Path, pl.DataFrame]:
    return written_events(500, seed=5, fraud=0.2)


def fail_fraud(event: dict) -> int:
    """A 5xx for every anomaly: the fraud label's error share is 1, the normal one's 0."""
    return 500 if event[IS_ANOMALY] else 200


# -- thresholds on one label ---------------------------------------------------------------------------
def test_a_label_threshold_reads_that_label_s_figures_only(service, events, tmp_path, capsys):
    srv = service(fail_fraud)
    path, _ = events
    out, report = tmp_path / "summary.json", tmp_path / "load.html"
    code = main(["load", str(path), "--to", srv.url(), "--rate", "60", "--duration", "1s",
                 "--threshold", "errors{label=normal}<1%", "--threshold", f"errors{{label={FRAUD}}}<1%",
                 "--threshold", "errors<100%", "--threshold", "p99{label=fraud_burst}<250ms",
                 "--summary-json", str(out), "--report", str(report)])
    assert code == 1
    printed = capsys.readouterr().out
    assert "threshold held: errors{label=normal}<1% (is 0.000%)" in printed
    assert f"threshold crossed: errors{{label={FRAUD}}}<1% (is 100.000%)" in printed
    assert "threshold held: errors<100%" in printed
    # a label no event had: crossed at the end, naming the labels there were
    assert (f"threshold crossed: p99{{label=fraud_burst}}<250ms (no events labelled 'fraud_burst'; "
            f"the labels seen: {FRAUD}, normal)") in printed
    summary = json.loads(out.read_text())
    assert summary["thresholds"]["crossed"] == [f"errors{{label={FRAUD}}}<1%", "p99{label=fraud_burst}<250ms"]
    assert summary["thresholds"]["held"] == ["errors{label=normal}<1%", "errors<100%"]
    assert list(summary["thresholds"]["unseen_labels"]) == ["p99{label=fraud_burst}<250ms"]
    figures = summary["figures"]
    assert figures["errors{label=normal}"] == 0 and figures[f"errors{{label={FRAUD}}}"] == 1
    assert figures["errors"] == summary["labels"][FRAUD]["sent"] / summary["total"]["sent"]
    page = report.read_text()
    assert f'<tr class="crossed"><td>errors{{label={FRAUD}}}&lt;1%</td>' in page
    assert "no events labelled &#x27;fraud_burst&#x27;" in page


def test_a_label_threshold_aborts_the_run(service, events, capsys):
    srv = service(fail_fraud)
    path, _ = events
    code = main(["load", str(path), "--to", srv.url(), "--rate", "20", "--duration", "4s",
                 "--threshold", f"errors{{label={FRAUD}}}<1%", "--threshold", "errors{label=normal}<1%",
                 "--abort-on-fail"])
    assert code == 1
    printed = capsys.readouterr().out
    assert f"ended: aborted: errors{{label={FRAUD}}}<1%" in printed
    assert len(srv.events) < 80  # stopped before the schedule's end


@pytest.mark.parametrize("text", ["p99{status=200}<1ms", "p99{label=}<1ms", "p99{label=a<1ms"])
def test_a_bad_label_filter_is_an_error_naming_the_option(service, events, text, capsys):
    srv = service(fail_fraud)
    path, _ = events
    assert main(["load", str(path), "--to", srv.url(), "--rate", "10", "--duration", "1s",
                 "--threshold", text]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: --threshold") and len(err) <= 2, err
    assert not srv.events


# -- the event's own columns in the truth of --expect ---------------------------------------------------
def test_the_truth_of_expect_reads_the_event_s_columns(service, events, tmp_path):
    """The service flags amounts above 60; the truth is normal events above 40 on any card but one:
    the matrix counts exactly the events of each kind the service got."""
    path, _ = events
    srv = service(lambda e: 402 if e["amount"] > 60 else 200)
    out = tmp_path / "summary.json"
    assert main(["load", str(path), "--to", srv.url(), "--rate", "100", "--duration", "2s",
                 "--expect", "status==402 if amount > 40 and card_id != 'card-7' and not is_anomaly",
                 "--summary-json", str(out)]) == 0
    truth = [e["amount"] > 40 and e["card_id"] != "card-7" and not e[IS_ANOMALY] for e in srv.events]
    flagged = [e["amount"] > 60 for e in srv.events]
    cells = {"tp": (True, True), "fn": (True, False), "fp": (False, True), "tn": (False, False)}
    expected = {cell: sum((t, f) == pair for t, f in zip(truth, flagged, strict=True)) for cell, pair in cells.items()}
    confusion = json.loads(out.read_text())["confusion"]
    assert {cell: confusion[cell] for cell in cells} == expected and len(srv.events) == 200
    assert all(expected.values())  # every cell is exercised


@pytest.mark.parametrize(("expect", "named"), [
    ("status==402 if amount > 10 and channel == 'online'", "'channel'"),
    ("status==402 if status == 500", "'status' is the answer"),
    ("status==402 if __import__('os')", "--expect"),
])
def test_a_truth_reading_a_missing_column_is_an_error_listing_the_columns(service, events, expect, named, capsys):
    srv = service(fail_fraud)
    path, _ = events
    assert main(["load", str(path), "--to", srv.url(), "--rate", "10", "--duration", "1s", "--expect", expect]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("error: --expect") and named in err[0] and len(err) <= 2, err
    if "channel" in expect:
        assert "amount" in err[1] and "card_id" in err[1]  # the hint lists the source's columns
    assert not srv.events


# -- --loop --------------------------------------------------------------------------------------------
@pytest.fixture
def short(written_events) -> tuple[Path, pl.DataFrame]:
    """60 events: half of what 40 a second for 3 seconds asks for."""
    return written_events(60, seed=2, fraud=0.3, name="short")


def test_loop_replays_a_finite_source_with_ids_unique_per_pass(service, short, tmp_path, capsys):
    path, frame = short
    srv = service(lambda e: 402 if e[IS_ANOMALY] else 200)
    out = tmp_path / "summary.json"
    assert main(["load", str(path), "--to", srv.url(), "--rate", "40", "--duration", "3s", "--loop",
                 "--expect", "status==402 if is_anomaly", "--summary-json", str(out)]) == 0
    captured = capsys.readouterr()
    assert "replaying it from the start (pass 2)" in captured.err and "ended early" not in captured.out
    ids = [e[EVENT_ID] for e in srv.events]
    first = frame[EVENT_ID].to_list()
    assert len(ids) == len(set(ids)) == 120
    assert sorted(ids) == sorted(first + [f"{i}-p2" for i in first])
    summary = json.loads(out.read_text())
    assert summary["ended"] == "done" and not summary["source_ended_early"]
    anomalies = int(frame[IS_ANOMALY].sum())
    assert summary["confusion"]["tp"] == 2 * anomalies and summary["confusion"]["tn"] == 120 - 2 * anomalies


def test_without_loop_a_short_source_ends_the_run_and_the_summary_says_so(service, short, tmp_path, capsys):
    path, _ = short
    srv = service(lambda e: 200)
    out, report = tmp_path / "summary.json", tmp_path / "load.html"
    assert main(["load", str(path), "--to", srv.url(), "--rate", "40", "--duration", "3s",
                 "--summary-json", str(out), "--report", str(report)]) == 0
    printed = capsys.readouterr().out
    early = "the source ended early: 60 of 120 arrivals scheduled (--loop replays a finite source)"
    assert "ended: source exhausted" in printed and early in printed and early in report.read_text()
    summary = json.loads(out.read_text())
    assert summary["source_ended_early"] and summary["total"]["scheduled"] == len(srv.events) == 60


def test_loop_replays_a_finite_sample_pass_after_pass(service, tmp_path, capsys):
    srv = service(lambda e: 200)
    out = tmp_path / "summary.json"
    assert main(["load", "demo", "--events", "25", "--batch-size", "10", "--to", srv.url(), "--rate", "20",
                 "--duration", "3s", "--loop", "--summary-json", str(out)]) == 0
    assert "(pass 3)" in capsys.readouterr().err
    ids = [e[EVENT_ID] for e in srv.events]
    assert len(ids) == len(set(ids)) == 60  # 25 + 25 + 10 events, each sent once
    first = {i for i in ids if "-p" not in i}
    second = {i.removesuffix("-p2") for i in ids if i.endswith("-p2")}
    third = {i.removesuffix("-p3") for i in ids if i.endswith("-p3")}
    assert len(first) == 25 and second == first and len(third) == 10 and third < first  # the same sample again
    assert json.loads(out.read_text())["ended"] == "done"
