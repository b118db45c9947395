"""Benchmark: what differential privacy costs and buys, in one table.

For the simulated payments sample and one real log stream (loghub OpenSSH, one entity per sshd
process), train the transformer with no DP and with DP-SGD at epsilon 1, 3 and 10 (delta 1e-5,
the entity as the unit of privacy) on 60% of the entities; then score the synthetic data against
the other 40% (never trained on): membership-inference AUC (0.5: no leak), discriminative score
(|acc - 0.5|, 0 best), train-synthetic-test-real MAE (predictive, and its ratio to real), and
the training time.

    python benchmarks/bench_privacy.py [--epochs 4] [--epsilons 1,3,10] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import torch

from streamsynth.datasets import payments
from streamsynth.evaluate import SequenceOptions, evaluate
from streamsynth.models import create
from streamsynth.schema import Schema

LOGHUB = Path(__file__).resolve().parents[2] / "shared" / "data" / "loghub" / "OpenSSH_2k.log_structured.csv"


def openssh() -> pl.DataFrame | None:
    """2,000 real sshd lines: time, process id (the entity), event template id, source IP."""
    path = LOGHUB if LOGHUB.exists() else Path("/work/shared/data/loghub/OpenSSH_2k.log_structured.csv")
    if not path.exists():
        return None
    raw = pl.read_csv(path, infer_schema_length=0)
    months = {m: i for i, m in enumerate(("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec").split(), 1)}
    text = pl.format(
        "2024-{}-{} {}",
        pl.col("Date").replace_strict(months, return_dtype=pl.String).str.zfill(2),
        pl.col("Day").str.zfill(2),
        pl.col("Time"),
    )
    return raw.select(
        text.str.to_datetime("%Y-%m-%d %H:%M:%S", time_zone="UTC").dt.cast_time_unit("us").alias("ts"),
        pl.col("Pid").alias("pid"),
        pl.col("EventId").alias("event"),
        pl.col("Content").str.extract(r"(\d+\.\d+\.\d+\.\d+)").alias("source_ip"),
        pl.col("Content").str.extract(r"(?:user|for) (\S+) from").alias("user"),
    ).sort("ts")


def split(frame: pl.DataFrame, entity: str, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(training rows of 60% of the entities, rows of the other 40%)."""
    ids = frame[entity].unique().sort()
    rng = np.random.default_rng(seed)
    train_ids = ids.gather(np.sort(rng.choice(ids.len(), int(0.6 * ids.len()), replace=False)))
    member = pl.col(entity).is_in(train_ids.implode())
    return frame.filter(member), frame.filter(~member)


def run(name: str, train: pl.DataFrame, holdout: pl.DataFrame, schema: Schema, epsilon: float | None,
        args: argparse.Namespace) -> dict[str, Any]:
    options: dict[str, Any] = dict(
        epochs=args.epochs, n_layer=2, n_head=2, n_embd=64, batch_size=args.batch_size, progress=False,
        device=args.device,
    )
    if args.val_fraction is not None:  # 0: no early stopping, so a model without DP can memorise
        options["val_fraction"] = args.val_fraction
    if epsilon is not None:
        options.update(dp_epsilon=epsilon, dp_delta=1e-5)
    model = create("transformer", seed=0, **options)
    started = time.perf_counter()
    model.fit(train, schema)
    seconds = time.perf_counter() - started
    n_entities = holdout[schema.entity].n_unique()
    synth = model.sample(n_entities=n_entities)
    seq = SequenceOptions(max_windows=1000, discriminative_iterations=args.iterations,
                          predictive_iterations=args.iterations, device=args.device)
    result = evaluate(holdout, synth, schema, train=train, sequences=seq, device=args.device)
    privacy = model.metadata.get("privacy") or {}
    return {
        "data": name,
        "dp": "none" if epsilon is None else f"eps={epsilon:g}",
        "spent_epsilon": privacy.get("epsilon"),
        "noise_multiplier": privacy.get("noise_multiplier"),
        "mia_auc": result.metric("mia_auc"),
        "mia_row_auc": result.membership.row_auc if result.membership else None,
        "discriminative": result.metric("discriminative"),
        "predictive_mae": result.metric("predictive"),
        "predictive_ratio": result.metric("predictive_ratio"),
        "train_s": round(seconds, 1),
        "synth_events": synth.height,
    }


def fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epsilons", default="1,3,10")
    parser.add_argument("--customers", type=int, default=800)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--iterations", type=int, default=500, help="training steps of each GRU score")
    parser.add_argument("--device", default=None)
    parser.add_argument("--json", default=None)
    parser.add_argument("--only", default=None, help="run one data set: payments or loghub")
    parser.add_argument("--val-fraction", type=float, default=None,
                        help="entities held out for early stopping without DP (0: none, to show memorisation)")
    args = parser.parse_args()
    if (args.device or "cpu") == "cpu":
        torch.set_num_threads(min(4, torch.get_num_threads()))
    datasets = [("payments", payments(n_customers=args.customers, n_days=args.days, seed=7), "customer_id", {})]
    logs = openssh()
    if logs is None:
        print("loghub OpenSSH sample not found: benchmarking the payments sample only")
    else:  # 150-odd attacker IPs infer as a category; they are identifiers, to be faked
        datasets.append(("loghub OpenSSH", logs, "pid", {"source_ip": {"role": "identifier", "kind": "ipv4"}}))
    if args.only:
        datasets = [d for d in datasets if d[0].startswith(args.only)]
    levels: list[float | None] = [None, *(float(e) for e in args.epsilons.split(","))]
    rows = []
    for name, frame, entity, overrides in datasets:
        schema = Schema.infer(frame, entity=entity, time="ts", overrides=overrides)
        train, holdout = split(frame, entity)
        print(f"{name}: {train.height:,} training events of {train[entity].n_unique()} entities, "
              f"{holdout.height:,} held-out events of {holdout[entity].n_unique()}", flush=True)
        for epsilon in levels:
            row = run(name, train, holdout, schema, epsilon, args)
            rows.append(row)
            print(json.dumps(row), flush=True)
    header = ["data", "dp", "spent_epsilon", "mia_auc", "mia_row_auc", "discriminative", "predictive_mae",
              "predictive_ratio", "train_s"]
    widths = [max(len(h), *(len(fmt(r[h])) for r in rows)) for h in header]
    print(f"\ntransformer, {args.epochs} epochs, batch {args.batch_size} entities, delta 1e-5, "
          f"val_fraction {args.val_fraction}, "
          f"{datetime.now(UTC):%Y-%m-%d}")
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(fmt(r[h]).rjust(w) for h, w in zip(header, widths, strict=True)))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
