"""Thread policy benchmark: TimeGAN fit, a small transformer fit, baseline sampling and evaluate,
each in a fresh process, on an idle machine and with one spinning process beside it, under the
old thread policy and the new one (``streamsynth.threads``); medians of ``--repeats`` runs.

Policies (``--policies``, comma-separated):
  old      the code at ``--old`` (a worktree of the code before, e.g.
           ``git worktree add /tmp/streamsynth-old f514031``) with torch's defaults
  new      this checkout, the CPU budget applied as the CLI applies it at start
  one      this checkout with STREAMSYNTH_THREADS=1
  passive  the old code with OMP_WAIT_POLICY=PASSIVE
  spin     this checkout with OMP_WAIT_POLICY=ACTIVE (spin-waiting threads)

    PATH=/tmp/venv/bin:$PATH python benchmarks/bench_threads.py --repeats 3
    PATH=/tmp/venv/bin:$PATH python benchmarks/bench_threads.py --repeats 1 --workloads timegan_fit --busy-only

Each run prints its own wall time of the workload only (imports and data set-up excluded).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from _timing import print_table  # noqa: E402

WORKLOADS = ["timegan_fit", "transformer_fit", "baseline_sample", "evaluate"]
THREAD_VARS = ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "POLARS_MAX_THREADS", "STREAMSYNTH_THREADS", "MKL_NUM_THREADS")


# -- the child: one workload, timed ----------------------------------------------------------------
def child(workload: str) -> None:
    try:  # what the CLI does first thing; the old code has no such module
        from streamsynth import threads

        threads.configure()
    except ImportError:
        pass
    import inspect

    import numpy as np
    import polars as pl
    import torch

    def quiet(cls, **kwargs):
        if "progress" in inspect.signature(cls.__init__).parameters:
            kwargs["progress"] = False
        return cls(**kwargs)

    if workload == "timegan_fit":
        from streamsynth.models.timegan import TimeGANSynthesizer

        rng = np.random.default_rng(0)
        t = np.arange(3000)
        frame = pl.DataFrame({f"x{i}": np.sin(0.01 * (i + 1) * t) + 0.1 * rng.normal(size=len(t)) for i in range(6)})
        # the paper's network, 20 iterations per phase (the "--option iterations=20")
        model = quiet(TimeGANSynthesizer, seq_len=24, hidden_dim=24, num_layers=3, batch_size=128,
                      iterations=20, device="cpu")
        start = time.perf_counter()
        model.fit(frame)
    elif workload == "transformer_fit":
        from streamsynth.datasets import payments
        from streamsynth.models.transformer import TransformerSynthesizer

        frame = payments(n_customers=150, n_days=4, seed=0)
        model = quiet(TransformerSynthesizer, n_layer=2, n_embd=64, n_head=4, epochs=2, device="cpu")
        start = time.perf_counter()
        model.fit(frame)
    elif workload == "baseline_sample":
        from streamsynth.datasets import payments
        from streamsynth.models.baseline import BaselineSynthesizer

        model = BaselineSynthesizer(seed=0).fit(payments(n_customers=300, n_days=10, seed=0))
        start = time.perf_counter()
        model.sample(n_events=200_000)
    elif workload == "evaluate":
        from streamsynth.datasets import payments
        from streamsynth.evaluate import SequenceOptions, evaluate

        real, synth = payments(n_customers=300, n_days=10, seed=0), payments(n_customers=300, n_days=10, seed=1)
        options = SequenceOptions(window=8, max_windows=600, discriminative_iterations=300, predictive_iterations=300)
        if "progress" in SequenceOptions.__dataclass_fields__:
            options.progress = False
        start = time.perf_counter()
        evaluate(real, synth, sequences=options)
    else:
        raise SystemExit(f"unknown workload {workload}")
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "threads": torch.get_num_threads()}))


# -- the parent: policies x conditions x workloads --------------------------------------------------
def policies(old: Path) -> dict[str, tuple[Path, dict[str, str]]]:
    return {
        "old": (old, {}),
        "new": (ROOT, {}),
        "one": (ROOT, {"STREAMSYNTH_THREADS": "1"}),
        "passive": (old, {"OMP_WAIT_POLICY": "PASSIVE"}),
        "spin": (ROOT, {"OMP_WAIT_POLICY": "ACTIVE"}),
    }


def run_once(workload: str, code: Path, extra: dict[str, str], timeout: float) -> tuple[float, int]:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    env.update(extra)
    env["PYTHONPATH"] = str(code)
    env["STREAMSYNTH_PROGRESS"] = "off"
    try:
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--child", workload], env=env,
                              capture_output=True, text=True, timeout=timeout, cwd=code)
    except subprocess.TimeoutExpired:
        return math.inf, 0  # shown as "> timeout": the run did not finish in time
    if proc.returncode != 0:
        raise RuntimeError(f"{workload} under {code} failed:\n{proc.stderr[-2000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    return result["seconds"], result["threads"]


class Spinner:
    """One process that keeps a core busy (what another job on a shared runner does)."""

    def __enter__(self) -> Spinner:
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(0.5)
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--policies", default="old,new")
    parser.add_argument("--old", type=Path, help="checkout with the old policy (needed by old and passive)")
    parser.add_argument("--idle-only", action="store_true")
    parser.add_argument("--busy-only", action="store_true")
    parser.add_argument("--timeout", type=float, default=600, help="seconds per run; slower runs show as >N")
    args = parser.parse_args()
    if args.child:
        child(args.child)
        return
    import torch

    sys.path.insert(0, str(ROOT))
    from streamsynth.threads import usable_cpus

    names = args.policies.split(",")
    if {"old", "passive"} & set(names) and (args.old is None or not (args.old / "streamsynth").is_dir()):
        parser.error("policies old and passive run the code before: give its checkout as --old DIR "
                     "(git worktree add DIR f514031)")
    chosen = {name: policies(args.old)[name] for name in names}
    conditions = [c for c in ("idle", "busy") if not (c == "idle" and args.busy_only)
                  and not (c == "busy" and args.idle_only)]
    load_before = os.getloadavg()
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}, "
          f"{os.cpu_count()} CPUs seen, {usable_cpus()} usable, load average {load_before[0]:.2f} "
          f"{load_before[1]:.2f} {load_before[2]:.2f}; medians of {args.repeats}", flush=True)
    rows = []
    for workload in args.workloads.split(","):
        for condition in conditions:
            times: dict[str, float] = {}
            used: dict[str, int] = {}
            loads = []
            for name, (code, extra) in chosen.items():
                runs = []
                for _ in range(args.repeats):
                    loads.append(os.getloadavg()[0])
                    if condition == "busy":
                        with Spinner():
                            seconds, n = run_once(workload, code, extra, args.timeout)
                    else:
                        seconds, n = run_once(workload, code, extra, args.timeout)
                    runs.append(seconds)
                times[name], used[name] = statistics.median(runs), n
                print(f"  {workload} {condition} {name}: {', '.join(f'{s:.2f}' for s in runs)} s "
                      f"({n} threads)", flush=True)
            row = [workload, condition, f"{statistics.mean(loads):.2f}"]
            row += [f"{times[n]:.2f} ({used[n]})" if math.isfinite(times[n]) else f">{args.timeout:.0f}"
                    for n in chosen]
            if "old" in times and "new" in times:
                ratio = times["old"] / times["new"]
                row.append(f"{ratio:.2f}x" if math.isfinite(ratio) else f">{args.timeout / times['new']:.1f}x")
            rows.append(row)
    header = ["workload", "machine", "load avg", *[f"{n} s (threads)" for n in chosen]]
    if "old" in chosen and "new" in chosen:
        header.append("old/new")
    print_table("seconds per run (median), torch threads in brackets", header, rows)
    load_after = os.getloadavg()
    print(f"\nload average after: {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")


if __name__ == "__main__":
    main()
