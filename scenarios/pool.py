"""The base rows fraud injectors draw victims and template events from, the same on every shard.

A fraud injector takes its victims and templates from the base rows just before its window. On a
sharded run every shard has to make the same choice, so those rows come from the whole base (the
model sampled over a short span before the window, or the file read unsharded), not from the
shard's own rows; each shard then keeps the injected rows of the entities it generates.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import NamedTuple

import numpy as np
import polars as pl

from streamsynth import rng

#: About this many base rows make a pool: enough distinct victims, templates and quantiles.
POOL_ROWS = 2_000
#: Rows read from the base's start to size the first span tried (see :meth:`Pool.calibrate`).
PROBE_ROWS = 200
FIRST_LOOKBACK = timedelta(seconds=1)
MAX_LOOKBACK = timedelta(days=7)

Shard = tuple[int, int]
#: ``window(lo, hi, shard)``: time-ordered base batches that cover ``lo <= time < hi`` (they may
#: start earlier and run on past ``hi``), of the whole base (``shard`` None) or of shard K/N only.
Window = Callable[[datetime, datetime, Shard | None], Iterator[pl.DataFrame]]


class _Found(NamedTuple):
    span: tuple[datetime, datetime]
    rows: pl.DataFrame  # the pool
    entities: pl.Series  # every entity with a row in ``span``


class Pool:
    """Recent base rows before a time, read through ``window``; and which entities are this shard's."""

    def __init__(self, window: Window, time: str, entity: str | None, shard: Shard | None = None) -> None:
        self.window, self.time, self.entity = window, time, entity
        self.shard = shard if shard is not None and shard[1] > 1 else None
        self.anchor: datetime | None = None
        self._first: timedelta | None = None
        self._found: dict[datetime, _Found] = {}
        self._mine: dict[datetime, pl.Series] = {}

    def calibrate(self, anchor: datetime) -> None:
        """Where the base starts (the same on every shard): the first ``PROBE_ROWS`` rows from
        there tell how long a span holds a pool, so finding one takes one read of the base or two."""
        self.anchor = anchor

    def add(self, batch: pl.DataFrame) -> None:
        """A base batch as the stream passes it (only a :class:`StreamPool` keeps them)."""

    def rows(self, end: datetime) -> pl.DataFrame:
        """The whole base's last ``POOL_ROWS`` rows before ``end`` (with every row at the cut's
        time), from up to ``MAX_LOOKBACK`` back; a window that opens with the base, so has none
        before it, gets the base's first rows from ``end`` on instead."""
        return self._find(end).rows

    def owns(self, end: datetime, rows: pl.DataFrame) -> pl.Series:
        """Which of ``rows`` (injected rows whose victims came from ``rows(end)``) this shard
        emits: those of entities it generates; an entity the base lacks (a new mule account) goes
        by a stable hash of its id, and rows without an entity column come from shard 0."""
        if self.shard is None:
            return pl.Series([True] * rows.height, dtype=pl.Boolean)
        k, n = self.shard
        if self.entity is None:
            return pl.Series([k == 0] * rows.height, dtype=pl.Boolean)
        found = self._find(end)
        if end not in self._mine:
            self._mine[end] = _entities(self._read(*found.span, self.shard), self.entity)
        entities = rows[self.entity]
        known = entities.is_in(found.entities.implode()).fill_null(False).to_numpy()
        mine = entities.is_in(self._mine[end].implode()).fill_null(False).to_numpy()
        hashed = np.array([rng.child_seed(0, str(e)) % n == k for e in entities.to_list()], dtype=bool)
        return pl.Series(np.where(known, mine, hashed))

    def _find(self, end: datetime) -> _Found:
        if end not in self._found:
            span, frame = self._grow(end, forward=False)
            if frame.height == 0:
                span, frame = self._grow(end, forward=True)
            entities = _entities(frame, self.entity)
            self._found[end] = _Found(span, _cut(frame, self.time, forward=span[0] == end), entities)
        return self._found[end]

    def _grow(self, end: datetime, forward: bool) -> tuple[tuple[datetime, datetime], pl.DataFrame]:
        """The first span next to ``end``, in steps sized by the rows found so far, that holds
        ``POOL_ROWS`` rows, or else the one ``MAX_LOOKBACK`` long. Every step is a function of
        the whole base alone, so every shard (and every batch size) ends on the same span."""
        lookback = self._first_lookback()
        while True:
            span = (end, end + lookback) if forward else (end - lookback, end)
            frame = self._read(*span, None)
            if frame.height >= POOL_ROWS or lookback >= MAX_LOOKBACK:
                return span, frame
            factor = 16.0 if frame.height == 0 else max(2.0, 3 * POOL_ROWS / frame.height)
            lookback = min(lookback * factor, MAX_LOOKBACK)

    def _first_lookback(self) -> timedelta:
        if self._first is None:
            self._first = FIRST_LOOKBACK
            if self.anchor is not None:
                probe = self._read(self.anchor, self.anchor + MAX_LOOKBACK, None, limit=PROBE_ROWS)
                if probe.height > 1:
                    full = probe.height >= PROBE_ROWS
                    seconds = (probe[self.time][-1] - self.anchor if full else MAX_LOOKBACK).total_seconds()
                    guess = timedelta(seconds=6 * POOL_ROWS * seconds / probe.height)
                    self._first = min(max(guess, FIRST_LOOKBACK), MAX_LOOKBACK)
        return self._first

    def _read(self, lo: datetime, hi: datetime, shard: Shard | None, limit: int | None = None) -> pl.DataFrame:
        """The rows with ``lo <= time < hi`` (the first ``limit`` of them), closing the window's
        stream as soon as it has them."""
        stream = self.window(lo, hi, shard)
        parts, count = [], 0
        try:
            for batch in stream:
                part = batch.filter((pl.col(self.time) >= lo) & (pl.col(self.time) < hi))
                parts.append(part if limit is None else part.head(limit - count))
                count += parts[-1].height
                if (batch.height and batch[self.time][-1] >= hi) or (limit is not None and count >= limit):
                    break
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()
        return pl.concat(parts, how="vertical") if parts else pl.DataFrame()


class StreamPool(Pool):
    """The stream's own recent rows, for a base given as batches and not sharded: the engine adds
    each base batch until the last fraud window has opened."""

    def __init__(self, time: str, entity: str | None, until: datetime) -> None:
        super().__init__(self._window, time, entity)
        self.until = until
        self.seen: pl.DataFrame | None = None
        self.closed = False

    def calibrate(self, anchor: datetime) -> None:
        """Nothing to size: spans are read from memory."""

    def add(self, batch: pl.DataFrame) -> None:
        if self.closed or batch.height == 0:
            return
        parts = [batch] if self.seen is None else [self.seen, batch]
        # Enough rows before the current batch for a pool, whatever the batch size.
        self.seen = pl.concat(parts, how="vertical").tail(2 * POOL_ROWS + batch.height)
        self.closed = batch[self.time][0] > self.until

    def _window(self, lo: datetime, hi: datetime, shard: Shard | None) -> Iterator[pl.DataFrame]:
        return iter([self.seen] if self.seen is not None else [])


def _entities(frame: pl.DataFrame, entity: str | None) -> pl.Series:
    return frame[entity].unique() if entity is not None and frame.height else pl.Series(dtype=pl.String)


def _cut(frame: pl.DataFrame, time: str, forward: bool) -> pl.DataFrame:
    """The ``POOL_ROWS`` rows nearest the window (first ones going forward, last ones going back),
    plus the rows that share the cut's time, so the pool does not depend on the order of ties."""
    if frame.height <= POOL_ROWS:
        return frame
    if forward:
        return frame.filter(pl.col(time) <= frame[time][POOL_ROWS - 1])
    return frame.filter(pl.col(time) >= frame[time][frame.height - POOL_ROWS])


__all__ = ["POOL_ROWS", "Pool", "StreamPool", "Window"]
