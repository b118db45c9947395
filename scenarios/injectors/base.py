"""What every injector shares: the run context, its time window, row selection and labelling.

An injector sees each base batch once (``apply``): it may change rows inside its window, remove
rows, and return extra rows (injected or moved ones) that the engine merges in time order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar

import numpy as np
import polars as pl
from pydantic import BaseModel, ConfigDict
from streamsynth.scenarios.pool import Pool

from streamsynth import rng
from streamsynth.contract import EVENT_ID, IS_ANOMALY, LABEL, SCENARIO_ID
from streamsynth.errors import StreamsynthError
from streamsynth.schema import Schema

#: ``conditional(conditions, n_events, start, seed) -> frame`` from a model that takes conditions.
Conditional = Callable[[dict[str, Any], int, datetime, int], pl.DataFrame]


class Params(BaseModel):
    """Base of every injector's parameters: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


@dataclass
class Context:
    """What the engine knows about the base stream; filled in from its first batch."""

    time: str
    entity: str | None
    schema: Schema | None = None
    label_column: str | None = None
    conditional: Conditional | None = None
    #: Where fraud injectors find victims and templates, the same on every shard (the engine
    #: keeps the stream's own recent rows when this is None).
    pool: Pool | None = None
    #: The whole base's first batch when this stream is one shard of it: the base is described
    #: from it, so every shard sees the same columns, entity-level columns and identifiers.
    first: pl.DataFrame | None = None
    #: Where a time-bounded base ends (or, with no end, how long after the anchor): events that
    #: make rows make them by then even when the base, or this shard of it, has no event at or
    #: after their window start.
    end: datetime | None = None
    duration: timedelta | None = None
    source: str = "scenario"
    columns: dict[str, pl.DataType] = field(default_factory=dict)
    #: Columns whose value is fixed per entity (card number, home country ...).
    entity_level: set[str] = field(default_factory=set)
    #: Per-event identifier columns (tx_id, request_id) and the identifier kind to fake them with.
    event_identifiers: dict[str, str] = field(default_factory=dict)
    #: Entity-level identifier columns (card_number) and their kinds, for entities made anew.
    entity_identifiers: dict[str, str] = field(default_factory=dict)


class Injector:
    """One timed scenario event. Subclasses name their ``kind``, ``label`` and ``params`` in the
    class statement."""

    kind: ClassVar[str]
    default_label: ClassVar[str]
    Params: ClassVar[type[BaseModel]] = Params
    #: Parameters that name a column of the base, checked against it at the first batch.
    column_params: ClassVar[tuple[str, ...]] = ()
    #: Share of the targeted rows acted on when the event's ``targets.share`` is not given.
    default_share: ClassVar[float] = 1.0
    #: Whether the rows it makes are fraud (sets the base's boolean label column too).
    fraud: ClassVar[bool] = False

    def __init_subclass__(
        cls, kind: str | None = None, label: str | None = None, params: type[BaseModel] | None = None,
        **kwargs: Any,
    ) -> None:
        """``class Drift(ChangeInjector, kind="drift", label="ops.drift", params=DriftParams)``."""
        super().__init_subclass__(**kwargs)
        if kind is not None:
            cls.kind = kind
        if label is not None:
            cls.default_label = label
        if params is not None:
            cls.Params = params

    def __init__(
        self, *, index: int, event: Any, params: BaseModel, scenario: str, seed: int, anchor: datetime
    ) -> None:
        self.index = index
        self.event = event
        self.params = params
        self.start = anchor + event.at
        self.end = self.start + event.duration
        self.label = event.label or self.default_label
        self.anomaly = event.anomaly
        self.scenario_id = f"{scenario}/{index}-{self.kind}"
        self.id_prefix = f"{scenario}/{index}"
        self.seed = rng.child_seed(seed, "event", index, self.kind)
        self.share = event.targets.share if event.targets.share is not None else self.default_share
        self.where = event.targets.where
        self.added = self.changed = self.removed = 0
        self.ctx: Context | None = None

    # -- setup -------------------------------------------------------------------------------------
    def extra_columns(self, time: str) -> dict[str, pl.DataType]:
        """Columns this injector adds to the stream (null on rows it did not produce)."""
        return {}

    def bind(self, ctx: Context) -> None:
        """Check the columns the event refers to against the base; called at the first batch."""
        self.ctx = ctx
        for column in self.where:
            self.require(column, f"targets.where.{column}")
        for name in self.column_params:
            if getattr(self.params, name) is not None:
                self.require(getattr(self.params, name), f"params.{name}")
        self._bind()

    def _bind(self) -> None:
        """Subclasses check their column parameters here."""

    def require(self, column: str, key: str) -> str:
        if column not in self.ctx.columns:
            raise StreamsynthError(
                f"{self.ctx.source}: events[{self.index}].{key}: the base has no column {column!r}",
                hint=f"the base's columns are: {', '.join(self.ctx.columns)}",
            )
        return column

    # -- per batch -----------------------------------------------------------------------------------
    def apply(self, batch: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        """(the batch with this event's changes, extra rows to merge in or None)."""
        if batch.height == 0:  # e.g. a small shard, or an earlier dropout removed every row
            return batch, None
        times = batch[self.ctx.time]
        if times[-1] < self.start or times[0] >= self.end:
            return batch, None
        return self._apply(batch)

    def _apply(self, batch: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        return batch, None

    def close(self, end: datetime) -> pl.DataFrame | None:
        """Rows still to add when the base ends at ``end`` (only events that make rows have any)."""
        return None

    def selection(self, batch: pl.DataFrame, salt: int = 0) -> np.ndarray:
        """Rows in the window that match ``targets.where``, thinned to ``share`` (bool array)."""
        t = batch[self.ctx.time]
        mask = ((t >= self.start) & (t < self.end)).to_numpy()
        for column, value in self.where.items():
            col = batch[column]
            hit = col.is_in(value) if isinstance(value, list) else col == value
            mask &= hit.fill_null(False).to_numpy()
        if self.share < 1.0 and mask.any():
            mask &= self.row_uniform(batch, 1000 + salt) < self.share
        return mask

    def row_uniform(self, batch: pl.DataFrame, salt: int) -> np.ndarray:
        """A uniform per row, a function of the row's event id (not its position or batch)."""
        return rng.uniform(self.seed, row_keys(batch), salt)

    def progress(self, batch: pl.DataFrame) -> np.ndarray:
        """How far into the window each row is, 0 at the start to 1 at the end."""
        t = batch[self.ctx.time].dt.epoch("us").to_numpy().astype(np.float64)
        lo, span = self.start.timestamp() * 1e6, max((self.end - self.start).total_seconds() * 1e6, 1.0)
        return np.clip((t - lo) / span, 0.0, 1.0)

    def mark(self, frame: pl.DataFrame) -> pl.DataFrame:
        """Set the label columns (and a boolean base label for fraud) on every row of ``frame``."""
        columns = [
            pl.lit(self.label, dtype=pl.String).alias(LABEL),
            pl.lit(self.anomaly, dtype=pl.Boolean).alias(IS_ANOMALY),
            pl.lit(self.scenario_id, dtype=pl.String).alias(SCENARIO_ID),
        ]
        label = self.ctx.label_column
        if self.fraud and label and self.ctx.columns.get(label) == pl.Boolean:
            columns.append(pl.lit(True).alias(label))
        return frame.with_columns(columns)

    def change(self, batch: pl.DataFrame, mask: np.ndarray, values: dict[str, pl.Series]) -> pl.DataFrame:
        """Write ``values`` into the rows of ``mask``; only rows whose values really differ are
        labelled (and counted as changed), every other row is left exactly as it was."""
        differs = np.zeros(batch.height, dtype=bool)
        new_cols = {}
        for name, new in values.items():
            old = batch[name]
            new = new.cast(old.dtype, strict=False).alias(name)
            diff = (new.ne_missing(old)).to_numpy() & mask
            differs |= diff
            new_cols[name] = new
        if not differs.any():
            return batch
        keep = pl.Series(differs)
        exprs = [pl.when(keep).then(new).otherwise(pl.col(name)).alias(name) for name, new in new_cols.items()]
        marked = self.mark(batch.select(LABEL, IS_ANOMALY, SCENARIO_ID, *self._label_cols()))
        exprs += [
            pl.when(keep).then(marked[c]).otherwise(pl.col(c)).alias(c) for c in marked.columns
        ]
        self.changed += int(differs.sum())
        return batch.with_columns(exprs)

    def _label_cols(self) -> list[str]:
        label = self.ctx.label_column
        if self.fraud and label and self.ctx.columns.get(label) == pl.Boolean:
            return [label]
        return []

    def new_ids(self, origin: pl.Series, suffix: str = "") -> pl.Series:
        """Event ids of rows made from other rows: ``{scenario}/{event}/{origin id}{suffix}``."""
        return (f"{self.id_prefix}/" + origin + suffix).alias(EVENT_ID)

    def report(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "kind": self.kind,
            "label": self.label,
            "scenario_id": self.scenario_id,
            "window_start": self.start.isoformat(),
            "window_end": self.end.isoformat(),
            "params": self.params.model_dump(mode="json"),
            "targets": self.event.targets.model_dump(mode="json"),
            "rows_added": self.added,
            "rows_changed": self.changed,
            "rows_removed": self.removed,
        }


def row_keys(batch: pl.DataFrame) -> np.ndarray:
    """Stable integer keys of rows from their event ids (polars' hash: stable within a version)."""
    return batch[EVENT_ID].hash(seed=0x5EED).to_numpy()


class ChangeInjector(Injector):
    """An event that changes the rows it selects (drift, spikes, drops, duplicates): only batches
    holding selected rows reach :meth:`alter`."""

    def _apply(self, batch: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        mask = self.selection(batch)
        if not mask.any():
            return batch, None
        return self.alter(batch, mask)

    def alter(self, batch: pl.DataFrame, mask: np.ndarray) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        """(the batch with the rows in ``mask`` changed, extra rows to merge in or None)."""
        raise NotImplementedError(f"{type(self).__name__} must say how it changes its rows")
