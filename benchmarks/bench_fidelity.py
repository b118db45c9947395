"""Held-out fidelity of every model on every real data set: a matrix of discriminator AUCs.

Each data set is split: when the schema has an entity, about 30% of the entities (by a hash of
the entity id) are held out; otherwise (one series) the first half in time trains and the second
half is held out. Each model is fitted on the training part and sampled over the held-out part's
span (with an entity: cut to whole entities, about as many events as the held-out part), and the
sample is scored against the held-out part by ``streamsynth.evaluate`` (``gru=False``). The same
judge scores real training data (as many events) against the held-out part: the real-vs-real
floor, what a perfect model would score. Each cell reads ``AUC / floor`` and the worst failing
scorecard check.

    python benchmarks/bench_fidelity.py [--epochs 3] [--iterations 50] [--timegan] [--seeds 1]
        [--only payments,openssh] [--out docs/fidelity.md]

Data sets: the payments and flight schedule simulators, the Loghub files, the NAB series (one
series each) and, for TimeGAN only, the TimeGAN paper's stock series (given a daily time column).
Real data is read from ../shared/data beside the repository; missing files are skipped. Models:
baseline and transformer on all (a stream without an entity as segments); timegan on NAB and stocks with
``--timegan``; with ``--peers``, where the data has an entity, mostlyai-engine's TabularARGN
(sequential; ``peer_mostlyai.py`` in the venv of ``--peer-python``, trained for ``--peer-minutes``)
and SDV's PARSynthesizer (``peer_sdv.py`` in the venv of ``--par-python``, trained for as many
epochs as the transformer, ``--epochs``), each in its own virtual environment.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from streamsynth import io
from streamsynth.datasets import flights, payments
from streamsynth.evaluate import evaluate
from streamsynth.models import create
from streamsynth.schema import Schema

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
HOLDOUT_PERCENT = 30
MODELS = ("baseline", "transformer", "timegan")
PEERS = ("mostlyai", "par")
HERE = Path(__file__).resolve().parent
SKIP_KEYS = {"discriminator_auc"}  # shown in the cell already


@dataclass
class Dataset:
    name: str
    load: Callable[[], tuple[pl.DataFrame, Schema]]
    kind: str  # "events" (payments, logs), "series" (NAB), "stocks"
    split: str = ""
    train: pl.DataFrame | None = None
    test: pl.DataFrame | None = None
    schema: Schema | None = None
    floor: float | None = None
    notes: list[str] = field(default_factory=list)


def _read(path: Path) -> Callable[[], tuple[pl.DataFrame, Schema]]:
    def load() -> tuple[pl.DataFrame, Schema]:
        frame = io.read(path)
        return frame, Schema.infer(frame)
    return load


def _payments(seed: int) -> Callable[[], tuple[pl.DataFrame, Schema]]:
    def load() -> tuple[pl.DataFrame, Schema]:
        frame = payments(n_customers=300, n_days=10, seed=seed)
        return frame, Schema.infer(frame)
    return load


def _stocks(path: Path) -> Callable[[], tuple[pl.DataFrame, Schema]]:
    def load() -> tuple[pl.DataFrame, Schema]:
        # The file has no dates (rows are days, oldest first): give it one row a day.
        frame = io.read(path)
        start = datetime(2004, 8, 19, tzinfo=UTC)
        days = pl.Series("ts", [start + timedelta(days=i) for i in range(frame.height)]).cast(
            pl.Datetime("us", "UTC"))
        frame = frame.with_columns(days)
        return frame, Schema.infer(frame, time="ts")
    return load


def _short(stem: str) -> str:
    """A NAB file name short enough for a table column."""
    for long, short in (("_system_failure", ""), ("_misconfiguration", "_misconfig"), ("utilization", "util"),
                        ("request", "req")):
        stem = stem.replace(long, short)
    return stem


def _flights(seed: int) -> Callable[[], tuple[pl.DataFrame, Schema]]:
    def load() -> tuple[pl.DataFrame, Schema]:
        frame = flights(n_aircraft=300, days=20, n_airports=25, seed=seed)
        return frame, Schema.infer(frame, time="dep_time", entity="tail_number")
    return load


def datasets(seed: int) -> list[Dataset]:
    out = [Dataset("payments", _payments(seed), "events"), Dataset("flights", _flights(seed), "events")]
    for path in sorted((DATA / "loghub").glob("*_2k.log_structured.csv")):
        out.append(Dataset(path.name.split("_")[0].lower(), _read(path), "events"))
    for path in sorted((DATA / "nab").glob("*/*.csv")):
        out.append(Dataset("nab_" + _short(path.stem), _read(path), "series"))
    stocks = DATA / "timegan" / "stock_data.csv"
    if stocks.exists():
        out.append(Dataset("stocks", _stocks(stocks), "stocks"))
    return out


def _held_out(value: Any) -> bool:
    return zlib.crc32(str(value).encode()) % 100 < HOLDOUT_PERCENT


def split(ds: Dataset, frame: pl.DataFrame, schema: Schema) -> None:
    """Entities held out by hash, or time halves when there is no entity."""
    frame = frame.sort(schema.time)
    if schema.entity:
        held = frame[schema.entity].unique().drop_nulls()
        test_ids = held.filter(held.map_elements(_held_out, return_dtype=pl.Boolean))
        is_test = pl.col(schema.entity).is_in(test_ids.implode())
        ds.train, ds.test = frame.filter(~is_test), frame.filter(is_test)
        ds.split = f"entity `{schema.entity}`: {HOLDOUT_PERCENT}% of entities held out"
        ds.split += f" ({test_ids.len()} of {held.len()})"
    else:
        half = frame.height // 2
        ds.train, ds.test = frame.head(half), frame.tail(frame.height - half)
        ds.split = "no entity: time halves (first half trains)"
    ds.schema = schema


def whole_entities(frame: pl.DataFrame, entity: str | None, n: int, seed: int) -> pl.DataFrame:
    """About ``n`` events of ``frame``: whole entities in a shuffled order (all of it without one)."""
    if not entity or frame.height <= n:
        return frame
    counts = frame.group_by(entity).len().sort(entity).sample(fraction=1.0, shuffle=True, seed=seed)
    keep = counts.filter(pl.col("len").cum_sum().shift(1, fill_value=0) < n)[entity]
    return frame.filter(pl.col(entity).is_in(keep.implode()))


def train_sample(ds: Dataset, seed: int) -> pl.DataFrame:
    """A real sample about the size of the held-out part: whole training entities."""
    assert ds.train is not None and ds.test is not None and ds.schema is not None
    return whole_entities(ds.train, ds.schema.entity, ds.test.height, seed)


def scores(result: Any) -> dict[str, tuple[float, Any]]:
    """key -> (value, check) for the checks with a value."""
    return {c.key: (c.value, c) for c in result.scorecard
            if c.value is not None and not (isinstance(c.value, float) and math.isnan(c.value))}


def details(result: Any) -> dict[str, str]:
    """The column behind the worst ks/wasserstein/tv, and what gives the sample away most."""
    fid = result.fidelity
    out = {}
    for key, items, attr in (("ks", fid.numeric, "ks"), ("wasserstein", fid.numeric, "wasserstein_norm"),
                             ("tv", fid.categorical, "tv")):
        known = [c for c in items if getattr(c, attr) is not None and not math.isnan(getattr(c, attr))]
        if known:
            out[key] = max(known, key=lambda c, a=attr: getattr(c, a)).name
    if fid.discriminator and fid.discriminator.importance:
        top = fid.discriminator.importance[0]
        out["top"] = f"{top.feature} ({top.importance:+.2f})"
    return out


def worst_failing(values: dict[str, float], checks: dict[str, Any], columns: dict[str, str]) -> str:
    """The failing check furthest past its threshold (as a ratio), ``key=value``; "-" if none."""
    worst, worst_ratio = None, 1.0
    for key, value in values.items():
        check = checks[key]
        if key in SKIP_KEYS or check.threshold is None:
            continue
        if check.higher_is_better:
            ratio = check.threshold / value if value > 0 else math.inf
        else:
            ratio = value / check.threshold if check.threshold > 0 else (math.inf if value > 0 else 1.0)
        if ratio > worst_ratio:
            worst, worst_ratio = key, ratio
    if not worst:
        return "-"
    name = f"{worst}.{columns[worst]}" if worst in columns else worst
    return f"{name}={values[worst]:.3g}".replace("|", "/")


class Peer:
    """A peer generator in its own virtual environment (``python``), driven through ``script``
    (``peer_mostlyai.py``, ``peer_sdv.py``) with the training budget ``budget`` (its options);
    fit and sample as ours are."""

    def __init__(self, python: str, script: str, budget: list[str]) -> None:
        self.python, self.script, self.budget = python, str(HERE / script), budget
        self.workspace = Path(tempfile.mkdtemp(prefix="peer-"))
        self.schema: Schema | None = None
        self.entities = 0

    def _run(self, *argv: str) -> dict[str, Any]:
        done = subprocess.run([self.python, self.script, *argv], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError((done.stderr.strip().splitlines() or ["failed"])[-1])
        return json.loads(done.stdout.strip().splitlines()[-1])

    def fit(self, frame: pl.DataFrame, schema: Schema) -> Peer:
        assert schema.entity is not None
        self.schema, self.entities = schema, frame[schema.entity].n_unique()
        frame.write_parquet(self.workspace / "train.parquet")
        self._run("fit", str(self.workspace / "ws"), str(self.workspace / "train.parquet"), schema.entity,
                  schema.time, *self.budget)
        return self

    def sample(self, *, start: datetime, end: datetime, seed: int) -> pl.DataFrame:
        assert self.schema is not None and self.schema.time is not None
        out = self.workspace / f"sample-{seed}.parquet"
        self._run("sample", str(self.workspace / "ws"), str(out), str(self.entities))
        frame = pl.read_parquet(out)
        time_column = self.schema.time
        frame = frame.with_columns(pl.col(time_column).cast(pl.Datetime("us", "UTC"), strict=False))
        return frame.filter((pl.col(time_column) >= start) & (pl.col(time_column) < end))


def make_model(kind: str, args: argparse.Namespace) -> Any:
    if kind == "mostlyai":
        return Peer(args.peer_python, "peer_mostlyai.py", ["--minutes", str(args.peer_minutes)])
    if kind == "par":
        return Peer(args.par_python, "peer_sdv.py", ["--epochs", str(args.epochs)])
    if kind == "baseline":
        return create("baseline", seed=0)
    if kind == "transformer":
        if args.preset is not None:  # sized and budgeted by the preset, as `fit --preset` does
            return create("transformer", seed=0, preset=args.preset, device="cpu", progress=False)
        return create("transformer", seed=0, epochs=args.epochs, device="cpu", progress=False)
    return create("timegan", seed=0, preset="fast", iterations=args.iterations, device="cpu", progress=False)


def applies(kind: str, ds: Dataset, args: argparse.Namespace) -> str | None:
    """None when ``kind`` runs on ``ds``, else why not (the cell's text)."""
    if kind == "timegan":
        if ds.kind == "events":
            return "n/a (events)"
        return None if args.timegan else "skipped (--timegan)"
    if ds.kind == "stocks":
        return "n/a (TimeGAN only)"
    if kind in PEERS and not (ds.schema and ds.schema.entity):
        return "n/a (no entity)"
    return None


def one_line(error: BaseException) -> str:
    text = (str(error).strip().splitlines() or [""])[0]
    return f"error: {type(error).__name__}: {text}"[:160].replace("|", "/")


def run_cell(kind: str, ds: Dataset, args: argparse.Namespace) -> dict[str, Any]:
    assert ds.train is not None and ds.test is not None and ds.schema is not None
    started = time.perf_counter()
    model = make_model(kind, args).fit(ds.train, ds.schema)
    fit_s = time.perf_counter() - started
    # The held-out part's span; with an entity, the span the held-out entities lived in, which is
    # the whole data's (the first held-out event is later than the window's start: a sample
    # started there would shift every entity's birth), and the sample (about as many entities as
    # training had) is cut to whole entities with about as many events as the held-out part.
    column = ds.schema.time
    lived = pl.concat([ds.train.select(column), ds.test.select(column)]) if ds.schema.entity else ds.test
    start, end = lived[column].min(), lived[column].max() + timedelta(microseconds=1)
    per_seed: list[dict[str, tuple[float, Any]]] = []
    rows, first = [], None
    sample_s = 0.0
    for seed in range(1, args.seeds + 1):
        began = time.perf_counter()
        synth = model.sample(start=start, end=end, seed=seed)
        sample_s += time.perf_counter() - began
        synth = whole_entities(synth, ds.schema.entity, ds.test.height, seed)
        rows.append(synth.height)
        result = evaluate(ds.test, synth, ds.schema, gru=False, seed=seed)
        first = first or details(result)
        per_seed.append(scores(result))
    keys = set().union(*per_seed)
    values = {k: statistics.fmean(s[k][0] for s in per_seed if k in s) for k in keys}
    checks = {k: next(s[k][1] for s in per_seed if k in s) for k in keys}
    return {"auc": values.get("discriminator_auc"), "worst": worst_failing(values, checks, first or {}),
            "top": (first or {}).get("top", "-"),
            "values": values, "fit_s": fit_s, "total_s": time.perf_counter() - started,
            "synth_rows": round(statistics.fmean(rows)), "events_per_s": sum(rows) / max(sample_s, 1e-9)}


def fmt(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}"


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3, help="transformer training epochs")
    parser.add_argument("--preset", default=None, help="transformer: a fit preset (fast, auto, best) sizing "
                        "the network and its epochs from the data instead of --epochs")
    parser.add_argument("--iterations", type=int, default=50, help="timegan iterations per phase")
    parser.add_argument("--timegan", action="store_true", help="also fit TimeGAN on NAB and stocks")
    parser.add_argument("--seeds", type=int, default=1, help="sample seeds averaged per cell")
    parser.add_argument("--only", default=None, help="comma-separated data set names (or prefixes)")
    parser.add_argument("--models", default=",".join(MODELS), help="comma-separated models")
    parser.add_argument("--peers", action="store_true",
                        help="also run the peers (mostlyai: TabularARGN; par: SDV's PARSynthesizer)")
    parser.add_argument("--peer-python", default="/tmp/peer-venv/bin/python",
                        help="the python of a venv with mostlyai-engine (see peer_mostlyai.py)")
    parser.add_argument("--peer-minutes", type=float, default=3.0, help="peer training time limit")
    parser.add_argument("--par-python", default="/tmp/streamsynth-peer-sdv/bin/python",
                        help="the python of a venv with sdv (see peer_sdv.py)")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the payments simulator")
    parser.add_argument("--out", default=None, help="also write the tables to this markdown file")
    args = parser.parse_args()
    warnings.simplefilter("ignore")  # schema inference notes, one per file

    import torch  # after argparse: --help stays fast

    load_before = os.getloadavg()
    began = time.perf_counter()
    wanted = [w for w in (args.only or "").split(",") if w]
    chosen = [d for d in datasets(args.data_seed) if not wanted or any(d.name.startswith(w) for w in wanted)]
    models = [m for m in args.models.split(",") if m] + (list(PEERS) if args.peers else [])
    if unknown := sorted(set(models) - set(MODELS) - set(PEERS)):
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS + PEERS)}")
    cells: dict[tuple[str, str], str] = {}
    extra: dict[tuple[str, str], str] = {}
    tops: dict[tuple[str, str], str] = {}
    for ds in chosen:
        try:
            frame, schema = ds.load()
            split(ds, frame, schema)
            assert ds.train is not None and ds.test is not None
            floor = scores(evaluate(ds.test, train_sample(ds, args.data_seed), schema, gru=False, seed=1))
            ds.floor = floor.get("discriminator_auc", (None,))[0]
            ds.notes.append(f"{ds.train.height:,} / {ds.test.height:,}")
        except Exception as error:  # noqa: BLE001 - a broken data set is a row of the report
            ds.split = ds.split or one_line(error)
            for kind in models:
                cells[kind, ds.name] = one_line(error)
            print(f"{ds.name}: {one_line(error)}", file=sys.stderr, flush=True)
            continue
        for kind in models:
            reason = applies(kind, ds, args)
            if reason:
                cells[kind, ds.name] = reason
                continue
            try:
                cell = run_cell(kind, ds, args)
            except Exception as error:  # noqa: BLE001 - the run goes on
                cells[kind, ds.name] = one_line(error)
                print(f"{ds.name} {kind}: {one_line(error)}", file=sys.stderr, flush=True)
                continue
            cells[kind, ds.name] = f"{fmt(cell['auc'])} / {fmt(ds.floor)}; {cell['worst']}"
            v = cell["values"]
            extra[kind, ds.name] = (f"{fmt(v.get('events_per_entity'))} / {fmt(v.get('hour_of_day'))} / "
                                    f"{cell['synth_rows']:,} / {cell['fit_s']:.0f} s / "
                                    f"{cell['events_per_s']:,.0f}/s")
            tops[kind, ds.name] = cell["top"].replace("|", "/")
            print(f"{ds.name} {kind}: {cells[kind, ds.name]} (fit {cell['fit_s']:.1f} s, cell "
                  f"{cell['total_s']:.1f} s, {cell['synth_rows']:,} rows; {time.perf_counter() - began:.0f} s in)",
                  file=sys.stderr, flush=True)

    names = [d.name for d in chosen]
    load_after = os.getloadavg()
    elapsed = time.perf_counter() - began
    budget = f"preset {args.preset}" if args.preset else f"{args.epochs} epochs"
    head = [
        f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `python benchmarks/bench_fidelity.py"
        f"{' ' + ' '.join(sys.argv[1:]) if sys.argv[1:] else ''}` in {elapsed:.0f} s.",
        f"Machine: {os.cpu_count()} CPUs, torch CPU capability {torch.backends.cpu.get_cpu_capability()}, "
        f"load average {load_before[0]:.1f} before, {load_after[0]:.1f} after.",
        f"Budgets: transformer {budget} (CPU), timegan preset fast with {args.iterations} "
        f"iterations per phase ({'on' if args.timegan else 'not run'}); sample seeds 1..{args.seeds} "
        f"averaged; models and payments simulator seed {args.data_seed}; evaluate(gru=False).",
    ]
    matrix = markdown(
        ["model", *names],
        [[m, *[cells.get((m, n), "-") for n in names]] for m in models],
    )
    per_entity = markdown(
        ["model", *names],
        [[m, *[extra.get((m, n), "-") for n in names]] for m in models],
    )
    giveaway = markdown(
        ["model", *names],
        [[m, *[tops.get((m, n), "-") for n in names]] for m in models],
    )
    splits = markdown(
        ["data set", "split", "train / held-out events", "floor AUC"],
        [[d.name, d.split, ", ".join(d.notes) or "-", fmt(d.floor)] for d in chosen],
    )
    text = "\n\n".join([
        "# Held-out fidelity, every model on every data set",
        "\n".join(head),
        "Cells: row-and-lag discriminator AUC of the sample against held-out real data / the same "
        "judge on real training data against the same held-out data (the floor; 0.5 = "
        "indistinguishable), then the failing scorecard check furthest past its threshold "
        "(`-`: none fails). Read each AUC against its floor, not against 0.5: where the data has no "
        "entity the held-out part is the later half, and a floor near 1 says the two halves differ "
        "(a short log's hours, a drifting series), so no model trained on the first half can pass "
        "for the second. A floor somewhat below 0.5 is the judge's folds, not a sample better than "
        "real (two halves of a stationary series that cover different weekdays score about 0.4).",
        matrix,
        "Events-per-entity KS / hour-of-day TV (scorecard `events_per_entity` / `hour_of_day`; "
        "`-`: not scored) / sampled events (mean over seeds; compare the held-out events below) / "
        "fit seconds / sampling events a second (on a shared machine: noisy; a peer's include its "
        "process start):",
        per_entity,
        "What gives the sample away most: the discriminator feature whose shuffling drops the AUC "
        "most (the drop), first sample seed:",
        giveaway,
        "Splits:",
        splits,
    ]) + "\n"
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
