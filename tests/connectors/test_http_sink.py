"""The HTTP sink against a real server on loopback: batching, retries, Retry-After, dead letters,
and the Prometheus metrics of the replay scraped over HTTP."""

from __future__ import annotations

import json
import time
import urllib.request
from collections import Counter

import polars as pl
import pytest
from streamsynth.connectors import open_sink
from streamsynth.connectors.metrics import ReplayMetrics
from streamsynth.connectors.replay import replay

from streamsynth.contract import rebatch
from streamsynth.errors import StreamsynthError


def stream(frame, size=1000):
    return rebatch(iter([frame]), size)


def test_batches_arrive_once_each_with_auth_header(receiver, monkeypatch, make_events):
    monkeypatch.setenv("RECEIVER_TOKEN", "Bearer s3cret")
    frame = make_events(2_000)
    sink = open_sink(receiver.url(batch=300, concurrency=3, auth_env="RECEIVER_TOKEN"),
                     time="ts", entity="card_id")
    result = replay(stream(frame), sink, time_column="ts")
    assert result.sent == 2_000 and result.position == 2_000
    ids = receiver.ids()
    assert sorted(ids) == sorted(frame["event_id"].to_list())  # each exactly once
    assert max(receiver.bodies) == 300 and sum(receiver.bodies) == 2_000
    assert all(h.get("Authorization") == "Bearer s3cret" for h in receiver.headers)
    first = receiver.events[0]
    assert {"event_id", "ts", "card_id", "amount", "label", "is_anomaly", "scenario_id"} <= set(first)


def test_ndjson_format(receiver, make_events):
    frame = make_events(500)
    replay(stream(frame), open_sink(receiver.url(batch=100, format="ndjson")), time_column="ts")
    assert sorted(receiver.ids()) == sorted(frame["event_id"].to_list())


def test_500_429_and_timeouts_are_retried_and_nothing_is_lost(receiver, make_events):
    frame = make_events(3_000)
    receiver.faults = [500, (429, "1"), ("sleep", 1.0), 503, 502]
    metrics = ReplayMetrics()
    sink = open_sink(receiver.url(batch=500, concurrency=1, timeout="300ms", backoff="10ms"),
                     metrics=metrics)
    started = time.monotonic()
    result = replay(stream(frame), sink, time_column="ts")
    assert result.sent == 3_000 and result.dead_lettered == 0
    ids = receiver.ids()
    assert set(ids) == set(frame["event_id"].to_list())
    # A timed-out request may have been stored by the slow server: at most that one batch repeats.
    assert len(ids) - len(set(ids)) in (0, 500)
    assert time.monotonic() - started >= 1.0  # Retry-After: 1 was waited out
    assert metrics.retries.labels("http")._value.get() == 5
    errors = {k: metrics.send_errors.labels("http", k)._value.get() for k in ("500", "429", "timeout")}
    assert errors == {"500": 1, "429": 1, "timeout": 1}


def test_retry_after_is_honoured_per_request(receiver, make_events):
    receiver.faults = [(429, "2")]
    sink = open_sink(receiver.url(batch=100, concurrency=1, backoff="10ms"))
    started = time.monotonic()
    replay(stream(make_events(100)), sink, time_column="ts")
    assert 2.0 <= time.monotonic() - started < 4.0
    assert len(receiver.ids()) == 100


def test_permanently_failing_endpoint_fills_the_dead_letter_file(receiver, tmp_path, make_events):
    frame = make_events(1_200)
    dead = tmp_path / "dead.jsonl"
    receiver.fail_always = 503
    metrics = ReplayMetrics()
    sink = open_sink(receiver.url(batch=250, retries=2, backoff="5ms", dead_letter=dead),
                     metrics=metrics)
    result = replay(stream(frame), sink, time_column="ts")
    dead_ids = [json.loads(line)["event_id"] for line in dead.read_text().splitlines()]
    assert sorted(dead_ids) == sorted(frame["event_id"].to_list())
    assert result.dead_lettered == 1_200 and receiver.ids() == []
    assert receiver.requests == 5 * 3  # 5 batches, each tried 1 + 2 times
    expected = Counter(frame["label"].to_list())
    assert {k: metrics.dead_lettered.labels("http", k)._value.get() for k in expected} == expected


def test_dead_letter_holds_exactly_the_unsent_events(receiver, tmp_path, make_events):
    frame = make_events(2_000)
    dead = tmp_path / "dead.jsonl"
    receiver.faults = [None, 400, None, 413]  # 400 and 413 are not retried
    sink = open_sink(receiver.url(batch=200, concurrency=1, dead_letter=dead))
    replay(stream(frame), sink, time_column="ts")
    sent = receiver.ids()
    dead_ids = [json.loads(line)["event_id"] for line in dead.read_text().splitlines()]
    assert len(dead_ids) == 400 and not set(sent) & set(dead_ids)
    assert sorted(sent + dead_ids) == sorted(frame["event_id"].to_list())


def test_without_dead_letter_a_failing_endpoint_is_reported(receiver, make_events):
    receiver.fail_always = 500
    sink = open_sink(receiver.url(batch=100, retries=1, backoff="5ms"))
    positions = []
    with pytest.raises(StreamsynthError, match="could not be delivered"):
        replay(stream(make_events(300)), sink, time_column="ts",
               on_checkpoint=lambda pos, _c: positions.append(pos))
    assert positions[-1] == 0  # nothing acknowledged, so a resume sends everything again


def test_metrics_scraped_over_http_match_what_was_delivered(receiver, tmp_path, make_events):
    frame = make_events(5_000, fraud=0.1)
    receiver.faults = [500]
    metrics = ReplayMetrics()
    port = metrics.serve(0)
    try:
        sink = open_sink(receiver.url(batch=400, backoff="5ms"), metrics=metrics)
        replay(stream(frame), sink, time_column="ts", metrics=metrics, pacing=None)
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        metrics.close()
    scraped = {}
    for line in text.splitlines():
        if line.startswith("streamsynth_events_sent_total{"):
            labels, value = line.rsplit(" ", 1)
            label = labels.split('label="')[1].split('"')[0]
            scraped[label] = int(float(value))
    assert scraped == Counter(e["label"] for e in receiver.events)
    assert 'streamsynth_retries_total{sink="http"} 1.0' in text
    assert 'streamsynth_send_errors_total{kind="500",sink="http"} 1.0' in text
    assert "streamsynth_batch_latency_seconds_count" in text
    assert "streamsynth_replay_position 5000.0" in text
    sent_bytes = next(float(line.split()[-1]) for line in text.splitlines()
                      if line.startswith("streamsynth_bytes_sent_total"))
    assert sent_bytes > 5_000 * 50


def test_unreachable_host_is_a_clear_error(free_port):
    with pytest.raises(StreamsynthError, match="cannot reach http://127.0.0.1:"):
        open_sink(f"http://127.0.0.1:{free_port()}/events")


def test_missing_auth_variable_is_named(receiver, monkeypatch):
    monkeypatch.delenv("NOPE_TOKEN", raising=False)
    with pytest.raises(StreamsynthError, match="NOPE_TOKEN is not set"):
        open_sink(receiver.url(auth_env="NOPE_TOKEN"))


def test_label_counts_of_each_request_are_counted_for_the_whole_batch_at_once(make_events):
    """The HTTP sink counts labels per request from one pass over the batch; nulls count as normal."""
    from streamsynth.connectors.records import label_counts, slice_label_counts

    frame = make_events(2_500, fraud=0.2).with_columns(
        pl.when(pl.int_range(pl.len()) % 7 == 0).then(None).otherwise(pl.col("label")).alias("label"))
    for size in (1, 300, 1_000, 2_500, 10_000):
        assert slice_label_counts(frame, size) == [label_counts(frame.slice(start, size))
                                                   for start in range(0, frame.height, size)]
    assert slice_label_counts(frame.drop("label"), 1_000) == [{"normal": 1_000}, {"normal": 1_000},
                                                              {"normal": 500}]
    assert slice_label_counts(frame.head(0), 10) == []
