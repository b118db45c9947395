"""Columns that continue the previous event's: an aircraft leaves from where it last landed.

Within an entity, a column can repeat another column of the entity's previous event: a flight's
``origin`` is the previous flight's ``dest``, a transfer's ``from_account`` the previous one's
``to_account``, a state machine's ``from_state`` the last ``to_state``. No model of single rows
keeps that, and a discriminator that sees the previous event finds it at once. :func:`discover`
finds them at fit (a column equal to another's previous value in at least :data:`THRESHOLD` of
the events that have a previous one, where it does not simply repeat its own previous value);
:class:`ContinuityKeeper` sets them in a stream, carrying each entity's last value across batches,
before the dependencies' lookups (a route's distance follows the corrected origin).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from streamsynth.dependencies import Dependency, candidates
from streamsynth.rng import child_seed
from streamsynth.schema import Schema

#: the share of events with a previous one in which the column must equal the other's previous value
THRESHOLD = 0.98
#: the search reads at most this many rows (whole entities), and needs this many events with a previous one
SEARCH_ROWS = 20_000
MIN_PAIRS = 50
MAX_COLUMNS = 16
#: partner values kept per value of a continued column
MAX_PARTNERS = 64


@dataclass
class Continuity:
    """``column`` equals ``follows`` of the entity's previous event in ``support`` of events."""

    column: str
    follows: str
    support: float
    #: a column the continued one forms a key with (a route's origin and dest fix its distance):
    #: per value of the continued column, the partner values seen with it and their counts, so
    #: a continued origin gets a destination flown from it, not one that makes a new route
    partner: str | None = None
    partners: dict[str, list[list[Any]]] = field(default_factory=dict, repr=False)

    def describe(self) -> str:
        return f"{self.column} = previous {self.follows} ({self.support:.2%} of events)"

    def to_json(self) -> dict[str, Any]:
        return {"column": self.column, "follows": self.follows, "support": self.support, "partner": self.partner,
                "partners": self.partners}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Continuity:
        return cls(data["column"], data["follows"], float(data["support"]), data.get("partner"),
                   data.get("partners") or {})


def discover(frame: pl.DataFrame, schema: Schema, dependencies: list[Dependency] = (), *,
             threshold: float = THRESHOLD) -> list[Continuity]:
    """The continuities of ``frame`` (sorted by entity and time), in applying order: a column
    another one follows is set before it. A continued column that is half of a dependency's
    pair of determinants gets that pair's other half as its partner."""
    entity = schema.entity
    if entity is None or frame.height < 2:
        return []
    names = [n for n in candidates(frame, schema) if n != schema.label][:MAX_COLUMNS]
    if len(names) < 2:
        return []
    rows = _whole_entities(frame, entity)
    text = rows.select(entity, *[pl.col(n).cast(pl.String) for n in names])
    previous = text.select(pl.col(n).shift(1).over(entity).alias(n) for n in names)
    has_previous = (text[entity] == text[entity].shift(1)).fill_null(False)
    if int(has_previous.sum()) < MIN_PAIRS:
        return []
    now, before = text.filter(has_previous), previous.filter(has_previous)
    found: dict[str, tuple[float, str]] = {}
    for column in names:
        repeats = float((now[column] == before[column]).fill_null(False).mean())
        for other in names:
            if other == column:
                continue
            share = float((now[column] == before[other]).fill_null(False).mean())
            if share >= threshold and share > repeats and share > found.get(column, (0.0, ""))[0]:
                found[column] = (share, other)
    chosen: dict[str, Continuity] = {}
    for column, (share, other) in sorted(found.items(), key=lambda kv: -kv[1][0]):
        if not _reaches(other, column, chosen):
            chosen[column] = Continuity(column, other, share)
    for rule in chosen.values():
        pair = next((d.determinants for d in dependencies
                     if len(d.determinants) == 2 and rule.column in d.determinants), None)
        if pair is not None:
            rule.partner = pair[1] if pair[0] == rule.column else pair[0]
            rule.partners = _partners(frame, rule.column, rule.partner)
    return _followed_first(chosen)


def _partners(frame: pl.DataFrame, column: str, partner: str) -> dict[str, list[list[Any]]]:
    """Per value of ``column`` (as text), the ``partner`` values seen with it and how often."""
    counts = (frame.group_by(pl.col(column).cast(pl.String).alias("__key"), partner).len()
              .sort("len", descending=True).group_by("__key", maintain_order=True)
              .head(MAX_PARTNERS).drop_nulls("__key"))
    table = counts.group_by("__key").agg(pl.col(partner), pl.col("len"))
    return {key: [values, weights] for key, values, weights in table.iter_rows()}


def _whole_entities(frame: pl.DataFrame, entity: str) -> pl.DataFrame:
    if frame.height <= SEARCH_ROWS:
        return frame
    ids = frame[entity].unique(maintain_order=True)
    share = SEARCH_ROWS / frame.height
    keep = ids.sample(max(1, int(len(ids) * share)), seed=0)
    return frame.filter(pl.col(entity).is_in(keep.implode()))


def _reaches(start: str, goal: str, chosen: dict[str, Continuity]) -> bool:
    while start in chosen:
        if start == goal:
            return True
        start = chosen[start].follows
    return start == goal


def _followed_first(chosen: dict[str, Continuity]) -> list[Continuity]:
    order: list[Continuity] = []

    def visit(column: str) -> None:
        rule = chosen.get(column)
        if rule is None or rule in order:
            return
        visit(rule.follows)
        order.append(rule)

    for column in sorted(chosen):
        visit(column)
    return order


class ContinuityKeeper:
    """Sets each continuity in a stream's batches (time-ordered): a row takes the followed
    column's value of its entity's previous row, in the batch or carried from an earlier one; an
    entity's first event in the stream keeps the model's value. One keeper serves one stream."""

    def __init__(self, rules: list[Continuity], entity: str | None, seed: int = 0) -> None:
        self.rules = [r for r in rules if entity is not None]
        self.entity = entity
        self.seed = seed
        self._last: dict[str, dict[Any, Any]] = {r.column: {} for r in self.rules}
        self._partner_cache: dict[str, dict[str, Any]] = {}
        self._keys = {r.column: child_seed(seed, "partner", r.column).to_bytes(8, "little") for r in self.rules}

    def __call__(self, batch: pl.DataFrame) -> pl.DataFrame:
        if batch.height == 0:
            return batch
        for rule in self.rules:
            if rule.column in batch.columns and rule.follows in batch.columns:
                batch = self._apply(rule, batch)
        return batch

    def _apply(self, rule: Continuity, batch: pl.DataFrame) -> pl.DataFrame:
        """Row by row, as each row's partner may be drawn again and the entity's next row
        continues from the partner it ends with."""
        last = self._last[rule.column]
        entities = batch[self.entity].to_list()
        values = batch[rule.column].to_list()
        follows = batch[rule.follows].cast(batch.schema[rule.column], strict=False).to_list()
        partnered = rule.partner in batch.columns and bool(rule.partners)
        partners = batch[rule.partner].to_list() if partnered else []
        ids = batch["event_id"].to_list() if "event_id" in batch.columns else list(range(batch.height))
        for i, key in enumerate(entities):
            previous = last.get(key)
            if previous is not None:
                values[i] = previous
            if partnered:
                seen = self._seen(rule, values[i])
                if seen is not None and partners[i] not in seen[0]:
                    partners[i] = self._draw(rule, seen, ids[i])
                    if rule.partner == rule.follows:
                        follows[i] = partners[i]
            last[key] = follows[i]
        out = batch.with_columns(pl.Series(rule.column, values, dtype=batch.schema[rule.column], strict=False))
        if partnered:
            out = out.with_columns(pl.Series(rule.partner, partners, dtype=batch.schema[rule.partner], strict=False))
        return out

    def _seen(self, rule: Continuity, value: Any) -> tuple[set[Any], list[Any], np.ndarray] | None:
        """The partners seen with ``value`` (as a set, a list and cumulative weights), cached."""
        cache = self._partner_cache.setdefault(rule.column, {})
        key = str(value)
        if key not in cache:
            found = rule.partners.get(key)
            cache[key] = None if found is None else (set(found[0]), found[0], np.cumsum(found[1], dtype=np.float64))
        return cache[key]

    def _draw(self, rule: Continuity, seen: tuple[set[Any], list[Any], np.ndarray], event_id: Any) -> Any:
        """A partner seen with the row's value, drawn by a hash of its event id (the same draw in
        any batch or shard)."""
        _, values, cumulative = seen
        # one row at a time: a keyed hash of the id is a few microseconds, numpy's vector path
        # for one value two hundred
        digest = hashlib.blake2b(str(event_id).encode(), digest_size=8, key=self._keys[rule.column]).digest()
        u = int.from_bytes(digest, "little") / 2.0**64
        return values[min(int(np.searchsorted(cumulative, u * cumulative[-1], side="right")), len(values) - 1)]
