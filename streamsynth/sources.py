"""What a stream comes from: the :class:`Source` every opener returns, and recorded files.

A recorded file (CSV, Parquet, JSON Lines, or a folder of them) becomes a contract stream here:
sorted by time, with event ids and label columns filled in, cut to exact batches, optionally one
shard of its entities. The app layer's source table (``streamsynth.pipeline``) opens models, rules
schemas and scenarios; the scenario layer reads a recorded base again through
:func:`open_recorded`, so neither calls back up into the app layer.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from streamsynth import io
from streamsynth.contract import (
    EVENT_ID,
    LABEL,
    label_expressions,
    order_columns,
    rebatch,
    row_event_ids,
    take,
    until,
    with_label_columns,
)
from streamsynth.errors import StreamsynthError
from streamsynth.rng import stable_int
from streamsynth.schema import Schema

#: files below this size are read whole (and sorted); larger ones stream in file order
READ_WHOLE_BYTES = 64 * 2**20


@dataclass
class Source:
    """A resolved source: its stream and what the manifest should say about it.

    ``model`` is the synthesizer behind a model, rules or demo source (typed loosely: this layer
    sits below the models); ``path`` is the file behind a recorded source.
    """

    stream: Iterator[pl.DataFrame]
    time: str
    entity: str | None
    description: dict[str, Any] = field(default_factory=dict)
    model: Any = None
    path: Path | None = None


def open_recorded(
    path: Path, *, batch_size: int, shard: tuple[int, int] | None = None, end: datetime | None = None,
    n_events: int | None = None,
) -> Source:
    """A recorded file as a contract stream, sorted by time, with ids and labels filled in; events
    before ``end`` and the first ``n_events`` of them."""
    stream, time, entity = _file_stream(path, batch_size=batch_size, shard=shard)
    if end is not None:
        stream = until(stream, time, end)
    if n_events is not None:
        stream = take(stream, n_events)
    return Source(stream, time, entity, {"kind": "file", "path": str(path)}, path=path)


def _file_stream(
    path: Path, *, batch_size: int, shard: tuple[int, int] | None
) -> tuple[Iterator[pl.DataFrame], str, str | None]:
    head = io.read(path) if path.is_file() and path.stat().st_size < READ_WHOLE_BYTES else None
    frame = head if head is not None else next(io.iter_batches(path, batch_size=50_000))
    schema = Schema.infer(frame)
    if schema.time is None:
        raise StreamsynthError(
            f"{path} has no event-time column to replay by",
            hint="name one with --time, or add a timestamp column",
        )
    namespace = path.stem

    def batches() -> Iterator[pl.DataFrame]:
        source = [frame] if head is not None else io.iter_batches(path, batch_size=batch_size)
        position = 0
        last = None
        for batch in source:
            batch = batch.sort(schema.time, maintain_order=True)
            if last is not None and batch.height and batch[schema.time][0] < last:
                raise StreamsynthError(
                    f"{path} is not sorted by {schema.time!r} (at row {position}); large files "
                    "are replayed in file order",
                    hint="sort the file by its time column first",
                )
            if batch.height:
                last = batch[schema.time][-1]
            if EVENT_ID not in batch.columns:
                batch = batch.with_columns(row_event_ids(namespace, position, batch.height))
            position += batch.height
            if LABEL not in batch.columns and schema.label:
                batch = batch.with_columns(label_expressions(batch.schema[schema.label], schema.label))
            batch = order_columns(with_label_columns(batch), schema.time, schema.entity)
            if shard is not None and schema.entity:
                members = shard_members(batch[schema.entity], shard).to_list()  # a list: is_in is unambiguous
                batch = batch.filter(pl.col(schema.entity).is_in(members))
            yield batch

    # file batches and shard filtering leave batches of any size; the contract's are exact
    return rebatch(batches(), batch_size), schema.time, schema.entity


def shard_members(entities: pl.Series, shard: tuple[int, int]) -> pl.Series:
    """The entity ids of shard K/N, by a hash of the id that is stable across runs and hosts."""
    k, n = shard
    unique = entities.unique()
    return unique.filter(pl.Series([stable_int(str(v)) % n == k for v in unique.to_list()]))
