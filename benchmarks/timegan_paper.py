"""Reproduce the TimeGAN paper's table (Sines, Stocks) and score TimeGAN on NAB metric series.

Paper runs: all runs of all datasets train together as block-diagonal replicas of one packed
network (exactly independent models, one training loop). NAB runs go through the public
``TimeGANSynthesizer`` API (fit, then ``sample`` of many series). Scores come from
``streamsynth.evaluate`` (discriminative |acc - 0.5| and train-on-synthetic predictive MAE).

    python benchmarks/timegan_paper.py --iterations 50000 --runs 3 --out out/timegan.json
    python benchmarks/timegan_paper.py --skip-paper --nab PATH.csv PATH.csv --nab-iterations 5000

Measured on one H100 (CUDA graphs): 12 packed replicas (Sines, Stocks, two NAB series, 3 runs
each) took 3.1 + 1.9 + 21.8 ms per autoencoder / supervised / joint iteration: 12,000 iterations
per phase in 321 s, so the paper's 50,000 need about 22 minutes. One unpacked replica took
about 7 ms per iteration of all three phases (recurrent latency grows with the packed width).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from streamsynth.evaluate import discriminative_score, predictive_score  # noqa: E402
from streamsynth.models.timegan.network import Layout, TimeGANConfig  # noqa: E402
from streamsynth.models.timegan.train import Windows, train  # noqa: E402

SEQ_LEN = 24
PAPER = {  # Yoon et al. 2019, Table 1/2: TimeGAN discriminative, predictive; real-data predictive
    "sines": {"discriminative": 0.011, "predictive": 0.093, "real_predictive": 0.094},
    "stocks": {"discriminative": 0.102, "predictive": 0.038, "real_predictive": 0.036},
}
DEFAULT_STOCKS = ROOT.parent / "shared" / "data" / "timegan" / "stock_data.csv"


def sines(n: int = 10_000, seq_len: int = SEQ_LEN, dim: int = 5, seed: int = 0) -> np.ndarray:
    """The paper's Sines: per sequence and feature, frequency and phase uniform in [0, 0.1]."""
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0, 0.1, (n, 1, dim))
    phase = rng.uniform(0, 0.1, (n, 1, dim))
    t = np.arange(seq_len)[None, :, None]
    return ((np.sin(freq * t + phase) + 1) * 0.5).astype(np.float32)


def stocks(path: Path) -> np.ndarray:
    """Google daily prices, oldest first, min-max scaled per column: rows (N, 6)."""
    data = np.loadtxt(path, delimiter=",", skiprows=1)
    if data[0, 3] > data[-1, 3] * 2:  # the paper's copy was newest-first; ours is oldest-first
        data = data[::-1]
    lo, hi = data.min(0), data.max(0)
    return ((data - lo) / (hi - lo + 1e-7)).astype(np.float32)


def windows_of(rows: np.ndarray, starts: np.ndarray) -> np.ndarray:
    return rows[starts[:, None] + np.arange(SEQ_LEN)[None, :]]


def _scores(job: tuple) -> dict:
    """One run's two scores (runs in a worker process so several share the GPU at once)."""
    name, run, real, synth, device, disc_iters, pred_iters = job
    torch.set_num_threads(2)
    t0 = time.perf_counter()
    disc = discriminative_score(real, synth, seed=run, iterations=disc_iters, device=device)
    pred = predictive_score(real, synth, seed=run, iterations=pred_iters, device=device)
    return {"dataset": name, "run": run, "discriminative": disc, "predictive": pred,
            "metric_s": time.perf_counter() - t0}


def _real_predictive(job: tuple) -> dict:
    name, real, device, pred_iters = job
    torch.set_num_threads(2)
    return {"dataset": name, "real_predictive": predictive_score(real, real, seed=0,
                                                               iterations=pred_iters, device=device)}


def paper(args: argparse.Namespace, device: torch.device) -> dict:
    data: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    if "sines" in args.datasets:
        s = sines(seed=args.seed)
        data["sines"] = (s.reshape(-1, s.shape[2]), np.arange(len(s)) * SEQ_LEN)
    if "stocks" in args.datasets:
        rows = stocks(Path(args.stocks))
        data["stocks"] = (rows, np.arange(len(rows) - SEQ_LEN))  # the paper's windows, stride 1
    for path in args.nab_packed:  # NAB metric series, windowed exactly like Stocks
        values = np.genfromtxt(path, delimiter=",", skip_header=1, usecols=1)[:, None]
        lo, hi = values.min(0), values.max(0)
        rows = ((values - lo) / (hi - lo + 1e-7)).astype(np.float32)
        data[Path(path).stem] = (rows, np.arange(len(rows) - SEQ_LEN))
    replicas = [(name, run) for name in data for run in range(args.runs)]
    layout = Layout([data[name][0].shape[1] for name, _ in replicas])
    config = TimeGANConfig(iterations=args.iterations, module=args.module)
    train_data = [Windows(*data[name]) for name, _ in replicas]
    print(f"training {len(replicas)} packed replicas ({', '.join(f'{n}#{r}' for n, r in replicas)}) "
          f"for {args.iterations} iterations per phase on {device}", flush=True)
    t0 = time.perf_counter()
    net, trainer = train(train_data, config, layout, seed=args.seed, device=device,
                         log=lambda m: print(m, flush=True), use_graphs=not args.no_graphs)
    train_s = time.perf_counter() - t0
    print(f"trained in {train_s:.1f}s {trainer.timings} (CUDA graphs: {trainer.graphed})", flush=True)

    # Synthetic windows: as many as real ones, from fresh uniform noise, per replica.
    jobs, reals = [], {}
    gen = torch.Generator(device="cpu").manual_seed(args.seed + 1)
    offsets = np.cumsum([0] + layout.widths)
    for i, (name, run) in enumerate(replicas):
        real = windows_of(*data[name])
        reals[name] = real
        z = torch.rand(len(real), SEQ_LEN, net.z_dim, generator=gen).to(device)
        synth = torch.cat([net.sample(z[k:k + 8192])[0] for k in range(0, len(z), 8192)])
        synth = synth[..., offsets[i]:offsets[i + 1]].float().cpu().numpy()
        jobs.append((name, run, real, synth, str(device), args.disc_iterations, args.pred_iterations))
    t1 = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=get_context("spawn")) as pool:
        base = [pool.submit(_real_predictive, (n, r, str(device), args.pred_iterations))
                for n, r in reals.items()]
        results = list(pool.map(_scores, jobs))
        real_pred = {f.result()["dataset"]: f.result()["real_predictive"] for f in base}
    metric_s = time.perf_counter() - t1
    table = {}
    for name in data:
        rows = [r for r in results if r["dataset"] == name]
        d = [r["discriminative"] for r in rows]
        p = [r["predictive"] for r in rows]
        table[name] = {
            "discriminative_mean": statistics.mean(d), "discriminative_std": _std(d),
            "predictive_mean": statistics.mean(p), "predictive_std": _std(p),
            "real_predictive": real_pred[name], "runs": rows, "paper": PAPER.get(name),
        }
    return {"table": table, "train_s": train_s, "phase_s": trainer.timings, "metric_s": metric_s,
            "iterations_per_phase": args.iterations, "replicas": len(replicas),
            "cuda_graphs": trainer.graphed}


def _std(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def nab(args: argparse.Namespace, device: torch.device) -> dict:
    """Fit the synthesizer on each NAB file; score 24-step windows of generated series."""
    import polars as pl

    from streamsynth import io
    from streamsynth.models.timegan import TimeGANSynthesizer

    out = {}
    for path in args.nab:
        frame = io.read(path)
        model = TimeGANSynthesizer(seed=args.seed, preset="paper", iterations=args.nab_iterations,
                                   module=args.module, device=str(device))
        t0 = time.perf_counter()
        model.fit(frame)
        fit_s = time.perf_counter() - t0
        numeric = model.numeric_columns
        lo = np.array([model.encoders["numeric"][c][0] for c in numeric])
        hi = np.array([model.encoders["numeric"][c][1] for c in numeric])
        rows = frame.sort(model.schema.time).select(numeric).to_numpy().astype(np.float64)
        rows = ((rows - lo) / (hi - lo + 1e-7)).astype(np.float32)
        real = windows_of(rows, np.arange(len(rows) - SEQ_LEN))
        n = min(len(real), args.nab_windows)
        real = real[np.random.default_rng(args.seed).permutation(len(real))[:n]]
        t1 = time.perf_counter()
        start = model.default_start()
        synth = model.sample(n_entities=n, start=start, end=start + SEQ_LEN * model.interval,
                             batch_size=n * 8)
        gen_s = time.perf_counter() - t1
        entity = "series" if model.schema.entity is None else model.schema.entity
        synth = synth.sort([entity, model.schema.time]) if entity in synth.columns else synth
        values = synth.select(numeric).to_numpy().astype(np.float64).reshape(n, SEQ_LEN, -1)
        values = ((values - lo) / (hi - lo + 1e-7)).astype(np.float32)
        disc = [discriminative_score(real, values, seed=s, iterations=args.disc_iterations,
                                     device=str(device)) for s in range(args.nab_metric_runs)]
        pred = [predictive_score(real, values, seed=s, iterations=args.pred_iterations,
                                 device=str(device)) for s in range(args.nab_metric_runs)]
        real_pred = predictive_score(real, real, seed=0, iterations=args.pred_iterations,
                                     device=str(device)) if args.nab_real else float("nan")
        out[Path(path).name] = {
            "rows": frame.height, "windows": n, "fit_s": fit_s, "generate_s": gen_s,
            "events_generated": synth.height, "iterations_per_phase": args.nab_iterations,
            "discriminative_mean": statistics.mean(disc), "discriminative_std": _std(disc),
            "predictive_mean": statistics.mean(pred), "predictive_std": _std(pred),
            "real_predictive": real_pred, "interval_s": model.interval.total_seconds(),
            "columns": pl.Series(numeric).to_list(),
        }
        t2 = time.perf_counter()
        events = sum(b.height for b in _take(model.stream(n_entities=1000, batch_size=200_000),
                                             args.stream_events))
        out[Path(path).name]["stream_events_per_s"] = events / (time.perf_counter() - t2)
        print(f"{Path(path).name}: {json.dumps(out[Path(path).name])}", flush=True)
    return out


def _take(stream, n: int):
    from streamsynth.contract import take

    return take(stream, n)


def report(result: dict) -> None:
    if "paper" in result:
        p = result["paper"]
        print(f"\nTimeGAN paper table: {p['replicas']} runs packed, {p['iterations_per_phase']} "
              f"iterations per phase, device {result['device']}, train {p['train_s']:.0f}s, "
              f"metrics {p['metric_s']:.0f}s, CUDA graphs {p['cuda_graphs']}")
        print(f"{'dataset':8} {'discriminative':>16} {'paper':>6} {'predictive':>16} {'paper':>6} "
              f"{'real pred':>9} {'paper':>6}")
        for name, t in p["table"].items():
            if t["paper"] is None:
                print(f"{name:8} {t['discriminative_mean']:>8.3f} +- {t['discriminative_std']:.3f} "
                      f"{'':>6} {t['predictive_mean']:>8.3f} +- {t['predictive_std']:.3f} "
                      f"{'':>6} {t['real_predictive']:>9.3f}")
                continue
            print(f"{name:8} {t['discriminative_mean']:>8.3f} +- {t['discriminative_std']:.3f} "
                  f"{t['paper']['discriminative']:>6.3f} {t['predictive_mean']:>8.3f} +- "
                  f"{t['predictive_std']:.3f} {t['paper']['predictive']:>6.3f} "
                  f"{t['real_predictive']:>9.3f} {t['paper']['real_predictive']:>6.3f}")
    for name, t in result.get("nab", {}).items():
        print(f"NAB {name}: disc {t['discriminative_mean']:.3f} +- {t['discriminative_std']:.3f}, "
              f"pred {t['predictive_mean']:.3f} +- {t['predictive_std']:.3f} "
              f"(real {t['real_predictive']:.3f}), fit {t['fit_s']:.0f}s, "
              f"stream {t['stream_events_per_s']:,.0f} events/s")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--iterations", type=int, default=50_000, help="per phase (paper: 50,000)")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--datasets", default="sines,stocks")
    ap.add_argument("--stocks", default=os.environ.get("TIMEGAN_STOCKS", str(DEFAULT_STOCKS)))
    ap.add_argument("--module", default="gru", choices=["gru", "lstm"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None)
    ap.add_argument("--disc-iterations", type=int, default=2000)
    ap.add_argument("--pred-iterations", type=int, default=5000)
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--no-graphs", action="store_true", help="train eagerly even on CUDA")
    ap.add_argument("--skip-paper", action="store_true")
    ap.add_argument("--nab", nargs="*", default=[], help="NAB CSVs fitted with TimeGANSynthesizer")
    ap.add_argument("--nab-packed", nargs="*", default=[],
                    help="NAB CSVs trained as extra packed replicas beside Sines and Stocks")
    ap.add_argument("--nab-iterations", type=int, default=5000)
    ap.add_argument("--nab-windows", type=int, default=5000)
    ap.add_argument("--nab-metric-runs", type=int, default=3, help="metric repeats per NAB model")
    ap.add_argument("--nab-real", action=argparse.BooleanOptionalAction, default=True,
                    help="also score real-on-real prediction for NAB models")
    ap.add_argument("--stream-events", type=int, default=1_000_000,
                    help="events streamed per NAB model to measure generation speed")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    args.datasets = [d for d in args.datasets.split(",") if d]
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    result: dict = {"device": f"{device.type} ({name or platform.machine()})",
                    "torch": torch.__version__, "args": vars(args)}
    if not args.skip_paper:
        result["paper"] = paper(args, device)
        _write(args.out, result)
    if args.nab:
        result["nab"] = nab(args, device)
    report(result)
    _write(args.out, result)
    return result


def _write(path: str | None, result: dict) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(result, indent=2, default=float))


if __name__ == "__main__":
    main()
