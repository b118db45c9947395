"""Peer benchmark: SDV's PARSynthesizer vs the transformer on the same payments data, comparable
epochs, sampling events/s side by side. SDV is installed into its own virtual environment under
/tmp (it shares this interpreter's torch through --system-site-packages).

    python benchmarks/peer_par.py [--customers 100] [--days 7] [--epochs 5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from streamsynth.datasets import payments
from streamsynth.models import create

VENV = Path("/tmp/streamsynth-peer-sdv")

# Runs inside the SDV environment: fit PAR on the parquet file, sample, print events/s as JSON.
PAR_SCRIPT = r"""
import json, sys, time
import pandas as pd
from sdv.metadata import Metadata
from sdv.sequential import PARSynthesizer
path, epochs, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
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
started = time.perf_counter()
out = par.sample_sequences(n)
sample_s = time.perf_counter() - started
out = next(iter(out.values())) if isinstance(out, dict) else out
print(json.dumps({"fit_s": fit_s, "events": len(out), "sample_s": sample_s,
                  "events_per_s": len(out) / sample_s}))
"""


def ensure_sdv() -> Path:
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(VENV)], check=True)
    probe = subprocess.run([str(python), "-c", "import sdv"], capture_output=True)
    if probe.returncode:
        subprocess.run([str(python), "-m", "pip", "install", "-q", "sdv"], check=True)
    return python


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100)
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--sequences", type=int, default=50, help="sequences PAR samples")
    args = parser.parse_args()
    frame = payments(n_customers=args.customers, n_days=args.days, seed=0)
    python = ensure_sdv()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "payments.parquet"
        frame.write_parquet(path)
        proc = subprocess.run(
            [str(python), "-c", PAR_SCRIPT, str(path), str(args.epochs), str(args.sequences)],
            capture_output=True, text=True, check=False,
        )
    if proc.returncode:
        sys.exit(f"PAR failed:\n{proc.stderr[-3000:]}")
    par = json.loads(proc.stdout.strip().splitlines()[-1])

    model = create(
        "transformer", seed=0, n_layer=2, n_head=4, n_embd=64, epochs=args.epochs, batch_size=8, progress=False
    )
    started = time.perf_counter()
    model.fit(frame)
    fit_s = time.perf_counter() - started
    model.sample(n_entities=args.customers, n_events=1000)  # warm-up
    started = time.perf_counter()
    out = model.sample(n_entities=args.customers)
    sample_s = time.perf_counter() - started
    ours = {"fit_s": fit_s, "events": out.height, "sample_s": sample_s, "events_per_s": out.height / sample_s}
    print(f"{'':12}{'fit s':>10}{'events':>10}{'sample s':>10}{'events/s':>12}")
    for name, r in (("sdv PAR", par), ("transformer", ours)):
        print(f"{name:12}{r['fit_s']:>10.1f}{r['events']:>10}{r['sample_s']:>10.2f}{r['events_per_s']:>12,.0f}")
    print(f"speed-up: {ours['events_per_s'] / par['events_per_s']:,.0f}x")


if __name__ == "__main__":
    main()
