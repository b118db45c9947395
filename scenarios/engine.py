"""Applying a scenario's timed events to a base stream, batch by batch, in flat memory.

Each base batch passes the events in file order: an event changes or removes rows inside its
window and may return extra rows (injected or moved ones), which wait in a small buffer until
the base stream has passed their time and are then merged in time order. Events act on base
rows only: rows one event injected are not changed by another. When two events change the same
row, the later event's label and scenario_id win. Fraud events make their rows when the stream
reaches their window, or when a time-bounded base ends first (``Context.end``).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import polars as pl
from streamsynth.scenarios.injectors import INJECTORS, Context, Injector
from streamsynth.scenarios.pool import StreamPool
from streamsynth.scenarios.spec import Scenario

from streamsynth.contract import LABEL_COLUMNS, order_columns
from streamsynth.schema import Role, Schema


def build_injectors(scenario: Scenario, anchor: datetime) -> list[Injector]:
    """One injector per event; ``anchor`` is the base start that event offsets count from."""
    return [
        INJECTORS[event.kind](
            index=i, event=event, params=scenario.checked[i], scenario=scenario.name,
            seed=scenario.seed, anchor=anchor,
        )
        for i, event in enumerate(scenario.events)
    ]


def inject(
    scenario: Scenario,
    base: Iterator[pl.DataFrame],
    ctx: Context,
    anchor: datetime | None = None,
    report: dict[str, Any] | None = None,
) -> Iterator[pl.DataFrame]:
    """The base stream with the scenario's events applied; still a contract stream.

    ``anchor`` defaults to the first base event's time. ``report`` (a dict) is filled as the
    stream runs with each event's window and its added, changed and removed row counts.
    """
    return Injection(scenario, ctx, anchor, report).run(base)


class Injection:
    """One run of a scenario over a base stream: the injectors, the rows they made that wait
    for the base to pass their time, and the output's columns."""

    def __init__(self, scenario: Scenario, ctx: Context, anchor: datetime | None,
                 report: dict[str, Any] | None) -> None:
        self.scenario, self.ctx, self.anchor, self.report = scenario, ctx, anchor, report
        self.time = ctx.time
        self.injectors: list[Injector] = []
        self.pending: pl.DataFrame | None = None  # made rows not yet reached by the base
        self.columns: list[str] = []
        self.extra: dict[str, pl.DataType] = {}  # columns injectors add
        self.ready = False

    def run(self, base: Iterator[pl.DataFrame]) -> Iterator[pl.DataFrame]:
        ctx = self.ctx
        for batch in base:
            if batch.height == 0:
                continue
            if not self.ready:
                self._setup(ctx.first if ctx.first is not None else batch)
                self._describe()
            out = self._apply(batch)
            self._describe()
            if out.height:
                yield out
        if not self.ready and ctx.first is not None:  # a shard without base rows of its own
            self._setup(ctx.first)
        if ctx.end is not None:  # windows the base ended inside, or never reached on this shard
            self.pending = self._merge([rows for inj in self.injectors if (rows := inj.close(ctx.end)) is not None])
        self._describe()
        if self.pending is not None and self.pending.height:
            yield self.pending

    def _apply(self, batch: pl.DataFrame) -> pl.DataFrame:
        """One base batch through every injector, with the made rows it has reached merged in."""
        time = self.time
        if self.ctx.pool is not None:
            self.ctx.pool.add(batch)
        reached = batch[time][-1]
        added = []
        for injector in self.injectors:
            batch, rows = injector.apply(batch)
            if rows is not None:
                added.append(rows)
        if added:
            self.pending = self._merge(added)
        out = self._align(batch) if self.extra else batch
        if self.pending is not None:
            cut = int(self.pending[time].search_sorted(reached, side="right"))
            if cut:
                out = pl.concat([out, self.pending.slice(0, cut)], how="vertical").sort(time, maintain_order=True)
                self.pending = self.pending.slice(cut) if cut < self.pending.height else None
        return out

    def _setup(self, first: pl.DataFrame) -> None:
        ctx, time = self.ctx, self.time
        self.ready = True
        self.anchor = self.anchor or first[time][0]
        if ctx.end is None and ctx.duration is not None:
            ctx.end = self.anchor + ctx.duration
        describe_base(ctx, first)
        self.injectors.extend(build_injectors(self.scenario, self.anchor))
        for injector in self.injectors:
            injector.bind(ctx)
            self.extra.update(injector.extra_columns(time))
        self.columns = order_columns(align_first(first, self.extra), time, ctx.entity).columns
        fraud = [inj.start for inj in self.injectors if inj.fraud]
        if ctx.pool is None and fraud:
            ctx.pool = StreamPool(time, ctx.entity, until=max(fraud))
        if ctx.pool is not None:
            ctx.pool.calibrate(self.anchor)

    def _align(self, frame: pl.DataFrame) -> pl.DataFrame:
        missing = [pl.lit(None, dtype=dtype).alias(c) for c, dtype in self.extra.items() if c not in frame.columns]
        return (frame.with_columns(missing) if missing else frame).select(self.columns)

    def _merge(self, added: list[pl.DataFrame]) -> pl.DataFrame | None:
        parts = ([self.pending] if self.pending is not None else []) + [self._align(r) for r in added if r.height]
        return pl.concat(parts, how="vertical").sort(self.time, maintain_order=True) if parts else None

    def _describe(self) -> None:
        if self.report is not None:
            self.report["events"] = [inj.report() for inj in self.injectors]


def align_first(batch: pl.DataFrame, extra: dict[str, pl.DataType]) -> pl.DataFrame:
    return batch.with_columns([pl.lit(None, dtype=d).alias(c) for c, d in extra.items() if c not in batch.columns])


def describe_base(ctx: Context, batch: pl.DataFrame) -> None:
    """Fill the context from the first base batch: columns, per-entity and per-event identifiers."""
    ctx.columns = dict(batch.schema)
    schema = ctx.schema
    if schema is None:
        data = batch.drop([c for c in LABEL_COLUMNS if c in batch.columns])
        schema = Schema.infer(data, time=ctx.time, entity=ctx.entity)
        ctx.schema = schema
    if ctx.label_column is None:
        ctx.label_column = schema.label
    ctx.entity_level = entity_level_columns(batch, ctx)
    entity_card = _cardinality(schema, batch, ctx.entity) if ctx.entity else 0
    for column in schema.by_role(Role.IDENTIFIER):
        name = column.name
        if name not in ctx.columns or ctx.columns[name] != pl.String:
            continue
        kind = column.kind or "code"
        # One value per entity here, and no more values than entities overall (the schema's
        # counts cover the training data when the base is a model, so a per-event id is not
        # mistaken for a per-entity one in a batch where every entity happens to appear once).
        per_entity = ctx.entity is not None and (
            batch.select(pl.struct(ctx.entity, name).n_unique()).item() == batch[ctx.entity].n_unique()
            and _cardinality(schema, batch, name) <= entity_card
        )
        if per_entity:
            ctx.entity_identifiers[name] = kind
            ctx.entity_level.add(name)
        else:
            ctx.event_identifiers[name] = kind
            ctx.entity_level.discard(name)


def _cardinality(schema: Schema, batch: pl.DataFrame, name: str) -> int:
    try:
        known = schema[name].cardinality
    except Exception:  # noqa: BLE001 - a column the schema lacks: count the batch
        known = None
    return int(known) if known else batch[name].n_unique()


def entity_level_columns(batch: pl.DataFrame, ctx: Context) -> set[str]:
    """Columns with one value per entity among entities seen at least twice in ``batch``, and
    about as many values as entities (a card number, not a rarely-set flag)."""
    if ctx.entity is None:
        return set()
    skip = {ctx.entity, ctx.time, *LABEL_COLUMNS, "event_id", ctx.label_column}
    candidates = [c for c in batch.columns if c not in skip]
    if not candidates:
        return set()
    counts = batch.group_by(ctx.entity).agg(pl.len().alias("__n"), *[pl.col(c).n_unique() for c in candidates])
    repeated = counts.filter(pl.col("__n") > 1)
    if repeated.height < 20:  # too few repeat visits to tell per-entity columns apart
        return set()
    constant = [c for c in candidates if repeated[c].max() == 1]
    if not constant:
        return set()
    ids = repeated[ctx.entity]
    rows = batch.filter(pl.col(ctx.entity).is_in(ids.implode()))
    distinct = rows.select(pl.col(c).n_unique() for c in constant).row(0)
    return {c for c, n in zip(constant, distinct, strict=True) if n >= 0.5 * repeated.height}
