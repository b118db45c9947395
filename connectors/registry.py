"""The sink registry: URL scheme -> sink class, and :func:`open_sink` / :func:`read_back` by URL.

A new sink is one module plus one line here. Entries are ``"module:Class"`` strings so that a
client library (kafka, confluent-kafka) is imported only when its scheme is used; a scheme served
by several client libraries maps the URL's ``client`` option to its class, the first entry being
the default.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator

import polars as pl
from streamsynth.connectors.base import Sink, SinkURL
from streamsynth.connectors.metrics import ReplayMetrics

from streamsynth.errors import StreamsynthError

SINKS: dict[str, str | dict[str, str]] = {
    "kafka": {
        "kafka-python": "streamsynth.connectors.kafka:KafkaSink",
        "confluent": "streamsynth.connectors.kafka_confluent:ConfluentKafkaSink",
    },
    "http": "streamsynth.connectors.http:HttpSink",
    "https": "streamsynth.connectors.http:HttpsSink",
    "file": "streamsynth.connectors.file:FileSink",
    "stdout": "streamsynth.connectors.stdout:StdoutSink",
}


def sink_class(url: SinkURL) -> type[Sink]:
    entry = SINKS.get(url.scheme)
    if entry is None:
        raise StreamsynthError(
            f"sink URL {url.redacted()!r}: unknown scheme {url.scheme + '://'!r}",
            hint="use one of " + ", ".join(f"{s}://" for s in SINKS if s != "stdout")
            + " or - for stdout",
        )
    if isinstance(entry, dict):
        # an unknown client falls to the default, whose settings name the valid ones
        entry = entry.get(url.options.get("client", ""), next(iter(entry.values())))
    module, _, name = entry.partition(":")
    return getattr(importlib.import_module(module), name)


def open_sink(url: str, *, time: str | None = None, entity: str | None = None,
              metrics: ReplayMetrics | None = None, append: bool = False, state: dict | None = None,
              durable: bool = False) -> Sink:
    """Open the sink a URL names (``kafka://``, ``http(s)://``, ``file://``, ``-``)."""
    parsed = SinkURL.parse(url)
    return sink_class(parsed)(parsed, time=time, entity=entity, metrics=metrics, append=append,
                              state=state, durable=durable)


def read_back(url: str, *, timeout: float = 10.0) -> Iterator[pl.DataFrame]:
    """Read delivered events back from a topic or files, for ``verify``."""
    parsed = SinkURL.parse(url)
    return sink_class(parsed).read_back(parsed, timeout=timeout)
