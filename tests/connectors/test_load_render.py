"""A request's bytes and ground truth: the feeder's shortcuts (one event a request from a template
naming no column; the head made once while URL and headers stay the same) give what the general
path gives."""

from __future__ import annotations

import polars as pl
from streamsynth.connectors.loadtest.client import ConnectionPool, Framer, wire
from streamsynth.connectors.loadtest.expect import Expectation
from streamsynth.connectors.loadtest.requests import UNLABELLED, RequestTemplate
from streamsynth.connectors.records import json_lines


def events() -> pl.DataFrame:
    return pl.DataFrame({"id": ["a/1", "b", None, "d"], "amount": [1.5, 2.0, 3.0, 4.0],
                         "label": ["normal", None, "fraud.card_testing", "fraud.card_testing"],
                         "is_anomaly": [False, None, True, True]})


def test_one_event_a_request_is_what_the_general_path_renders():
    frame = events()
    truths = Expectation.parse("status==402 if amount > 2").truths
    plain = RequestTemplate.build("http://h:1/score?x={{y}}", headers=["X-Fixed: {{braces}}"])
    # a header naming a column takes the general path; URL, body, label and truths must not differ
    named = RequestTemplate.build("http://h:1/score?x={{y}}", headers=["X-Fixed: {{braces}}", "X-Amount: {amount}"])
    fast, general = list(plain.render(frame, truths)), list(named.render(frame, truths))
    assert [r.url for r in fast] == [r.url for r in general] == ["http://h:1/score?x={y}"] * 4
    assert [r.body for r in fast] == [r.body for r in general] == json_lines(frame)
    assert [r.label for r in fast] == [r.label for r in general] == ["normal", "normal", "fraud.card_testing",
                                                                    "fraud.card_testing"]
    assert [r.is_anomaly for r in fast] == [r.is_anomaly for r in general] == [False, False, True, True]
    assert [r.truth for r in fast] == [r.truth for r in general] == [False, False, True, True]
    assert [r.headers for r in fast] == [{"X-Fixed": "{braces}"}] * 4
    amounts = ("1.5", "2.0", "3.0", "4.0")
    assert [r.headers for r in general] == [{"X-Fixed": "{braces}", "X-Amount": a} for a in amounts]


def test_one_event_a_request_without_labels_or_truths():
    frame = events().drop("label", "is_anomaly")
    requests = list(RequestTemplate.build("http://h/x").render(frame))
    assert [(r.url, r.headers, r.label, r.is_anomaly, r.truth) for r in requests] == \
        [("http://h/x", {}, UNLABELLED, None, None)] * 4
    assert list(RequestTemplate.build("http://h/x").render(frame.head(0))) == []


def test_the_framer_gives_the_bytes_of_wire_as_url_and_headers_change():
    pool = ConnectionPool("http://127.0.0.1:8080/score", 1.0)
    same = {"X-A": "1"}
    calls = [("http://127.0.0.1:8080/score", same, b'{"a": 1}'), ("http://127.0.0.1:8080/score", same, b"{}"),
             ("http://127.0.0.1:8080/other?q=1", same, b"[1, 2]"), ("http://127.0.0.1:8080/other?q=1", {}, b""),
             ("http://127.0.0.1:8080/other?q=1", {"X-B": "caf\u00e9", "X-C": "2"}, b"x" * 1000)]
    for method, with_body in (("POST", True), ("PUT", True), ("GET", False), ("DELETE", False)):
        frame = Framer(method, pool, with_body=with_body)
        for url, headers, body in calls:
            assert frame(url, headers, body) == wire(method, pool.target(url), pool.netloc, headers,
                                                     body if with_body else None)
