"""``streamsynth load``: the schedule, request rendering, --expect, thresholds, and the open-loop
runner against a real HTTP service on loopback whose latency and decisions the test controls.

Timing assertions are loose (the machine may be loaded: two cores, other suites running); counts
-- arrivals, drops, labels, the confusion matrix -- are exact.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import polars as pl
import pytest
from aiohttp import web
from loopback_app import LoopbackApp
from prometheus_client.parser import text_string_to_metric_families
from streamsynth.connectors.loadtest.client import ConnectionPool, ProtocolError, wire
from streamsynth.connectors.loadtest.expect import Expectation
from streamsynth.connectors.loadtest.measure import PERCENTILES
from streamsynth.connectors.loadtest.prometheus import LoadMetrics
from streamsynth.connectors.loadtest.requests import RequestTemplate
from streamsynth.connectors.loadtest.runner import LoadSettings, classify, run_load
from streamsynth.connectors.loadtest.schedule import (
    arrival_times,
    constant,
    parse_duration,
    parse_stages,
    target_per_second,
)
from streamsynth.connectors.loadtest.summary import latency_summary
from streamsynth.connectors.loadtest.thresholds import Threshold, crossed

from streamsynth.cli import main
from streamsynth.contract import EVENT_ID, IS_ANOMALY, LABEL
from streamsynth.errors import StreamsynthError

#: (status, JSON answer or None, seconds to wait before answering) for one request's body
Decide = Callable[[object], tuple[int, object, float]]
RESET = -1  # a status that makes the service drop the connection


class Service(LoopbackApp):
    """A loopback service whose ``decide`` answers each request (status, JSON answer, delay)."""

    def __init__(self, decide: Decide) -> None:
        self.decide = decide
        self.requests: list[tuple[str, str, dict[str, str], bytes]] = []  # method, path, headers, body
        self.handled: list[tuple[float, float]] = []  # each answered request's arrival and answer (monotonic)
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        super().__init__(app)

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        began = time.monotonic()
        body = await request.read()
        self.requests.append((request.method, request.path_qs, dict(request.headers), body))
        status, answer, delay = self.decide(json.loads(body) if body else None)
        if status == RESET:  # cut the connection instead of answering
            assert request.transport is not None
            request.transport.abort()
            raise asyncio.CancelledError
        if delay:
            await asyncio.sleep(delay)
        response = web.Response(status=status) if answer is None else web.json_response(answer, status=status)
        self.handled.append((began, time.monotonic()))
        return response

    def handled_at(self) -> dict[str, float]:
        """The service's own handling times (ms) at the ranks an HDR histogram of as many values
        takes its percentiles from (``get_target_count_at_percentile``), and the max: a request's
        latency measured by the client holds its handling time, so each of the client's figures is
        at least the service's at the same rank."""
        ordered, n = sorted(answered - arrived for arrived, answered in self.handled), len(self.handled)
        ranks = {f"p{p:g}": max(int(p * n / 100 + 0.5), 1) for p in PERCENTILES}
        return {**{k: ordered[r - 1] * 1000 for k, r in ranks.items()}, "max": ordered[-1] * 1000}


class Stalls:
    """When, and how long, a thread of this process waited beyond its 1 ms sleeps while the block
    ran: how long the machine (other processes on the cores, this process's other threads holding
    the GIL) kept this process from running. On a busy machine every thread's waits grow by about
    as much, the runner's and the service's included, so a latency bound that leaves room for the
    stalls met while requests were in the air holds under load and still fails when the
    measurement itself is off."""

    def __init__(self) -> None:
        self.stalls: list[tuple[float, float]] = []  # (from, to), monotonic, each over 1 ms
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while not self._stop.is_set():
            due = time.monotonic() + 0.001
            time.sleep(0.001)
            if (woke := time.monotonic()) - due > 0.001:
                self.stalls.append((due, woke))

    def longest_ms(self, begin: float, end: float) -> float:
        """The longest stall (ms) that overlapped ``begin`` .. ``end`` (monotonic seconds)."""
        return max((b - a for a, b in self.stalls if b >= begin and a <= end), default=0.0) * 1000

    def __enter__(self) -> Stalls:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


@pytest.fixture
def service() -> Iterator[Callable[[Decide], Service]]:
    started: list[Service] = []

    def start(decide: Decide) -> Service:
        started.append(Service(decide))
        return started[-1]

    yield start
    for s in started:
        s.close()


def ok(_: object) -> tuple[int, object, float]:
    return 200, None, 0.0


def flag_anomalies(event) -> tuple[int, object, float]:
    return (402 if event[IS_ANOMALY] else 200), {"decision": "deny" if event[IS_ANOMALY] else "allow"}, 0.02


def known_decisions(events: pl.DataFrame, delay: float = 0.0) -> tuple[list[str], list[str], Decide]:
    """A scorer whose every decision the test knows: it flags the anomalies (402, "deny") but
    misses the first 7 of ``events``' anomalous ones, and flags the first 11 normal ones too (false
    alarms), answering after ``delay`` seconds. Returns the anomalous ids, the normal ids, and
    ``decide`` for :class:`Service`."""
    anomalous = events.filter(pl.col(IS_ANOMALY))[EVENT_ID].to_list()
    normal = events.filter(~pl.col(IS_ANOMALY))[EVENT_ID].to_list()
    missed, false_alarms = set(anomalous[:7]), set(normal[:11])

    def decide(event) -> tuple[int, object, float]:
        flagged = (event[IS_ANOMALY] and event[EVENT_ID] not in missed) or event[EVENT_ID] in false_alarms
        return (402 if flagged else 200), {"decision": "deny" if flagged else "allow"}, delay

    return anomalous, normal, decide


def settings(url: str, rate: float, seconds: float, **kwargs: object) -> LoadSettings:
    return LoadSettings(segments=constant(rate, seconds), template=RequestTemplate.build(url), **kwargs)


# -- the schedule --------------------------------------------------------------------------------------
def test_a_constant_rate_puts_exactly_rate_arrivals_in_every_second():
    assert target_per_second(constant(100, 3)) == [100, 100, 100]
    times = list(arrival_times(constant(4, 1)))
    assert times == [0.0, 0.25, 0.5, 0.75]


def test_stages_ramp_linearly_from_the_previous_target():
    segments = parse_stages("2s:100,1s:100,2s:0")
    counts = target_per_second(segments)
    # 0 -> 100 over 2 s holds 100 arrivals (25 in the first second, 75 in the second), 100 flat,
    # then 100 -> 0 over 2 s the mirror image
    assert counts == [25, 75, 100, 75, 25]
    times = list(arrival_times(segments))
    assert times == sorted(times) and len(times) == 300
    assert parse_stages("30s:100,2m:2000,30s:0")[1].seconds == 120


@pytest.mark.parametrize(("text", "hint"), [("30s-100", "':'"), ("30x:100", "duration"), ("30s:fast", "rate"),
                                            ("0s:10", "no time")])
def test_bad_stages_are_named(text, hint):
    with pytest.raises(StreamsynthError, match=hint) as caught:
        parse_stages(text)
    assert "--stages" in caught.value.message


def test_durations():
    assert parse_duration("250ms", "--x") == 0.25 and parse_duration("5m", "--x") == 300
    with pytest.raises(StreamsynthError, match="--timeout"):
        parse_duration("soon", "--timeout")


# -- rendering requests ---------------------------------------------------------------------------------
def test_a_request_fills_the_path_and_headers_from_the_event_and_carries_it_as_json():
    frame = pl.DataFrame({"customer_id": ["c/1", "c2"], "amount": [1.5, 2.0], LABEL: ["normal", "fraud.x"],
                          IS_ANOMALY: [False, True]})
    template = RequestTemplate.build("http://h:1/accounts/{customer_id}/tx", headers=["X-Customer: {customer_id}"])
    template.check(frame)
    first, second = template.render(frame)
    assert first.url == "http://h:1/accounts/c%2F1/tx" and first.headers == {"X-Customer": "c/1"}
    assert json.loads(first.body) == {"customer_id": "c/1", "amount": 1.5, LABEL: "normal", IS_ANOMALY: False}
    assert (second.label, second.is_anomaly) == ("fraud.x", True)


def test_batched_requests_are_json_arrays_labelled_by_their_injected_events():
    frame = pl.DataFrame({"n": [0, 1, 2], LABEL: ["normal", "fraud.x", "normal"], IS_ANOMALY: [False, True, False]})
    first, second = RequestTemplate.build("http://h/x", batch=2).render(frame)
    assert [e["n"] for e in json.loads(first.body)] == [0, 1] and (first.label, first.is_anomaly) == ("fraud.x", True)
    assert json.loads(second.body) == [{"n": 2, LABEL: "normal", IS_ANOMALY: False}] and second.label == "normal"


@pytest.mark.parametrize(("kwargs", "option"), [
    ({"url": "ftp://h/x"}, "--to"), ({"url": "http:///x"}, "--to"), ({"url": "http://h:port/x"}, "--to"),
    ({"url": "http://h/{0}"}, "--to"),
    ({"url": "http://h/x", "headers": ["NoColon"]}, "--header"), ({"url": "http://h/x", "method": "BREW"}, "--method"),
])
def test_bad_request_options_are_named(kwargs, option):
    with pytest.raises(StreamsynthError) as caught:
        RequestTemplate.build(**kwargs)
    assert caught.value.message.startswith(option)


def test_a_template_naming_a_missing_column_is_refused_with_the_columns():
    with pytest.raises(StreamsynthError, match="customer_id") as caught:
        RequestTemplate.build("http://h/{customer_id}").check(pl.DataFrame({"card_id": ["a"]}))
    assert "card_id" in caught.value.hint


# -- --expect and --threshold ------------------------------------------------------------------------------
def test_expect_reads_status_response_fields_and_the_truth():
    e = Expectation.parse("status==402 if is_anomaly")
    assert e.predict(402, b"") and not e.predict(200, b"") and e.truth({IS_ANOMALY: True})
    assert not e.truth({IS_ANOMALY: False})
    e = Expectation.parse("response.decision == 'deny' or response['risk'] > 0.9 if label != 'normal'")
    assert e.predict(200, b'{"decision": "deny"}') and e.predict(200, b'{"risk": 0.95}')
    assert not e.predict(200, b'{"risk": "high"}') and not e.predict(200, b"not json")
    assert e.truth({LABEL: "fraud.x"}) and not e.truth({LABEL: "normal"})
    # no 'if': the truth is is_anomaly
    assert Expectation.parse("status in (402, 403)").truth({LABEL: "normal", IS_ANOMALY: True})


def test_a_batched_request_is_true_when_any_of_its_events_is():
    frame = pl.DataFrame({"amount": [5.0, 50.0, 7.0], LABEL: ["normal", None, "normal"]})
    e = Expectation.parse("status==402 if amount > 10 and label == 'normal'")  # a missing label is normal
    first, second = RequestTemplate.build("http://h/x", batch=2).render(frame, e.truths)
    assert (first.truth, second.truth) == (True, False)
    unlabelled = Expectation.parse("status==402 if label == 'unlabelled'")  # as a request without labels
    assert unlabelled.truths(frame.drop(LABEL)) == [True, True, True]


@pytest.mark.parametrize("text", ["__import__('os').system('true')", "status.__class__", "status == 402 if "
                                  "is_anomaly else True", "label == 'x' if is_anomaly", "status == 402 if status",
                                  "status = 402", "(lambda: 1)() if is_anomaly", "status == 402 if event.amount"])
def test_expect_refuses_anything_but_comparisons_of_known_names(text):
    with pytest.raises(StreamsynthError) as caught:
        Expectation.parse(text)
    assert caught.value.message.startswith("--expect")


def test_thresholds_parse_units_and_cross():
    t = [Threshold.parse(s) for s in ("p99<250ms", "sent_p50<=1s", "errors<0.1%", "dropped<0.01", "recall>0.9")]
    assert [x.value for x in t] == [250, 1000, 0.001, 0.01, 0.9]
    figures = {"p99": 300.0, "sent_p50": 1000.0, "errors": 0.0005, "dropped": None, "recall": 0.5}
    assert [x.text for x in crossed(t, figures)] == ["p99<250ms", "recall>0.9"]  # no value yet: not crossed
    for bad in ("p99<<3", "p42<1ms", "p99<1%", "errors<3ms", "recall>90%"):
        with pytest.raises(StreamsynthError, match="--threshold"):
            Threshold.parse(bad)


# -- the runner against a real service ---------------------------------------------------------------------
#: what a loopback round trip adds to the service's handling time, beyond the machine's stalls
#: (:class:`Stalls`): 1-6 ms measured at every percentile on the 2-core machine, load average 2-4
TRANSPORT_MS = 10.0


def assert_latency_matches(reported: dict[str, float | None], srv: Service, stalls: Stalls,
                           injected: float = 0.05) -> None:
    """Each reported figure (from the actual send) lies between the service's own handling time at
    the same rank (0.1% below it: the histogram's three digits) and that plus TRANSPORT_MS plus
    twice the longest stall while requests were in the air (a request waits twice on its way: to be
    read, and to be answered): from TRANSPORT_MS before the service's first arrival to as long
    after its last answer, so what ran before the first send (making the events, imports, starting
    processes) is not counted."""
    assert min(answered - arrived for arrived, answered in srv.handled) >= injected  # never below the injected delay
    handled = srv.handled_at()
    arrived, answered = zip(*srv.handled, strict=True)
    longest = stalls.longest_ms(min(arrived) - TRANSPORT_MS / 1000, max(answered) + TRANSPORT_MS / 1000)
    for k, value in reported.items():
        assert value is not None and handled[k] * 0.999 <= value <= handled[k] + TRANSPORT_MS + 2 * longest, (
            f"{k}: reported {value} ms, the service handled in {handled[k]:.2f} ms, longest stall "
            f"{longest:.1f} ms: {reported} vs {handled}")


def test_reported_latency_matches_the_service_s_injected_latency(service, make_events):
    """The reported percentiles match the injected 50 ms as the service itself measured it (a
    loaded machine makes the service's sleeps overrun; on an idle one it handles in 50-52 ms and
    the client reports 51-58 ms), within the stated tolerance: not below it, and not above it by
    more than a loopback round trip and the stalls measured during the run."""
    srv = service(lambda _: (200, None, 0.05))
    events = make_events(200)
    with Stalls() as stalls:
        result = run_load(settings(srv.url(), 50, 2), iter([events]))
    total = result.measurements.total()
    assert total.scheduled == total.sent == total.answered == 100 and total.statuses == {200: 100}
    sent, sched = latency_summary(total.from_sent), latency_summary(total.from_scheduled)
    assert len(srv.handled) == 100
    assert_latency_matches(sent, srv, stalls)
    assert all(sched[k] >= sent[k] for k in sent)  # every request's scheduled time is at or before its send
    assert result.ended == "done" and result.figures["errors"] == 0 and result.figures["dropped"] == 0
    assert sum(s.target for s in result.measurements.seconds) == 100


def test_a_stall_before_sending_shows_from_scheduled_but_not_from_sent(service, make_events):
    """The source keeps pace with the schedule (10 events every 0.1 s), then stalls for a second at
    0.5 s: the requests due from then on leave late. Measured from their scheduled time they waited
    about a second (what users arriving on schedule would see); from the actual send, the service
    answered as fast as ever. This is coordinated omission, corrected."""
    srv = service(ok)
    events = make_events(200)

    def stalling() -> Iterator[pl.DataFrame]:
        began = time.monotonic()
        for k in range(20):
            ready = began + k * 0.1 - 0.05 + (1.0 if k >= 5 else 0.0)
            time.sleep(max(ready - time.monotonic(), 0))
            yield events[10 * k:10 * (k + 1)]

    with Stalls() as stalls:
        result = run_load(settings(srv.url(), 100, 2), stalling())
    total = result.measurements.total()
    assert total.answered == 200
    sched, sent = latency_summary(total.from_scheduled), latency_summary(total.from_sent)
    assert sched["p99"] >= 800 and sched["max"] >= 900
    assert_latency_matches(sent, srv, stalls, injected=0.0)  # the service's time, no second in it


def test_arrivals_beyond_max_in_flight_are_dropped_not_delayed(service, make_events):
    srv = service(lambda _: (200, None, 0.5))
    result = run_load(settings(srv.url(), 100, 2, max_in_flight=4), iter([make_events(400)]))
    total = result.measurements.total()
    assert total.scheduled == 200 and total.sent + total.dropped == 200
    # 4 slots of 0.5 s each over 2 s: about 16 requests leave (a slow machine only lowers it)
    assert 4 <= total.sent <= 24 and total.answered == total.sent
    assert sum(s.dropped for s in result.measurements.seconds) == total.dropped
    sent = latency_summary(total.from_sent)
    assert sent["p50"] >= 500  # what did leave was answered after the injected half second


def test_failures_are_counted_by_class(service, make_events):
    events = make_events(60)

    def decide(event):
        n = int(event[EVENT_ID].removeprefix("ev-"))
        return (RESET, None, 0.0) if n % 3 == 1 else (200, None, 2.0 if n % 3 == 0 else 0.0)

    # a 1 s timeout: an answer due at once counts as answered unless the machine stalls for a
    # second (0.3 s left a loaded one little room); one due after 2 s always times out
    srv = service(decide)
    result = run_load(settings(srv.url(), 30, 2, timeout=1.0), iter([events]))
    total = result.measurements.total()
    assert total.scheduled == total.sent == 60
    assert dict(total.errors) == {"timeout": 20, "reset": 20} and total.statuses == {200: 20}
    assert result.figures["errors"] == 40 / 60


def test_a_refused_connection_is_classified_as_refused():
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    pool = ConnectionPool(f"http://127.0.0.1:{port}/x", timeout=5)
    with pytest.raises(OSError) as refused:
        asyncio.run(pool.request(wire("POST", "/x", f"127.0.0.1:{port}", {}, b"{}")))
    assert classify(refused.value) == "refused"
    assert classify(OSError(113, "no route")) == "other"
    assert classify(ConnectionResetError(104, "reset by peer")) == "reset"
    assert classify(BrokenPipeError()) == "reset"
    assert classify(TimeoutError()) == "timeout"
    assert classify(ProtocolError("not HTTP")) == "other"


def test_prometheus_metrics_agree_with_the_summary(service, make_events):
    srv = service(flag_anomalies)
    metrics = LoadMetrics()
    port = metrics.serve(0)
    try:
        result = run_load(settings(srv.url(), 60, 1, metrics=metrics, max_in_flight=1), iter([make_events(100)]))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
            text = response.read().decode()
    finally:
        metrics.close()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    for label, stats in result.measurements.labels.items():
        for status, n in stats.statuses.items():
            assert samples[("streamsynth_load_requests_total", (("label", label), ("status", str(status))))] == n
        for source in ("scheduled", "sent"):
            key = ("streamsynth_load_latency_seconds_count", (("from", source), ("label", label)))
            assert samples[key] == stats.answered
        if stats.dropped:
            assert samples[("streamsynth_load_dropped_total", (("label", label),))] == stats.dropped
    assert result.measurements.total().dropped > 0  # one slot, 20 ms answers, 60 arrivals a second
    assert samples[("streamsynth_load_in_flight", ())] == 0


def test_labels_and_the_confusion_matrix_are_exact(service, make_events):
    events = make_events(300, seed=3, fraud=0.2)
    anomalous, normal, decide = known_decisions(events)
    srv = service(decide)
    result = run_load(settings(srv.url(), 150, 2, expect=Expectation.parse("status==402 if is_anomaly")),
                      iter([events]))
    m, c = result.measurements, result.confusion
    counts = dict(events.group_by(LABEL).len().iter_rows())
    assert {label: s.scheduled for label, s in m.labels.items()} == counts
    assert m.labels["fraud.card_testing"].statuses == {402: len(anomalous) - 7, 200: 7}
    assert m.labels["normal"].statuses == {402: 11, 200: len(normal) - 11}
    assert dict(c.counts) == {"tp": len(anomalous) - 7, "fn": 7, "fp": 11, "tn": len(normal) - 11}
    assert c.recall == (len(anomalous) - 7) / len(anomalous)
    assert c.precision == (len(anomalous) - 7) / (len(anomalous) - 7 + 11)
    assert c.by_label["fraud.card_testing"] == {"tp": len(anomalous) - 7, "fn": 7}
    assert result.figures["recall"] == c.recall


# -- the command line --------------------------------------------------------------------------------------
@pytest.fixture
def events_path(tmp_path: Path, make_events) -> Path:
    path = tmp_path / "events.parquet"
    make_events(500, seed=5, fraud=0.2).write_parquet(path)
    return path


def test_thresholds_set_the_exit_code_and_the_json_summary(service, events_path, tmp_path, capsys):
    srv = service(flag_anomalies)
    out = tmp_path / "summary.json"
    args = ["load", str(events_path), "--to", srv.url("/tx/{card_id}"), "--rate", "50", "--duration", "1s",
            "--expect", "response.decision == 'deny' if is_anomaly", "--summary-json", str(out)]
    assert main([*args, "--threshold", "p50<1ms", "--threshold", "p99<5s", "--threshold", "recall>0.99"]) == 1
    printed = capsys.readouterr().out
    assert "threshold crossed: p50<1ms" in printed
    assert "threshold held: p99<5s" in printed and "threshold held: recall>0.99" in printed
    summary = json.loads(out.read_text())
    assert summary["thresholds"] == {"crossed": ["p50<1ms"], "held": ["p99<5s", "recall>0.99"], "unseen_labels": {}}
    assert summary["total"]["scheduled"] == 50 and summary["confusion"]["recall"] == 1.0
    assert summary["confusion"]["fp"] == 0 and summary["confusion"]["tn"] == summary["labels"]["normal"]["answered"]
    assert srv.requests[0][1].startswith("/tx/card-")
    assert main([*args, "--threshold", "p99<5s", "--threshold", "errors<0.1%"]) == 0


def test_stages_method_headers_and_batches_shape_the_requests(service, events_path, tmp_path, capsys):
    srv = service(ok)
    out = tmp_path / "summary.json"
    assert main(["load", str(events_path), "--to", srv.url("/cards/{card_id}"), "--stages", "1s:40,1s:0",
                 "--method", "put", "--header", "X-Card: {card_id}", "--batch", "3",
                 "--summary-json", str(out)]) == 0
    summary = json.loads(out.read_text())
    # 0 -> 40/s over a second and back: 20 + 20 arrivals, each a request of 3 events
    targets = [s["target"] for s in summary["per_second"]]
    assert targets[:2] == [20, 20] and sum(targets) == 40
    assert summary["total"]["scheduled"] == summary["total"]["answered"] == len(srv.requests) == 40
    for method, path, headers, body in srv.requests:
        batch = json.loads(body)
        assert method == "PUT" and len(batch) == 3
        assert path == f"/cards/{batch[0]['card_id']}" and headers["X-Card"] == batch[0]["card_id"]
    assert "total" in capsys.readouterr().out


def test_abort_on_fail_stops_early(service, events_path, capsys):
    srv = service(lambda _: (200, None, 0.05))
    began = time.monotonic()
    code = main(["load", str(events_path), "--to", srv.url(), "--rate", "20", "--duration", "10s",
                 "--threshold", "p50<1ms", "--abort-on-fail"])
    # thresholds are checked once a second: it stops after 1-2 s, a loaded machine's start included,
    # far from the schedule's 10 s (a bound near a 3 s schedule left a loaded machine little room)
    assert code == 1 and time.monotonic() - began < 8
    assert "ended: aborted: p50<1ms" in capsys.readouterr().out
    assert len(srv.requests) < 60


@pytest.mark.parametrize(("extra", "option"), [
    (["--stages", "30s-100"], "--stages"),
    (["--rate", "10", "--duration", "1s", "--threshold", "p99<<3"], "--threshold"),
    (["--rate", "10", "--duration", "1s", "--expect", "status=402"], "--expect"),
    (["--rate", "10", "--duration", "soon"], "--duration"),
    (["--rate", "10"], "--duration"),
    (["--rate", "10", "--duration", "1s", "--to", "ftp://127.0.0.1/x"], "--to"),
    (["--rate", "10", "--duration", "1s", "--to", "UNREACHABLE"], "--to"),
    (["--rate", "10", "--duration", "1s", "--to", "SERVICE/{customer_id}"], "--to"),
    (["--rate", "10", "--duration", "1s", "--metrics-port", "SERVICEPORT"], "--metrics-port"),
], ids=["stages", "threshold", "expect", "duration", "no duration", "not http", "unreachable", "no such column",
        "metrics port taken"])
def test_bad_input_is_one_line_naming_the_option(extra, option, service, events_path, free_port, capsys):
    srv = service(ok)
    to = srv.url("/x")
    if "--to" in extra:
        at = extra.index("--to")
        to = extra[at + 1].replace("UNREACHABLE", f"http://127.0.0.1:{free_port()}/x").replace(
            "SERVICE", srv.url(""))
        extra = extra[:at] + extra[at + 2:]
    extra = [str(srv.port) if x == "SERVICEPORT" else x for x in extra]
    assert main(["load", str(events_path), "--to", to, *extra]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(f"error: {option}") and len(err) <= 2, err
    assert not srv.requests  # nothing left before the error


def test_ctrl_c_stops_cleanly_and_still_prints_the_summary(service, events_path):
    srv = service(ok)
    with subprocess.Popen([sys.executable, "-m", "streamsynth", "load", str(events_path), "--to", srv.url(),
                           "--rate", "20", "--duration", "60s"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, "PYTHONUNBUFFERED": "1"}) as process:
        first = process.stderr.readline()  # the first status line: the run is under way
        assert first.startswith("["), first
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "ended: interrupted" in out and "Traceback" not in err
    assert "total" in out and len(srv.requests) < 200


def test_the_readme_load_section_runs_as_written(tmp_path, free_port):
    """README's "Load-test a service": the demo service it starts, then its command, on a free
    port; the demo service declines 90% of anomalies, so the recall threshold holds."""
    root = Path(__file__).resolve().parents[2]
    readme = (root / "README.md").read_text()
    section = readme[readme.index("## Load-test a service"):readme.index("\n## ", readme.index("## Load-test"))]
    block = section.split("```bash\n")[1].split("```")[0].replace("\\\n", " ")
    serve, command = [line.split("  #")[0].strip().rstrip("&").strip() for line in block.splitlines() if line.strip()]
    port = str(free_port())
    (tmp_path / "scenarios").symlink_to(root / "scenarios")
    service = subprocess.Popen([sys.executable, *serve.split()[1:-1], port], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert "demo service on" in service.stdout.readline()
        run = command.replace("8080", port).replace("streamsynth ", f"{sys.executable} -m streamsynth ", 1)
        done = subprocess.run(run, shell=True, cwd=tmp_path, capture_output=True, text=True, timeout=120,
                              env=dict(os.environ, STREAMSYNTH_PROGRESS="off"))
    finally:
        service.terminate()
        service.wait(timeout=10)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "threshold held: recall>0.8" in done.stdout and "threshold held: errors<1%" in done.stdout
    assert "<svg" in (tmp_path / "load.html").read_text()
    assert "fraud.card_testing" in done.stdout and "Traceback" not in done.stderr
