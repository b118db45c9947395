"""The statistical baseline, the embedded default model: learns in seconds, samples fast.

Arrivals: a weekly intensity profile warps time; each entity is a renewal process in warped
time with its own rate (rates and normalised gaps learned as quantile functions). Columns:
per-column marginals joined by a Gaussian copula; entity attributes (constant per entity)
drawn once per entity; sticky categoricals (a customer's few merchants) drawn from a small
per-entity palette; identifiers faked per entity; free text from a token chain.
Every draw is keyed by (seed, entity number, event number), see :mod:`streamsynth.rng`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import polars as pl
from scipy.special import ndtr, ndtri

from streamsynth import rng
from streamsynth.contract import event_ids
from streamsynth.encoders import CategoricalEncoder, QuantileEncoder, encoder_from_json
from streamsynth.encoders.categorical import polars_dtype
from streamsynth.encoders.resolution import Grid, TimeSnapper, condition_grids
from streamsynth.errors import StreamsynthError
from streamsynth.identifiers import event_key, generate, learn_shape
from streamsynth.models import transitions
from streamsynth.models.arrivals import WeeklyProfile, from_micros, to_micros
from streamsynth.models.base import Synthesizer, shard_entities
from streamsynth.models.entity_runs import Carry
from streamsynth.models.lifecycle import SAMPLES, born_and_gone
from streamsynth.models.persistence import Persistence
from streamsynth.models.textchain import MAX_TOKENS, TokenChain
from streamsynth.relations import Relation
from streamsynth.request import StreamRequest
from streamsynth.schema import Role

# Sub-stream tags for rng keys, so draws for different purposes never coincide.
_RATE, _FIRST, _GAP, _ZERO, _COPULA, _NULL, _PALETTE, _SIZE, _SLOT, _TEXT, _COND, _GRID, _LIFE = range(13)
# Entities born and dying inside the span (sessions, trips, storms, purchase cohorts): when the
# median entity lives less than this share of the span, each sampled entity takes the birth,
# lifetime and event count of a training entity, instead of living through the whole span.
_PALETTE_MAX = 32
_ENTITY_CACHE = 2  # populations whose per-entity state is kept between streams
_ENTITY_CACHE_MAX = 200_000  # larger populations are recomputed rather than held after a stream
_ENTITY_CONSTANT_SHARE = 0.95
_STICKY_DISTINCT_SHARE = 0.5
_FIT_ROWS = 200_000  # rows used for the copula correlation (a sample on large tables)
_PARENT_MAX_CATEGORIES = 2048  # a categorical child's parent (terminal -> merchant category)
_NUMERIC_PARENT_MAX_CATEGORIES = 64  # a numeric child keeps one quantile function per parent value
_CHILD_MAX_CATEGORIES = 256
_MIN_GROUP_ROWS = 30
_PRIOR_ROWS = 0.05
_MIN_ASSOCIATION = 0.05
# Calendar parents: the hour of day or of the week (UTC, Monday 0:00 first) of each event, which a
# numeric column may follow like a categorical column (taxi demand by hour and weekday, a CPU load
# by the nightly batch); known before any value is drawn, since the baseline draws times first.
# Each is offered only when the data spans enough days to check it on days it was not learned
# from: (slots, fewest days, what fit says).
_HOUR_US = 3_600_000_000
_CALENDARS = {"@hour": (24, 4, "the hour of day"), "@weekhour": (168, 28, "the hour of the week")}


def _lifecycle(
    warped: np.ndarray, first: np.ndarray, counts: np.ndarray, span: float, seed: int, *, always: bool
) -> np.ndarray | None:
    """(birth, lifetime) as shares of the span and the event count of up to ``lifecycle.SAMPLES``
    training entities (``first`` marks each one's first row, ``counts`` its events); unless
    ``always``, only when entities are born and gone inside the span: None when there are few or
    the median entity lives through most of it (then each lives on, at its own rate)."""
    begin = warped[first]
    last = np.concatenate([np.flatnonzero(first)[1:] - 1, [len(warped) - 1]])
    lives = (warped[last] - begin) / span
    if not always and not born_and_gone(lives):
        return None
    shapes = np.column_stack([(begin - warped.min()) / span, lives, counts]).astype(np.float64)
    if len(shapes) > SAMPLES:
        shapes = shapes[np.random.default_rng(seed).choice(len(shapes), SAMPLES, replace=False)]
    return shapes


def _first_busy_window(cursor: float, window: float, next_w: np.ndarray) -> float:
    """Where the next window holding an event starts: a quiet spell is skipped in one step (on
    the same window grid), and event times that are not finite -- a damaged model -- are an
    error, never a loop that spins without output."""
    soonest = float(next_w.min())
    if not math.isfinite(soonest):
        raise StreamsynthError("the model gives no finite time for the next event",
                               hint="the model folder may be damaged: fit it again")
    return cursor + window * max(0, math.floor((soonest - cursor) / window))


@dataclass(frozen=True)
class _Stream:
    """What every batch of one stream shares: its entities' state, seed, id namespace and conditions."""

    entities: dict[str, Any]
    seed: int
    namespace: str
    conditions: dict[str, Any]
    n_entities: int
    carry: Carry  # each entity's last persistent copula scores
    chains: dict[str, Carry]  # each entity's last value of the columns that follow their previous one
    count: np.ndarray | None  # each entity's number of events, where its life is drawn whole


@dataclass
class ColumnPlan:
    """How one data column is generated."""

    name: str
    role: str
    dtype: str
    level: str  # "entity": one value per entity; "event": one per event
    method: str  # "copula", "palette", "identifier", "unique", "text"
    kind: str | None = None
    palette_sizes: list[float] | None = None  # quantiles of distinct values per entity
    parent: str | None = None  # a categorical column this one's distribution depends on
    shape: dict[str, Any] | None = None  # an identifier's learned format (None: the kind's generator)


class BaselineSynthesizer(Synthesizer):
    """Marginals + Gaussian copula + weekly-profile renewal arrivals. See module docstring."""

    name = "baseline"
    supports_conditions: ClassVar[bool] = True

    def __init__(self, seed: int = 0, lifecycle: str = "auto") -> None:
        super().__init__(seed=seed)
        if lifecycle not in ("auto", "on", "off"):
            raise StreamsynthError(f"lifecycle={lifecycle!r}", hint="use auto, on or off")
        self.lifecycle_mode = lifecycle
        self.plans: list[ColumnPlan] = []
        self.encoders: dict[str, Any] = {}
        self.chains: dict[str, TokenChain] = {}
        self.copula_columns: list[str] = []
        self.chol = np.zeros((0, 0))
        self.corr = np.zeros((0, 0))
        self.persistence = Persistence.none(0)
        self.transitions = transitions.Transitions()
        self.conditional: dict[str, Any] = {}  # child -> {parent code: encoder} or prob table
        self.profile: WeeklyProfile | None = None
        self.rate: QuantileEncoder | None = None
        self.gap: QuantileEncoder | None = None
        self.first_gap: QuantileEncoder | None = None  # None in models saved before it existed
        #: (birth, lifetime) as shares of the span and the event count of training entities, or None
        #: when entities live through the span (and in models saved before lifecycles)
        self.lifecycle: np.ndarray | None = None
        self.span_w = 1.0  # the training span in warped time
        self.zero_gap_rate = 0.0
        self.entity_format: dict[str, Any] = {}
        # Learned resolutions (None in models saved before them: values and times as generated).
        self.grids: dict[str, Grid] = {}
        self.time_grid: Grid | None = None
        self._entity_cache: dict[tuple, dict[str, Any]] = {}

    # -- fit ---------------------------------------------------------------------------------
    def _fit(self, frame: pl.DataFrame) -> None:
        self._entity_cache.clear()
        schema = self.schema
        time = schema.time
        entity = schema.entity or "__entity__"
        if schema.entity is None:
            frame = frame.with_columns(pl.lit("0").alias(entity))
        codes = frame.select(pl.col(entity).rank("dense").cast(pl.Int64) - 1).to_series().to_numpy()
        n_per_entity = np.bincount(codes)
        times = to_micros(frame[time])
        self.time_grid = Grid.learn_times(times)

        self.profile = WeeklyProfile.fit(times)
        warped = self.profile.warp(times)
        span = max(float(warped.max() - warped.min()), 1.0 / 60)
        rates = n_per_entity / span
        self.rate = QuantileEncoder(n_bins=32, log=True).fit(pl.Series("rate", rates))
        warped_gaps = np.diff(warped, prepend=np.nan)
        first = np.concatenate([[True], codes[1:] != codes[:-1]])
        normalised = (warped_gaps * rates[codes])[~first]
        # A renewal process makes rate x span events only when its gaps average 1 / rate. Bursty
        # entities (a few events close together in a long window, as in logs) have normalised
        # gaps far below 1 and would repeat their bursts all window long: rescale to mean 1.
        scale = normalised.mean() if normalised.size else 0.0
        if scale > 0:
            normalised = normalised / scale
        positive = normalised[normalised > 0]
        zeros = int((normalised <= 0).sum())
        # With no gap above zero, bursts would never end (a sampler spinning at one instant): each
        # sequence's end then counts as the longer gap it is (censored, not zero), so a burst is
        # as long as the data's.
        ends = len(n_per_entity) if zeros == normalised.size else 0
        self.zero_gap_rate = zeros / (normalised.size + ends) if normalised.size else 0.0
        if positive.size == 0:
            positive = np.array([1.0])
        self.gap = QuantileEncoder(n_bins=64, log=True).fit(pl.Series("gap", positive))
        # A window opens at an arbitrary moment of each entity's renewal process, so the gap it
        # falls into is length-biased (long gaps are more likely to be straddled): a bursty entity
        # then starts in one of its long quiet spells, not in the middle of a burst.
        self.first_gap = QuantileEncoder(n_bins=64, log=True).fit(
            pl.Series("first_gap", _length_biased(positive)))
        self.lifecycle = None
        if self.lifecycle_mode != "off" and schema.entity is not None:
            self.lifecycle = _lifecycle(warped, first, n_per_entity[codes[first]], span, self.seed,
                                        always=self.lifecycle_mode == "on")
        self.span_w = span

        self.entity_format = _entity_format(frame[entity], schema[entity].kind if schema.entity else None)
        self.plans, self.encoders, self.chains, self.grids = [], {}, {}, {}
        for col in schema.data_columns:
            self._plan_column(frame, col.name, col.role, col.kind, entity, codes, n_per_entity)
        for name, (slots, days, _) in _CALENDARS.items():
            if int(times.max() - times.min()) >= days * 24 * _HOUR_US:
                frame = frame.with_columns(pl.Series(name, _calendar_slot(times, slots)))
                self.encoders[name] = _calendar_encoder(frame[name], slots)
        self._fit_parents(frame)
        for name in _CALENDARS:
            if not any(p.parent == name for p in self.plans):
                self.encoders.pop(name, None)
        self._condition_grids(frame)
        self._fit_transitions(frame, codes)
        self._fit_copula(frame, codes)

    def _plan_column(
        self,
        frame: pl.DataFrame,
        name: str,
        role: Role,
        kind: str | None,
        entity: str,
        codes: np.ndarray,
        n_per_entity: np.ndarray,
    ) -> None:
        values = frame[name]
        dtype = str(values.dtype)
        per_entity = frame.group_by(entity).agg(pl.col(name).n_unique().alias("d"), pl.len().alias("n"))
        multi = per_entity.filter(pl.col("n") >= 2)
        constant = multi.height > 0 and (multi["d"] == 1).mean() >= _ENTITY_CONSTANT_SHARE
        if role is Role.TEXT:
            self.chains[name] = TokenChain().fit(values)
            self.plans.append(ColumnPlan(name, role.value, dtype, "event", "text"))
            return
        if role is Role.IDENTIFIER:
            shape = _learn_shape(values, kind)
            if values.n_unique() == values.len() and multi.height > 0:
                # A per-event key (transaction id): every generated event gets a fresh one.
                self.plans.append(
                    ColumnPlan(name, role.value, dtype, "event", "unique", kind or "code", shape=shape))
                return
            level = "entity" if constant or multi.height == 0 else "event"
            sizes = None if level == "entity" else _quantiles(per_entity["d"].to_numpy())
            self.plans.append(
                ColumnPlan(name, role.value, dtype, level, "identifier", kind or "code", sizes, shape=shape))
            return
        if role is Role.NUMERIC:
            self.encoders[name] = QuantileEncoder().fit(values)
            grid = Grid.learn_numeric(values.drop_nulls().cast(pl.Float64).to_numpy(), values.dtype.is_integer())
            if grid is not None:
                self.grids[name] = grid
            self.plans.append(ColumnPlan(name, role.value, dtype, "event", "copula"))
            return
        # categorical and boolean
        if constant:
            first_values = frame.group_by(entity, maintain_order=True).agg(pl.col(name).first())[name]
            self.encoders[name] = CategoricalEncoder().fit(first_values)
            self.plans.append(ColumnPlan(name, role.value, dtype, "entity", "copula"))
            return
        encoder = CategoricalEncoder().fit(values)
        self.encoders[name] = encoder
        sticky = multi.height > 0 and encoder.size >= 3 and float(
            (multi["d"] / multi["n"]).mean()
        ) < _STICKY_DISTINCT_SHARE
        if sticky:
            sizes = _quantiles(np.minimum(per_entity["d"].to_numpy(), _PALETTE_MAX))
            self.plans.append(ColumnPlan(name, role.value, dtype, "event", "palette", None, sizes))
        else:
            self.plans.append(ColumnPlan(name, role.value, dtype, "event", "copula"))

    def _fit_transitions(self, frame: pl.DataFrame, codes: np.ndarray) -> None:
        """Tables of next values for the categorical event columns that follow their entity's
        previous value (and no other column)."""
        tables = {}
        for plan in self.plans:
            enc = self.encoders.get(plan.name)
            if (plan.level == "event" and plan.method == "copula" and plan.parent is None
                    and isinstance(enc, CategoricalEncoder) and enc.size <= _CHILD_MAX_CATEGORIES):
                table = transitions.learn(enc.encode(frame[plan.name]), codes, enc.size)
                if table is not None:
                    tables[plan.name] = table
        self.transitions = transitions.Transitions(tables)

    def _fit_copula(self, frame: pl.DataFrame, codes: np.ndarray) -> None:
        """The copula's correlation and each numeric column's persistence along an entity's
        events, from the rows of ``frame`` (sorted by entity, then time; ``codes`` its entity
        numbers) and each row's previous event."""
        self.copula_columns = [p.name for p in self.plans if p.level == "event" and p.method in ("copula", "palette")]
        d = len(self.copula_columns)
        self.persistence = Persistence.none(d)
        if d == 0:
            self.corr = self.chol = np.zeros((0, 0))
            return
        n = frame.height
        rows = np.arange(n) if n <= _FIT_ROWS else np.sort(
            np.random.default_rng(self.seed).choice(n, _FIT_ROWS, replace=False))
        before = np.maximum(rows - 1, 0)
        has_previous = (rows > 0) & (codes[rows] == codes[before])
        # Numeric values drawn by the copula itself: a relation's child moves with its parents.
        kept = np.array([isinstance(self.encoders[c], QuantileEncoder) and c not in self._following()
                         for c in self.copula_columns])
        jitter = np.random.default_rng(self.seed)
        plans = {p.name: p for p in self.plans}
        now, then = (frame if rows.size == n else frame[rows]), frame[before]
        scores, previous = np.empty((rows.size, d)), np.zeros((rows.size, d))
        for j, name in enumerate(self.copula_columns):
            # only the columns that may persist need their previous event's score
            for out, at in ((scores, now), (previous, then))[: 2 if kept[j] else 1]:
                u = self._probability(at, plans[name], jitter.uniform(size=rows.size))
                out[:, j] = ndtri(np.clip(u, 1e-9, 1 - 1e-9))
        self.persistence = Persistence.fit(scores, previous, has_previous, kept)
        scores = self.persistence.innovations(scores, previous, has_previous)
        corr = np.corrcoef(scores, rowvar=False) if rows.size > 1 else np.eye(d)
        corr = np.nan_to_num(np.atleast_2d(corr), nan=0.0)
        np.fill_diagonal(corr, 1.0)
        self.corr = 0.98 * corr + 0.02 * np.eye(d)  # keeps it positive definite
        self.chol = np.linalg.cholesky(self.corr)

    def _probability(self, sample: pl.DataFrame, plan: ColumnPlan, jitter: np.ndarray) -> np.ndarray:
        """Each row's value as a probability in (0, 1): its CDF, within its parent's category
        when it has one (so the copula does not count the parent's effect twice)."""
        enc = self.encoders[plan.name]
        parent = self.encoders[plan.parent].encode(sample[plan.parent]) if plan.parent else None
        if isinstance(enc, QuantileEncoder):
            x = sample[plan.name].cast(pl.Float64).to_numpy()
            missing = np.isnan(x)
            x = np.where(missing, enc.knots[0], x)
            u = enc.cdf(x, jitter)
            if parent is not None:
                for code, sub in self.conditional[plan.name].items():
                    mask = parent == code
                    u[mask] = sub.cdf(x[mask], jitter[mask])
            return np.where(missing, 0.5, u)
        code = enc.encode(sample[plan.name])
        probs = self.conditional[plan.name][parent] if parent is not None else enc.probs[None, :]
        cum = np.cumsum(probs, axis=1)
        rows = np.arange(code.size) if parent is not None else np.zeros(code.size, dtype=np.int64)
        return cum[rows, code] - probs[rows, code] * (1 - jitter)

    def _condition_grids(self, frame: pl.DataFrame) -> None:
        """Condition the numeric grids on the categorical columns sampling knows the codes of."""
        categorical = [p.name for p in self.plans if p.method in ("copula", "palette")
                       and isinstance(self.encoders.get(p.name), CategoricalEncoder)]
        condition_grids(self.grids, frame, categorical, seed=self.seed)

    def _fit_parents(self, frame: pl.DataFrame) -> None:
        """Give each column at most one categorical parent whose value shifts its distribution
        (merchant category by terminal, amount by merchant category, fraud scenario by is_fraud):
        greedy by association, forming a forest (chains allowed, no cycles)."""
        sample = frame if frame.height <= _FIT_ROWS else frame.sample(_FIT_ROWS, seed=self.seed)
        cats = {
            p.name: self.encoders[p.name].encode(sample[p.name])
            for p in self.plans
            if p.method in ("copula", "palette") and isinstance(self.encoders.get(p.name), CategoricalEncoder)
        }
        parents = {n: c for n, c in cats.items() if self.encoders[n].size <= _PARENT_MAX_CATEGORIES}
        calendars = [name for name in _CALENDARS if name in self.encoders]  # for numeric children only
        days = to_micros(sample[self.schema.time]) // (24 * _HOUR_US) if calendars else None
        for name in calendars:
            parents[name] = self.encoders[name].encode(sample[name])
        scores = []
        for plan in self.plans:
            if plan.level != "event" or plan.method not in ("copula", "palette"):
                continue
            enc = self.encoders[plan.name]
            if isinstance(enc, QuantileEncoder):
                x = sample[plan.name].cast(pl.Float64).to_numpy()
                ok = ~np.isnan(x)
                target = ndtri(enc.cdf(np.where(ok, x, enc.knots[0])))
                for name, code in parents.items():
                    if name in calendars:
                        score = _held_out_eta_squared(target[ok], code[ok], days[ok], self.encoders[name].size)
                        scores.append((score, plan.name, name))
                    elif self.encoders[name].size <= _NUMERIC_PARENT_MAX_CATEGORIES:
                        scores.append((_eta_squared(target[ok], code[ok]), plan.name, name))
            elif enc.size <= _CHILD_MAX_CATEGORIES:
                for name, code in parents.items():
                    if name != plan.name and name not in calendars:
                        scores.append((_uncertainty(cats[plan.name], code), plan.name, name))
        children: dict[str, str] = {}
        for score, child, parent in sorted(scores, reverse=True):
            if score < _MIN_ASSOCIATION or child in children or _is_ancestor(child, parent, children):
                continue
            children[child] = parent
        self.conditional = {}
        for plan in self.plans:
            parent = children.get(plan.name)
            if parent is None:
                continue
            plan.parent, plan.method = parent, "copula"
            plan.palette_sizes = None
            enc = self.encoders[plan.name]
            groups = np.bincount(parents[parent], minlength=self.encoders[parent].size)
            if isinstance(enc, QuantileEncoder):
                table = {}
                for code in np.nonzero(groups >= _MIN_GROUP_ROWS)[0].tolist():
                    values = sample.filter(pl.Series(parents[parent] == code))[plan.name]
                    table[code] = QuantileEncoder(n_bins=enc.n_bins, log=enc.log).fit(values)
                self.conditional[plan.name] = table
            else:
                counts = np.zeros((self.encoders[parent].size, enc.size))
                np.add.at(counts, (parents[parent], cats[plan.name]), 1.0)
                # A weak prior (a twentieth of a row) towards the marginal: parents seen rarely keep
                # their (often deterministic) observed child values; unseen parents get the marginal.
                probs = (counts + _PRIOR_ROWS * enc.probs[None, :]) / (groups[:, None] + _PRIOR_ROWS)
                self.conditional[plan.name] = probs

    # -- generation ----------------------------------------------------------------------------
    def _stream(self, request: StreamRequest) -> Iterator[pl.DataFrame]:
        start, n_entities, seed = request.start, request.n_entities, request.seed
        conditions, shard = request.conditions, request.shard
        numbers = shard_entities(n_entities, shard)
        if numbers.size == 0:
            return
        start_w = float(self.profile.warp(np.array([int(start.timestamp() * 1_000_000)]))[0])
        snapper = None
        if self.time_grid is not None:
            snapper = TimeSnapper(self.time_grid, int(start.timestamp() * 1_000_000), "time", ("number", "seq"))
        # Lifecycles: one population per span, each born and gone within it, so the spans follow
        # each other in time; otherwise one population lives on for as long as the stream.
        windows = itertools.count() if self.lifecycle is not None else [None]
        streams: dict[int, _Stream] = {}  # by window (-1: the one endless window) while it has rows held
        for w in windows:
            population = numbers if w is None else numbers + w * n_entities
            entities = self._cached_entity_state(population, seed, conditions, (n_entities, shard, w))
            shape = None if w is None else self.lifecycle[rng.integers(seed, len(self.lifecycle), population, _LIFE)]
            count = None if shape is None else np.maximum(shape[:, 2].astype(np.int64), 1)
            stream = _Stream(entities, seed, f"b{seed}", conditions, n_entities,
                             self.persistence.carry(population.size), self.transitions.carry(population.size), count)
            held = set() if snapper is None or snapper.pending is None else set(snapper.pending["window"].tolist())
            streams = {k: v for k, v in streams.items() if k in held}
            streams[-1 if w is None else w] = stream
            if shape is None:
                arrivals = self._renewals(population, entities["rate"], seed, start_w, request.events_per_batch)
            else:
                arrivals = self._lifetimes(population, shape, count, seed, start_w + w * self.span_w,
                                           request.events_per_batch)
            for idx, ev_seq, warped in arrivals:
                times = self.profile.unwarp(warped)
                order = np.lexsort((ev_seq, population[idx], times))
                idx, ev_seq, times = idx[order], ev_seq[order], times[order]
                if snapper is None:
                    yield self._events(stream, idx, population[idx], ev_seq, times)
                    continue
                u = None if self.time_grid.always else rng.uniform(seed, population[idx], ev_seq, _GRID)
                rows = {"idx": idx, "number": population[idx], "seq": ev_seq, "time": times,
                        "window": np.full(idx.size, -1 if w is None else w)}
                for ready in snapper.push(rows, u):
                    yield self._released(streams, ready)

    def _released(self, streams: dict[int, _Stream], ready: dict[str, np.ndarray]) -> pl.DataFrame:
        """The events of rows the time snapper released, each with its own window's entities:
        the last rows of one population can come out together with the next one's first."""
        window = ready["window"]
        parts, at = [], []
        for w in np.unique(window).tolist():
            rows = np.flatnonzero(window == w)
            parts.append(self._events(streams[w], *(ready[k][rows] for k in ("idx", "number", "seq", "time"))))
            at.append(rows)
        if len(parts) == 1:
            return parts[0]
        return pl.concat(parts)[np.argsort(np.concatenate(at))]  # back in the order released

    def _renewals(
        self, numbers: np.ndarray, rate: np.ndarray, seed: int, start_w: float, batch_size: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Endless arrivals of entities living through the stream: each a renewal process at its
        own rate, its window opening somewhere in one of its gaps."""
        next_w = start_w + rng.uniform(seed, numbers, _FIRST) * self._first_gaps(seed, numbers) / rate
        return self._windows(numbers, seed, start_w, next_w, rate, batch_size)

    def _lifetimes(
        self, numbers: np.ndarray, shape: np.ndarray, count: np.ndarray, seed: int, span_start_w: float,
        batch_size: int,
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Arrivals of one span's population: each entity takes a training entity's birth,
        lifetime and event count; its events split that life by the learned gaps, scaled to fill
        it exactly (a session of three events over two seconds stays one), all in time order."""
        birth, life = shape[:, 0] * self.span_w, shape[:, 1] * self.span_w
        firsts = np.cumsum(count) - count  # each entity's first row
        idx = np.repeat(np.arange(numbers.size), count)
        seq = np.arange(idx.size) - np.repeat(firsts, count)
        gaps = np.where(seq > 0, self._gaps(seed, numbers[idx], seq), 0.0)
        running = np.cumsum(gaps)
        elapsed = running - np.repeat(running[firsts], count)  # its first gap is 0: time since its birth
        total = np.repeat(np.add.reduceat(gaps, firsts), count)
        even = seq / np.maximum(np.repeat(count, count) - 1, 1)  # no gap above zero: spread evenly
        share = np.where(total > 0, elapsed / np.where(total > 0, total, 1.0), even)
        warped = span_start_w + birth[idx] + life[idx] * share
        order = np.lexsort((seq, numbers[idx], warped))
        idx, seq, warped = idx[order], seq[order], warped[order]
        for lo in range(0, idx.size, batch_size):
            yield idx[lo : lo + batch_size], seq[lo : lo + batch_size], warped[lo : lo + batch_size]

    def _windows(
        self, numbers: np.ndarray, seed: int, start_w: float, next_w: np.ndarray, rate: np.ndarray, batch_size: int
    ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """(entity rows, event numbers, warped times) of the events in each successive time window
        from ``start_w``, about ``batch_size`` events each, endlessly."""
        seq = np.zeros(numbers.size, dtype=np.int64)
        window = max(batch_size / max(rate.sum(), 1e-12), 1e-6)
        cursor = start_w
        while True:
            end = cursor + window
            idx_parts, seq_parts, w_parts = [], [], []
            active = np.nonzero(next_w < end)[0]
            while active.size:
                idx_parts.append(active)
                seq_parts.append(seq[active].copy())
                w_parts.append(next_w[active].copy())
                seq[active] += 1
                next_w[active] += self._gaps(seed, numbers[active], seq[active]) / rate[active]
                active = active[next_w[active] < end]
            cursor = end
            if not idx_parts:
                cursor = _first_busy_window(cursor, window, next_w)
                continue
            yield np.concatenate(idx_parts), np.concatenate(seq_parts), np.concatenate(w_parts)

    def _first_gaps(self, seed: int, numbers: np.ndarray) -> np.ndarray:
        """Normalised warped gap that each entity's window start falls into."""
        if self.first_gap is None:
            return self._gaps(seed, numbers, np.zeros(numbers.size, dtype=np.int64))
        return self.first_gap.ppf(rng.uniform(seed, numbers, 0, _GAP))

    def _gaps(self, seed: int, numbers: np.ndarray, seq: np.ndarray) -> np.ndarray:
        """Normalised warped gap before event ``seq`` of each entity (mean about 1)."""
        gap = self.gap.ppf(rng.uniform(seed, numbers, seq, _GAP))
        zero = rng.uniform(seed, numbers, seq, _ZERO) < self.zero_gap_rate
        return np.where(zero, 0.0, gap)

    def _cached_entity_state(
        self, numbers: np.ndarray, seed: int, conditions: dict[str, Any], population: tuple
    ) -> dict[str, Any]:
        """:meth:`_entity_state`, kept for the last few populations: scenarios open many short
        streams of one population (a pool of victims before every fraud window), and the per-entity
        palettes cost more than the events of a short span. The state is never written to."""
        if numbers.size > _ENTITY_CACHE_MAX:
            return self._entity_state(numbers, seed, conditions)
        key = (seed, population, repr(sorted(conditions.items())))
        state = self._entity_cache.pop(key, None)
        if state is None:
            state = self._entity_state(numbers, seed, conditions)
        self._entity_cache[key] = state  # most recent last
        while len(self._entity_cache) > _ENTITY_CACHE:
            self._entity_cache.pop(next(iter(self._entity_cache)))
        return state

    def _entity_state(self, numbers: np.ndarray, seed: int, conditions: dict[str, Any]) -> dict[str, Any]:
        """Per-entity draws, computed once per stream: O(entities) memory."""
        state: dict[str, Any] = {
            "rate": self.rate.ppf(rng.uniform(seed, numbers, _RATE)),
            "id": self._entity_ids(numbers, seed) if self.schema.entity else None,
        }
        for plan in self.plans:
            col_seed = rng.child_seed(seed, plan.name)
            if plan.level == "entity" and plan.method == "copula":
                enc = self.encoders[plan.name]
                if plan.name in conditions:
                    code = np.full(numbers.size, _category_code(enc, plan.name, conditions[plan.name]))
                else:
                    code = _draw_codes(enc, rng.uniform(col_seed, numbers, _SIZE))
                state[plan.name] = enc.decode(code)
                state[f"{plan.name}.code"] = code
            elif plan.level == "entity" and plan.method == "identifier":
                state[plan.name] = _fake(plan.kind, numbers, col_seed, plan.shape)
            elif plan.palette_sizes is not None:
                size = np.interp(rng.uniform(col_seed, numbers, _SIZE), _QGRID, plan.palette_sizes)
                size = np.clip(np.round(size), 1, _PALETTE_MAX).astype(np.int64)
                state[f"{plan.name}.size"] = size
                if plan.method == "palette":
                    enc = self.encoders[plan.name]
                    slots = np.arange(_PALETTE_MAX)[None, :]
                    codes = _draw_codes(enc, rng.uniform(col_seed, numbers[:, None], slots, _PALETTE))
                    codes = np.where(slots < size[:, None], codes, np.iinfo(np.int64).max)
                    state[f"{plan.name}.palette"] = np.sort(codes, axis=1)
        return state

    def _entity_ids(self, numbers: np.ndarray, seed: int) -> pl.Series:
        fmt = self.entity_format
        if fmt.get("kind") or fmt.get("shape"):
            return _fake(fmt.get("kind"), numbers, rng.child_seed(seed, "entity"), fmt.get("shape"))
        prefix, width = fmt.get("prefix", "E"), fmt.get("width", 6)
        # The "S" marks generated ids, so they never equal a real entity's id.
        digits = pl.Series(numbers).cast(pl.String).str.zfill(width)
        return (f"{prefix}S" + digits).alias("entity")

    def _events(
        self, stream: _Stream, idx: np.ndarray, numbers: np.ndarray, seq: np.ndarray, times: np.ndarray
    ) -> pl.DataFrame:
        """The events ``seq`` of entities ``numbers`` (rows ``idx`` of the stream's entity state)
        at ``times``, every column drawn."""
        schema, entities, seed, conditions = self.schema, stream.entities, stream.seed, stream.conditions
        namespace, n_entities = stream.namespace, stream.n_entities
        columns: dict[str, pl.Series] = {"event_id": event_ids(namespace, numbers, seq)}
        columns[schema.time] = from_micros(times, schema.time)
        if schema.entity:
            columns[schema.entity] = entities["id"].gather(idx).alias(schema.entity)
        uniforms = self._copula_uniforms(numbers, seq, seed, conditions, idx, stream.carry)
        codes: dict[str, np.ndarray] = {}
        for name, (slots, _, _) in _CALENDARS.items():
            if name in self.encoders:
                codes[name] = _calendar_slot(times, slots)
        following = self._following()
        # Parents before children: a child's distribution depends on its parent's code.
        for plan in self._generation_order():
            col_seed = rng.child_seed(seed, plan.name)
            if plan.level == "entity":
                series = entities[plan.name].gather(idx)
                if f"{plan.name}.code" in entities:
                    codes[plan.name] = entities[f"{plan.name}.code"][idx]
            elif plan.method == "unique":
                # A learned counter shape keeps its ids in a dense range past the real ones.
                keys = event_key(numbers, seq, n_entities) if plan.shape else (numbers << 32) + seq
                series = _fake(plan.kind, keys, col_seed, plan.shape)
            elif plan.method == "identifier":
                slot = rng.integers(col_seed, entities[f"{plan.name}.size"][idx], numbers, seq, _SLOT)
                series = _fake(plan.kind, numbers * _PALETTE_MAX + slot, col_seed, plan.shape)
            elif plan.method == "text":
                u = rng.uniform(col_seed, numbers[:, None], seq[:, None], np.arange(MAX_TOKENS)[None, :], _TEXT)
                series = self.chains[plan.name].sample(u, (numbers << 32) + seq, col_seed)
            elif plan.name in following and plan.name not in conditions:
                relation = following[plan.name]
                parents = pl.DataFrame({p: columns[p] for p in relation.parents})
                values = relation.place(parents, self._residual(plan.name, relation, uniforms))
                series = self._numeric(plan, values, numbers, seq, col_seed, codes)
            else:
                series = self._decode(plan, uniforms[plan.name], stream, idx, numbers, seq, col_seed, codes)
            columns[plan.name] = series.alias(plan.name)
        order = [c.name for c in schema.columns if c.name in columns]
        head = ["event_id"]
        return pl.DataFrame(columns).select(head + [c for c in order if c not in head])

    def _copula_uniforms(
        self, numbers: np.ndarray, seq: np.ndarray, seed: int, conditions: dict[str, Any], idx: np.ndarray,
        carry: Carry,
    ) -> dict[str, np.ndarray]:
        d = len(self.copula_columns)
        if d == 0:
            return {}
        j = np.arange(d)[None, :]
        z = rng.normal(seed, numbers[:, None], seq[:, None], j, _COPULA)
        fixed = [i for i, name in enumerate(self.copula_columns) if name in conditions]
        if not fixed:
            z = z @ self.chol.T
        else:
            z = self._conditional_scores(z, fixed, numbers, seq, seed, conditions)
        u = ndtr(self.persistence.apply(z, idx, seq, carry))
        return {name: u[:, i] for i, name in enumerate(self.copula_columns)}

    def _conditional_scores(
        self, z: np.ndarray, fixed: list[int], numbers: np.ndarray, seq: np.ndarray, seed: int,
        conditions: dict[str, Any],
    ) -> np.ndarray:
        """Scores with the conditioned columns inside their category's interval and the rest
        drawn from the Gaussian conditional on them."""
        d = len(self.copula_columns)
        rest = [i for i in range(d) if i not in fixed]
        z_fixed = np.empty((z.shape[0], len(fixed)))
        for k, i in enumerate(fixed):
            name = self.copula_columns[i]
            enc = self.encoders[name]
            if not isinstance(enc, CategoricalEncoder):
                raise StreamsynthError(
                    f"cannot condition on numeric column {name!r}",
                    hint="condition on categorical or boolean columns, e.g. is_fraud=true",
                )
            code = _category_code(enc, name, conditions[name])
            hi = float(np.cumsum(enc.probs)[code])
            lo = hi - float(enc.probs[code])
            u = rng.uniform(seed, numbers, seq, i, _COND)
            z_fixed[:, k] = ndtri(np.clip(lo + u * (hi - lo), 1e-12, 1 - 1e-12))
        out = np.empty_like(z)
        out[:, fixed] = z_fixed
        if rest:
            s_ff = self.corr[np.ix_(fixed, fixed)]
            s_rf = self.corr[np.ix_(rest, fixed)]
            s_rr = self.corr[np.ix_(rest, rest)]
            gain = s_rf @ np.linalg.inv(s_ff)
            cond_cov = s_rr - gain @ s_rf.T
            chol = np.linalg.cholesky(cond_cov + 1e-9 * np.eye(len(rest)))
            out[:, rest] = z_fixed @ gain.T + z[:, rest] @ chol.T
        return out

    def _decode(
        self, plan: ColumnPlan, u: np.ndarray, stream: _Stream, idx: np.ndarray, numbers: np.ndarray,
        seq: np.ndarray, col_seed: int, codes: dict[str, np.ndarray],
    ) -> pl.Series:
        entities, conditions = stream.entities, stream.conditions
        enc = self.encoders[plan.name]
        parent_codes = codes.get(plan.parent) if plan.parent else None
        if isinstance(enc, QuantileEncoder):
            values = enc.ppf(u)
            if parent_codes is not None:
                for code, sub in self.conditional[plan.name].items():
                    mask = parent_codes == code
                    if mask.any():
                        values[mask] = sub.ppf(u[mask])
            return self._numeric(plan, values, numbers, seq, col_seed, codes)
        posterior = self._posterior(plan.name, conditions)
        if plan.name in conditions:
            drawn = _draw_codes(enc, u)
        elif posterior is not None:
            drawn = _draw_codes(posterior, u)
        elif plan.name in self.transitions:
            remaining = None if stream.count is None else stream.count[idx] - seq - 1
            drawn = self.transitions.draw(plan.name, u, idx, seq, stream.chains, remaining)
        elif parent_codes is not None:
            drawn = transitions.draw_rows(self.conditional[plan.name][parent_codes], u)
        elif plan.method == "palette":
            size = entities[f"{plan.name}.size"][idx]
            slot = np.minimum((u * size).astype(np.int64), size - 1)
            drawn = entities[f"{plan.name}.palette"][idx, slot]
        else:
            drawn = _draw_codes(enc, u)
        codes[plan.name] = drawn
        return enc.decode(drawn)

    def _numeric(self, plan: ColumnPlan, values: np.ndarray, numbers: np.ndarray, seq: np.ndarray,
                 col_seed: int, codes: dict[str, np.ndarray]) -> pl.Series:
        """A numeric column's drawn values on its learned grid (by the drawn value of the column
        it is conditioned on, generated first), with its share of nulls, in its type."""
        enc = self.encoders[plan.name]
        grid = self.grids.get(plan.name)
        if grid is not None:
            u_grid = None if grid.always else rng.uniform(col_seed, numbers, seq, _GRID)
            by = grid.by.column if grid.by is not None else None
            parent = self.encoders[by].decode(codes[by]) if by in codes else None
            values = grid.snap_values(values, u_grid, *_range(enc), parent=parent)
        series = pl.Series(plan.name, values)
        if enc.null_rate > 0:
            null = rng.uniform(col_seed, numbers, seq, _NULL) < enc.null_rate
            series = series.set(pl.Series(null), None)
        return series.cast(_dtype(plan.dtype), strict=False)

    def _following(self) -> dict[str, Relation]:
        """Relations whose child this model draws from its parents: every event column in the
        copula (not a column the entity fixes, an identifier or text)."""
        drawn = {p.name for p in self.plans}
        return {r.child: r for r in self.relations if r.child in self.copula_columns and drawn.issuperset(r.parents)}

    def _residual(self, child: str, relation: Relation, uniforms: dict[str, np.ndarray]) -> np.ndarray:
        """The child's copula draw with what its parents in the copula already say of it taken
        out (the Gaussian conditional's standardised residual), as a probability: the relation
        places the parents' effect itself, and the rest of the copula's (time, other columns)
        stays."""
        z_child = ndtri(np.clip(uniforms[child], 1e-12, 1 - 1e-12))
        inside = [self.copula_columns.index(p) for p in relation.parents if p in uniforms]
        if not inside:
            return uniforms[child]
        c = self.copula_columns.index(child)
        gain = np.linalg.solve(self.corr[np.ix_(inside, inside)], self.corr[inside, c])
        spread = math.sqrt(max(1.0 - float(self.corr[c, inside] @ gain), 1e-6))
        z_parents = ndtri(np.clip(np.column_stack([uniforms[self.copula_columns[i]] for i in inside]),
                                  1e-12, 1 - 1e-12))
        return ndtr((z_child - z_parents @ gain) / spread)

    def _generation_order(self) -> list[ColumnPlan]:
        parents = {p.name: [p.parent] for p in self.plans if p.parent}
        for child, relation in self._following().items():
            parents[child] = [*parents.get(child, []), *relation.parents]
        for child, grid in self.grids.items():  # a grid's condition is drawn before the values it snaps
            if grid.by is not None:
                parents[child] = [*parents.get(child, []), grid.by.column]

        def depth(name: str, seen: frozenset[str] = frozenset()) -> int:
            if name not in parents or name in seen:
                return 0
            return 1 + max(depth(p, seen | {name}) for p in parents[name])

        return sorted(self.plans, key=lambda p: depth(p.name))

    def _posterior(self, parent: str, conditions: dict[str, Any]) -> CategoricalEncoder | None:
        """P(parent | conditioned children), when a child of ``parent`` is conditioned on."""
        probs = None
        for plan in self.plans:
            if plan.parent != parent or plan.name not in conditions:
                continue
            table = self.conditional[plan.name]
            if isinstance(table, dict):
                continue
            code = _category_code(self.encoders[plan.name], plan.name, conditions[plan.name])
            prior = self.encoders[parent].probs if probs is None else probs
            probs = prior * table[:, code]
        if probs is None or probs.sum() <= 0:
            return None
        post = CategoricalEncoder()
        post.values, post.probs = self.encoders[parent].values, probs / probs.sum()
        return post

    def learned(self) -> list[str]:
        follows = [f"{p.name} by {_CALENDARS[p.parent][2]}" for p in self.plans if p.parent in _CALENDARS]
        smooth = [f"{name} (lag-one {rho:.2f})" for name, rho in zip(self.copula_columns, self.persistence.rho,
                                                                      strict=True) if rho]
        lines = [f"values following the calendar: {'; '.join(follows)}"] if follows else []
        if smooth:
            lines.append(f"values persisting along each entity's events: {'; '.join(smooth)}")
        if self.transitions.tables:
            lines.append(f"values drawn from their previous one (a chain): {', '.join(self.transitions.tables)}")
        return lines

    # -- persistence -----------------------------------------------------------------------------
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
        config = {
            "plans": [asdict(p) for p in self.plans],
            "copula_columns": self.copula_columns,
            "zero_gap_rate": self.zero_gap_rate,
            "entity_format": self.entity_format,
            "span_w": self.span_w,
            "transitions": list(self.transitions.tables),
        }
        tensors = {"copula.corr": self.corr, "copula.persistence": self.persistence.rho,
                   "arrivals.profile": self.profile.intensity}
        if self.lifecycle is not None:
            tensors["arrivals.lifecycle"] = self.lifecycle
        for name, table in self.transitions.tables.items():
            tensors[f"transitions.{name}"] = table
        conditional: dict[str, Any] = {}
        for child, table in self.conditional.items():
            if isinstance(table, dict):
                conditional[child] = {str(code): enc.to_json() for code, enc in table.items()}
            else:
                tensors[f"conditional.{child}"] = table
        for name, chain in self.chains.items():
            tensors.update(chain.arrays(f"text.{name}"))
        encoders = {
            "columns": {name: enc.to_json() for name, enc in self.encoders.items()},
            "rate": self.rate.to_json(),
            "gap": self.gap.to_json(),
            "first_gap": self.first_gap.to_json(),
            "text": {name: chain.to_json() for name, chain in self.chains.items()},
            "conditional": conditional,
            "resolution": {
                "time": self.time_grid.to_json() if self.time_grid is not None else None,
                "columns": {name: grid.to_json() for name, grid in self.grids.items()},
            },
        }
        return config, tensors, encoders

    def _restore(self, config: dict[str, Any], tensors: dict[str, np.ndarray], encoders: dict[str, Any]) -> None:
        self._entity_cache.clear()
        self.plans = [ColumnPlan(**p) for p in config["plans"]]
        self.copula_columns = list(config["copula_columns"])
        self.zero_gap_rate = float(config["zero_gap_rate"])
        self.entity_format = dict(config["entity_format"])
        self.span_w = float(config.get("span_w", 1.0))
        lifecycle = tensors.get("arrivals.lifecycle")
        self.lifecycle = None if lifecycle is None else np.asarray(lifecycle, dtype=np.float64)
        self.encoders = {name: encoder_from_json(e) for name, e in encoders["columns"].items()}
        self.rate = encoder_from_json(encoders["rate"])
        self.gap = encoder_from_json(encoders["gap"])
        self.first_gap = encoder_from_json(encoders["first_gap"]) if "first_gap" in encoders else None
        resolution = encoders.get("resolution", {})  # absent in models saved before resolutions
        self.time_grid = Grid.from_json(resolution.get("time"))
        self.grids = {name: Grid.from_json(g) for name, g in resolution.get("columns", {}).items()}
        self.chains = {
            name: TokenChain.restore(data, tensors, f"text.{name}") for name, data in encoders["text"].items()
        }
        self.conditional = {}
        for plan in self.plans:
            if plan.parent is None:
                continue
            if isinstance(self.encoders[plan.name], QuantileEncoder):
                table = encoders["conditional"][plan.name]
                self.conditional[plan.name] = {int(k): encoder_from_json(v) for k, v in table.items()}
            else:
                self.conditional[plan.name] = np.asarray(tensors[f"conditional.{plan.name}"])
        self.corr = np.asarray(tensors["copula.corr"], dtype=np.float64)
        if self.corr.shape != (len(self.copula_columns),) * 2:
            raise ValueError("copula matrix does not match the copula columns")
        self.chol = np.linalg.cholesky(self.corr) if self.corr.size else self.corr
        persistence = tensors.get("copula.persistence")  # absent in models saved before it
        self.persistence = Persistence.none(len(self.copula_columns)) if persistence is None else Persistence(
            np.asarray(persistence, dtype=np.float64))
        self.profile = WeeklyProfile(np.asarray(tensors["arrivals.profile"], dtype=np.float64))
        names = config.get("transitions", [])  # absent in models saved before them
        self.transitions = transitions.Transitions(
            {name: np.asarray(tensors[f"transitions.{name}"], dtype=np.float64) for name in names})


# -- helpers -------------------------------------------------------------------------------------
_QGRID = np.linspace(0.0, 1.0, 21)


def _quantiles(values: np.ndarray) -> list[float]:
    return np.quantile(values.astype(np.float64), _QGRID).tolist() if values.size else [1.0] * 21


def _range(enc: QuantileEncoder) -> tuple[float, float]:
    """The smallest and largest training value of a numeric column."""
    ends = enc.knots[[0, -1]]
    return tuple(np.exp(ends) if enc.log else ends)


def _draw_codes(enc: CategoricalEncoder, u: np.ndarray) -> np.ndarray:
    cum = np.cumsum(enc.probs)
    return np.minimum(np.searchsorted(cum, u * cum[-1], side="right"), enc.size - 1)


def _category_code(enc: CategoricalEncoder, name: str, value: Any) -> int:
    if isinstance(value, str) and enc.dtype == "Boolean":
        value = value.strip().lower() in ("true", "1", "yes")
    if value not in enc.values:
        raise StreamsynthError(
            f"condition {name}={value!r}: the model never saw that value",
            hint=f"values of {name}: {', '.join(map(str, enc.values[:20]))}",
        )
    return enc.values.index(value)


def _is_ancestor(node: str, start: str, parents: dict[str, str]) -> bool:
    """Whether ``node`` is ``start`` or one of its ancestors (adding the edge would make a cycle)."""
    while start is not None:
        if start == node:
            return True
        start = parents.get(start)
    return False


def _calendar_slot(micros: np.ndarray, slots: int) -> np.ndarray:
    """The hour of day (24 slots) or of the week from Monday 0:00 (168; 1970-01-01 was a Thursday)."""
    return (np.asarray(micros, dtype=np.int64) // _HOUR_US + 72) % slots


def _calendar_encoder(slot: pl.Series, slots: int) -> CategoricalEncoder:
    """Codes that are the slots themselves, so sampling needs no lookup."""
    enc = CategoricalEncoder()
    enc.dtype = str(slot.dtype)
    enc.values = list(range(slots))
    enc.probs = np.bincount(slot.to_numpy(), minlength=slots)[:slots] / max(slot.len(), 1)
    return enc


def _eta_squared(target: np.ndarray, groups: np.ndarray) -> float:
    """Share of the variance of ``target`` explained by group membership."""
    total = target.var()
    if total <= 0 or target.size == 0:
        return 0.0
    counts = np.bincount(groups)
    means = np.bincount(groups, weights=target) / np.maximum(counts, 1)
    between = (counts * (means - target.mean()) ** 2).sum() / target.size
    return float(between / total)


def _held_out_eta_squared(target: np.ndarray, hours: np.ndarray, days: np.ndarray, slots: int) -> float:
    """Share of the variance of ``target`` that a calendar slot explains on days it was not
    learned from (slot means from even days scored on odd days, and back): a slowly wandering
    series explains itself by the hour over a few days, a daily cycle does so on other days too."""
    odd = days % 2 == 1
    if np.unique(days[odd]).size < 2 or np.unique(days[~odd]).size < 2:
        return 0.0
    # Only slots with enough rows get their own quantile function; the rest keep the marginal.
    own = np.bincount(hours, minlength=slots) >= _MIN_GROUP_ROWS
    explained = []
    for learn in (odd, ~odd):
        counts = np.bincount(hours[learn], minlength=slots)
        means = np.bincount(hours[learn], weights=target[learn], minlength=slots) / np.maximum(counts, 1)
        means = np.where(own & (counts > 0), means, target[learn].mean())
        y = target[~learn]
        if y.size < 2 or y.var() <= 0:
            return 0.0
        explained.append(1.0 - float(((y - means[hours[~learn]]) ** 2).mean()) / float(((y - y.mean()) ** 2).mean()))
    return min(explained)


def _uncertainty(child: np.ndarray, parent: np.ndarray) -> float:
    """Theil's U: how much knowing ``parent`` reduces the entropy of ``child``."""
    joint = np.zeros((parent.max() + 1, child.max() + 1))
    np.add.at(joint, (parent, child), 1.0)
    joint /= joint.sum()
    p_child = joint.sum(0)
    h_child = -(p_child[p_child > 0] * np.log(p_child[p_child > 0])).sum()
    if h_child <= 0:
        return 0.0
    p_parent = joint.sum(1, keepdims=True)
    cond = np.where(joint > 0, joint / np.maximum(p_parent, 1e-300), 1.0)
    h_cond = -(joint * np.log(cond)).sum()
    return float((h_child - h_cond) / h_child)


def _length_biased(values: np.ndarray, points: int = 4096) -> np.ndarray:
    """Evenly spaced quantiles of ``values`` weighted by their size (positive values)."""
    ordered = np.sort(values)
    weight = np.cumsum(ordered) / ordered.sum()
    return ordered[np.searchsorted(weight, (np.arange(points) + 0.5) / points).clip(max=ordered.size - 1)]


def _entity_format(ids: pl.Series, kind: str | None) -> dict[str, Any]:
    if kind and kind != "code":
        return {"kind": kind}
    shape = _learn_shape(ids, kind)
    if shape is not None:
        return {"shape": shape}
    strings = ids.cast(pl.String).drop_nulls().head(1000)
    prefix = strings.str.extract(r"^(\D*)", 1).mode().to_list()
    digits = strings.str.extract(r"(\d+)$", 1).str.len_chars()
    width = int(digits.median()) if digits.drop_nulls().len() else 6
    return {"prefix": (prefix[0] if prefix else "") or "E", "width": max(width, 4)}


def _learn_shape(values: pl.Series, kind: str | None) -> dict[str, Any] | None:
    """The format of a column of ids of no known kind (models saved before shapes have none)."""

    shape = learn_shape(values) if kind in (None, "code") else None
    return shape.to_json() if shape is not None else None


def _fake(kind: str | None, keys: np.ndarray, seed: int, shape: dict[str, Any] | None = None) -> pl.Series:

    return generate(kind or "code", np.asarray(keys, dtype=np.int64), seed, shape)


def _dtype(name: str) -> pl.DataType:

    return polars_dtype(name) if name != "String" else pl.Float64()
