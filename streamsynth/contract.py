"""The stream contract every layer speaks: time-ordered polars batches with label columns.

A stream is an ``Iterator[pl.DataFrame]``; each batch is sorted by event time, batches come in
nondecreasing time order and share one set of columns. This module holds the column names,
the event-id scheme, event times as UTC, the label columns learned from a ground-truth column,
the k-way merge, cutting and re-batching, and the checker that a stream keeps the contract.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import polars as pl

from streamsynth.errors import StreamsynthError

EVENT_ID = "event_id"
LABEL = "label"
IS_ANOMALY = "is_anomaly"
SCENARIO_ID = "scenario_id"
NORMAL = "normal"

#: Columns the contract adds to every stream, with their types.
CONTRACT_COLUMNS: dict[str, pl.DataType] = {
    EVENT_ID: pl.String(),
    LABEL: pl.String(),
    IS_ANOMALY: pl.Boolean(),
    SCENARIO_ID: pl.String(),
}
LABEL_COLUMNS = (LABEL, IS_ANOMALY, SCENARIO_ID)
TIME_DTYPE = pl.Datetime("us", "UTC")

Stream = Iterator[pl.DataFrame]
ISO_EXAMPLE = "2024-05-01T10:30:00Z"


def as_utc(moment: datetime | str) -> datetime:
    """An aware UTC datetime from a datetime (a naive one is taken as UTC) or ISO 8601 text."""
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment.strip())
        except ValueError:
            raise StreamsynthError(
                f"cannot read {moment!r} as a time", hint=f"use ISO 8601, e.g. {ISO_EXAMPLE}"
            ) from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def utc_field(value: Any) -> Any:
    """:func:`as_utc` for a pydantic ``BeforeValidator``: text and datetimes become UTC; any
    other value is left for pydantic to accept or reject."""
    if not isinstance(value, str | datetime):
        return value
    try:
        return as_utc(value)
    except StreamsynthError:
        raise ValueError(f"expected an ISO 8601 time such as {ISO_EXAMPLE}, got {value!r}") from None


def label_expressions(dtype: pl.DataType, column: str) -> list[pl.Expr]:
    """``label``/``is_anomaly`` from a learned ground-truth column (``is_fraud`` -> ``fraud``)."""
    col = pl.col(column)
    if dtype == pl.Boolean or dtype.is_integer():
        positive = column.lower().removeprefix("is_") or column
        flag = col.cast(pl.Boolean).fill_null(False)
        return [
            pl.when(flag).then(pl.lit(positive)).otherwise(pl.lit(NORMAL)).alias(LABEL),
            flag.alias(IS_ANOMALY),
        ]
    text = col.cast(pl.String)
    normal = text.is_null() | text.str.to_lowercase().is_in(["-", "normal", "none", "0", "false", "benign", ""])
    return [
        pl.when(normal).then(pl.lit(NORMAL)).otherwise(text).alias(LABEL),
        (~normal).alias(IS_ANOMALY),
    ]


def event_ids(namespace: str, entity_no: np.ndarray | pl.Series, seq: np.ndarray | pl.Series) -> pl.Series:
    """Deterministic event ids ``{namespace}-{entity_no}-{seq}``.

    Ids depend on the entity's number in the population and the event's position in that
    entity's sequence, not on batch or shard, so sharded generation yields the same ids as
    unsharded generation. ``namespace`` keeps streams apart (a model seed, a scenario id).
    """
    frame = pl.DataFrame({"e": pl.Series(entity_no), "s": pl.Series(seq)})
    return frame.select(pl.format(f"{namespace}-{{}}-{{}}", "e", "s").alias(EVENT_ID)).to_series()


def row_event_ids(namespace: str, start: int, n: int) -> pl.Series:
    """Ids ``{namespace}-{position}`` for rows of a recorded file, by position in the file."""
    positions = pl.int_range(start, start + n, eager=True, dtype=pl.Int64)
    return pl.select(pl.format(f"{namespace}-{{}}", positions).alias(EVENT_ID)).to_series()


def with_label_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """Add ``label``/``is_anomaly``/``scenario_id`` as normal rows where they are missing."""
    missing = []
    if LABEL not in frame.columns:
        missing.append(pl.lit(NORMAL, dtype=pl.String).alias(LABEL))
    if IS_ANOMALY not in frame.columns:
        missing.append(pl.lit(False, dtype=pl.Boolean).alias(IS_ANOMALY))
    if SCENARIO_ID not in frame.columns:
        missing.append(pl.lit(None, dtype=pl.String).alias(SCENARIO_ID))
    return frame.with_columns(missing) if missing else frame


def order_columns(frame: pl.DataFrame, time: str, entity: str | None) -> pl.DataFrame:
    """Put columns in contract order: event_id, time, entity, data columns, label columns."""
    head = [c for c in (EVENT_ID, time, entity) if c and c in frame.columns]
    tail = [c for c in LABEL_COLUMNS if c in frame.columns]
    middle = [c for c in frame.columns if c not in head and c not in tail]
    return frame.select(head + middle + tail)


def check_count(value: int | None, name: str, *, minimum: int = 1) -> int | None:
    """``value`` as an int if it is a whole number >= ``minimum`` (``None`` passes: no limit).

    The one check behind every count a user gives (events, entities, batch size), so that
    ``-n -5`` or ``batch_size=0`` is an error rather than an empty or endless stream.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise StreamsynthError(
            f"{name} must be a whole number of at least {minimum}, got {value!r}",
            hint=f"give {name} as a count >= {minimum}, or leave it out",
        )
    return int(value)


def rebatch(stream: Iterable[pl.DataFrame], batch_size: int) -> Stream:
    """Re-cut a stream into batches of exactly ``batch_size`` rows (the last may be shorter).

    Zero-copy where it can be: a batch already of the asked size passes through, others are
    joined as chunks (no rechunk) and sliced.
    """
    check_count(batch_size, "batch size")
    pending: list[pl.DataFrame] = []
    pending_rows = 0
    for batch in stream:
        if batch.height == 0:
            continue
        if not pending and batch.height == batch_size:
            yield batch
            continue
        pending.append(batch)
        pending_rows += batch.height
        if pending_rows < batch_size:
            continue
        merged = pl.concat(pending, how="vertical", rechunk=False)
        full = (merged.height // batch_size) * batch_size
        for offset in range(0, full, batch_size):
            yield merged.slice(offset, batch_size)
        rest = merged.slice(full)
        pending = [rest] if rest.height else []
        pending_rows = rest.height
    if pending_rows:
        yield pl.concat(pending, how="vertical", rechunk=False)


def take(stream: Iterable[pl.DataFrame], n_events: int) -> Stream:
    """The first ``n_events`` events of a stream, then stop (closing the source)."""
    remaining = n_events
    iterator = iter(stream)
    try:
        while remaining > 0:
            batch = next(iterator, None)
            if batch is None:
                return
            if batch.height > remaining:
                batch = batch.head(remaining)
            remaining -= batch.height
            yield batch
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def until(stream: Iterable[pl.DataFrame], time: str, end: datetime | None = None, *,
          after: timedelta | None = None) -> Stream:
    """Events strictly before ``end``, then stop (closing the source). Without ``end``, the end is
    the first event's time plus ``after``. Empty batches are skipped."""
    iterator = iter(stream)
    try:
        for batch in iterator:
            if batch.height == 0:
                continue
            if end is None:
                if after is None:
                    raise ValueError("until() needs an end or an after")
                end = batch[time][0] + after
            # compared in polars: a time past year 9999 has no Python datetime
            if (batch[time].tail(1) < end).item():
                yield batch
                continue
            head = batch.filter(pl.col(time) < end)
            if head.height:
                yield head
            return
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def merge(streams: Sequence[Iterable[pl.DataFrame]], time: str, batch_size: int = 10_000) -> Stream:
    """K-way merge of time-ordered streams into one time-ordered stream, in flat memory.

    Holds at most one batch per source. Each round takes, from every buffer, the rows at or
    before the *watermark* (the smallest last-timestamp among the buffers): no source can
    later produce an earlier row, and at least one buffer empties each round. Ties keep the
    order of ``streams`` so the result is deterministic.
    """
    iterators = [iter(s) for s in streams]
    buffers: list[pl.DataFrame | None] = [None] * len(iterators)

    def merged_rounds() -> Stream:
        while True:
            for i, it in enumerate(iterators):
                while it is not None and (buffers[i] is None or buffers[i].height == 0):
                    nxt = next(it, None)
                    if nxt is None:
                        iterators[i] = None
                        buffers[i] = None
                        break
                    buffers[i] = nxt
            live = [i for i, b in enumerate(buffers) if b is not None and b.height]
            if not live:
                return
            watermark = min(buffers[i][time][-1] for i in live)
            parts = []
            for i in live:
                buf = buffers[i]
                cut = int(buf[time].search_sorted(watermark, side="right"))
                if cut:
                    parts.append(buf.slice(0, cut))
                    buffers[i] = buf.slice(cut)
            yield pl.concat(parts, how="vertical").sort(time, maintain_order=True)

    return rebatch(merged_rounds(), batch_size)


@dataclass
class StreamChecker:
    """Checks batches against the contract as they pass; raises on the first violation.

    Tracks every event_id seen (a set), so use it in tests and ``verify``-style tools, not on
    endless production streams.
    """

    time: str
    entity: str | None = None
    check_unique_ids: bool = True
    columns: dict[str, pl.DataType] | None = None
    events: int = 0
    batches: int = 0
    _last_time: object = None
    _seen: set[str] = field(default_factory=set)

    def check(self, batch: pl.DataFrame) -> pl.DataFrame:
        where = f"batch {self.batches} (events {self.events}..{self.events + batch.height - 1})"
        schema = dict(batch.schema)
        if self.columns is None:
            self._check_first(schema, where)
            self.columns = schema
        elif schema != self.columns:
            raise StreamsynthError(
                f"stream contract: {where} has columns {_describe(schema)}, "
                f"earlier batches had {_describe(self.columns)}",
                hint="every batch of a stream must have the same columns and types",
            )
        if batch.height:
            times = batch[self.time]
            if times.null_count():
                raise StreamsynthError(f"stream contract: {where} has null event times in {self.time!r}")
            if not times.is_sorted():
                raise StreamsynthError(f"stream contract: {where} is not sorted by {self.time!r}")
            if self._last_time is not None and times[0] < self._last_time:
                raise StreamsynthError(
                    f"stream contract: {where} starts at {times[0]}, before the previous batch "
                    f"ended ({self._last_time})",
                    hint="batches must come in nondecreasing time order; merge sources with "
                    "streamsynth.contract.merge",
                )
            self._last_time = times[-1]
            ids = batch[EVENT_ID]
            if ids.null_count():
                raise StreamsynthError(f"stream contract: {where} has null event ids")
            if self.check_unique_ids:
                fresh = set(ids.to_list())
                dup = len(fresh) < batch.height or not self._seen.isdisjoint(fresh)
                if dup:
                    repeated = ids.filter(ids.is_duplicated()).to_list() or sorted(self._seen & fresh)
                    raise StreamsynthError(
                        f"stream contract: {where} repeats event id {repeated[0]!r}"
                    )
                self._seen |= fresh
        self.events += batch.height
        self.batches += 1
        return batch

    def _check_first(self, schema: dict[str, pl.DataType], where: str) -> None:
        required = dict(CONTRACT_COLUMNS)
        required[self.time] = TIME_DTYPE
        if self.entity:
            required[self.entity] = pl.String()
        for name, dtype in required.items():
            if name not in schema:
                raise StreamsynthError(
                    f"stream contract: {where} has no column {name!r}",
                    hint=f"streams need {', '.join(required)}; add label columns with "
                    "streamsynth.contract.with_label_columns",
                )
            if schema[name] != dtype:
                raise StreamsynthError(
                    f"stream contract: column {name!r} is {schema[name]}, expected {dtype}"
                )


def check_stream(
    stream: Iterable[pl.DataFrame], time: str, entity: str | None = None
) -> Stream:
    """Pass a stream through unchanged, raising :class:`StreamsynthError` on a violation."""
    checker = StreamChecker(time=time, entity=entity)
    for batch in stream:
        yield checker.check(batch)


def _describe(schema: dict[str, pl.DataType]) -> str:
    return "[" + ", ".join(f"{k}: {v}" for k, v in schema.items()) + "]"
