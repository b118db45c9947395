"""Sampling on Ray against plain processes: events/s of the same span of a baseline model, and what
starting Ray costs.

One baseline model is fitted on the payments simulator and saved; every run then generates its
whole span (the model's own, no --end) through the CLI, as a user would, so each wall time includes
Python's start-up and, for --ray, starting a local Ray runtime:
  (a) one plain `sample` process; (b) two plain processes `--shard 0/2` and `--shard 1/2` started
  together; (c) `sample --ray --shards 1` and `--ray --shards 2` on a local runtime (one per run).
Ray's start-up alone is timed in a fresh process: `import ray`, `ray.init`, one trivial task's
round trip. Where torch sees a GPU, one `--ray --shards 1 --ray-gpus 1` task samples a small
transformer; otherwise the script says it skipped that and why.
Times are medians of --repeats runs after one untimed run of (a) that warms the file cache.
Run: python benchmarks/bench_ray.py [--customers 10000] [--days 30] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import print_table  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "streamsynth"]
# Timed in a fresh interpreter so that nothing is imported or started before it; prints JSON.
RAY_STARTUP = """
import json, time
t0 = time.perf_counter()
import ray
t1 = time.perf_counter()
ray.init(include_dashboard=False, logging_level="ERROR")
t2 = time.perf_counter()
ray.get(ray.remote(lambda: 1).remote())
t3 = time.perf_counter()
ray.get(ray.remote(lambda: 1).remote())
t4 = time.perf_counter()
ray.shutdown()
print(json.dumps({"import": t1 - t0, "init": t2 - t1, "first_task": t3 - t2, "next_task": t4 - t3}))
"""


def machine_facts() -> list[str]:
    import torch

    try:
        import ray

        ray_version = ray.__version__
    except ImportError:
        ray_version = "not installed"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return [
        f"load average (1, 5, 15 min): {load}",
        f"CPUs: {os.cpu_count()} (usable by this process: {usable})",
        f"torch {torch.__version__}, CPU capability: {torch.backends.cpu.get_cpu_capability()}, "
        f"CUDA available: {torch.cuda.is_available()}",
        f"Python {platform.python_version()}, Ray {ray_version}",
    ]


def run_together(commands: list[list[str]]) -> float:
    """Start the commands at once; wall seconds until the last one exits (any failure stops the bench)."""
    started = time.perf_counter()
    procs = [subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for cmd in commands]
    errors = [p.communicate()[1] for p in procs]
    wall = time.perf_counter() - started
    for cmd, proc, err in zip(commands, procs, errors, strict=True):
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-2000:]}")
    return wall


def events_written(manifests: list[Path]) -> int:
    return sum(json.loads(m.read_text())["counts"]["events"] for m in manifests)


def plain_commands(model: Path, out: Path, n: int) -> tuple[list[list[str]], list[Path]]:
    """`sample` (n == 1) or n `sample --shard K/n` processes, and the manifests they write."""
    if n == 1:
        return [[*CLI, "sample", str(model), "-o", str(out / "all.parquet")]], [out / "all.parquet.manifest.json"]
    commands = [[*CLI, "sample", str(model), "-o", str(out / f"shard-{k}.parquet"), "--shard", f"{k}/{n}"]
                for k in range(n)]
    return commands, [out / f"shard-{k}.parquet.manifest.json" for k in range(n)]


def ray_commands(model: Path, out: Path, n: int, *extra: str) -> tuple[list[list[str]], list[Path]]:
    """One `sample --ray --shards n` process (it starts its own local runtime) and its manifest."""
    parts = out / f"ray-{n}"
    return [[*CLI, "sample", str(model), "-o", str(parts), "--ray", "--shards", str(n), *extra]], \
        [out / f"ray-{n}.manifest.json"]


def measure(label: str, made: tuple[list[list[str]], list[Path]], repeats: int, tasks: int = 0) -> dict:
    """Median and worst wall time of ``repeats`` runs; ``tasks`` the Ray tasks one process starts."""
    commands, manifests = made
    walls = [run_together(commands) for _ in range(repeats)]
    workers = f"{len(commands)} + {tasks} Ray task{'s' * (tasks > 1)}" if tasks else str(len(commands))
    return {"label": label, "procs": workers, "events": events_written(manifests),
            "wall": statistics.median(walls), "worst": max(walls)}


def ray_startup(repeats: int) -> dict[str, float]:
    runs = []
    for _ in range(repeats):
        done = subprocess.run([sys.executable, "-c", RAY_STARTUP], capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise SystemExit(f"Ray start-up probe failed:\n{done.stderr[-2000:]}")
        runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {key: statistics.median(r[key] for r in runs) for key in runs[0]}


def gpu_row(tmp: Path, repeats: int) -> dict | str:
    """One GPU task sampling a small transformer, or why it was skipped."""
    import torch

    if not torch.cuda.is_available():
        return (f"skipped: torch.cuda.is_available() is False here (torch {torch.__version__}, "
                f"built for CUDA {torch.version.cuda})")
    from streamsynth.datasets.payments import payments
    from streamsynth.models import create

    model = tmp / "transformer"
    create("transformer", seed=0, n_layer=2, n_head=2, n_embd=64, epochs=1, batch_size=64,
           progress=False).fit(payments(n_customers=500, n_days=7, seed=0)).save(model)
    return measure("transformer, --ray --shards 1 --ray-gpus 1", ray_commands(model, tmp, 1, "--ray-gpus", "1"),
                   repeats, 1)


def table_rows(results: list[dict], reference: dict) -> list[list[str]]:
    return [[r["label"], r["procs"], f"{r['events']:,}", f"{r['wall']:.2f}", f"{r['worst']:.2f}",
             f"{r['events'] / r['wall']:,.0f}", f"{reference['wall'] / r['wall']:.2f}x"] for r in results]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print("\n".join(machine_facts()))

    from streamsynth.datasets.payments import payments
    from streamsynth.models import create

    with tempfile.TemporaryDirectory(prefix="bench-ray-") as name:
        tmp = Path(name)
        frame = payments(n_customers=args.customers, n_days=args.days)
        model = tmp / "baseline"
        create("baseline", seed=0).fit(frame).save(model)
        print(f"baseline fitted on payments: {args.customers:,} customers x {args.days} days, "
              f"{frame.height:,} events; medians of {args.repeats} runs")
        run_together(plain_commands(model, tmp, 1)[0])  # warm-up, untimed
        results = [
            measure("(a) sample, one process", plain_commands(model, tmp, 1), args.repeats),
            measure("(b) sample --shard K/2, two processes", plain_commands(model, tmp, 2), args.repeats),
            measure("(c) sample --ray --shards 1", ray_commands(model, tmp, 1), args.repeats, 1),
            measure("(c) sample --ray --shards 2", ray_commands(model, tmp, 2), args.repeats, 2),
        ]
        print_table("generating the model's span, CLI wall time (start-up included)",
                    ["run", "processes", "events", "median s", "worst s", "events/s", "speed vs (a)"],
                    table_rows(results, results[0]))
        startup = ray_startup(args.repeats)
        print_table("Ray start-up in a fresh process (local runtime, no dashboard), median s",
                    ["import ray", "ray.init", "first task round trip", "next task round trip", "init + first task"],
                    [[f"{startup['import']:.2f}", f"{startup['init']:.2f}", f"{startup['first_task']:.3f}",
                      f"{startup['next_task']:.4f}", f"{startup['init'] + startup['first_task']:.2f}"]])
        gpu = gpu_row(tmp, args.repeats)
        if isinstance(gpu, str):
            print(f"\nGPU task (transformer, --ray-gpus 1): {gpu}")
        else:
            print_table("GPU task", ["run", "processes", "events", "median s", "worst s", "events/s", "speed"],
                        table_rows([gpu], gpu))


if __name__ == "__main__":
    main()
