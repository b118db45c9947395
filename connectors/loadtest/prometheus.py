"""Prometheus metrics of a load test (``--metrics-port``): requests by label and status, failures by
class, drops, latency histograms from the scheduled and from the actual send time, requests in
flight and the target rate -- so a dashboard of the service can sit beside the load that hit it.

The HDR histograms of :mod:`.measure` stay the source of the reported percentiles; these buckets
are what Prometheus can aggregate. Each :class:`LoadMetrics` has its own registry, so runs (and
tests) in one process do not share counters. With ``--workers`` each worker keeps a
:class:`LoadMetrics` of its own, unserved, and the parent serves :class:`WorkerMetrics`: their sum.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric
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


#: one worker's metrics as :meth:`WorkerMetrics.samples` reads them (picklable):
#: (name, help, type, [(sample name, labels, value), ...]) per metric
Samples = list[tuple[str, str, str, list[tuple[str, dict[str, str], float]]]]


class WorkerMetrics(MetricsEndpoint):
    """The metrics of a ``--workers`` run: the sum of the workers' :class:`LoadMetrics`, as each
    last sent them (once a second). Every series of :class:`LoadMetrics` adds up across workers --
    counters, histogram buckets, the requests in flight, the target rates of the workers' shares --
    so the merge is a sum per sample name and labels; only a counter's ``_created`` time is not a
    count, and the earliest is kept. Served through the registry as a custom collector, the
    client library's way to expose values kept elsewhere."""

    def __init__(self) -> None:
        super().__init__()
        self._latest: dict[int, Samples] = {}
        self._lock = threading.Lock()  # updated on the run's thread, read on the server's
        self.registry.register(self)

    @staticmethod
    def samples(metrics: LoadMetrics) -> Samples:
        return [(family.name, family.documentation, family.type,
                 [(s.name, s.labels, s.value) for s in family.samples])
                for family in metrics.registry.collect()]

    def update(self, worker: int, samples: Samples) -> None:
        with self._lock:
            self._latest[worker] = samples

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            everyone = list(self._latest.values())
        families: dict[str, Metric] = {}
        sums: dict[str, dict[tuple[str, tuple[tuple[str, str], ...]], float]] = {}
        for samples in everyone:
            for name, documentation, kind, values in samples:
                if name not in families:
                    families[name], sums[name] = Metric(name, documentation, kind), {}
                into = sums[name]
                for sample, labels, value in values:
                    key = (sample, tuple(sorted(labels.items())))
                    if key not in into:
                        into[key] = value
                    else:
                        into[key] = min(into[key], value) if sample.endswith("_created") else into[key] + value
        for name, family in families.items():
            for (sample, labels), value in sums[name].items():
                family.add_sample(sample, dict(labels), value)
            yield family
