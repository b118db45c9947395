"""Speed of the transformer's generation: events/s at entity pools of 1, 256 and 4096 (fp32 and bf16),
the statistical baseline's events/s in the same run, and KV cache vs full recompute at length 256.

    python benchmarks/bench_transformer.py                 # CPU, about 1M parameters
    python benchmarks/bench_transformer.py --device cuda --pools 4096,65536 --check-cpu
    python benchmarks/bench_transformer.py --model-dir /tmp/m --pools 4096 --steady  # long-run rate
    python benchmarks/bench_transformer.py --pools 4096 --repeats 5 --contend       # idle vs other core busy

Each pool and precision is timed ``--repeats`` times (interleaved with the others, after a warm-up)
and reported as the median with the spread (slowest to fastest): single runs at a large pool varied
by a third on a shared machine. Every table line carries the load average and thread count it was
measured at. ``--contend`` times each one again with a busy loop on another core (a second process
spinning), and prints the contended rate as a share of the idle one.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _timing import print_table  # noqa: E402

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
    warm = model.sampler(SamplerPlan(model.default_start(), model.span_s, n_entities, 0, ev, at))
    next(iter(warm.chunks(min(n_events, 2000))), None)  # warm-up: first-call allocations and kernels
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


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


@contextmanager
def busy_core(on: bool):
    """A second process spinning on a core while the block runs (the contended case)."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if on else None
    try:
        time.sleep(0.5 if on else 0)  # let it get scheduled
        yield
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()


def pool_rates(model: Any, pools: list[int], precisions: list[str], args: argparse.Namespace,
               results: dict[str, Any]) -> None:
    """Events/s at each pool and precision (and busy core, with --contend): ``--repeats`` rounds,
    each timing every case once, so a burst of load touches every case alike; medians."""
    cases = [(pool, precision, busy) for pool in pools for precision in precisions
             for busy in ((False, True) if args.contend else (False,))]
    runs: dict[tuple[int, str, bool], list[tuple[float, float, float]]] = {c: [] for c in cases}
    for _ in range(args.repeats):
        for pool, precision, busy in cases:
            model.configure(entity_batch=pool, precision=precision)
            # About 7 windows of the pool's entities: events of a window are released once its
            # last entity has passed them, so a budget of one window would time mostly the ramp.
            budget = min(args.events, max(500, pool * 250))
            with busy_core(busy):
                rate, _ = events_per_s(model, max(pool, 1), budget)
                gen = generation_per_s(model, max(pool, 1), budget)
            runs[(pool, precision, busy)].append((rate, gen, os.getloadavg()[0]))
    rows = []
    for (pool, precision, busy), measured in runs.items():
        rate = statistics.median(r for r, _, _ in measured)
        gen = statistics.median(g for _, g, _ in measured)
        spread = max(r for r, _, _ in measured) / max(min(r for r, _, _ in measured), 1e-9) - 1
        idle = statistics.median(r for r, _, _ in runs[(pool, precision, False)])
        key = f"pool{pool}_{precision}" + ("_contended" if busy else "")
        results[key] = {"events_per_s": round(rate), "generation_events_per_s": round(gen),
                        "spread": round(spread, 3), "runs": [round(r) for r, _, _ in measured]}
        rows.append([pool, precision, "busy" if busy else "idle", f"{rate:,.0f}", f"{gen:,.0f}",
                     f"{spread:.0%}" + (" (unsteady)" if spread > 0.10 else ""),
                     f"{rate / idle:.2f}" if busy else "-",
                     f"{statistics.median(x for _, _, x in measured):.1f}"])
    print_table(f"transformer sampling, medians of {args.repeats} rounds; threads {torch.get_num_threads()}, "
                f"CPU {torch.backends.cpu.get_cpu_capability()}, load average now {load()}",
                ["pool", "precision", "other core", "events/s", "generation only", "spread", "vs idle",
                 "load (1 min)"], rows)


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
    parser.add_argument("--repeats", type=int, default=3, help="rounds per pool and precision (medians)")
    parser.add_argument("--contend", action="store_true", help="also time each case with another core busy")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"load average {load()}; {os.cpu_count()} CPUs; torch threads {torch.get_num_threads()}", flush=True)
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
    pool_rates(model, [int(p) for p in args.pools.split(",")], precisions, args, results)

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
