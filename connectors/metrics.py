"""Prometheus metrics of a replay: events and bytes sent, errors, retries, dead letters, latency, lag,
and outages.

An outage starts at the first failed attempt (an error a retry may cure) and ends at the next
delivery; each one is logged with its duration and retries, so a run that rode one out says so in
its summary and manifest instead of ending as if nothing happened.

Each :class:`ReplayMetrics` has its own registry, so several replays (or tests) in one process do
not share counters; :meth:`ReplayMetrics.serve` exposes it on an HTTP port for scraping.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from streamsynth.errors import StreamsynthError

#: outages kept one by one in the log (the totals count all of them)
MAX_LOGGED_OUTAGES = 50


@dataclass
class Outage:
    """One stretch of failed attempts against a sink's endpoint."""

    sink: str
    started_at: str  # wall clock, ISO 8601 UTC
    seconds: float = 0.0
    errors: int = 0
    retries: int = 0
    first_error: str = ""
    ended: bool = False


_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class MetricsEndpoint:
    """A registry of its own, served on ``--metrics-port`` while a run lasts."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._server = None

    def serve(self, port: int, host: str = "127.0.0.1") -> int:
        """Expose the metrics on ``http://host:port/metrics``; returns the port (0 picks one)."""
        try:
            server, _thread = start_http_server(port, addr=host, registry=self.registry)
        except (OSError, OverflowError) as exc:  # OverflowError: a port outside 0-65535
            raise StreamsynthError(
                f"--metrics-port: cannot serve metrics on {host}:{port}: {getattr(exc, 'strerror', None) or exc}",
                hint="choose a free port with --metrics-port",
            ) from None
        self._server = server
        return server.server_port

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class ReplayMetrics(MetricsEndpoint):
    """The counters, gauges and histogram one replay updates; thread-safe."""

    def __init__(self) -> None:
        super().__init__()
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
        self.outage_count = Counter("streamsynth_outages", "Outages: stretches of failed attempts "
                                    "ended by a delivery", ["sink"], registry=reg)
        self.outage_time = Counter("streamsynth_outage_seconds", "Time spent in outages",
                                   ["sink"], registry=reg)
        self.in_outage = Gauge("streamsynth_outage_active", "1 while the sink's endpoint is failing",
                               ["sink"], registry=reg)
        self._lock = threading.Lock()
        self.outages: list[Outage] = []  # the first MAX_LOGGED_OUTAGES, in order
        self.outage_totals = {"count": 0, "seconds": 0.0, "retries": 0}
        self._open_outage: Outage | None = None
        #: called (on any thread) as an outage begins (``over`` False) and ends: a live log
        self.on_outage: Callable[[Outage, bool], None] | None = None
        self._outage_began = 0.0
        self._window: deque[tuple[float, int]] = deque()
        self._window_events = 0  # the sum of the counts in _window, kept as they come and go
        self._sent_children: dict[tuple[str, str | None], object] = {}  # (sink, label) -> counter

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
        if self._open_outage is not None:
            self.end_outage()

    def dead_letter(self, sink: str, labels: Mapping[str, int]) -> None:
        for label, count in labels.items():
            self.dead_lettered.labels(sink, label).inc(count)

    def error(self, sink: str, kind: str, outage: bool = True, since: float | None = None) -> None:
        """A failed attempt; ``outage=False`` for one no retry can cure (a refused message);
        ``since`` (``time.monotonic()``) when the failure began, if before now (a stall)."""
        self.send_errors.labels(sink, kind).inc()
        if not outage:
            return
        with self._lock:
            begins = self._open_outage is None
            if begins:
                now = time.monotonic()
                self._outage_began = now if since is None else min(since, now)
                began = datetime.now(UTC) - timedelta(seconds=now - self._outage_began)
                self._open_outage = Outage(sink=sink, started_at=began.isoformat(), first_error=kind)
                self.in_outage.labels(sink).set(1)
            outage = self._open_outage
            outage.errors += 1
        if begins and self.on_outage is not None:
            self.on_outage(outage, False)

    def retry(self, sink: str) -> None:
        self.retries.labels(sink).inc()
        with self._lock:
            if self._open_outage is not None:
                self._open_outage.retries += 1

    def end_outage(self, ended: bool = True) -> Outage | None:
        """Close the open outage (at a delivery, or ``ended=False`` when the run stops inside
        one) and log it."""
        with self._lock:
            outage, self._open_outage = self._open_outage, None
            if outage is None:
                return None
            outage.seconds = round(time.monotonic() - self._outage_began, 3)
            outage.ended = ended
            self.outage_totals["count"] += 1
            self.outage_totals["seconds"] += outage.seconds
            self.outage_totals["retries"] += outage.retries
            if len(self.outages) < MAX_LOGGED_OUTAGES:
                self.outages.append(outage)
        self.outage_count.labels(outage.sink).inc()
        self.outage_time.labels(outage.sink).inc(outage.seconds)
        self.in_outage.labels(outage.sink).set(0)
        if self.on_outage is not None:
            self.on_outage(outage, True)
        return outage

    def outage_report(self) -> dict:
        """The outages so far, for the manifest: totals and the first ones one by one."""
        with self._lock:
            totals = dict(self.outage_totals)
            logged = [asdict(o) for o in self.outages]
        totals["seconds"] = round(totals["seconds"], 3)
        return totals | {"log": logged}

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

