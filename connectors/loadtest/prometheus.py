"""Prometheus metrics of a load test (``--metrics-port``): requests by label and status, failures by
class, drops, latency histograms from the scheduled and from the actual send time, requests in
flight and the target rate -- so a dashboard of the service can sit beside the load that hit it.

The HDR histograms of :mod:`.measure` stay the source of the reported percentiles; these buckets
are what Prometheus can aggregate. Each :class:`LoadMetrics` has its own registry, so runs (and
tests) in one process do not share counters.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram
from streamsynth.connectors.metrics import MetricsEndpoint

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)


class LoadMetrics(MetricsEndpoint):
    """The counters, gauges and histograms one load test updates (from the event loop's thread)."""

    def __init__(self) -> None:
        super().__init__()
        reg = self.registry
        self.requests = Counter("streamsynth_load_requests", "Requests answered, by label and HTTP status",
                                ["label", "status"], registry=reg)
        self.errors = Counter("streamsynth_load_errors", "Requests that got no response, by class "
                              "(timeout, refused, reset, other)", ["label", "kind"], registry=reg)
        self.dropped = Counter("streamsynth_load_dropped", "Arrivals dropped because --max-in-flight "
                               "requests were already out", ["label"], registry=reg)
        self.latency = Histogram("streamsynth_load_latency_seconds", "Response time, measured from the "
                                 "scheduled send time (from=scheduled) or the actual one (from=sent)",
                                 ["label", "from"], buckets=_BUCKETS, registry=reg)
        self.in_flight = Gauge("streamsynth_load_in_flight", "Requests awaiting a response", registry=reg)
        self.target_rate = Gauge("streamsynth_load_target_rate", "Requests per second the schedule asks "
                                 "for in the current second", registry=reg)

    def answered(self, label: str, status: int, from_scheduled: float, from_sent: float) -> None:
        self.requests.labels(label, str(status)).inc()
        self.latency.labels(label, "scheduled").observe(from_scheduled)
        self.latency.labels(label, "sent").observe(from_sent)

    def failed(self, label: str, kind: str) -> None:
        self.errors.labels(label, kind).inc()

    def drop(self, label: str) -> None:
        self.dropped.labels(label).inc()
