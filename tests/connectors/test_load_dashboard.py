"""The Grafana dashboard of ``load --metrics-port`` (docker/grafana/dashboards/streamsynth-load.json):
it parses, uses the provisioned data source, and every metric, label and label value its queries
name is one a real run's ``/metrics`` endpoint serves.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families
from streamsynth.connectors.loadtest.demo_service import make_app
from streamsynth.connectors.loadtest.prometheus import LoadMetrics
from streamsynth.connectors.loadtest.requests import RequestTemplate
from streamsynth.connectors.loadtest.runner import LoadSettings, run_load
from streamsynth.connectors.loadtest.schedule import constant

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "docker" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "streamsynth-load.json"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def _serve_demo(delay_ms: float) -> tuple[int, asyncio.AbstractEventLoop, web.AppRunner]:
    loop = asyncio.new_event_loop()
    sock = socket.create_server(("127.0.0.1", 0))
    runner = web.AppRunner(make_app(catch=1.0, false_alarm=0.0, delay_ms=delay_ms), access_log=None)
    ready = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.SockSite(runner, sock).start())
        ready.set()
        loop.run_forever()

    threading.Thread(target=serve, daemon=True).start()
    assert ready.wait(10)
    return sock.getsockname()[1], loop, runner


@pytest.fixture
def scraped(make_events) -> dict[str, set[tuple[str, str]]]:
    """Metric name -> the (label, value) pairs its samples carry, scraped from a real run's endpoint
    after a second of load with answers (200 and 402) and a run of timeouts."""
    fast, slow = _serve_demo(0.0), _serve_demo(300.0)
    metrics = LoadMetrics()
    metrics_port = metrics.serve(0)
    try:
        events = make_events(200, seed=3, fraud=0.3)
        run_load(LoadSettings(segments=constant(40, 1), template=RequestTemplate.build(
            f"http://127.0.0.1:{fast[0]}/score"), metrics=metrics), iter([events]))
        # a service slower than --timeout, so the error counter has samples (kind="timeout")
        run_load(LoadSettings(segments=constant(10, 0.3), timeout=0.05, template=RequestTemplate.build(
            f"http://127.0.0.1:{slow[0]}/score"), metrics=metrics), iter([events]))
        metrics.drop("normal")  # a real drop needs --max-in-flight exceeded; the series is what matters here
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=10).read().decode()
    finally:
        metrics.close()
        for _, loop, runner in (fast, slow):
            asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
            loop.call_soon_threadsafe(loop.stop)
    out: dict[str, set[tuple[str, str]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels.items())
    return out


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    return exprs + [v["query"]["query"] for v in dashboard["templating"]["list"]]


def test_the_dashboard_is_provisioned_with_the_prometheus_source(dashboard):
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yaml").read_text())
    (source,) = sources["datasources"]
    uids = {p["datasource"]["uid"] for p in dashboard["panels"]}
    uids |= {t["datasource"]["uid"] for p in dashboard["panels"] for t in p["targets"]}
    assert uids == {source["uid"]}
    other = json.loads((GRAFANA / "dashboards" / "streamsynth.json").read_text())
    assert dashboard["uid"] != other["uid"], "two dashboards with one uid: Grafana loads only one"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(set(ids)) == len(ids)


def test_every_metric_and_label_the_queries_use_is_served(dashboard, scraped):
    exprs = _exprs(dashboard)
    used = {name for e in exprs for name in re.findall(r"\bstreamsynth_[a-z_]+", e)}
    assert used and used <= set(scraped), f"not served by LoadMetrics: {sorted(used - set(scraped))}"
    # the labels each query selects on or groups by are on that metric's samples
    for expr in exprs:
        for name in re.findall(r"\bstreamsynth_[a-z_]+", expr):
            labels = {k for k, _ in scraped[name]}
            for match in re.finditer(rf"{name}\{{([^}}]*)\}}", expr):
                for key, value in re.findall(r'(\w+)=~?"([^"]*)"', match.group(1)):
                    if key == "job":  # added by Prometheus at scrape time, not by the endpoint
                        continue
                    assert key in labels, (expr, key)
                    if not any(ch in value for ch in ".*$["):  # a literal value: one the run produced
                        assert (key, value) in scraped[name], (expr, key, value)
        for group in re.findall(r"by \(([^)]*)\)", expr):
            for key in (k.strip() for k in group.split(",")):
                served = {k for name in re.findall(r"\bstreamsynth_[a-z_]+", expr) for k, _ in scraped[name]}
                # instance and job are added by Prometheus at scrape time
                assert key in served | {"instance", "job"}, (expr, key)


def test_the_panels_cover_rate_latency_errors_drops_and_in_flight(dashboard):
    exprs = _exprs(dashboard)
    joined = "\n".join(exprs)
    for needed in ("streamsynth_load_target_rate", "streamsynth_load_requests_total",
                   "streamsynth_load_errors_total", "streamsynth_load_dropped_total", "streamsynth_load_in_flight"):
        assert needed in joined, f"no panel on {needed}"
    quantiles = [e for e in exprs if e.startswith("histogram_quantile(")]
    assert any("by (label, le)" in e and 'from="scheduled"' in e for e in quantiles)
    assert any("by (label, le)" in e and 'from="sent"' in e for e in quantiles)
    assert all("streamsynth_load_latency_seconds_bucket" in e for e in quantiles)
