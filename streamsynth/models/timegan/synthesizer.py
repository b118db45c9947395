"""TimeGANSynthesizer: learns fixed-interval multivariate series, streams endless ones.

An entity is one series (one host's metrics); with no entity column the table is one
series. Numbers are min-max scaled per column, categorical and boolean columns one-hot
encoded (softmax outputs, sampled). Training uses sliding windows of ``seq_len`` rows;
generation runs the recurrent generator past the window length, so a series can be as long
as asked, emitted on the learned grid ``start + k * interval``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Self

import numpy as np
import polars as pl
import torch

from streamsynth import rng, threads
from streamsynth.contract import EVENT_ID, TIME_DTYPE, event_ids
from streamsynth.errors import StreamsynthError
from streamsynth.models.base import Synthesizer, shard_entities
from streamsynth.models.options import set_options
from streamsynth.models.timegan.dp import PrivateRun, train_private
from streamsynth.models.timegan.network import Layout, TimeGANConfig, TimeGANNet
from streamsynth.models.timegan.train import Windows, train
from streamsynth.privacy import PrivacyBudget
from streamsynth.request import StreamRequest
from streamsynth.schema import Column, Role, Schema

#: Tables without a time column get this daily grid (one row a day per series).
GRID_START = datetime(2000, 1, 1, tzinfo=UTC)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
GRID_COLUMN = "ts"
SERIES_COLUMN = "series"  # names the series when n_entities > 1 and the data had no entity


#: Named sets of hyper-parameters; ``preset=`` picks one, explicit options override its values.
PRESETS: dict[str, dict[str, int]] = {
    # A CPU fit of a few thousand rows in 1-2 minutes: two recurrent layers (a CPU GRU's cost is
    # small ops per time step, layer and pass, so depth and iterations are what cost time, not
    # rows) and 200 iterations per phase (300 took 138 s on two cores at load 6). Coarser than
    # the paper's; for trying things out.
    "fast": {"seq_len": 24, "hidden_dim": 24, "num_layers": 2, "batch_size": 128, "iterations": 200},
    # The network and batch of Yoon et al. (2019) with 2,000 iterations per phase (the paper ran
    # 50,000: add --option iterations=50000, best on a GPU).
    "paper": {"seq_len": 24, "hidden_dim": 24, "num_layers": 3, "batch_size": 128, "iterations": 2000},
}


@dataclass
class TimeGANOptions:
    """Everything ``fit --option`` sets on TimeGAN. A size left None takes the preset's value."""

    preset: str = "fast"
    seq_len: int | None = None
    hidden_dim: int | None = None
    num_layers: int | None = None
    module: str = "gru"
    iterations: int | None = None
    batch_size: int | None = None
    learning_rate: float = 1e-3
    device: str = "auto"
    cpu_bf16: bool = False
    progress: bool = True
    verbose: bool = False
    dp_epsilon: float | None = None
    dp_delta: float | None = None

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise StreamsynthError(f"unknown timegan preset {self.preset!r}", hint=f"use one of: {', '.join(PRESETS)}")
        if self.module not in ("gru", "lstm"):
            raise StreamsynthError(f"module must be 'gru' or 'lstm', not {self.module!r}")
        if self.sizes()["seq_len"] < 2:
            raise StreamsynthError(f"seq_len must be at least 2, got {self.sizes()['seq_len']}")

    def sizes(self) -> dict[str, int]:
        """The preset's sizes, with those given explicitly instead."""
        given = {name: getattr(self, name) for name in PRESETS[self.preset]}
        return PRESETS[self.preset] | {k: v for k, v in given.items() if v is not None}


class TimeGANSynthesizer(Synthesizer):
    """TimeGAN (Yoon, Jarrett and van der Schaar, NeurIPS 2019) for regular-interval series.

    Presets (``preset``, on the command line ``fit --preset NAME``); an explicit option such as
    ``--option iterations=1000`` overrides the preset's value, and the values used are saved in
    the model's config:

    - ``fast`` (default): seq_len 24, hidden_dim 24, num_layers 2, batch_size 128, iterations
      200 per phase; a CPU fit of a ~3k-row series takes 1-2 minutes on two busy cores.
    - ``paper``: the paper's network (seq_len 24, hidden_dim 24, num_layers 3, batch_size 128)
      with 2,000 iterations per phase (the paper used 50,000); minutes on a GPU, about
      10-20 minutes on two CPU cores.

    ``progress`` shows a bar per training phase (autoencoder, supervised, joint) with the loss
    and an ETA: a rich bar on a terminal, a plain line every 10 s elsewhere; False is quiet.
    ``verbose`` also prints the loss every 1,000 iterations.
    """

    name = "timegan"
    finite_weights = True
    Options = TimeGANOptions

    def __init__(self, seed: int = 0, options: TimeGANOptions | None = None, **values: Any) -> None:
        super().__init__(seed=seed)
        options = set_options(options or TimeGANOptions(), values)
        self.options = options
        self.preset = options.preset
        self.dp_budget = None
        if options.dp_epsilon is not None:  # checked now, before any data is read
            self.dp_budget = PrivacyBudget(epsilon=options.dp_epsilon, delta=options.dp_delta)
        self.config = TimeGANConfig(**options.sizes(), module=options.module, learning_rate=options.learning_rate)
        self.device_name = options.device
        self.cpu_bf16 = options.cpu_bf16
        self.progress = options.progress
        self.verbose = options.verbose
        self.net: TimeGANNet | None = None
        self.encoders: dict[str, Any] = {}
        self.interval: timedelta = timedelta(days=1)
        self._declared = False

    @property
    def device(self) -> torch.device:
        """``cuda`` when asked for or (``auto``) present; a CUDA model loads on CPU elsewhere."""
        cuda = torch.cuda.is_available()
        if self.device_name == "auto" or (self.device_name.startswith("cuda") and not cuda):
            return torch.device("cuda" if cuda else "cpu")
        return torch.device(self.device_name)

    @property
    def numeric_columns(self) -> list[str]:
        return list(self.encoders.get("numeric", {}))

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, frame: pl.DataFrame, schema: Schema | None = None) -> Self:
        """Learn from ``frame``. A table with no time column (e.g. daily prices with no date)
        is given a daily grid from 2000-01-01 in a column ``ts``, one row a day per series."""
        self._declared = schema is not None
        if frame.height == 0:
            raise StreamsynthError("cannot fit on an empty table", hint="give data with rows")
        schema = schema or Schema.infer(frame)
        if schema.time is None:
            frame, schema = _with_daily_grid(frame, schema)
        return super().fit(frame, schema)

    def _fit(self, frame: pl.DataFrame) -> None:
        threads.configure()
        schema = self.schema
        numeric, categorical = self._feature_columns(frame)
        self._check_values(frame, numeric + categorical)
        self.encoders = {
            "numeric": {c: _min_max(frame[c]) for c in numeric},
            "categorical": {c: _levels(frame[c]) for c in categorical},
            "dtypes": {c: str(frame.schema[c]) for c in numeric + categorical},
        }
        self.interval = _interval(frame, schema.time, schema.entity)
        rows = self._encode(frame)
        starts = _window_starts(frame, schema.entity, self.config.seq_len)
        layout = Layout([rows.shape[1]], [self._softmax_groups()])
        log = print if self.verbose else None
        if self.dp_budget is not None:  # DP-SGD, the series (entity) as the unit of privacy

            entity = frame[schema.entity].to_numpy()[starts] if schema.entity else np.zeros(len(starts))
            run = PrivateRun(self.dp_budget, schema.entity, self.seed, self.device, log, self.progress)
            self.net, privacy = train_private(Windows(rows, starts), entity, self.config, layout, run)
            self.metadata = {"windows": int(len(starts)), "device": str(self.device), "privacy": privacy.to_dict()}
            return
        self.net, trainer = train(
            [Windows(rows, starts)], self.config, layout, seed=self.seed, device=self.device, log=log,
            progress=self.progress,
        )
        self.metadata = {
            "windows": int(len(starts)),
            "train_seconds": {k: round(v, 3) for k, v in trainer.timings.items()},
            "device": str(self.device),
            "processes": trainer.dist.world,  # under torchrun: batch_size windows per process and step
        }

    def _feature_columns(self, frame: pl.DataFrame) -> tuple[list[str], list[str]]:
        numeric, categorical = [], []
        for col in self.schema.data_columns:
            dtype = frame.schema[col.name]
            if col.role is Role.NUMERIC and dtype.is_numeric():
                numeric.append(col.name)
            elif col.role is Role.BOOLEAN:
                categorical.append(col.name)
            elif col.role is Role.CATEGORICAL and (self._declared or dtype.is_numeric()):
                categorical.append(col.name)
            else:
                raise StreamsynthError(
                    f"column {col.name!r} ({dtype}, {col.role}) is not a number the timegan model "
                    "can learn",
                    hint="declare it categorical in a schema (role: categorical), mark it "
                    "'ignore', or drop it",
                )
        if not numeric and not categorical:
            raise StreamsynthError(
                "the timegan model found no numeric or categorical columns to learn",
                hint=f"columns are: {', '.join(frame.columns)}",
            )
        return numeric, categorical

    def _check_values(self, frame: pl.DataFrame, columns: list[str]) -> None:
        for col in columns:
            series = frame[col]
            bad = series.null_count()
            if series.dtype.is_float():
                bad += int(series.is_nan().sum() or 0) + int(series.is_infinite().sum() or 0)
            if bad:
                raise StreamsynthError(
                    f"column {col!r} has {bad} missing, NaN or infinite values",
                    hint="fill or drop them before fitting (e.g. forward-fill a metric)",
                )
        lengths = frame.group_by(self.schema.entity).len()["len"] if self.schema.entity else None
        longest = int(lengths.max()) if lengths is not None else frame.height
        if longest < self.config.seq_len:
            raise StreamsynthError(
                f"too few rows for one training window: the longest series has {longest} rows, "
                f"a window is seq_len={self.config.seq_len}",
                hint="give more rows per series, or a smaller seq_len",
            )

    def _softmax_groups(self) -> list[tuple[int, int]]:
        offset = len(self.encoders["numeric"])
        groups = []
        for levels in self.encoders["categorical"].values():
            groups.append((offset, offset + len(levels)))
            offset += len(levels)
        return groups

    def _encode(self, frame: pl.DataFrame) -> np.ndarray:
        parts = []
        for col, (lo, hi) in self.encoders["numeric"].items():
            values = frame[col].cast(pl.Float64).to_numpy()
            parts.append(((values - lo) / (hi - lo + 1e-7))[:, None])
        for col, levels in self.encoders["categorical"].items():
            codes = frame[col].cast(pl.String).replace_strict(
                {v: i for i, v in enumerate(levels)}, return_dtype=pl.Int64
            ).to_numpy()
            parts.append(np.eye(len(levels))[codes])
        return np.concatenate(parts, axis=1).astype(np.float32)

    # -- generation ------------------------------------------------------------------------
    def _stream(self, request: StreamRequest) -> Iterator[pl.DataFrame]:
        start, seed, batch_size = request.start, request.seed, request.events_per_batch
        n_entities, shard = request.n_entities, request.shard
        series = shard_entities(n_entities, shard)
        if len(series) == 0:
            return
        threads.configure()
        net, device = self.net, self.device
        # Chunks start small (a short sample stays cheap) and double up to one batch's worth.
        max_steps = max(1, batch_size // len(series))
        chunk = min(max_steps, max(1, 1024 // len(series)))
        width = net.z_dim
        z_seed = rng.child_seed(seed, "timegan", "z")
        cat_seeds = {c: rng.child_seed(seed, "timegan", "cat", c) for c in self.encoders["categorical"]}
        namespace = f"timegan-{seed}"
        entity = self.schema.entity or (SERIES_COLUMN if n_entities > 1 else None)
        names = pl.Series(entity or "_", [f"{entity}-{s}" for s in series]) if entity else None
        start_us = (start - EPOCH) // MICROSECOND
        step_us = self.interval // MICROSECOND
        # Optional bf16 autocast on CPU: outputs move by about 1e-3 of a column's range, and at
        # the default width (24) it measured no faster than fp32, so it is off by default.
        bf16 = device.type == "cpu" and self.cpu_bf16
        state = None
        k0 = 0
        while True:
            steps = np.arange(k0, k0 + chunk, dtype=np.int64)
            # Noise is a pure function of (seed, series, step, feature): shards and batch sizes
            # see the same numbers, so their union equals the unsharded stream.
            z = rng.uniform(z_seed, series[:, None, None], steps[None, :, None],
                            np.arange(width)[None, None, :]).astype(np.float32)
            # a few series are a few thousand elements a step: one thread (see threads.py)
            with threads.threads_for(len(series) * self.config.hidden_dim, device), \
                    torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                x, state = net.sample(torch.from_numpy(z).to(device), state)
            x = x.float().cpu().numpy().transpose(1, 0, 2)  # (steps, series, F): time-major rows
            n_rows = x.shape[0] * x.shape[1]
            cols: dict[str, Any] = {
                EVENT_ID: event_ids(namespace, np.tile(series, len(steps)), np.repeat(steps, len(series))),
                self.schema.time: pl.Series(
                    np.repeat(start_us + steps * step_us, len(series))
                ).cast(pl.Datetime("us")).dt.replace_time_zone("UTC").cast(TIME_DTYPE),
            }
            if entity:
                cols[entity] = pl.concat([names] * len(steps))
            cols.update(self._decode(x.reshape(n_rows, -1), series, steps, cat_seeds))
            frame = pl.DataFrame(cols)
            for offset in range(0, frame.height, batch_size):
                yield frame.slice(offset, batch_size)
            k0 += chunk
            chunk = min(max_steps, chunk * 2)

    def _decode(self, flat: np.ndarray, series, steps, cat_seeds) -> dict[str, pl.Series]:
        out: dict[str, pl.Series] = {}
        dtypes = self.encoders["dtypes"]
        for j, (col, (lo, hi)) in enumerate(self.encoders["numeric"].items()):
            values = flat[:, j].astype(np.float64) * (hi - lo + 1e-7) + lo
            values = np.clip(values, lo, hi)
            s = pl.Series(col, values)
            if dtypes[col].startswith(("Int", "UInt")):
                s = s.round().cast(pl.Int64)
            out[col] = s
        offset = len(self.encoders["numeric"])
        for col, levels in self.encoders["categorical"].items():
            probs = flat[:, offset : offset + len(levels)].astype(np.float64)
            offset += len(levels)
            # Sample each row's level from the softmax with a counter-based uniform.
            u = rng.uniform(cat_seeds[col], np.repeat(steps, len(series)), np.tile(series, len(steps)))
            cdf = np.cumsum(probs / probs.sum(1, keepdims=True), axis=1)
            pick = np.minimum((cdf < u[:, None]).sum(1), len(levels) - 1)
            s = pl.Series(col, np.asarray(levels, dtype=object)[pick], dtype=pl.String)
            if dtypes[col] == "Boolean":
                s = s == "true"
            elif dtypes[col].startswith(("Int", "UInt")):
                s = s.cast(pl.Int64)
            out[col] = s
        return out

    # -- persistence -----------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
        config = {
            "timegan": self.config.to_dict(),
            "preset": self.preset,
            "layout": {"widths": self.net.layout.widths, "softmax_groups": self.net.layout.softmax_groups},
            "interval_us": self.interval // MICROSECOND,
            "device": self.device_name,
            "cpu_bf16": self.cpu_bf16,
        }
        return config, self.net.weights(), self.encoders

    def _restore(self, config: dict[str, Any], tensors: dict[str, np.ndarray], encoders: dict[str, Any]) -> None:
        self.config = TimeGANConfig(**config["timegan"])
        self.preset = config.get("preset", "paper")  # models saved before presets used the paper's sizes
        self.device_name = config.get("device", "auto")
        self.cpu_bf16 = config.get("cpu_bf16", False)
        self.interval = timedelta(microseconds=int(config["interval_us"]))
        self.encoders = encoders
        layout = Layout(config["layout"]["widths"], config["layout"]["softmax_groups"])
        net = TimeGANNet(self.config, layout)
        state = {k: torch.from_numpy(v) for k, v in tensors.items()}
        net.load_state_dict(state, strict=True)
        self.net = net.to(self.device).eval()


# -- helpers -------------------------------------------------------------------------------
def _with_daily_grid(frame: pl.DataFrame, schema: Schema) -> tuple[pl.DataFrame, Schema]:
    name = GRID_COLUMN if GRID_COLUMN not in frame.columns else "_ts"
    day_us = 86_400 * 1_000_000
    index = pl.int_range(pl.len())
    if schema.entity:
        index = index.over(schema.entity)
    base = (GRID_START - EPOCH) // MICROSECOND
    frame = frame.with_columns(
        (index * day_us + base).cast(pl.Datetime("us")).dt.replace_time_zone("UTC").alias(name)
    )
    column = Column(name=name, role=Role.TIME, dtype=str(TIME_DTYPE))
    return frame, replace(schema, columns=[*schema.columns, column], time=name)


def _min_max(series: pl.Series) -> list[float]:
    return [float(series.min()), float(series.max())]


def _levels(series: pl.Series) -> list[str]:
    return sorted(str(v) for v in series.cast(pl.String).unique().to_list() if v is not None)


def _interval(frame: pl.DataFrame, time: str, entity: str | None) -> timedelta:
    diff = pl.col(time).diff()
    if entity:
        diff = diff.over(entity)
    steps = frame.select(diff.dt.total_microseconds().alias("d"))["d"].drop_nulls()
    steps = steps.filter(steps > 0)
    if steps.len() == 0:
        raise StreamsynthError(
            f"time column {time!r} never advances within a series",
            hint="the timegan model needs series on a regular time grid",
        )
    return timedelta(microseconds=int(steps.median()))


def _window_starts(frame: pl.DataFrame, entity: str | None, seq_len: int) -> np.ndarray:
    """Row numbers where a window of ``seq_len`` rows of one series starts (stride 1)."""
    if entity is None:
        return np.arange(frame.height - seq_len + 1, dtype=np.int64)
    lengths = frame.group_by(entity, maintain_order=True).len()["len"].to_numpy()
    offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    parts = [o + np.arange(n - seq_len + 1) for o, n in zip(offsets, lengths, strict=True) if n >= seq_len]
    return np.concatenate(parts).astype(np.int64)
