"""Speed of the transformer's generation: events/s at entity pools of 1, 256 and 4096 (fp32 and bf16),
the statistical baseline's events/s in the same run, and KV cache vs full recompute at length 256.

    python benchmarks/bench_transformer.py                 # CPU, about 1M parameters
    python benchmarks/bench_transformer.py --device cuda --pools 4096,65536 --check-cpu
    python benchmarks/bench_transformer.py --model-dir /tmp/m --pools 4096 --steady  # long-run rate
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from streamsynth.datasets import payments
from streamsynth.models import create, load_model
from streamsynth.models.transformer_network import N_TIME, EventTransformer, KVCache, TransformerConfig
from streamsynth.models.transformer_sample import SamplerPlan, cpu_has_bf16, sample_fields
from streamsynth.threads import threads_for


def events_per_s(model: Any, n_entities: int, n_events: int) -> tuple[float, int]:
    """End to end: model steps, ordering, decoding to contract frames with ids and labels."""
    model.sample(n_entities=n_entities, n_events=min(n_events, 2000))  # warm-up
    started = time.perf_counter()
    out = model.sample(n_entities=n_entities, n_events=n_events)
    return out.height / (time.perf_counter() - started), out.height


def generation_per_s(model: Any, n_entities: int, n_events: int) -> float:
    """The sampler alone: events produced in time order, before decoding to frames."""
    ev, at, _ = model.codec.forced({})
    sampler = model.sampler(SamplerPlan(model.default_start(), model.span_s, n_entities, 0, ev, at))
    started, done = time.perf_counter(), 0
    for chunk in sampler.chunks(10_000):
        done += len(chunk["seq"])
        if done >= n_events:
            break
    return done / (time.perf_counter() - started)


def cache_vs_recompute(cfg: TransformerConfig, rows: int, length: int, device: torch.device) -> dict[str, float]:
    """Seconds to generate ``length`` positions for ``rows`` sequences, with and without the cache."""
    cfg = TransformerConfig(**{**cfg.__dict__, "block_size": length + 1})
    model = EventTransformer(cfg).to(device).eval()
    f, a = len(cfg.event_sizes), len(cfg.attr_sizes)
    events = torch.zeros(rows, length, f, dtype=torch.long, device=device)
    attrs = torch.zeros(rows, a, dtype=torch.long, device=device)
    tfeat = torch.zeros(rows, length, N_TIME + 2, device=device)
    u = torch.full((rows, f), 0.5, dtype=torch.float64, device=device)
    free = torch.full((f,), -1, dtype=torch.long)
    out = {}
    for use_cache in (True, False):
        cache = KVCache(cfg, rows, device, torch.float32) if use_cache else None
        _sync(device)
        started = time.perf_counter()
        with torch.inference_mode(), threads_for(rows * cfg.n_embd):
            for p in range(length):
                pos = torch.full((rows,), p, dtype=torch.long, device=device)
                if cache is not None:
                    cache.prepare(pos, p + 1)
                    x = model.embed(pos[:, None], attrs, events[:, p : p + 1], tfeat[:, p : p + 1])
                    h = model.hidden(x, cache)[:, 0]
                else:
                    positions = torch.arange(p + 1, device=device).expand(rows, p + 1)
                    x = model.embed(positions, attrs, events[:, : p + 1], tfeat[:, : p + 1])
                    h = model.hidden(x)[:, -1]
                sample_fields(model.event_heads, h, u, free, 1.0, None)
        _sync(device)
        out["cache_s" if use_cache else "recompute_s"] = time.perf_counter() - started
    out["ratio"] = out["recompute_s"] / out["cache_s"]
    return out


def profile_steps(model: Any, pool: int, precision: str, steps: int = 12) -> str:
    """Per-op times of a few pool steps (after warm-up), and the mean wall time of one step."""
    from torch.profiler import ProfilerActivity, profile

    model.configure(entity_batch=pool, precision=precision)
    ev, at, _ = model.codec.forced({})
    sampler = model.sampler(SamplerPlan(model.default_start(), model.span_s, pool, 0, ev, at))
    device = sampler.device
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.inference_mode():
        sampler._init_pool()
        for _ in range(6):
            sampler._step()
        _sync(device)
        started = time.perf_counter()
        for _ in range(steps):
            sampler._step()
        _sync(device)
        per_step = (time.perf_counter() - started) / steps
        with profile(activities=activities) as prof:
            for _ in range(steps):
                sampler._step()
            _sync(device)
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    table = prof.key_averages().table(sort_by=sort, row_limit=14, max_name_column_width=40)
    return f"pool {pool} {precision}: {per_step * 1e3:.1f} ms per step\n{table}"


def steady_steps(model: Any, pool: int, precision: str, warm: int = 130, steps: int = 30) -> dict[str, float]:
    """Pool steps once positions have spread out (after ``warm`` steps, about one block): ms per
    step and events per second generated (before ordering), i.e. the long-run stream rate."""
    model.configure(entity_batch=pool, precision=precision)
    ev, at, _ = model.codec.forced({})
    sampler = model.sampler(SamplerPlan(model.default_start(), model.span_s, pool * 1000, 0, ev, at))
    device = sampler.device
    with torch.inference_mode(), threads_for(pool * model.model.cfg.n_embd):
        sampler._init_pool()
        for _ in range(warm):
            sampler._step()
        _sync(device)
        started, events = time.perf_counter(), 0
        for _ in range(steps):
            out = sampler._step()
            events += 0 if out is None else int(out["seq"].numel())
        _sync(device)
    elapsed = time.perf_counter() - started
    return {"ms_per_step": round(elapsed / steps * 1e3, 1), "events_per_s": round(events / elapsed)}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--days", type=int, default=14)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--pools", default="1,256,4096")
    parser.add_argument("--events", type=int, default=1_000_000, help="events per measurement (max)")
    parser.add_argument("--check-cpu", action="store_true", help="also sample on CPU and compare")
    parser.add_argument("--json", default=None, help="write results to this file")
    parser.add_argument("--profile", action="store_true", help="print per-op times at the largest pool")
    parser.add_argument("--model-dir", default=None,
                        help="load the fitted model from here if present, else fit and save it there")
    parser.add_argument("--skip-kv", action="store_true", help="skip the KV-vs-recompute timing")
    parser.add_argument("--steady", action="store_true",
                        help="only the steady-state step rate at each pool (after positions spread)")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--skip-baseline", action="store_true", help="skip the baseline model's timing")
    args = parser.parse_args()
    device = torch.device(args.device)
    results: dict[str, Any] = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                               "threads": torch.get_num_threads(),
                               "cpu_capability": torch.backends.cpu.get_cpu_capability(),
                               "cpu_bf16": cpu_has_bf16()}
    precisions = args.precisions.split(",")
    if device.type == "cpu" and "bf16" in precisions and not results["cpu_bf16"]:
        # Emulated bf16 is an order of magnitude slower than fp32: timing it says nothing new.
        precisions.remove("bf16")
        print("bf16 skipped: this CPU has no bf16 instructions (avx512_bf16 or AMX)", flush=True)

    frame = payments(n_customers=args.customers, n_days=args.days, seed=0)
    results["training_events"] = frame.height
    started = time.perf_counter()
    if args.model_dir and Path(args.model_dir, "config.json").exists():
        model = load_model(args.model_dir)  # same weights across runs: before/after comparisons
    else:
        model = create(
            "transformer", seed=0, n_layer=4, n_head=4, n_embd=128, epochs=args.epochs,
            batch_size=32, device=args.device, progress=False,
        ).fit(frame)
        if args.model_dir:
            model.save(args.model_dir)
    results["fit_s"] = round(time.perf_counter() - started, 1)
    results["parameters"] = model.metadata["parameters"]
    results["block_size"] = model.model.cfg.block_size
    results["history"] = model.history
    print(json.dumps({k: results[k] for k in ("device", "cpu_capability", "cpu_bf16", "parameters",
                                               "block_size", "fit_s")}), flush=True)

    if not args.skip_baseline:
        baseline = create("baseline", seed=0).fit(frame)
        rate, n = events_per_s(baseline, 4096, args.events)
        results["baseline_events_per_s"] = round(rate)
        print(f"baseline: {rate:,.0f} events/s ({n} events)", flush=True)

    model.configure(device=args.device)
    if args.steady:
        for pool in (int(p) for p in args.pools.split(",")):
            for precision in precisions:
                res = steady_steps(model, pool, precision)
                results[f"steady_pool{pool}_{precision}"] = res
                print(f"steady state pool {pool:>6} {precision}: {res['ms_per_step']} ms per step, "
                      f"{res['events_per_s']:,} events/s generated", flush=True)
        print(json.dumps({k: v for k, v in results.items() if k.startswith("steady")}))
        return
    for pool in (int(p) for p in args.pools.split(",")):
        for precision in precisions:
            model.configure(entity_batch=pool, precision=precision)
            # About 7 windows of the pool's entities: events of a window are released once its
            # last entity has passed them, so a budget of one window would time mostly the ramp.
            budget = min(args.events, max(500, pool * 250))
            rate, n = events_per_s(model, max(pool, 1), budget)
            gen = generation_per_s(model, max(pool, 1), budget)
            key = f"pool{pool}_{precision}"
            results[key] = {"events_per_s": round(rate), "generation_events_per_s": round(gen), "events": n}
            print(f"transformer pool {pool:>6} {precision}: {rate:,.0f} events/s end to end, "
                  f"{gen:,.0f} events/s generation only ({n} events)", flush=True)

    length = 256
    if args.skip_kv:
        length = 0
    rows = 64 if device.type == "cpu" else 4096
    if length:
        kv = cache_vs_recompute(model.model.cfg, rows, length, device)
        results["kv_vs_recompute"] = {"rows": rows, "length": length, **kv}
        print(f"KV cache vs full recompute at length {length}, {rows} rows: {kv['ratio']:.1f}x "
              f"({kv['cache_s']:.2f}s vs {kv['recompute_s']:.2f}s)", flush=True)

    if args.check_cpu and device.type == "cuda":
        model.configure(entity_batch=None, precision="fp32", device="cuda")
        gpu = model.sample(n_entities=200)
        model.configure(device="cpu")
        cpu = model.sample(n_entities=200)
        same = gpu.height == cpu.height and gpu.equals(cpu)
        shared = len(set(gpu["event_id"]) & set(cpu["event_id"]))
        results["cuda_vs_cpu"] = {
            "identical": same, "gpu_events": gpu.height, "cpu_events": cpu.height,
            "shared_event_ids": shared,
            "amount_median": [float(gpu["amount"].median()), float(cpu["amount"].median())],
            "fraud_rate": [float(gpu["is_fraud"].mean()), float(cpu["is_fraud"].mean())],
        }
        print("cuda vs cpu:", json.dumps(results["cuda_vs_cpu"]), flush=True)
    if args.profile:
        for precision in precisions:
            text = profile_steps(model, int(args.pools.split(",")[-1]), precision)
            results[f"profile_{precision}"] = text
            print(text, flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2, default=float)
    print(json.dumps({k: v for k, v in results.items() if k != "history"}, default=float))


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
