"""Peer benchmark: SDV's PARSynthesizer vs our transformer and baseline on the same payments data,
like with like: the same training entities, the same epochs (PAR and the transformer), the same
number of sequences sampled, sampling timed in rounds that alternate between the models (so a burst
of load touches each alike), each round long enough to take at least ``--min-seconds``, medians of
``--rounds``. SDV is installed into its own virtual environment under /tmp (sharing this
interpreter's torch through --system-site-packages; pyarrow, which SDV reads Parquet with but does
not require, is installed beside it).

    python benchmarks/peer_par.py [--customers 100] [--days 7] [--epochs 5] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import print_table  # noqa: E402

from streamsynth.datasets import payments
from streamsynth.models import create

VENV = Path("/tmp/streamsynth-peer-sdv")

# Runs inside the SDV environment. "fit": fit PAR on the parquet file and save it; "sample": load
# it and sample N sequences again and again until MIN seconds have passed; prints JSON.
PAR_SCRIPT = r"""
import json, sys, time
import pandas as pd
from sdv.metadata import Metadata
from sdv.sequential import PARSynthesizer
mode, path, model = sys.argv[1], sys.argv[2], sys.argv[3]
if mode == "fit":
    epochs = int(sys.argv[4])
    data = pd.read_parquet(path)
    data["ts"] = data["ts"].dt.tz_localize(None)
    data = data[["customer_id", "ts", "merchant_category", "amount", "channel", "country", "is_fraud"]]
    metadata = Metadata.detect_from_dataframes({"payments": data})
    metadata.update_column("customer_id", sdtype="id", table_name="payments")
    metadata.set_sequence_key("customer_id", table_name="payments")
    metadata.set_sequence_index("ts", table_name="payments")
    par = PARSynthesizer(metadata, epochs=epochs, verbose=False)
    started = time.perf_counter()
    par.fit({"payments": data})
    fit_s = time.perf_counter() - started
    par.save(model)
    print(json.dumps({"fit_s": fit_s}))
else:
    n, least = int(sys.argv[4]), float(sys.argv[5])
    from sdv.utils import load_synthesizer
    par = load_synthesizer(model)
    events, started = 0, time.perf_counter()
    while True:
        out = par.sample_sequences(n)
        out = next(iter(out.values())) if isinstance(out, dict) else out
        events += len(out)
        if time.perf_counter() - started >= least:
            break
    print(json.dumps({"events": events, "seconds": time.perf_counter() - started}))
"""


def ensure_sdv() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(VENV)], check=True)
    probe = subprocess.run([str(python), "-c", "import sdv, pyarrow"], capture_output=True)
    if probe.returncode:
        subprocess.run([str(python), "-m", "pip", "install", "-q", "sdv", "pyarrow"], check=True)
    return python


def par(python: Path, *args: str) -> dict[str, Any]:
    proc = subprocess.run([str(python), "-c", PAR_SCRIPT, *args], capture_output=True, text=True, check=False)
    if proc.returncode:
        sys.exit(f"PAR failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ours(model: Any, n: int, least: float) -> dict[str, float]:
    """Sample ``n`` entities again and again (seeds 1, 2, ...) until ``least`` seconds have passed."""
    events, seed, started = 0, 1, time.perf_counter()
    while True:
        events += model.sample(n_entities=n, seed=seed).height
        seed += 1
        if time.perf_counter() - started >= least:
            return {"events": events, "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3, help="sampling rounds per model (medians)")
    parser.add_argument("--min-seconds", type=float, default=5.0, help="a round samples for at least this long")
    args = parser.parse_args()
    print(f"load average {os.getloadavg()}; {os.cpu_count()} CPUs; torch threads {torch.get_num_threads()}; "
          f"CPU {torch.backends.cpu.get_cpu_capability()}")
    frame = payments(n_customers=args.customers, n_days=args.days, seed=0)
    n = frame["customer_id"].n_unique()  # every model samples as many sequences as it trained on
    python = ensure_sdv()
    models: dict[str, Any] = {
        "transformer": create("transformer", seed=0, n_layer=2, n_head=4, n_embd=64, epochs=args.epochs,
                              batch_size=8, progress=False),
        "baseline": create("baseline", seed=0),
    }
    fit_s: dict[str, float] = {}
    rates: dict[str, list[float]] = {"sdv PAR": [], **{name: [] for name in models}}
    with tempfile.TemporaryDirectory() as tmp:
        data, saved = Path(tmp) / "payments.parquet", Path(tmp) / "par.pkl"
        frame.write_parquet(data)
        fit_s["sdv PAR"] = par(python, "fit", str(data), str(saved), str(args.epochs))["fit_s"]
        for name, model in models.items():
            started = time.perf_counter()
            model.fit(frame)
            fit_s[name] = time.perf_counter() - started
            model.sample(n_entities=n, n_events=1000)  # warm-up
        for _ in range(args.rounds):  # alternating, so load touches every model alike
            r = par(python, "sample", str(data), str(saved), str(n), str(args.min_seconds))
            rates["sdv PAR"].append(r["events"] / r["seconds"])
            for name, model in models.items():
                r = ours(model, n, args.min_seconds)
                rates[name].append(r["events"] / r["seconds"])
    par_rate = statistics.median(rates["sdv PAR"])
    rows = [[name, f"{fit_s[name]:.1f}", f"{statistics.median(r):,.0f}", f"{min(r):,.0f}-{max(r):,.0f}",
             f"{statistics.median(r) / par_rate:,.1f}x"] for name, r in rates.items()]
    print_table(f"{n} training customers ({frame.height:,} events), {args.epochs} epochs (PAR, transformer), "
                f"{n} sequences a sample, rounds of >= {args.min_seconds:g} s, medians of {args.rounds}; "
                f"load average now {os.getloadavg()[0]:.1f}",
                ["model", "fit s", "events/s", "range", "vs PAR"], rows)


if __name__ == "__main__":
    main()
