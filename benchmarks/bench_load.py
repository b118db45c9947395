"""How far one ``streamsynth load`` process keeps its schedule: target rates against a fast service.

For each target rate the open-loop runner sends ``--seconds`` of requests (one event each, JSON body)
to an aiohttp service answering 200 at once, in a separate process so the two do not share a GIL.
Reported per rate: requests scheduled, answered per second against the target, dropped (at
``--max-in-flight``), p50/p99 from the scheduled send and from the actual send, and this process's
CPU time per request (all threads: the feeder rendering requests, the event loop sending them).
Where the from-scheduled p99 climbs away from the from-sent p99 the load generator itself is behind
(its queueing is what from-scheduled latency adds), so the largest rate where the two stay close
is the rate one process can offer honestly; beyond it, run several. Usage:

    python benchmarks/bench_load.py [--rates 500,1000,2000,4000] [--seconds 5] [--max-in-flight 1000]
"""

from __future__ import annotations

import argparse
import resource
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import print_table  # noqa: E402
from streamsynth.connectors.loadtest.requests import RequestTemplate  # noqa: E402
from streamsynth.connectors.loadtest.runner import LoadSettings, run_load  # noqa: E402
from streamsynth.connectors.loadtest.schedule import constant  # noqa: E402
from streamsynth.connectors.loadtest.summary import latency_summary  # noqa: E402

#: the service: answers every request with 200 and an empty JSON object, reading the body first
SERVICE = """
import sys
from aiohttp import web

async def score(request):
    await request.read()
    return web.json_response({})

app = web.Application()
app.router.add_post("/score", score)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


def events(n: int) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    start = datetime(2024, 5, 1, tzinfo=UTC)
    fraud = rng.random(n) < 0.02
    return pl.DataFrame({
        "event_id": [f"bench-{i}" for i in range(n)],
        "ts": pl.datetime_range(start, start + timedelta(milliseconds=n - 1), timedelta(milliseconds=1),
                                eager=True, time_unit="us", time_zone="UTC"),
        "card_id": [f"card-{k}" for k in rng.integers(0, 10_000, n)],
        "amount": rng.gamma(2.0, 25.0, n).round(2),
        "label": np.where(fraud, "fraud.card_testing", "normal"),
        "is_anomaly": fraud,
    })


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the service did not start")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="500,1000,2000,4000")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--max-in-flight", type=int, default=1000)
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    port = free_port()
    service = subprocess.Popen([sys.executable, "-c", SERVICE, str(port)])
    rows = []
    try:
        wait_for(port)
        template = RequestTemplate.build(f"http://127.0.0.1:{port}/score")
        for rate in rates:
            frame = events(int(rate * args.seconds) + 1)
            settings = LoadSettings(segments=constant(rate, args.seconds), template=template,
                                    max_in_flight=args.max_in_flight)
            cpu = cpu_seconds()
            result = run_load(settings, iter(frame.iter_slices(10_000)))
            cpu = cpu_seconds() - cpu
            total = result.measurements.total()
            sched, sent = latency_summary(total.from_scheduled), latency_summary(total.from_sent)
            rows.append([f"{rate:,.0f}", f"{total.scheduled:,}", f"{total.answered / args.seconds:,.0f}",
                         f"{total.dropped:,}", f"{sched['p50']:.1f}", f"{sched['p99']:.1f}",
                         f"{sent['p50']:.1f}", f"{sent['p99']:.1f}",
                         f"{cpu / max(total.sent, 1) * 1e6:.0f}"])
    finally:
        service.terminate()
        service.wait(timeout=10)
    print_table(f"open-loop load, {args.seconds:g} s per rate, max in flight {args.max_in_flight}",
                ["target/s", "scheduled", "answered/s", "dropped", "sched p50 ms", "sched p99 ms",
                 "sent p50 ms", "sent p99 ms", "cpu us/req"], rows)


if __name__ == "__main__":
    main()
