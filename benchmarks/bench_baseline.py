"""Baseline fit time and sampling events/s, medians of several runs, as ratios to a raw reference.

The reference in the same run is polars generating and sorting the same number of rows of
uniform random columns: it calibrates for how busy this shared machine is right now.
Run: python benchmarks/bench_baseline.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import median_seconds, print_table  # noqa: E402

from streamsynth.datasets import payments  # noqa: E402
from streamsynth.models.baseline import BaselineSynthesizer  # noqa: E402

START = datetime(2024, 3, 1, tzinfo=UTC)


def reference(n: int) -> None:
    rng = np.random.default_rng(0)
    frame = pl.DataFrame({f"c{i}": rng.random(n) for i in range(8)})
    frame.sort("c0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--events", type=int, default=500_000)
    args = parser.parse_args()

    rows = []
    for customers, days in [(2000, 30), (10000, 30)]:
        data = payments(n_customers=customers, n_days=days, seed=1)
        fit_s, _ = median_seconds(lambda d=data: BaselineSynthesizer(seed=1).fit(d), repeats=args.repeats)
        rows.append([f"{customers:,} customers x {days} d", f"{data.height:,}", f"{fit_s:.2f}"])
    print_table("baseline fit (median of runs)", ["training data", "events", "fit s"], rows)

    data = payments(n_customers=2000, n_days=30, seed=1)
    model = BaselineSynthesizer(seed=1).fit(data)
    ref_s, _ = median_seconds(lambda: reference(args.events), repeats=args.repeats)
    rows = []
    for batch in (10_000, 50_000, 200_000):
        seconds, runs = median_seconds(
            lambda b=batch: model.sample(n_events=args.events, start=START, batch_size=b), repeats=args.repeats
        )
        rows.append([
            f"{batch:,}", f"{args.events / seconds:,.0f}", f"{min(args.events / r for r in runs):,.0f}",
            f"{seconds / ref_s:.1f}",
        ])
    print_table(
        f"baseline sampling {args.events:,} events (payments model; reference: polars random+sort "
        f"{args.events / ref_s:,.0f} rows/s)",
        ["batch size", "median events/s", "worst events/s", "time vs reference"],
        rows,
    )


if __name__ == "__main__":
    main()
