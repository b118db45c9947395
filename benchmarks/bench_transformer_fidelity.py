"""Fidelity of the transformer vs the statistical baseline, scored by ``streamsynth.evaluate``:
discriminative score and per-column distances, on the payments sample (at two sizes) and on real
Loghub logs (BGL by node, HDFS by block id; skipped when ../shared/data is absent).

    python benchmarks/bench_transformer_fidelity.py [--epochs 30] [--customers 500,2000]
        [--samples 3] [--kv-heads 1,4] [--only NAME] [--json out.json]

Each fitted model is sampled ``--samples`` times (seeds 1..N) and every sample scored against the
real table: the scores are the means over samples, with the discriminative score of each sample
listed too (one sample's score moves by several hundredths from seed to seed).
``--customers``: payments sample sizes ("payments_500" is about 16,700 events, "payments_2000"
about 66,700). ``--kv-heads``: key/value heads of the transformer (1 = multi-query, the default;
4 = one per query head); with several, each is fitted and scored ("transformer_kv1", ...).
The transformer is small (2 layers, 64 wide) and trains 30 epochs at lr 1e-3 with 8 entities a
batch: with 15 epochs at the model's default lr (3e-3, meant for batches of 32) it was
under-trained on the 500-customer sample.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import polars as pl

from streamsynth import io
from streamsynth.datasets import payments
from streamsynth.evaluate import evaluate
from streamsynth.models import create
from streamsynth.schema import Schema

LOGHUB = Path(__file__).resolve().parents[2] / "shared" / "data" / "loghub"


def datasets(customers: list[int]) -> dict[str, tuple[pl.DataFrame, Schema]]:
    out = {}
    for n in customers:
        frame = payments(n_customers=n, n_days=14, seed=0)
        out[f"payments_{n}"] = (frame, Schema.infer(frame))
    bgl = LOGHUB / "BGL_2k.log_structured.csv"
    if bgl.exists():
        frame = io.read(bgl)
        out["loghub_bgl"] = (frame, Schema.infer(frame, entity="Node"))
    hdfs = LOGHUB / "HDFS_2k.log_structured.csv"
    if hdfs.exists():
        frame = io.read(hdfs).with_columns(block_id=pl.col("Content").str.extract(r"(blk_-?\d+)", 1))
        frame = frame.filter(pl.col("block_id").is_not_null())
        out["loghub_hdfs"] = (frame, Schema.infer(frame, entity="block_id"))
    return out


def summary(results: list[Any]) -> dict[str, Any]:
    """Means over the samples' evaluations (and each sample's discriminative score)."""

    def mean(values: list[float | None]) -> float | None:  # None: not scored (e.g. too few rows)
        known = [v for v in values if v is not None]
        return round(statistics.fmean(known), 4) if known else None

    def mean_by_key(per_sample: list[dict[str, float]]) -> dict[str, float | None]:
        return {k: mean([d.get(k) for d in per_sample]) for k in per_sample[0]}

    return {
        "rows": mean([r.synth_rows for r in results]),
        "discriminative": mean([r.utility.discriminative for r in results]),
        "discriminative_per_sample": [mean([r.utility.discriminative]) for r in results],
        "scorecard": mean_by_key([{c.key: c.value for c in r.scorecard if c.value is not None}
                                  for r in results]),
        "ks": mean_by_key([{c.name: c.ks for c in r.fidelity.numeric} for r in results]),
        "tv": mean_by_key([{c.name: c.tv for c in r.fidelity.categorical} for r in results]),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--only", default=None, help="one data set name")
    parser.add_argument("--json", default=None)
    parser.add_argument("--kv-heads", default="1", help="comma-separated n_kv_head values")
    parser.add_argument("--customers", default="500,2000", help="payments sample sizes")
    parser.add_argument("--samples", type=int, default=3, help="samples scored per model")
    args = parser.parse_args()
    kv_heads = [int(k) for k in args.kv_heads.split(",")]
    results: dict[str, Any] = {}
    for name, (frame, schema) in datasets([int(c) for c in args.customers.split(",")]).items():
        if args.only and name != args.only:
            continue
        results[name] = {"real_rows": frame.height, "entities": frame[schema.entity].n_unique()}
        models = {"baseline": create("baseline", seed=0)}
        for kv in kv_heads:
            key = "transformer" if len(kv_heads) == 1 else f"transformer_kv{kv}"
            models[key] = create(
                "transformer", seed=0, n_layer=2, n_head=4, n_kv_head=kv, n_embd=64, epochs=args.epochs,
                batch_size=8, lr=1e-3, progress=False,
            )
        for kind, model in models.items():
            started = time.perf_counter()
            model.fit(frame, schema)
            fit_s = time.perf_counter() - started
            scored = [evaluate(frame, model.sample(seed=s), schema, seed=0)
                      for s in range(1, args.samples + 1)]
            results[name][kind] = {"fit_s": round(fit_s, 1), **summary(scored)}
            print(name, kind, json.dumps(results[name][kind], default=float), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
