"""Constraints a user states in a schema file, kept by every sample of every model.

``constraints:`` is a list; each item names a ``column`` and one or more rules:

* ``min: 0`` / ``max: 5000`` (``non_negative: true`` is ``min: 0``): values are clipped into range;
* ``one_of: [pos, online, atm]``: a value outside the set is replaced by one of the set, drawn by
  a hash of the event id (the same event gets the same value in any batch, shard or process);
* ``equals: true``: the column holds that value (useful with ``when``);
* ``monotone: increasing`` (or ``decreasing``): per entity, in event-time order, the column never
  goes back (counters, balances that only grow); a value that would is raised to the entity's
  running maximum (lowered to its minimum), carried across batches;
* ``when: {channel: atm}`` (a value or a list of values per column): the item's rules apply only
  to rows that match ("B is implied by A").

They are applied after the model and after the learned dependencies, so a sample never breaks
one; a constraint that contradicts a dependency wins over it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import polars as pl

from streamsynth.errors import StreamsynthError
from streamsynth.rng import child_seed, stable_int, uniform

RULES = ("min", "max", "non_negative", "one_of", "equals", "monotone")
HINT = ("e.g. constraints: [{column: amount, min: 0, max: 5000}, {column: channel, one_of: [pos, online]}, "
        "{column: balance, monotone: increasing}, {when: {channel: atm}, column: card_present, equals: true}]")


def check_constraints(value: Any, source: str) -> list[dict[str, Any]]:
    """A schema's ``constraints`` list, checked: each item a column and known rules."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise StreamsynthError(f"{source}: constraints is {value!r}, not a list", hint=HINT)
    out = []
    for i, item in enumerate(value):
        where = f"{source}: constraints[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("column"), str):
            raise StreamsynthError(f"{where} names no column ('column: NAME')", hint=HINT)
        unknown = set(item) - {"column", "when", *RULES}
        if unknown:
            raise StreamsynthError(f"{where} has unknown keys {sorted(unknown)}", hint=f"rules are: {', '.join(RULES)}")
        if not set(item) & set(RULES):
            raise StreamsynthError(f"{where} states no rule", hint=f"rules are: {', '.join(RULES)}")
        for bound in ("min", "max"):
            if bound in item and (isinstance(item[bound], bool) or not isinstance(item[bound], int | float)):
                raise StreamsynthError(f"{where}.{bound} is {item[bound]!r}, not a number", hint=HINT)
        if "one_of" in item and (not isinstance(item["one_of"], list) or not item["one_of"]):
            raise StreamsynthError(f"{where}.one_of must be a non-empty list", hint=HINT)
        if item.get("monotone") not in (None, "increasing", "decreasing"):
            raise StreamsynthError(f"{where}.monotone is {item['monotone']!r}",
                                   hint="monotone: increasing or decreasing")
        if "when" in item and (not isinstance(item["when"], dict) or not item["when"]):
            raise StreamsynthError(f"{where}.when must map columns to values", hint=HINT)
        out.append(dict(item))
    return out


def columns_named(constraints: list[dict[str, Any]]) -> set[str]:
    return {c["column"] for c in constraints} | {k for c in constraints for k in c.get("when", {})}


class ConstraintKeeper:
    """Applies the constraints to a stream's batches, in order; holds the per-entity state of
    monotone columns, so one keeper serves one stream."""

    def __init__(self, constraints: list[dict[str, Any]], entity: str | None, seed: int) -> None:
        self.constraints = constraints
        self.entity = entity
        self.seed = seed
        self._last: dict[int, dict[Any, Any]] = {}  # constraint index -> entity -> running extreme

    def __call__(self, batch: pl.DataFrame) -> pl.DataFrame:
        for index, item in enumerate(self.constraints):
            if item["column"] not in batch.columns or batch.height == 0:
                continue
            batch = self._apply(index, item, batch)
        return batch

    def _apply(self, index: int, item: dict[str, Any], batch: pl.DataFrame) -> pl.DataFrame:
        name = item["column"]
        dtype = batch.schema[name]
        mask = self._when(item.get("when"), batch)
        value = pl.col(name)
        low = 0 if item.get("non_negative") else None
        low = item["min"] if "min" in item else low
        if low is not None:
            value = pl.when(value < low).then(pl.lit(low)).otherwise(value)
        if "max" in item:
            value = pl.when(value > item["max"]).then(pl.lit(item["max"])).otherwise(value)
        if "equals" in item:
            value = pl.lit(item["equals"])
        batch = batch.with_columns(pl.when(mask).then(value).otherwise(pl.col(name)).cast(dtype).alias(name))
        if "one_of" in item:
            batch = self._one_of(index, item, batch, mask)
        if item.get("monotone"):
            batch = self._monotone(index, item, batch, mask)
        return batch

    @staticmethod
    def _when(when: dict[str, Any] | None, batch: pl.DataFrame) -> pl.Expr:
        if not when:
            return pl.lit(True)
        mask = pl.lit(True)
        for column, wanted in when.items():
            if column not in batch.columns:
                return pl.lit(False)
            options = wanted if isinstance(wanted, list) else [wanted]
            mask = mask & pl.col(column).cast(pl.String).is_in([str(v).lower() if isinstance(v, bool) else str(v)
                                                                 for v in options])
        return mask

    def _one_of(self, index: int, item: dict[str, Any], batch: pl.DataFrame, mask: pl.Expr) -> pl.DataFrame:
        name, allowed = item["column"], item["one_of"]
        dtype = batch.schema[name]
        allowed_series = pl.Series(allowed).cast(dtype, strict=False)
        outside = batch.select(mask & ~pl.col(name).is_in(allowed_series.to_list())).to_series()
        if not outside.any():
            return batch
        ids = batch["event_id"] if "event_id" in batch.columns else pl.Series(range(batch.height)).cast(pl.String)
        keys = np.array([stable_int(str(v)) for v in ids.filter(outside).to_list()], dtype=np.uint64)
        picks = (uniform(child_seed(self.seed, "one_of", index), keys) * len(allowed)).astype(np.int64)
        drawn = allowed_series.gather(picks.clip(max=len(allowed) - 1))
        values = batch[name].scatter(np.flatnonzero(outside.to_numpy()), drawn)
        return batch.with_columns(values.alias(name))

    def _monotone(self, index: int, item: dict[str, Any], batch: pl.DataFrame, mask: pl.Expr) -> pl.DataFrame:
        name = item["column"]
        increasing = item["monotone"] == "increasing"
        key = self.entity if self.entity in batch.columns else None
        last = self._last.setdefault(index, {})
        frame = batch.with_row_index("__row").with_columns(mask.alias("__in"))
        part = frame.filter(pl.col("__in") & pl.col(name).is_not_null())
        if part.height == 0:
            return batch
        group = pl.col(key) if key else pl.lit(0)
        running = (pl.col(name).cum_max() if increasing else pl.col(name).cum_min()).over(group)
        part = part.with_columns(running.alias("__run"), group.alias("__key"))
        before = pl.Series("__before", [last.get(k) for k in part["__key"].to_list()], dtype=part.schema[name])
        part = part.with_columns(before)
        extreme = pl.max_horizontal if increasing else pl.min_horizontal
        part = part.with_columns(extreme("__run", "__before").cast(batch.schema[name]).alias("__kept"))
        ends = part.group_by("__key").agg(pl.col("__kept").last())
        last.update(zip(ends["__key"].to_list(), ends["__kept"].to_list(), strict=True))
        values = batch[name].scatter(part["__row"].to_numpy(), part["__kept"])
        return batch.with_columns(values.alias(name))
