"""The rule-based generator: entities, sessions, state machines and fields, vectorised per chunk.

Time advances one UTC hour at a time; each hour's sessions are expanded into events in
chunks, fields are computed column by column (numpy draws keyed by session and position,
polars expressions), and events are released in time order once no later chunk can precede
them. Output is a pure function of (spec, seed, entity numbers): batch size and sharding
change how it is cut, never what it is.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from streamsynth import rng
from streamsynth.contract import event_ids
from streamsynth.errors import StreamsynthError
from streamsynth.identifiers import fake
from streamsynth.rules import distributions as D
from streamsynth.rules.arrival import HOUR_US, Sessions, hour_sessions, profile_weight
from streamsynth.rules.expressions import Compiled
from streamsynth.rules.plan import FieldPlan, Plan

_T, _E, _S = "__t", "__e", "__s"
_TARGET_EVENTS = 65_536  # events per chunk: big enough to amortise, small enough for cache
_MAX_HOURS = 24  # at most this much event time is drawn ahead in one window


@dataclass
class _Rows:
    """The rows a field is computed over, and the keys its random draws are made from."""

    frame: pl.DataFrame
    keys: tuple[np.ndarray, ...]  # (entity,) for attributes; (session key, position) for events
    entity: np.ndarray
    session: np.ndarray | None = None
    time: np.ndarray | None = None


class RuleGenerator:
    """Generates the event stream of a :class:`Plan`."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.spec = plan.spec
        # Only attributes the rows show or fields read are copied onto every event.
        read = set().union(*(f.deps for f in plan.fields)) if plan.fields else set()
        self.event_attributes = [plan.spec.entity.name] + [
            a.name for a in plan.attributes if a.spec.output or a.name in read
        ]

    # -- entities ----------------------------------------------------------------------------
    def entities(self, numbers: np.ndarray, seed: int) -> pl.DataFrame:
        """The entity table: id column plus every attribute, one row per entity number."""
        spec = self.spec.entity
        numbers = np.asarray(numbers, dtype=np.uint64)
        if spec.id.faker is not None:
            ids = fake(spec.id.faker, numbers.astype(np.int64), rng.child_seed(seed, "entity-id"))
        else:
            ids = pl.Series(numbers.astype(np.int64)).cast(pl.String).str.zfill(spec.id.digits)
            ids = pl.select(pl.lit(spec.id.prefix) + ids).to_series()
        rows = _Rows(frame=pl.DataFrame({spec.name: ids}), keys=(numbers,), entity=numbers)
        for field in self.plan.attributes:
            rows.frame = rows.frame.with_columns(self._field(field, rows, seed))
        return rows.frame

    # -- the stream ---------------------------------------------------------------------------
    def stream(
        self, *, start_us: int, n_entities: int, seed: int, shard: tuple[int, int] | None
    ) -> Iterator[pl.DataFrame]:
        """Endless time-ordered frames (of varying size) of output columns plus event ids."""
        k, n = shard or (0, 1)
        numbers = np.arange(k, n_entities, n, dtype=np.uint64)
        if numbers.size == 0:
            return
        table = self.entities(numbers, seed)
        multiplier = None
        if self.spec.arrival.rate_by is not None:
            values = table[self.spec.arrival.rate_by].cast(pl.Float64).fill_null(0).to_numpy()
            multiplier = np.clip(values, 0, None)
            if not multiplier.any() and self.spec.arrival.process == "poisson":
                raise StreamsynthError(
                    f"{self.plan.source}: arrival.rate_by: {self.spec.arrival.rate_by!r} is zero "
                    "for every entity, so no events would ever arrive"
                )
        counters = np.zeros(numbers.size, dtype=np.int64)
        namespace = f"{self.spec.name}-{seed}"
        pending: pl.DataFrame | None = None
        hour = start_us // HOUR_US
        chunk = self._chunk_size()
        while True:
            # Gather whole hours until a chunk's worth of sessions (small populations would
            # otherwise pay per-chunk overhead on a handful of events).
            parts = []
            total = 0
            for _ in range(_MAX_HOURS):
                part = hour_sessions(self.plan, seed, hour, numbers, multiplier, start_us)
                parts.append(part)
                total += len(part)
                hour += 1
                if total >= chunk:
                    break
            sessions = Sessions.concat(parts)
            window_end = hour * HOUR_US
            bounds = list(range(0, len(sessions), chunk)) + [len(sessions)]
            for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
                events = self._events(sessions.take(slice(lo, hi)), table, counters, seed, namespace)
                pending = events if pending is None else pl.concat([pending, events], how="vertical")
                pending = pending.sort([_T, _E, _S])
                cut = int(sessions.start[hi]) if hi < len(sessions) else window_end
                pending, ready = _split(pending, cut)
                if ready.height:
                    yield ready
            if len(sessions) == 0 and pending is not None and pending.height:
                pending, ready = _split(pending, window_end)
                if ready.height:
                    yield ready

    def _chunk_size(self) -> int:
        mean = 1.0
        machine = self.plan.machine
        if machine is not None:
            mean = float(min(machine.max_events, 8))
        return max(1024, int(_TARGET_EVENTS / mean))

    # -- sessions to events -------------------------------------------------------------------
    def _events(
        self,
        sessions: Sessions,
        table: pl.DataFrame,
        counters: np.ndarray,
        seed: int,
        namespace: str,
    ) -> pl.DataFrame:
        states, lengths = self._walk(sessions, seed)
        total = int(lengths.sum())
        sess = np.repeat(np.arange(len(sessions)), lengths)
        first = np.cumsum(lengths) - lengths
        position = np.arange(total, dtype=np.int64) - np.repeat(first, lengths)
        key = sessions.key[sess]
        burst = sessions.burst[sess]
        # Gaps follow each event; an event's time is its session start plus the earlier gaps.
        gaps = self._gaps(key, position, burst, states, seed)
        gaps_us = np.round(gaps * 1e6).astype(np.int64)
        ends = np.cumsum(gaps_us)
        before = ends - gaps_us
        times = sessions.start[sess] + before - np.repeat(before[first], lengths)
        seq = _sequence_numbers(sessions, lengths, counters)[sess] + position
        ent = sessions.entity[sess]
        entity_index = sessions.index[sess]
        context: dict[str, Any] = {
            _T: times,
            _E: ent.astype(np.int64),
            _S: seq,
            "hour": (times // HOUR_US) % 24,
            "weekday": (times // (24 * HOUR_US) + 3) % 7,
            "load": profile_weight(self.plan, times),
            "in_burst": burst,
            "position": position,
            "session": (key >> np.uint64(1)).astype(np.int64),
        }
        frame = pl.DataFrame(context)
        frame = frame.hstack(table.select(self.event_attributes)[pl.Series(entity_index)])
        machine = self.plan.machine
        if machine is not None:
            names = pl.Series(machine.states, dtype=pl.String)
            frame = frame.with_columns(names.gather(pl.Series(states)).alias(machine.column))
        rows = _Rows(frame=frame, keys=(key, position), entity=ent, session=key, time=times)
        for field in self.plan.fields:
            rows.frame = rows.frame.with_columns(self._field(field, rows, seed))
        out = rows.frame
        time = pl.Series(times).cast(pl.Datetime("us", "UTC")).alias(self.spec.time)
        ids = event_ids(namespace, out[_E], out[_S])
        return out.select(ids, time, *self.plan.output_columns[1:], _T, _E, _S)

    def _walk(self, sessions: Sessions, seed: int) -> tuple[np.ndarray | None, np.ndarray]:
        """(state code per event in session order, events per session)."""
        n = len(sessions)
        arrival = self.spec.arrival
        machine = self.plan.machine
        lengths = np.ones(n, dtype=np.int64)
        if machine is None and arrival.session.events is not None:
            u = rng.uniform(rng.child_seed(seed, "session", "events"), sessions.key)
            lengths = np.maximum(_draw_constant(arrival.session.events, u), 1).astype(np.int64)
        burst = sessions.burst
        if arrival.bursts is not None and burst.any():
            u = rng.uniform(rng.child_seed(seed, "burst", "events"), sessions.key[burst])
            lengths[burst] = np.maximum(_draw_constant(arrival.bursts.events, u), 1)
        if machine is None:
            return None, lengths
        walkers = np.flatnonzero(~burst)
        state = D.choice(
            rng.uniform(rng.child_seed(seed, "machine", "start"), sessions.key[walkers]),
            machine.start_cum,
        )
        steps = [(walkers, state)]
        end = len(machine.states)
        step_seed = rng.child_seed(seed, "machine", "step")
        for step in range(1, machine.max_events):
            u = rng.uniform(step_seed, sessions.key[walkers], step)
            nxt = D.choice(u, machine.trans_cum[state])
            go = nxt != end
            walkers, state = walkers[go], nxt[go]
            if walkers.size == 0:
                break
            steps.append((walkers, state))
            lengths[walkers] += 1
        # Lay the per-step states out in event order (session by session, position by position).
        first = np.cumsum(lengths) - lengths
        codes = np.full(int(lengths.sum()), -1, dtype=np.int64)
        for pos, (who, st) in enumerate(steps):
            codes[first[who] + pos] = st
        if burst.any():
            for_burst = np.repeat(burst, lengths)
            codes[for_burst] = self.plan.burst_state
        return codes, lengths

    def _gaps(
        self,
        key: np.ndarray,
        position: np.ndarray,
        burst: np.ndarray,
        states: np.ndarray | None,
        seed: int,
    ) -> np.ndarray:
        arrival = self.spec.arrival
        u = rng.uniform(rng.child_seed(seed, "gap"), key, position)
        gaps = np.zeros(key.shape[0])
        default = arrival.session.gap
        normal = ~burst
        machine = self.plan.machine
        if machine is not None:
            for code, dwell in enumerate(machine.dwell):
                dist = dwell or default
                sel = normal & (states == code)
                if dist is not None and sel.any():
                    gaps[sel] = _draw_constant(dist, u[sel])
                elif sel.any():
                    gaps[sel] = D.exponential(u[sel], 60.0)
        elif default is not None:
            gaps[normal] = _draw_constant(default, u[normal])
        else:
            gaps[normal] = D.exponential(u[normal], 60.0)
        if arrival.bursts is not None and burst.any():
            gaps[burst] = _draw_constant(arrival.bursts.gap, u[burst])
        return np.maximum(gaps, 0.0)

    # -- fields ---------------------------------------------------------------------------------
    def _field(self, field: FieldPlan, rows: _Rows, seed: int) -> pl.Series:
        try:
            series = self._raw(field, rows, seed)
            return _finish(field, series)
        except pl.exceptions.PolarsError as exc:
            first = str(exc).strip().splitlines()[0]
            raise StreamsynthError(
                f"{self.plan.source}: {field.path}: cannot compute the field: {first}"
            ) from None

    def _raw(self, field: FieldPlan, rows: _Rows, seed: int) -> pl.Series:
        spec = field.spec
        fseed = rng.child_seed(seed, "field", field.name)
        n = rows.frame.height
        if field.keyed_by:  # a stated dependency: one draw per combination of the determinants' values
            rows = dataclasses.replace(rows, keys=(_value_keys(rows.frame, field.keyed_by),), session=None)
        if spec.expr is not None:
            frame = _with_randoms(rows, field.compiled, fseed)
            # with_columns broadcasts a constant expression to every row
            return frame.with_columns(field.compiled.expr.alias(field.name)).get_column(field.name)
        if spec.faker is not None:
            if field.keyed_by:
                keys = (rows.keys[0] >> np.uint64(1)).astype(np.int64)
            elif spec.per == "entity" or rows.session is None:
                keys = rows.entity.astype(np.int64)
            elif spec.per == "session":
                keys = (rows.session >> np.uint64(1)).astype(np.int64)
            else:
                keys = (rng.hash64(fseed, *rows.keys) >> np.uint64(1)).astype(np.int64)
            fseed_kind = rng.child_seed(seed, "faker", field.name)
            return fake(spec.faker, keys, fseed_kind, locale=spec.locale).alias(field.name)
        dist = spec.distribution
        kind = dist.kind
        if kind == "constant":
            return pl.repeat(dist.value, n, eager=True, dtype=field.values_dtype).alias(field.name)
        u = rng.uniform(fseed, *rows.keys)
        if kind in ("choice", "zipf") and field.values is not None:
            if field.lookup_rows is not None:
                cum = field.lookup_rows[_lookup_index(dist.weights, rows.frame)]
            else:
                cum = field.cum
            idx = D.choice(u, cum)
            values = pl.Series(field.values, dtype=field.values_dtype)
            return values.gather(pl.Series(idx)).alias(field.name)
        if kind == "zipf":
            return pl.Series(field.name, D.zipf(u, field.cum))
        p = {name: _param(param, rows, fseed) for name, param in field.params.items()}
        if kind == "normal":
            out = D.normal(u, p.get("mean", 0.0), p.get("std", 1.0))
        elif kind == "lognormal":
            out = D.lognormal(u, p.get("mu", 0.0), p.get("sigma", 1.0))
        elif kind == "uniform":
            out = D.uniform(u, p.get("low", 0.0), p.get("high", 1.0))
        elif kind == "exponential":
            out = D.exponential(u, p.get("scale", 1.0))
        elif kind == "poisson":
            out = D.poisson(u, np.maximum(p["lam"], 0.0))
        else:  # bernoulli
            out = D.bernoulli(u, p["p"])
        return pl.Series(field.name, out)


def _value_keys(frame: pl.DataFrame, columns: tuple[str, ...]) -> np.ndarray:
    """One uint64 per row from the values of ``columns``: equal values, equal keys, in any
    batch, shard or process (a hash of each distinct value's text, not polars' own hash,
    which may change between versions)."""
    parts = []
    for name in columns:
        text = frame[name].cast(pl.String).fill_null("\x00")
        distinct = text.unique()
        codes = [rng.stable_int(v) for v in distinct.to_list()]
        parts.append(text.replace_strict(distinct, codes, return_dtype=pl.UInt64).to_numpy())
    return rng.hash64(len(columns), *parts)


def _finish(field: FieldPlan, series: pl.Series) -> pl.Series:
    spec = field.spec
    if spec.clip is not None:
        lo, hi = spec.clip
        series = series.clip(lo, hi)
    if spec.round is not None:
        series = series.round(spec.round) if series.dtype.is_float() else series
    if series.dtype != field.dtype:
        series = series.cast(field.dtype)
    return series.alias(field.name)


def _param(param: Any, rows: _Rows, fseed: int) -> np.ndarray | float:
    if param.lookup is not None:
        lookup = param.lookup
        column = rows.frame[lookup.by]
        mapping = {_key_for(k, column.dtype): float(v) for k, v in lookup.values.items()}
        default = None if lookup.default is None else float(lookup.default)
        return column.replace_strict(mapping, default=default, return_dtype=pl.Float64).to_numpy()
    if param.compiled is not None:
        frame = _with_randoms(rows, param.compiled, fseed)
        out = frame.with_columns(param.compiled.expr.cast(pl.Float64).alias("__param"))
        return out.get_column("__param").to_numpy()
    return float(param.constant)


def _lookup_index(weights: Any, frame: pl.DataFrame) -> np.ndarray:
    column = frame[weights.by]
    mapping = {_key_for(k, column.dtype): i for i, k in enumerate(weights.values)}
    default = len(weights.values)
    return column.replace_strict(mapping, default=default, return_dtype=pl.Int64).to_numpy()


def _key_for(key: Any, dtype: pl.DataType) -> Any:
    """YAML keys are strings or numbers; match the column they look up."""
    if dtype.is_integer():
        return int(key)
    if dtype.is_float():
        return float(key)
    if dtype == pl.Boolean:
        return key if isinstance(key, bool) else str(key).lower() == "true"
    return str(key)


def _with_randoms(rows: _Rows, compiled: Compiled, fseed: int) -> pl.DataFrame:
    if not compiled.randoms:
        return rows.frame
    cols = []
    for i, (fn, arg) in enumerate(compiled.randoms):
        s = rng.child_seed(fseed, compiled.prefix, i)
        if fn == "uniform":
            values = rng.uniform(s, *rows.keys)
        elif fn == "normal":
            values = rng.normal(s, *rows.keys)
        else:
            values = _value_noise(s, rows.entity, rows.time, float(arg))
        cols.append(pl.Series(f"{compiled.prefix}{i}", values))
    return rows.frame.with_columns(cols)


def _value_noise(seed: int, entity: np.ndarray, time_us: np.ndarray, period_s: float) -> np.ndarray:
    """Smooth per-entity noise with unit variance: normal knots every ``period_s``, eased between."""
    period = period_s * 1e6
    pos = time_us / period
    knot = np.floor(pos)
    w = pos - knot
    w = w * w * (3 - 2 * w)
    knot = knot.astype(np.int64).view(np.uint64)
    z0 = rng.normal(seed, entity, knot)
    z1 = rng.normal(seed, entity, knot + np.uint64(1))
    return (z0 * (1 - w) + z1 * w) / np.sqrt((1 - w) ** 2 + w**2)


def _draw_constant(dist: Any, u: np.ndarray) -> np.ndarray:
    """Draws from an arrival distribution (constant parameters, numeric values)."""
    kind = dist.kind
    if kind == "normal":
        return D.normal(u, dist.mean, dist.std)
    if kind == "lognormal":
        return D.lognormal(u, dist.mu, dist.sigma)
    if kind == "uniform":
        return D.uniform(u, dist.low, dist.high)
    if kind == "exponential":
        return D.exponential(u, dist.scale)
    if kind == "poisson":
        return D.poisson(u, dist.lam)
    if kind == "constant":
        return np.full(u.shape, float(dist.value))
    if kind == "choice":
        weights = np.ones(len(dist.values)) if dist.weights is None else np.array(dist.weights)
        values = np.asarray(dist.values, dtype=np.float64)
        return values[D.choice(u, D.cumulative(weights))]
    if kind == "zipf":
        n = dist.n if dist.values is None else len(dist.values)
        ranks = D.zipf(u, D.zipf_cdf(dist.s, n))
        if dist.values is None:
            return ranks.astype(np.float64)
        return np.asarray(dist.values, dtype=np.float64)[ranks - 1]
    raise StreamsynthError(f"a {kind} distribution cannot give counts or durations")


def _sequence_numbers(sessions: Sessions, lengths: np.ndarray, counters: np.ndarray) -> np.ndarray:
    """Each session's first sequence number in its entity's stream; advances ``counters``.

    Sessions arrive sorted by start, so numbering an entity's sessions in arrival order
    depends only on the entity's own sessions, not on chunking or sharding.
    """
    order = np.argsort(sessions.index, kind="stable")
    idx = sessions.index[order]
    lens = lengths[order]
    csum = np.cumsum(lens) - lens  # exclusive running total across the sorted chunk
    group_start = np.r_[True, idx[1:] != idx[:-1]]
    base = np.maximum.accumulate(np.where(group_start, csum, 0))
    first_seq = np.empty(len(sessions), dtype=np.int64)
    first_seq[order] = counters[idx] + csum - base
    np.add.at(counters, idx, lens)
    return first_seq


def _split(pending: pl.DataFrame, cut: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(events at or after ``cut``, events before it, without the internal columns)."""
    n = int(pending[_T].search_sorted(cut, side="left"))
    ready = pending.slice(0, n).drop(_T, _E, _S)
    return pending.slice(n), ready
