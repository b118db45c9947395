"""Fidelity of the transformer vs the statistical baseline, scored by ``streamsynth.evaluate``:
discriminative score and per-column distances, on the payments sample and on real Loghub logs
(BGL by node, HDFS by block id; skipped when ../shared/data is absent).

    python benchmarks/bench_transformer_fidelity.py [--epochs 15] [--kv-heads 1,4] [--json out.json]

``--kv-heads``: key/value heads of the transformer (1 = multi-query, the default; 4 = one per
query head); with several, each is fitted and scored ("transformer_kv1", "transformer_kv4").
"""

from __future__ import annotations

import argparse
import json
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


def datasets() -> dict[str, tuple[pl.DataFrame, Schema]]:
    out = {}
    frame = payments(n_customers=500, n_days=14, seed=0)
    out["payments"] = (frame, Schema.infer(frame))
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


def summary(result: Any) -> dict[str, Any]:
    fid = result.fidelity
    return {
        "rows": result.synth_rows,
        "discriminative": result.utility.discriminative,
        "scorecard": {c.key: c.value for c in result.scorecard if c.value is not None},
        "ks": {c.name: round(c.ks, 4) for c in fid.numeric},
        "tv": {c.name: round(c.tv, 4) for c in fid.categorical},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--only", default=None, help="one data set name")
    parser.add_argument("--json", default=None)
    parser.add_argument("--kv-heads", default="1", help="comma-separated n_kv_head values")
    args = parser.parse_args()
    kv_heads = [int(k) for k in args.kv_heads.split(",")]
    results: dict[str, Any] = {}
    for name, (frame, schema) in datasets().items():
        if args.only and name != args.only:
            continue
        results[name] = {"real_rows": frame.height, "entities": frame[schema.entity].n_unique()}
        models = {"baseline": create("baseline", seed=0)}
        for kv in kv_heads:
            key = "transformer" if len(kv_heads) == 1 else f"transformer_kv{kv}"
            models[key] = create(
                "transformer", seed=0, n_layer=2, n_head=4, n_kv_head=kv, n_embd=64, epochs=args.epochs,
                batch_size=8, progress=False,
            )
        for kind, model in models.items():
            started = time.perf_counter()
            model.fit(frame, schema)
            fit_s = time.perf_counter() - started
            synth = model.sample(seed=1)
            result = evaluate(frame, synth, schema, seed=0)
            results[name][kind] = {"fit_s": round(fit_s, 1), **summary(result)}
            print(name, kind, json.dumps(results[name][kind], default=float), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2, default=float))


if __name__ == "__main__":
    main()
