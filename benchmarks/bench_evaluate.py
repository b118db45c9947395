"""Benchmark: `evaluate` on 1M events x 8 columns (target: under 60 s on 2 cores).

Two independent draws of one payments-like generator stand in for real and synthetic data;
the GRU scores run on a sample of windows (the defaults of `streamsynth evaluate`).

    python benchmarks/bench_evaluate.py [--events 1000000] [--report out.html]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime

import numpy as np
import polars as pl
from scipy.signal import lfilter

from streamsynth.evaluate import evaluate, write_report


def payments(n_events: int, seed: int) -> pl.DataFrame:
    """8 columns: customer, time, amount, latency, category, channel, country, fraud flag."""
    rng = np.random.default_rng(seed)
    n_entities = max(1, n_events // 40)
    entity = np.sort(rng.integers(0, n_entities, n_events))
    gaps = rng.exponential(4 * 3600, n_events)
    frame = pl.DataFrame({"e": entity, "g": gaps})
    seconds = (
        rng.uniform(0, 3 * 86400, n_entities)[entity]
        + frame.select(pl.col("g").cum_sum().over("e"))["g"].to_numpy()
    )
    # AR(1) wobble of amounts (crossing entity boundaries slightly: harmless here).
    wobble = lfilter([1.0], [1.0, -0.7], rng.normal(0, 0.3, n_events))
    level = rng.normal(3, 0.6, n_entities)[entity]
    category = rng.choice(
        ["grocery", "online", "travel", "fuel", "pharmacy"], n_events, p=[0.4, 0.3, 0.1, 0.1, 0.1]
    )
    fraud = rng.random(n_events) < np.where(category == "online", 0.05, 0.005)
    amount = np.exp(level + wobble) * np.where(fraud, 4.0, 1.0)
    start = datetime(2024, 3, 4, tzinfo=UTC)
    ts = pl.Series((seconds * 1e6).astype(np.int64)).cast(pl.Duration("us")) + start
    return pl.DataFrame(
        {
            "customer_id": pl.Series(entity).cast(pl.String),
            "ts": ts.cast(pl.Datetime("us", "UTC")),
            "amount": amount.round(2),
            "latency_ms": rng.gamma(2.0, 10.0, n_events) + 5 * np.sqrt(amount),
            "merchant_category": category,
            "channel": np.where(category == "online", "web", rng.choice(["pos", "web"], n_events)),
            "country": rng.choice(["DE", "FR", "NL", "US", "GB", "ES"], n_events),
            "is_fraud": fraud,
        }
    ).sort("ts")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--report", default=None)
    args = parser.parse_args()
    real, synth = payments(args.events, 1), payments(args.events, 2)
    started = time.perf_counter()
    result = evaluate(real, synth)
    elapsed = time.perf_counter() - started
    if args.report:
        write_report(result, args.report)
    print(f"evaluate: {args.events:,} events x {real.width} columns per side in {elapsed:.1f} s")
    print("  " + ", ".join(f"{k} {v:.1f}s" for k, v in result.timings.items()))
    for check in result.scorecard:
        print(f"  {check.key:<18} {check.value if check.value is None else round(check.value, 4)}")


if __name__ == "__main__":
    main()
