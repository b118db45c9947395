"""How far one ``streamsynth load`` process keeps its schedule: target rates against a fast service.

For each target rate the open-loop runner sends ``--seconds`` of requests (one event each, JSON body)
to a service answering 200 at once, in a separate process so the two do not share a GIL:
``--service httptools`` (the default: a bare protocol on uvloop, a fifth of aiohttp's CPU a
request, so that the service does not limit the generators: the same trivial loopback server for
every tool) or ``--service aiohttp`` (aiohttp on asyncio, the default until December 7, kept so
that earlier runs can be repeated: its own ceiling, 16,700-18,600/s on 2 cores, capped wrk's figure).
Reported per rate: requests scheduled, answered per second against the target, dropped (at
``--max-in-flight``), p50/p99 from the scheduled send and from the actual send, and this process's
CPU time per request (all threads: the feeder rendering requests, the event loop sending them).
Where the from-scheduled p99 climbs away from the from-sent p99 the load generator itself is behind
(its queueing is what from-scheduled latency adds), so the largest rate where the two stay close
is the rate one process can offer honestly; beyond it, run several. Usage:

    python benchmarks/bench_load.py [--rates 500,1000,2000,4000] [--seconds 5] [--max-in-flight 1000]

``--compare`` instead finds, against the same service, the highest rate each load generator offers
with p99 under ``--p99-ms`` (10) and at least 95% of the target answered: ours (open loop, p99 from
the scheduled send), Locust (FastHttpUser with ``constant_throughput``, one process, p99 from the
send: Locust has no schedule to measure from) and wrk (closed loop, so no target rate: it sweeps
connections and reports the highest throughput whose p99, from the send, stays under the limit).
Ours runs twice: in this process (one event loop) and as ``streamsynth load --workers 2`` (the
command, in a process of its own, its two workers reading a parquet file of the same events).
It also reports our per-second rate error at 1k and 10k requests/s, both ways. Locust runs from
``--locust`` (default /tmp/locust-venv/bin/locust) and wrk from PATH; either missing is said and
skipped. Each step is printed with the load average at its end (on a shared machine it explains the
noise) and the CPU the load generator used (cores: CPU seconds per second, all its processes and
threads; for a command -- ``--workers 2``, Locust -- its start too: imports, spawned workers, a
second or more of CPU). ``--json PATH`` also writes the figures, for comparing runs (a before/after
pair, say).

Ours sends from uvloop when it is installed, else asyncio's loop (``$STREAMSYNTH_EVENT_LOOP`` picks
one; the tables name the loop that ran).

    python benchmarks/bench_load.py --compare [--seconds 5] [--ladder 500,1000,2000,...] [--json out.json]
        [--service httptools|aiohttp]
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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

#: the same answer from a bare protocol: httptools parses each request (body included), the
#: answer is fixed bytes, on uvloop where installed. About 12-15 us of CPU a request against
#: aiohttp's 55-90 us on asyncio, so at 10,000/s the service takes a tenth of a core, not most of
#: one: every load generator hits the same service, and it is no longer what limits them.
SERVICE_FAST = """
import asyncio, sys
import httptools

ANSWER = (b"HTTP/1.1 200 OK\\r\\nContent-Type: application/json; charset=utf-8\\r\\n"
          b"Content-Length: 2\\r\\n\\r\\n{}")

class Score(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.parser = transport, httptools.HttpRequestParser(self)

    def data_received(self, data):
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.close()

    def on_message_complete(self):
        self.transport.write(ANSWER)
        if not self.parser.should_keep_alive():
            self.transport.close()

async def main():
    server = await asyncio.get_running_loop().create_server(Score, "127.0.0.1", int(sys.argv[1]), backlog=1024)
    await server.serve_forever()

try:
    import uvloop
    uvloop.run(main())
except ImportError:
    asyncio.run(main())
"""

#: --service: which of the two answers the load generators
SERVICES = {"aiohttp": SERVICE, "httptools": SERVICE_FAST}


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


def generator_cpu() -> float:
    """CPU seconds of this process and of its finished children (a load generator run as a
    command is waited for; the service, still running, is not counted)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return cpu_seconds() + children.ru_utime + children.ru_stime


#: one event as the JSON body Locust and wrk send (ours renders each event of the frame)
BODY = '{"event_id": "bench-1", "card_id": "card-17", "amount": 42.5, "label": "normal", "is_anomaly": false}'

LOCUSTFILE = """
from locust import FastHttpUser, constant_throughput, task

class Scorer(FastHttpUser):
    wait_time = constant_throughput({per_user})

    @task
    def score(self):
        self.client.post("/score", data={body!r}, headers={{"Content-Type": "application/json"}})
"""

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
"""


class Step:
    """One rate (or wrk connection count) of one generator: what it achieved."""

    def __init__(self, target: float, achieved: float, p99_ms: float | None, note: str = "") -> None:
        self.target, self.achieved, self.p99_ms, self.note = target, achieved, p99_ms, note
        self.cpu = math.nan  # cores the generator used (CPU seconds per second), set by measured()
        self.load = math.nan  # the 1-minute load average at the step's end

    def sustains(self) -> bool:
        """At least 95% of the target rate answered, whatever the latency."""
        return self.achieved >= 0.95 * self.target

    def keeps_up(self, p99_limit_ms: float) -> bool:
        return self.p99_ms is not None and self.p99_ms < p99_limit_ms and self.sustains()


def ours(port: int, rate: float, seconds: float, max_in_flight: int) -> tuple[Step, float]:
    """Our runner at ``rate``: the step (p99 from the scheduled send) and the per-second rate error,
    mean |sent - target| / target over the schedule's whole seconds."""
    frame = events(int(rate * seconds) + 1)
    settings = LoadSettings(segments=constant(rate, seconds),
                            template=RequestTemplate.build(f"http://127.0.0.1:{port}/score"),
                            max_in_flight=max_in_flight)
    result = run_load(settings, iter(frame.iter_slices(10_000)))
    m = result.measurements
    total = m.total()
    whole = m.seconds[:int(seconds)]
    error = sum(abs(s.sent - s.target) for s in whole) / max(sum(s.target for s in whole), 1)
    p99 = latency_summary(total.from_scheduled)["p99"]
    loop = getattr(result, "event_loop", "asyncio")  # a version before the loop choice ran asyncio's
    return Step(rate, total.answered / seconds, p99, f"dropped {total.dropped}, {loop}"), error


def ours_workers(port: int, rate: float, seconds: float, max_in_flight: int, workers: int,
                 source: Path, workdir: Path) -> tuple[Step, float]:
    """``streamsynth load --workers N`` at ``rate``, as :func:`ours` measures it, from its JSON summary."""
    summary = workdir / f"workers-{rate:g}.json"
    done = subprocess.run([sys.executable, "-m", "streamsynth", "load", str(source), "--loop",
                           "--to", f"http://127.0.0.1:{port}/score", "--rate", f"{rate:g}",
                           "--duration", f"{seconds:g}s",
                           "--max-in-flight", str(max_in_flight), "--workers", str(workers),
                           "--summary-json", str(summary)],
                          capture_output=True, text=True, timeout=seconds + 120)
    if not summary.exists():
        return Step(rate, 0.0, None, f"no summary (exit {done.returncode}): {last_line(done.stderr)}"), math.nan
    s = json.loads(summary.read_text())
    total, whole = s["total"], s["per_second"][:int(seconds)]
    error = sum(abs(x["sent"] - x["target"]) for x in whole) / max(sum(x["target"] for x in whole), 1)
    p99 = total["latency_ms"]["from_scheduled"]["p99"]
    loop = s.get("event_loop", "asyncio")
    return Step(rate, total["answered"] / seconds, p99, f"dropped {total['dropped']}, {loop}"), error


def locust(binary: str, port: int, rate: float, seconds: float, workdir: Path) -> Step:
    """Locust, one process, ``rate`` as users x constant_throughput(10/s each)."""
    per_user = 10.0
    users = max(math.ceil(rate / per_user), 1)
    file = workdir / "locustfile.py"
    file.write_text(LOCUSTFILE.format(per_user=rate / users, body=BODY))
    prefix = workdir / f"locust-{rate:g}"
    done = subprocess.run([binary, "-f", str(file), "--headless", "-u", str(users), "-r", str(users),
                           "-t", f"{seconds:g}s", "--host", f"http://127.0.0.1:{port}", "--csv", str(prefix),
                           "--only-summary", "--loglevel", "ERROR", "--stop-timeout", "2"],
                          capture_output=True, text=True, timeout=seconds + 120)
    rows = {r["Name"]: r for r in csv.DictReader(Path(f"{prefix}_stats.csv").open())} \
        if Path(f"{prefix}_stats.csv").exists() else {}
    row = rows.get("Aggregated")
    if row is None or not int(row["Request Count"]):
        return Step(rate, 0.0, None, f"no stats (exit {done.returncode}): {last_line(done.stderr)}")
    return Step(rate, float(row["Requests/s"]), float(row["99%"]), f"{users} users, failures {row['Failure Count']}")


_WRK_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1000.0}


def wrk(port: int, connections: int, seconds: float, workdir: Path) -> Step:
    """wrk (closed loop: each connection sends when its previous answer is in), two threads."""
    script = workdir / "post.lua"
    script.write_text(WRK_SCRIPT.format(body=lua_string(BODY)))
    done = subprocess.run(["wrk", "-t", str(min(2, connections)), "-c", str(connections), "-d", f"{seconds:g}s",
                           "--latency", "-s", str(script), f"http://127.0.0.1:{port}/score"],
                          capture_output=True, text=True, timeout=seconds + 60)
    p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", done.stdout, re.M)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", done.stdout)
    if p99 is None or rps is None:
        return Step(0.0, 0.0, None, f"unparsed (exit {done.returncode}): {last_line(done.stderr)}")
    achieved = float(rps.group(1))
    # a closed loop has no target: it offers what it achieves, so "target" is the achieved rate
    return Step(achieved, achieved, float(p99.group(1)) * _WRK_UNITS[p99.group(2)], f"{connections} connections")


def measured(seconds: float, run: Callable[..., Any], *args: Any) -> Any:
    """``run(*args)``, a step or a tuple with a step first, with the step's generator CPU (cores
    over its ``seconds``) and the load average at its end."""
    cpu = generator_cpu()
    out = run(*args)
    step = out[0] if isinstance(out, tuple) else out
    step.cpu, step.load = (generator_cpu() - cpu) / seconds, os.getloadavg()[0]
    return out


def last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1][:200] if lines else ""


def lua_string(text: str) -> str:
    """``text`` as a Lua string literal (long brackets: the JSON holds quotes, never ']]')."""
    return f"[[{text}]]"


def best(steps: list[Step], passes: Callable[[Step], bool]) -> Step | None:
    passing = [s for s in steps if passes(s)]
    return max(passing, key=lambda s: s.achieved) if passing else None


def ladder_run(run_step: Callable[[float], Step], ladder: list[float]) -> list[Step]:
    """Steps up the ladder until two steps in a row fail to sustain their rate (one may be a noisy
    neighbour's doing on a shared machine; two in a row, and the next would fail too, and cost
    time). A step over the p99 limit still goes on: Locust never keeps p99 under 10 ms here, and
    its sustained rate is the figure to compare with."""
    steps: list[Step] = []
    for value in ladder:
        steps.append(run_step(value))
        if len(steps) >= 2 and not any(s.sustains() for s in steps[-2:]):
            break
    return steps


OURS = ("streamsynth", "streamsynth --workers 2")


def print_summary(results: dict[str, list[Step]], passes: Callable[[Step], bool], title: str
                  ) -> dict[str, Step | None]:
    top = {name: best(steps, passes) for name, steps in results.items()}
    summary = []
    for name, step in top.items():
        rate = step.achieved if step else 0.0
        ratios = []
        for mine in OURS:
            ours_top = top.get(mine)
            ratios.append("-" if not ours_top or not rate else f"{ours_top.achieved / rate:.2f}")
        summary.append([name, f"{rate:,.0f}", *ratios])
    print_table(title, ["tool", "rate/s", "ours / tool", "ours x2 / tool"], summary)
    return top


def compare(args: argparse.Namespace) -> None:
    print(f"load average before: {os.getloadavg()}; {os.cpu_count()} CPUs; service: {args.service}")
    ladder = [float(r) for r in args.ladder.split(",")]
    port = free_port()
    service = subprocess.Popen([sys.executable, "-c", SERVICES[args.service], str(port)])
    results: dict[str, list[Step]] = {}
    skipped: list[str] = []
    errors: list[tuple[str, float, Step, float]] = []  # ours, target rate, step, rate error
    seconds, flight = args.seconds, args.max_in_flight
    try:
        wait_for(port)
        ours(port, 200, 1, flight)  # warm the service and the runner's imports
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            source = work / "events.parquet"
            events(int(max(ladder + [10000.0]) * seconds) + 1).write_parquet(source)
            results[OURS[0]] = ladder_run(lambda r: measured(seconds, ours, port, r, seconds, flight)[0], ladder)
            results[OURS[1]] = ladder_run(
                lambda r: measured(seconds, ours_workers, port, r, seconds, flight, 2, source, work)[0], ladder)
            for rate in (1000.0, 10000.0):
                errors.append((OURS[0], rate, *measured(seconds, ours, port, rate, seconds, flight)))
                errors.append((OURS[1], rate, *measured(seconds, ours_workers, port, rate, seconds, flight, 2,
                                                        source, work)))
            if Path(args.locust).exists():
                results["locust"] = ladder_run(lambda r: measured(seconds, locust, args.locust, port, r, seconds, work),
                                               ladder)
            else:
                skipped.append(f"locust: {args.locust} not found (pip install locust into that venv)")
            if shutil.which("wrk"):
                results["wrk"] = [measured(seconds, wrk, port, c, seconds, work) for c in (1, 2, 4, 8, 16, 32, 64)]
            else:
                skipped.append("wrk: not on PATH (apt-get install wrk); skipped")
    finally:
        service.terminate()
        service.wait(timeout=10)
    rows = []
    for name, steps in results.items():
        for s in steps:
            rows.append([name, f"{s.target:,.0f}", f"{s.achieved:,.0f}",
                         "-" if s.p99_ms is None else f"{s.p99_ms:.2f}",
                         "yes" if s.keeps_up(args.p99_ms) else "no", f"{s.cpu:.2f}", f"{s.load:.2f}", s.note])
    print_table(f"steps, {seconds:g} s each (p99: ours from the scheduled send; locust and wrk from the send)",
                ["tool", "target/s", "achieved/s", "p99 ms", "keeps up", "cpu cores", "load 1m", "note"], rows)
    keeping = print_summary(results, lambda s: s.keeps_up(args.p99_ms),
                            f"highest rate with p99 < {args.p99_ms:g} ms and >= 95% of the target answered")
    sustained = print_summary(results, Step.sustains, "highest rate sustained (>= 95% of the target answered, any p99)")
    print_table("our rate error (mean |sent - target| / target per second)",
                ["ours", "target/s", "answered/s", "rate error", "p99 ms (scheduled)", "cpu cores", "load 1m", "note"],
                [[name, f"{rate:,.0f}", f"{step.achieved:,.0f}", f"{error:.2%}",
                  "-" if step.p99_ms is None else f"{step.p99_ms:.1f}", f"{step.cpu:.2f}", f"{step.load:.2f}",
                  step.note] for name, rate, step, error in errors])
    for line in skipped:
        print(line)
    print(f"load average after: {os.getloadavg()}")
    if args.json:
        def step_dict(step: Step | None) -> dict[str, object] | None:
            return None if step is None else {"target": step.target, "achieved": step.achieved, "p99_ms": step.p99_ms,
                                              "cpu": step.cpu, "load": step.load, "note": step.note}

        Path(args.json).write_text(json.dumps({
            "service": args.service,
            "keeps_up": {name: step_dict(step) for name, step in keeping.items()},
            "sustained": {name: step_dict(step) for name, step in sustained.items()},
            "rate_error": [{"ours": name, "target": rate, "error": error, **step_dict(step)}
                           for name, rate, step, error in errors],
            "steps": {name: [step_dict(step) for step in steps] for name, steps in results.items()},
        }, indent=1, default=str))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="500,1000,2000,4000")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--max-in-flight", type=int, default=1000)
    parser.add_argument("--compare", action="store_true", help="ours vs Locust vs wrk at p99 < --p99-ms")
    parser.add_argument("--ladder", default="250,500,1000,2000,3000,4000,6000,8000,10000,15000")
    parser.add_argument("--p99-ms", type=float, default=10.0)
    parser.add_argument("--locust", default="/tmp/locust-venv/bin/locust")
    parser.add_argument("--json", help="with --compare: also write the figures to this file")
    parser.add_argument("--service", choices=sorted(SERVICES), default="httptools",
                        help="the loopback service every generator hits: a bare httptools protocol on "
                        "uvloop (the default), or aiohttp on asyncio (five times the CPU a request: "
                        "it limited the generators; the default until December 7)")
    args = parser.parse_args()
    if args.compare:
        compare(args)
        return
    rates = [float(r) for r in args.rates.split(",")]
    port = free_port()
    service = subprocess.Popen([sys.executable, "-c", SERVICES[args.service], str(port)])
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
    print_table(f"open-loop load, {args.seconds:g} s per rate, max in flight {args.max_in_flight}, "
                f"service {args.service}",
                ["target/s", "scheduled", "answered/s", "dropped", "sched p50 ms", "sched p99 ms",
                 "sent p50 ms", "sent p99 ms", "cpu us/req"], rows)


if __name__ == "__main__":
    main()
