"""Prometheus metrics of a replay: events and bytes sent, errors, retries, dead letters, latency, lag.

Each :class:`ReplayMetrics` has its own registry, so several replays (or tests) in one process do
not share counters; :meth:`ReplayMetrics.serve` exposes it on an HTTP port for scraping.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from streamsynth.errors import StreamsynthError

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class ReplayMetrics:
    """The counters, gauges and histogram one replay updates; thread-safe."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        reg = self.registry
        self.events_sent = Counter("streamsynth_events_sent", "Events delivered and acknowledged",
                                   ["sink", "label"], registry=reg)
        self.bytes_sent = Counter("streamsynth_bytes_sent", "Payload bytes delivered",
                                  ["sink"], registry=reg)
        self.send_errors = Counter("streamsynth_send_errors", "Failed send attempts",
                                   ["sink", "kind"], registry=reg)
        self.retries = Counter("streamsynth_retries", "Send attempts repeated after an error",
                               ["sink"], registry=reg)
        self.dead_lettered = Counter("streamsynth_dead_lettered_events",
                                     "Events written to the dead-letter file", ["sink", "label"],
                                     registry=reg)
        self.batch_latency = Histogram("streamsynth_batch_latency_seconds",
                                       "Time from handing a batch to the client to its acknowledgement",
                                       ["sink"], buckets=_LATENCY_BUCKETS, registry=reg)
        self.schedule_lag = Gauge("streamsynth_schedule_lag_seconds",
                                  "How far sending is behind the pacing schedule", registry=reg)
        self.rate = Gauge("streamsynth_rate_events_per_second",
                          "Events acknowledged per second over the last few seconds", registry=reg)
        self.position = Gauge("streamsynth_replay_position",
                              "Events of the source acknowledged so far (the checkpoint position)",
                              registry=reg)
        self._lock = threading.Lock()
        self._window: deque[tuple[float, int]] = deque()
        self._window_events = 0  # the sum of the counts in _window, kept as they come and go
        self._sent_children: dict[tuple[str, str | None], object] = {}  # (sink, label) -> counter
        self._server = None

    # -- updates from sinks ------------------------------------------------------------------
    def delivered(self, sink: str, labels: Mapping[str, int], nbytes: int) -> None:
        total = 0
        children = self._sent_children
        for label, count in labels.items():
            child = children.get((sink, label))
            if child is None:  # looked up once per label: labels() validates and locks each time
                child = children.setdefault((sink, label), self.events_sent.labels(sink, label))
            child.inc(count)
            total += count
        child = children.get((sink, None))
        if child is None:
            child = children.setdefault((sink, None), self.bytes_sent.labels(sink))
        child.inc(nbytes)
        self._observe_rate(total)

    def dead_letter(self, sink: str, labels: Mapping[str, int]) -> None:
        for label, count in labels.items():
            self.dead_lettered.labels(sink, label).inc(count)

    def error(self, sink: str, kind: str) -> None:
        self.send_errors.labels(sink, kind).inc()

    def retry(self, sink: str) -> None:
        self.retries.labels(sink).inc()

    def latency(self, sink: str, seconds: float) -> None:
        self.batch_latency.labels(sink).observe(seconds)

    def _observe_rate(self, count: int, window: float = 5.0) -> None:
        now = time.monotonic()
        with self._lock:
            self._window.append((now, count))
            self._window_events += count
            while self._window and self._window[0][0] < now - window:
                self._window_events -= self._window.popleft()[1]
            span = max(now - self._window[0][0], 1.0) if self._window else 1.0
            self.rate.set(self._window_events / span)

    # -- reading ----------------------------------------------------------------------------
    def sent(self, sink: str | None = None) -> dict[str, int]:
        """Events delivered so far by label (optionally for one sink), read from the counters."""
        out: dict[str, int] = {}
        for metric in self.events_sent.collect():
            for sample in metric.samples:
                if not sample.name.endswith("_total"):
                    continue
                if sink is not None and sample.labels["sink"] != sink:
                    continue
                label = sample.labels["label"]
                out[label] = out.get(label, 0) + int(sample.value)
        return out

    # -- serving ----------------------------------------------------------------------------
    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Expose the metrics on ``http://host:port/metrics``; returns the port (0 picks one)."""
        try:
            server, _thread = start_http_server(port, addr=host, registry=self.registry)
        except OSError as exc:
            raise StreamsynthError(
                f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}",
                hint="choose a free port with --metrics-port",
            ) from None
        self._server = server
        return server.server_port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
