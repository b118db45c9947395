"""The transformer's view of a table: which columns are event fields, entity attributes or faked
identifiers, and the exact mapping between an entity's events and rows of integer tokens.

Every learned value becomes one or two categorical "sub-fields": a categorical code, a numeric
value's quantile bin (plus a null class) and within-bin offset class, the inter-arrival gap's
log bin (plus an end-of-sequence class) and offset class.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import polars as pl

from streamsynth.contract import EVENT_ID, LABEL, NORMAL, TIME_DTYPE, event_ids, label_expressions
from streamsynth.encoders import (
    CategoricalEncoder,
    InterArrivalEncoder,
    QuantileEncoder,
    encoder_from_json,
)
from streamsynth.encoders.resolution import Grid, condition_grids
from streamsynth.errors import StreamsynthError
from streamsynth.identifiers import KINDS, event_key, generate, learn_shape
from streamsynth.models.arrivals import WeeklyProfile
from streamsynth.models.lifecycle import Lifecycles
from streamsynth.models.segments import SEGMENT
from streamsynth.rng import child_seed, hash64, uniform
from streamsynth.schema import Role, Schema

OFFSET_CLASSES = 8  # within-bin offsets: class 0 is "exactly on the knot", 1..8 are eighths
LABEL_ATTR = "_label"  # entity attribute: the entity's most frequent non-normal label, or normal
GAP = "_gap"
_CLOCK_MIN_SPAN_S = 86_400.0  # a weekly profile needs at least a day of data to say anything
UNIFORM_OFFSET_KEY = 100  # rng key offset for the position inside an offset class
IDENT_KEY = 200
GRID_KEY = 300  # rng key offset for which grid level a numeric value (or, at GRID_KEY, a time) goes to
_DTYPES = {
    "Int8": pl.Int8(), "Int16": pl.Int16(), "Int32": pl.Int32(), "Int64": pl.Int64(),
    "UInt8": pl.UInt8(), "UInt16": pl.UInt16(), "UInt32": pl.UInt32(), "UInt64": pl.UInt64(),
    "Float32": pl.Float32(), "Float64": pl.Float64(), "Boolean": pl.Boolean(), "String": pl.String(),
}


@dataclass
class FieldSpec:
    """One learned column (or the gap / label attribute) and where its sub-fields sit."""

    name: str
    kind: str  # "gap" | "categorical" | "numeric"
    scope: str  # "event" | "attr"
    index: int  # first sub-field index in its scope's token row
    dtype: str = "String"


@dataclass
class IdentSpec:
    """An identifier column, faked per entity: constant, unique per event, or from a pool."""

    name: str
    kind: str
    mode: str  # "entity" | "event" | "pool"
    per_entity: int = 1  # pool: distinct values an entity typically uses
    cardinality: int = 1  # pool: distinct values in the whole training table
    shape: dict[str, Any] | None = None  # the learned format (None: the kind's generator, as before shapes)


def offset_class(offset: np.ndarray) -> np.ndarray:
    """Offset in [0, 1) -> class: 0 when exactly on the knot, else 1 + its eighth."""
    cls = 1 + np.minimum((np.asarray(offset) * OFFSET_CLASSES).astype(np.int64), OFFSET_CLASSES - 1)
    return np.where(np.asarray(offset) <= 0.0, 0, cls)


def class_offset(cls: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse of :func:`offset_class`, with ``u`` placing the value inside its eighth."""
    cls = np.asarray(cls, dtype=np.int64)
    return np.where(cls == 0, 0.0, (cls - 1 + np.asarray(u)) / OFFSET_CLASSES)


class EventCodec:
    """Column roles and encoders for one fitted table; ``encode`` for training, ``decode`` for output."""

    def __init__(self) -> None:
        self.fields: list[FieldSpec] = []
        self.encoders: dict[str, Any] = {}
        self.idents: list[IdentSpec] = []
        self.texts: list[str] = []
        self.entity: str = ""
        #: no entity column: one stream cut into segments (``segments``), the entity not written
        self.segmented = False
        self.entity_kind: str | None = None
        self.entity_shape: dict[str, Any] | None = None
        self.entity_prefix: str = ""
        self.entity_width: int = 6
        self.time: str = ""
        self.resolution_us: int = 1
        # Learned resolutions (None / empty in codecs saved before them: values as decoded).
        self.time_grid: Grid | None = None
        #: the weekly intensity profile gaps are measured in (warped time, as the baseline's
        #: arrivals): a network that has not learned the calendar still keeps the daily and weekly
        #: profile, and one that has learned it refines it. None: real seconds (short spans, and
        #: models saved before it)
        self.clock: WeeklyProfile | None = None
        self.grids: dict[str, Grid] = {}
        self.label: str | None = None
        self.label_dtype: str = "String"
        self.event_sizes: list[int] = []
        self.attr_sizes: list[int] = []
        self.output_order: list[str] = []
        #: the training entities' (birth, last event, count) shapes, which sampling plans each
        #: entity with (None: models saved before lifecycles, and DP-SGD fits)
        self.lifecycles: Lifecycles | None = None
        #: numeric columns with no null in training, whose null class is never sampled (None:
        #: models saved before, which may sample it)
        self.no_nulls: list[str] | None = None

    # -- fitting ------------------------------------------------------------------------------
    def fit(self, frame: pl.DataFrame, schema: Schema, start: Any, span_s: float,
            segmented: bool = False) -> EventCodec:
        """Decide roles and fit encoders; ``frame`` is sorted by (entity, time). ``segmented``:
        the schema has no entity and ``frame`` holds one stream cut into segments (``segments``)."""
        self.time = schema.time
        self.segmented = segmented
        self.entity = SEGMENT if segmented else schema.entity or ""
        if not self.entity:
            raise StreamsynthError(
                "the transformer model needs an entity column (the sequence key)",
                hint="name it with --entity COLUMN or mark it in a schema file",
            )
        if not segmented:
            self._fit_entity_ids(frame[self.entity], schema[self.entity].kind)
        self.resolution_us = _resolution_us(frame[self.time])
        times_us = frame[self.time].dt.epoch("us").drop_nulls().to_numpy()
        self.time_grid = Grid.learn_times(times_us)
        self.clock = WeeklyProfile.fit(times_us) if span_s >= _CLOCK_MIN_SPAN_S else None
        self.grids = {}
        multi = frame.filter(pl.len().over(self.entity) > 1)
        learned = [c for c in schema.data_columns if c.role in (Role.CATEGORICAL, Role.BOOLEAN, Role.NUMERIC)]
        attrs = set() if segmented else {c.name for c in learned if _entity_constant(multi, self.entity, c.name)}
        self.label = schema.label if schema.label in {c.name for c in learned} else None
        self.fields = []
        counts = frame.group_by(self.entity, maintain_order=True).len()["len"].to_numpy()
        gaps, _ = self._gaps(frame, start, span_s, np.cumsum(counts) - counts, counts)
        self._add("event", GAP, "gap", InterArrivalEncoder().fit(pl.Series(GAP, gaps)), "Float64")
        for col in learned:  # categoricals first, so numbers are sampled given categories
            if col.role is not Role.NUMERIC:
                enc = CategoricalEncoder().fit(frame[col.name])
                self._add("attr" if col.name in attrs else "event", col.name, "categorical", enc, col.dtype)
        for col in learned:
            if col.role is Role.NUMERIC:
                enc = QuantileEncoder().fit(frame[col.name])
                values = frame[col.name].drop_nulls()
                grid = Grid.learn_numeric(values.cast(pl.Float64).to_numpy(), values.dtype.is_integer())
                if grid is not None:
                    self.grids[col.name] = grid
                self._add("attr" if col.name in attrs else "event", col.name, "numeric", enc, col.dtype)
        # categoricals are decoded before numbers, so sampling has the column a grid depends on
        condition_grids(self.grids, frame, [c.name for c in learned if c.role is not Role.NUMERIC])
        if self.label and self.label not in attrs:
            self.label_dtype = str(frame.schema[self.label])
            flags = _entity_labels(frame, self.entity, self.label)
            self._add("attr", LABEL_ATTR, "categorical", CategoricalEncoder().fit(flags), "String")
        # A segmented stream's identifiers are per stream: the whole stream is their entity.
        ident_frame = frame.with_columns(pl.lit(0).alias(SEGMENT)) if segmented else frame
        ident_multi = ident_frame if segmented else multi
        self.idents = [
            _ident_spec(ident_frame, ident_multi, self.entity, c.name, c.kind or "code")
            for c in schema.data_columns if c.role is Role.IDENTIFIER
        ]
        self.texts = [c.name for c in schema.data_columns if c.role is Role.TEXT]
        self.output_order = [c.name for c in schema.data_columns]
        self.no_nulls = [f.name for f in self.fields if f.kind == "numeric" and frame[f.name].null_count() == 0]
        self._sizes()
        return self

    def _add(self, scope: str, name: str, kind: str, encoder: Any, dtype: str) -> None:
        index = sum(_width(f.kind) for f in self.fields if f.scope == scope)
        self.fields.append(FieldSpec(name=name, kind=kind, scope=scope, index=index, dtype=dtype))
        self.encoders[name] = encoder

    def _sizes(self) -> None:
        self.event_sizes, self.attr_sizes = [], []
        for f in self.fields:
            sizes = self.event_sizes if f.scope == "event" else self.attr_sizes
            enc = self.encoders[f.name]
            if f.kind == "categorical":
                sizes.append(enc.size)
            elif f.kind == "numeric":
                sizes += [enc.size + 1, OFFSET_CLASSES + 1]  # + null bin
            else:
                sizes += [enc.size + 1, OFFSET_CLASSES + 1]  # + end of sequence

    def _fit_entity_ids(self, ids: pl.Series, kind: str | None) -> None:

        self.entity_kind = kind if kind in KINDS else None
        self.entity_shape = _learned_shape(ids, kind)
        text = ids.cast(pl.String).drop_nulls()
        prefix = text.str.extract(r"^([^0-9]*)", 1).mode().sort()
        self.entity_prefix = prefix[0] if prefix.len() else ""
        self.entity_width = int(min(max(text.str.len_chars().max() - len(self.entity_prefix), 1), 12))

    # -- views ----------------------------------------------------------------------------------
    def never_drawn(self) -> dict[str, list[int]]:
        """Per scope ("event", "attr"), per sub-field, the class sampling never draws (-1: none):
        the null class of a numeric column that had no null in training."""
        out = {"event": [-1] * len(self.event_sizes), "attr": [-1] * len(self.attr_sizes)}
        for f in self.fields:
            if f.kind == "numeric" and f.name in (self.no_nulls or ()):
                out[f.scope][f.index] = self.encoders[f.name].size
        return out

    def scope_fields(self, scope: str) -> list[FieldSpec]:
        return [f for f in self.fields if f.scope == scope]

    @property
    def eos(self) -> int:
        """The end-of-sequence class of the gap-bin sub-field (event sub-field 0)."""
        return self.event_sizes[0] - 1

    @property
    def gap_edges(self) -> np.ndarray:
        return self.encoders[GAP].edges

    # -- training data --------------------------------------------------------------------------
    def encode(self, frame: pl.DataFrame, start: Any, span_s: float) -> dict[str, np.ndarray]:
        """Token arrays for training: events (n, F), attrs per entity (E, A), times, censoring.

        ``times`` are seconds since ``start``; ``log_survival`` (E, V0) is, per entity, the log
        probability mass of "no further event inside the window" for each gap-bin class.
        """
        counts = frame.group_by(self.entity, maintain_order=True).len()["len"].to_numpy()
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        first = offsets[:-1]
        events = np.zeros((frame.height, len(self.event_sizes)), dtype=np.int64)
        attrs = np.zeros((counts.size, len(self.attr_sizes)), dtype=np.int64)
        t_us = (frame[self.time] - start).dt.total_microseconds().to_numpy()
        times = t_us.astype(np.float64) / 1e6
        gaps, remaining = self._gaps(frame, start, span_s, first, counts)
        for f in self.fields:
            enc = self.encoders[f.name]
            if f.name == GAP:
                cols = np.stack(self._encode_numeric(enc, gaps), axis=1)
            elif f.name == LABEL_ATTR:
                cols = enc.encode(_entity_labels(frame, self.entity, self.label))[:, None]
            elif f.kind == "categorical":
                cols = enc.encode(frame[f.name])[:, None]
            else:
                cols = np.stack(self._encode_numeric(enc, frame[f.name].cast(pl.Float64).to_numpy()), axis=1)
            if f.scope == "event":
                events[:, f.index : f.index + cols.shape[1]] = cols
            elif f.name == LABEL_ATTR:
                attrs[:, f.index] = cols[:, 0]
            else:
                attrs[:, f.index : f.index + cols.shape[1]] = cols[first]
        return {
            "events": events,
            "attrs": attrs,
            "times": times,
            "offsets": offsets,
            "log_survival": self.log_survival(remaining),
        }

    def warped_s(self, times_us: np.ndarray) -> np.ndarray:
        """Times (us since the epoch) as seconds on the codec's clock."""
        times_us = np.asarray(times_us, dtype=np.int64)
        return self.clock.warp(times_us) * 3600.0 if self.clock is not None else times_us / 1e6

    def _gaps(self, frame: pl.DataFrame, start: Any, span_s: float, first: np.ndarray,
              counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each event's gap on the clock (an entity's first from the window start) and, per
        entity, the time left after its last event until the window's end, sorted by entity."""
        start_us = int(start.timestamp() * 1_000_000)
        clock = self.warped_s(frame[self.time].dt.epoch("us").to_numpy())
        origin, end = self.warped_s(np.array([start_us, start_us + int(span_s * 1e6)]))
        gaps = np.diff(clock, prepend=origin)
        gaps[first] = clock[first] - origin
        return np.maximum(gaps, 0.0), np.maximum(end - clock[first + counts - 1], 0.0)

    def _encode_numeric(self, enc: Any, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        values = np.asarray(values, dtype=np.float64)
        null = ~np.isfinite(values)
        if isinstance(enc, InterArrivalEncoder):
            bins, off = enc.encode(np.where(null, 0.0, values))
            return bins, offset_class(off)
        safe = np.where(null, enc.knots[len(enc.knots) // 2], values)
        bins, off = enc.encode(safe)
        return np.where(null, enc.size, bins), np.where(null, 0, offset_class(off))

    def log_survival(self, remaining: np.ndarray) -> np.ndarray:
        """log P(next event after ``remaining`` seconds | gap class), per row; EOS counts fully."""
        enc = self.encoders[GAP]
        n = enc.size
        bins, off = enc.encode(np.asarray(remaining, dtype=np.float64))
        cls = np.arange(n)[None, :]
        surv = np.where(cls > bins[:, None], 1.0, 0.0)
        surv = np.where(cls == bins[:, None], 1.0 - off[:, None], surv)
        surv[:, 0] = 0.0  # a zero gap never leaves the window
        surv = np.concatenate([surv, np.ones((surv.shape[0], 1))], axis=1)  # EOS
        with np.errstate(divide="ignore"):
            return np.log(surv).astype(np.float32)

    # -- conditions ---------------------------------------------------------------------------
    def forced(self, conditions: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """(event sub-fields, attr sub-fields) fixed by ``conditions`` (-1 = free), and exact
        values to write over conditioned columns on output."""
        ev = np.full(len(self.event_sizes), -1, dtype=np.int64)
        at = np.full(len(self.attr_sizes), -1, dtype=np.int64)
        exact: dict[str, Any] = {}
        by_name = {f.name: f for f in self.fields}
        for name, value in conditions.items():
            if name == self.label and LABEL_ATTR in by_name:
                spec, value_code = by_name[LABEL_ATTR], _label_value(value, self.label, self.label_dtype)
            elif name in by_name:
                spec, value_code = by_name[name], value
                exact[name] = value
            else:
                raise StreamsynthError(
                    f"the transformer does not learn column {name!r}, so it cannot condition on it",
                    hint="condition on a categorical, boolean or numeric column, or the label",
                )
            enc = self.encoders[spec.name]
            target = ev if spec.scope == "event" else at
            if spec.kind == "categorical":
                if value_code not in enc.values:
                    shown = ", ".join(repr(v) for v in enc.values[:12])
                    raise StreamsynthError(
                        f"condition {name}={value!r}: no such value in the training data",
                        hint=f"values seen: {shown}",
                    )
                target[spec.index] = enc.values.index(value_code)
            else:
                try:
                    number = float(value)
                except (TypeError, ValueError):
                    raise StreamsynthError(f"condition {name}={value!r} is not a number") from None
                bins, off = self._encode_numeric(enc, np.array([number]))
                target[spec.index], target[spec.index + 1] = int(bins[0]), int(off[0])
        if LABEL_ATTR in by_name and self.label in conditions:
            label_field = by_name[LABEL_ATTR]
            if at[label_field.index] == -1:
                raise StreamsynthError(f"condition on {self.label!r} could not be applied")
        return ev, at, exact

    # -- output -------------------------------------------------------------------------------
    def decode(
        self,
        *,
        entity_no: np.ndarray,
        seq: np.ndarray,
        time_us: np.ndarray,
        events: np.ndarray,
        attrs: np.ndarray,
        seed: int,
        exact: dict[str, Any],
        streams: int = 1,
    ) -> pl.DataFrame:
        """Contract rows (without label columns) from generated tokens, in the given order;
        ``streams``: how many streams a segmented model's sample holds (its entities)."""
        n = entity_no.shape[0]
        t = (time_us // self.resolution_us) * self.resolution_us
        cols: dict[str, pl.Series] = {
            EVENT_ID: event_ids(f"tf{seed}", entity_no, seq),
            self.time: pl.Series(self.time, t, dtype=pl.Int64).cast(TIME_DTYPE),
        }
        if not self.segmented:
            cols[self.entity] = self.entity_ids(entity_no, seed)
        for f in self.fields:
            if f.name in (GAP, LABEL_ATTR):
                continue
            enc = self.encoders[f.name]
            tokens = events if f.scope == "event" else attrs
            if f.kind == "categorical":
                series = enc.decode(tokens[:, f.index]).alias(f.name)
            else:
                if f.scope == "event":
                    u = uniform(seed, entity_no, seq, UNIFORM_OFFSET_KEY + f.index)
                else:  # one value per entity
                    u = uniform(seed, entity_no, 0, UNIFORM_OFFSET_KEY + 64 + f.index)
                bins = tokens[:, f.index]
                values = enc.decode(bins, class_offset(tokens[:, f.index + 1], u))
                grid = self.grids.get(f.name)
                if grid is not None:
                    key = seq if f.scope == "event" else 0
                    u_grid = None if grid.always else uniform(seed, entity_no, key, GRID_KEY + 1 + f.index)
                    ends = enc.knots[[0, -1]]
                    parent = cols.get(grid.by.column) if grid.by is not None else None  # decoded above
                    values = grid.snap_values(values, u_grid, *(np.exp(ends) if enc.log else ends), parent=parent)
                values = np.where(bins >= enc.size, np.nan, values)
                series = pl.Series(f.name, values, dtype=pl.Float64, nan_to_null=True)
            dtype = _DTYPES.get(f.dtype)
            if dtype is not None and series.dtype != dtype:
                series = series.cast(dtype, strict=False)
            if f.name in exact:
                series = pl.repeat(exact[f.name], n, dtype=series.dtype, eager=True).alias(f.name)
            cols[f.name] = series
        owner = self.stream_of(entity_no, streams) if self.segmented else entity_no
        for spec in self.idents:
            cols[spec.name] = self._fake(spec, entity_no, seq, seed, owner)
        for name in self.texts:
            cols[name] = pl.Series(name, [None] * n, dtype=pl.String)
        order = [EVENT_ID, self.time] + [self.entity] * (not self.segmented)
        order += [c for c in self.output_order if c in cols]
        return pl.DataFrame([cols[c] for c in order])

    def entity_ids(self, entity_no: np.ndarray, seed: int) -> pl.Series:
        """New ids: of the learned shape, faked for identifier kinds, else the training prefix, 'S'
        and the number."""
        if self.entity_kind is not None or self.entity_shape is not None:

            ids = generate(self.entity_kind, entity_no, child_seed(seed, "entity"), self.entity_shape)
            return ids.alias(self.entity)
        nums = pl.Series(entity_no.astype(np.int64)).cast(pl.String).str.zfill(self.entity_width)
        ids = pl.select(pl.concat_str([pl.lit(self.entity_prefix + "S"), nums])).to_series()
        return ids.alias(self.entity)

    @property
    def stream_segments(self) -> int:
        """Segments in one stream of a segmented model: its training segments, tiled."""
        return len(self.lifecycles.count)

    def stream_of(self, entity_no: np.ndarray, streams: int) -> np.ndarray:
        """The stream each segment (entity number) of a segmented model's sample belongs to: a
        window holds ``streams`` runs of every training segment in turn."""
        return (entity_no // self.stream_segments) % max(streams, 1)

    def _fake(self, spec: IdentSpec, entity_no: np.ndarray, seq: np.ndarray, seed: int,
              owner: np.ndarray) -> pl.Series:
        """Values of an identifier column; ``owner``: whose per-entity values they are (the
        entity, or a segmented model's stream)."""
        col_seed = child_seed(seed, "identifier", spec.name)
        e = entity_no.astype(np.uint64)
        if spec.mode == "entity":
            keys = owner
        elif spec.mode == "event" and spec.shape is not None:
            keys = event_key(entity_no, seq)  # dense, so a counter shape stays near the real range
        elif spec.mode == "event":
            keys = (e << np.uint64(24)) + seq.astype(np.uint64)
        else:  # an entity's few favourite values, drawn from a shared pool of the training size
            slot = hash64(col_seed, entity_no, seq, IDENT_KEY) % np.uint64(max(spec.per_entity, 1))
            keys = hash64(col_seed, owner, slot) % np.uint64(max(spec.cardinality, 1))
        return generate(spec.kind, keys.astype(np.int64), col_seed, spec.shape).alias(spec.name)

    # -- persistence ----------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "fields": [asdict(f) for f in self.fields],
            "encoders": {k: v.to_json() for k, v in self.encoders.items()},
            "idents": [asdict(i) for i in self.idents],
            "texts": self.texts,
            "entity": self.entity,
            "segmented": self.segmented,
            "entity_kind": self.entity_kind,
            "entity_shape": self.entity_shape,
            "entity_prefix": self.entity_prefix,
            "entity_width": self.entity_width,
            "time": self.time,
            "resolution_us": self.resolution_us,
            "resolution": {
                "time": self.time_grid.to_json() if self.time_grid is not None else None,
                "columns": {name: grid.to_json() for name, grid in self.grids.items()},
            },
            "label": self.label,
            "label_dtype": self.label_dtype,
            "output_order": self.output_order,
            "clock": self.clock.intensity.tolist() if self.clock is not None else None,
            "lifecycles": self.lifecycles.to_json() if self.lifecycles is not None else None,
            "no_nulls": self.no_nulls,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EventCodec:
        codec = cls()
        codec.fields = [FieldSpec(**f) for f in data["fields"]]
        codec.encoders = {k: encoder_from_json(v) for k, v in data["encoders"].items()}
        codec.idents = [IdentSpec(**i) for i in data["idents"]]
        for key in ("texts", "entity", "entity_kind", "entity_prefix", "entity_width", "time",
                    "resolution_us", "label", "label_dtype", "output_order"):
            setattr(codec, key, data[key])
        codec.entity_shape = data.get("entity_shape")  # absent in models saved before shapes
        codec.segmented = data.get("segmented", False)  # absent before segments
        resolution = data.get("resolution", {})  # absent in models saved before resolutions
        codec.time_grid = Grid.from_json(resolution.get("time"))
        codec.grids = {name: Grid.from_json(g) for name, g in resolution.get("columns", {}).items()}
        clock = data.get("clock")  # absent in models saved before the clock: real seconds
        codec.clock = WeeklyProfile(np.asarray(clock, dtype=np.float64)) if clock is not None else None
        codec.lifecycles = Lifecycles.from_json(data.get("lifecycles"))  # absent before lifecycles
        codec.no_nulls = data.get("no_nulls")
        codec._sizes()
        return codec


# -- helpers -----------------------------------------------------------------------------------
def _width(kind: str) -> int:
    return 1 if kind == "categorical" else 2


def _entity_constant(multi: pl.DataFrame, entity: str, column: str) -> bool:
    """True when every entity with several events has one value of ``column`` (nulls count)."""
    if multi.height == 0 or multi[entity].n_unique() < 5:
        return False
    per = multi.group_by(entity).agg(pl.col(column).n_unique().alias("n"))
    return bool((per["n"] == 1).all())


def _entity_labels(frame: pl.DataFrame, entity: str, label: str) -> pl.Series:
    """Per entity: its most frequent non-normal label (``fraud``, an alert tag) or ``normal``."""

    tagged = frame.select(pl.col(entity), *label_expressions(frame.schema[label], label))
    per = tagged.group_by(entity, maintain_order=True).agg(
        pl.col(LABEL).filter(pl.col(LABEL) != NORMAL).mode().sort().first().fill_null(NORMAL)
    )
    return per[LABEL].alias(LABEL_ATTR)


def _label_value(value: Any, column: str, dtype: str) -> str:
    """The entity label a condition on the label column asks for."""

    series = pl.Series(column, [value])
    if dtype == "Boolean":
        series = series.cast(pl.Boolean, strict=False)
    elif dtype.startswith(("Int", "UInt")):
        series = series.cast(pl.Int64, strict=False)
    else:
        series = series.cast(pl.String)
    frame = pl.DataFrame([series])
    return frame.select(label_expressions(series.dtype, column))[LABEL][0]


def _ident_spec(frame: pl.DataFrame, multi: pl.DataFrame, entity: str, name: str, kind: str) -> IdentSpec:

    kind = kind if kind in KINDS else "code"
    shape = _learned_shape(frame[name], kind)
    if _entity_constant(multi, entity, name):
        return IdentSpec(name=name, kind=kind, mode="entity", shape=shape)
    uniques = frame[name].n_unique()
    if uniques >= 0.98 * frame.height:
        return IdentSpec(name=name, kind=kind, mode="event", shape=shape)
    per = multi.group_by(entity).agg(pl.col(name).n_unique().alias("n"))["n"] if multi.height else None
    typical = int(per.median()) if per is not None and per.len() else 1
    return IdentSpec(
        name=name, kind=kind, mode="pool", per_entity=max(typical, 1), cardinality=uniques, shape=shape)


def _learned_shape(values: pl.Series, kind: str | None) -> dict[str, Any] | None:
    """The format of ids of no known kind; known kinds (cards, IPs, emails) keep their generators."""

    shape = learn_shape(values) if kind in (None, "code") else None
    return shape.to_json() if shape is not None else None


def _resolution_us(times: pl.Series) -> int:
    """The coarsest of 1 us, 1 ms, 1 s, 1 min that every training timestamp is a multiple of."""
    us = times.dt.epoch("us").drop_nulls().to_numpy()
    for step in (60_000_000, 1_000_000, 1_000):
        if us.size and not (us % step).any():
            return step
    return 1
