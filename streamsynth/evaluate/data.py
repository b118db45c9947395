"""Line up a real and a synthetic event table for evaluation: columns by role, sorted sequences.

Both tables are sorted by (entity, time) and get two helper columns: ``__gap`` (seconds since
the entity's previous event, null for its first) and ``__seq`` (a dense entity number).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from streamsynth import io
from streamsynth.contract import IS_ANOMALY, LABEL, TIME_DTYPE
from streamsynth.errors import StreamsynthError
from streamsynth.schema import Role, Schema

GAP = "__gap"
SEQ = "__seq"
POSITIVE = "__positive"

#: Label values that mean "not an incident" when the label column is a string.
NEGATIVE_LABELS = ("normal", "0", "false", "no", "legit", "benign", "-", "")

Table = pl.DataFrame | str | Path


@dataclass
class Prepared:
    real: pl.DataFrame
    synth: pl.DataFrame
    schema: Schema
    numeric: list[str]
    categorical: list[str]  # categorical and boolean columns, as strings
    entity: str | None
    time: str | None
    label: str | None  # the column whose positives are the "fraud" class; None if unlabelled

    @property
    def has_sequences(self) -> bool:
        return self.time is not None


def load(table: Table, name: str, time: str | None = None) -> pl.DataFrame:
    if isinstance(table, pl.DataFrame):
        if table.height == 0:
            raise StreamsynthError(f"the {name} table has no rows", hint="give data with rows")
        return table
    return io.read(table, time=time)


def prepare(real: Table, synth: Table, schema: Schema | None = None) -> Prepared:
    """Read both sides, resolve the schema (inferred from the real side by default), sort."""
    time_hint = schema.time if schema else None
    real_frame = _timed(load(real, "real", time_hint), time_hint, "real data")
    synth_frame = load(synth, "synthetic", time_hint)
    schema = schema or Schema.infer(real_frame)
    time = schema.time if schema.time in real_frame.columns else None
    if time and time not in synth_frame.columns:
        _missing(time, synth_frame, "synthetic data")
    if time:
        synth_frame = _timed(synth_frame, time, "synthetic data")
    entity = schema.entity if schema.entity in real_frame.columns else None
    label = _label_column(schema, real_frame, synth_frame)
    numeric, categorical = [], []
    for col in schema.columns:
        if col.name in (label, entity, time) or col.name not in real_frame.columns:
            continue
        if col.role is Role.NUMERIC:
            numeric.append(col.name)
        elif col.role in (Role.CATEGORICAL, Role.BOOLEAN):
            categorical.append(col.name)
    for name in [entity, *numeric, *categorical]:
        if name and name not in synth_frame.columns:
            _missing(name, synth_frame, "synthetic data")
    frames = []
    for frame, source in ((real_frame, "real data"), (synth_frame, "synthetic data")):
        frames.append(_tidy(frame, source, numeric, categorical, entity, time, label))
    return Prepared(frames[0], frames[1], schema, numeric, categorical, entity, time, label)


def _timed(frame: pl.DataFrame, time: str | None, source: str) -> pl.DataFrame:
    if time and frame.schema.get(time) == TIME_DTYPE:
        return frame
    return io.normalize_time(frame, time=time, source=source)


def _missing(name: str, frame: pl.DataFrame, source: str) -> None:
    raise StreamsynthError(
        f"{source} has no column {name!r}",
        hint=f"columns in {source}: {', '.join(frame.columns)}; give a schema (--schema) "
        "that matches both tables",
    )


def _label_column(schema: Schema, real: pl.DataFrame, synth: pl.DataFrame) -> str | None:
    for name in (schema.label, IS_ANOMALY, LABEL):
        if name and name in real.columns and name in synth.columns:
            return name
    return None


def positive(frame: pl.DataFrame, name: str) -> pl.Expr:
    """True where the label column marks an incident (fraud, anomaly, attack)."""
    dtype = frame.schema[name]
    col = pl.col(name)
    if dtype == pl.Boolean:
        return col.fill_null(False)
    if dtype.is_numeric():
        return col.fill_null(0) != 0
    lowered = col.cast(pl.String).str.to_lowercase().str.strip_chars()
    return ~lowered.fill_null("").is_in(list(NEGATIVE_LABELS))


def _tidy(
    frame: pl.DataFrame,
    source: str,
    numeric: list[str],
    categorical: list[str],
    entity: str | None,
    time: str | None,
    label: str | None,
) -> pl.DataFrame:
    exprs: list[pl.Expr] = []
    for name in numeric:
        dtype = frame.schema[name]
        duration = isinstance(dtype, pl.Duration)  # compared as counts of its unit
        if not (dtype.is_numeric() or dtype == pl.Boolean or dtype == pl.Null or duration):
            raise StreamsynthError(
                f"{source}: column {name!r} is {dtype}, but the schema says numeric",
                hint="fix the column's type or its role in the schema",
            )
        exprs.append((pl.col(name).to_physical() if duration else pl.col(name)).cast(pl.Float64).fill_nan(None))
    exprs += [pl.col(name).cast(pl.String) for name in categorical]
    if entity:
        exprs.append(pl.col(entity).cast(pl.String))
    if time:
        exprs.append(pl.col(time))
    if label:
        exprs += [pl.col(label), positive(frame, label).alias(POSITIVE)]
    out = frame.select(exprs)
    keys = [k for k in (entity, time) if k]
    if keys:
        out = out.sort(keys, maintain_order=True)
    seq = pl.col(entity).rank("dense").cast(pl.Int64) - 1 if entity else pl.lit(0, dtype=pl.Int64)
    out = out.with_columns(seq.alias(SEQ))
    if time:
        gap = pl.col(time).diff().dt.total_microseconds().cast(pl.Float64) / 1e6
        out = out.with_columns((gap.over(SEQ) if entity else gap).alias(GAP))
    return out
