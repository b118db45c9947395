"""The event loop ``streamsynth load`` sends from (:mod:`streamsynth.connectors.loadtest.eventloop`):
``$STREAMSYNTH_EVENT_LOOP`` through the command line, its workers included, against the loopback
service of :mod:`test_load`; and the latencies stay microsecond-grained under uvloop, whose own
clock counts whole milliseconds."""

from __future__ import annotations

import json
import sys

import pytest
from hdrh.histogram import HdrHistogram
from streamsynth.connectors.loadtest.eventloop import ENV, chosen
from streamsynth.connectors.loadtest.runner import run_load
from test_load import ok, settings
from test_load import service as service  # the fixture

from streamsynth.cli import main
from streamsynth.errors import StreamsynthError

NEEDS_UVLOOP = pytest.mark.skipif(chosen("auto") != "uvloop",
                                  reason="uvloop is not installed (pip install 'streamsynth[fast]')")
LOOPS = ["asyncio", pytest.param("uvloop", marks=NEEDS_UVLOOP)]


@pytest.mark.parametrize(("loop", "workers"), [("asyncio", 1), pytest.param("uvloop", 1, marks=NEEDS_UVLOOP),
                                               pytest.param("uvloop", 2, marks=NEEDS_UVLOOP)])
def test_the_environment_picks_the_loop_of_the_run_and_of_its_workers(service, written_events, tmp_path,
                                                                      monkeypatch, loop, workers):
    path, _ = written_events(300, seed=1, fraud=0.1)
    monkeypatch.setenv(ENV, loop)
    srv = service(ok)
    out = tmp_path / "summary.json"
    assert main(["load", str(path), "--to", srv.url(), "--rate", "150", "--duration", "1s",
                 "--workers", str(workers), "--summary-json", str(out)]) == 0
    s = json.loads(out.read_text())
    assert s["event_loop"] == loop  # the workers report the loop they ran, not the parent's choice
    assert (s["ended"], s["workers"], s["total"]["answered"], len(srv.requests)) == ("done", workers, 150, 150)
    assert s["per_second"][0]["sent"] == 150


@pytest.mark.parametrize(("value", "words"), [("tokio", "not an event loop"), ("uvloop", "not installed")])
def test_a_loop_that_cannot_run_is_an_error_before_any_request(service, written_events, monkeypatch, capsys,
                                                                value, words):
    path, _ = written_events(50, seed=1, fraud=0.1)
    monkeypatch.setenv(ENV, value)
    monkeypatch.setitem(sys.modules, "uvloop", None)  # as if not installed: importing it raises
    srv = service(ok)
    assert main(["load", str(path), "--to", srv.url(), "--rate", "50", "--duration", "1s"]) == 2
    err = capsys.readouterr().err
    assert ENV in err and words in err
    assert srv.requests == []


def test_auto_falls_back_to_asyncio_without_uvloop(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvloop", None)
    monkeypatch.delenv(ENV, raising=False)
    assert chosen() == "asyncio" and chosen("auto") == "asyncio" and chosen(" ASYNCIO ") == "asyncio"
    with pytest.raises(StreamsynthError, match="not installed"):
        chosen("uvloop")


def _values_us(histogram: HdrHistogram) -> list[int]:
    return [step.value_iterated_to for step in histogram.get_recorded_iterator()
            for _ in range(step.count_added_in_this_iter_step)]


@pytest.mark.parametrize("loop", LOOPS)
def test_latencies_are_measured_to_the_microsecond_under_either_loop(service, make_events, loop):
    """An immediate answer takes a fraction of a millisecond: a whole-millisecond clock (uvloop's
    loop.time()) would record nearly every latency as 0 (1 us, the histogram's floor) or 1000 us."""
    srv = service(ok)
    result = run_load(settings(srv.url(), 200, 1, event_loop=loop), iter([make_events(200)]))
    assert result.event_loop == loop
    total = result.measurements.total()
    assert total.answered == 200
    for histogram in (total.from_sent, total.from_scheduled):
        values = _values_us(histogram)
        whole_ms = [v for v in values if v % 1000 in (0, 1)]
        assert len(whole_ms) < len(values) / 10, values[:20]
    # never sent before its time, whichever loop's timers woke the schedule
    assert total.from_scheduled.get_min_value() >= total.from_sent.get_min_value()
