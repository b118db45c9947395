"""Shared machinery of the fraud injectors: victims and templates from the base, row assembly.

A fraud injector builds its rows from two parts: entity-level columns (entity id, card number)
from real-looking victims of the base stream, and event-level columns (category, amount,
channel) from template events: base rows, or, when the base model takes conditions and
``use_model`` allows, events the model generates conditioned on fraud. The injector then sets
the pattern that defines the typology (timing, amounts, counterparties). Victims and base-row
templates come from the whole base's rows before the window (``streamsynth.scenarios.pool``), so a sharded
run makes the same rows on every shard, and each shard emits those of its own entities.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import numpy as np
import polars as pl
from pydantic import Field
from streamsynth.scenarios.fields import Duration, Scalar
from streamsynth.scenarios.injectors.base import Injector, Params

from streamsynth import rng
from streamsynth.contract import EVENT_ID, LABEL_COLUMNS
from streamsynth.errors import StreamsynthError
from streamsynth.identifiers import fake

_DEVICE_COLUMNS = ("device_id", "device", "user_agent")
_IP_COLUMNS = ("ip", "client_ip", "ip_address", "ipv4")


class FraudParams(Params):
    """Column names (defaults fit the payments data) and where template events come from."""

    amount: str = "amount"
    merchant: str | None = "terminal_id"
    channel: str | None = "channel"
    country: str | None = "country"
    use_model: bool | None = Field(
        None, description="ask the base model for fraud-conditioned events (default: when it can)"
    )
    conditions: dict[str, Scalar] = Field(default_factory=dict)


class FraudInjector(Injector):
    """Generates its rows once, when the stream reaches the window; rows it adds are new."""

    fraud = True
    default_share = 1.0

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.done = False
        self.used_model = False
        self.cols: dict[str, str | None] = {}

    def _bind(self) -> None:
        p = self.params
        explicit = p.model_fields_set
        for key in ("amount", "merchant", "channel", "country"):
            name = getattr(p, key)
            if name is None:
                self.cols[key] = None
            elif key in explicit or key == "amount":
                self.cols[key] = self.require(name, f"params.{key}")
            else:  # an unset default that this base lacks: leave that column as the templates have it
                self.cols[key] = name if name in self.ctx.columns else None
        for column in p.conditions:
            self.require(column, f"params.conditions.{column}")
        if p.use_model and self.ctx.conditional is None:
            raise StreamsynthError(
                f"{self.ctx.source}: events[{self.index}].params.use_model: the base model does not "
                "take conditions",
                hint="drop use_model (templates then come from the base rows), or use a conditional model",
            )

    def apply(self, batch: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame | None]:
        # Unlike row-changing injectors this fires on the first batch at or past the window start,
        # so a window that falls between two batches is not skipped.
        if self.done or batch.height == 0 or batch[self.ctx.time][-1] < self.start:
            return batch, None
        return batch, self._make()

    def close(self, end: datetime) -> pl.DataFrame | None:
        return None if self.done or end <= self.start else self._make()

    def _make(self) -> pl.DataFrame:
        self.done = True
        # Every shard makes the same rows (ids by position among all of them) and keeps its own.
        rows = self.generate(Templates(self))
        rows = rows.filter(pl.col(self.ctx.time) < self.end).sort(self.ctx.time, maintain_order=True)
        rows = rows.with_columns(
            pl.format(f"{self.id_prefix}/{{}}", pl.int_range(pl.len(), dtype=pl.Int64)).alias(EVENT_ID)
        )
        rows = rows.filter(self.ctx.pool.owns(self.start, rows))
        self.added += rows.height
        return rows

    def generate(self, t: Templates) -> pl.DataFrame:
        raise NotImplementedError

    def report(self) -> dict[str, Any]:
        out = super().report()
        out["templates"] = "model" if self.used_model else "base rows"
        return out

    # -- helpers for subclasses -----------------------------------------------------------------------
    def u(self, salt: int, n: int, *keys: Any) -> np.ndarray:
        """``n`` uniforms for draw ``salt`` (pure functions of the event's seed)."""
        return rng.uniform(self.seed, np.arange(n), salt, *keys) if n else np.zeros(0)

    def offsets_us(self, seconds: np.ndarray) -> pl.Series:
        start = int(self.start.timestamp() * 1_000_000)
        return pl.Series(self.ctx.time, start + np.round(seconds * 1e6).astype(np.int64)).cast(
            pl.Datetime("us")
        ).dt.replace_time_zone("UTC")

    def bursts(self, groups: int, per_group: int, gap: timedelta, salt: int) -> tuple[np.ndarray, np.ndarray]:
        """Start times spread over the first half of the window, then exponential gaps:
        returns (group index, seconds after the window start) per event."""
        span = (self.end - self.start).total_seconds()
        group = np.repeat(np.arange(groups), per_group)
        first = self.u(salt, groups) * span * 0.5
        gaps = -np.log(self.u(salt + 1, groups * per_group)) * gap.total_seconds()
        gaps = gaps.reshape(groups, per_group)
        gaps[:, 0] = 0.0
        seconds = (first[:, None] + np.cumsum(gaps, axis=1)).ravel()
        return group, seconds

    def new_codes(self, n: int, salt: int, column: str | None) -> pl.Series:
        """Fresh counterparty ids (new merchants, new accounts) that the base never used."""
        kind = self.ctx.event_identifiers.get(column or "", "code")
        keys = (np.arange(n, dtype=np.int64) + (self.seed % 10**9) * 1000 + salt * 10**7).astype(np.int64)
        return fake(kind if kind != "credit_card" else "code", keys, rng.child_seed(self.seed, "codes", salt))


class Templates:
    """Victims and template events for one injector, from the whole base's rows just before its
    window (:class:`streamsynth.scenarios.pool.Pool`), so every shard picks the same ones."""

    def __init__(self, injector: FraudInjector) -> None:
        self.inj = injector
        ctx = injector.ctx
        pool = ctx.pool.rows(injector.start)
        if pool.height:
            for column, value in injector.where.items():
                hit = pl.col(column).is_in(value) if isinstance(value, list) else pl.col(column) == value
                pool = pool.filter(hit)
        if pool.height == 0:
            raise StreamsynthError(
                f"{ctx.source}: events[{injector.index}].targets.where: no base rows near "
                f"{injector.start.isoformat()} match {injector.where}",
                hint="loosen the filter or move the event to a time the base has such rows",
            )
        self.pool = pool

    def entities(self, n: int, salt: int = 0) -> pl.DataFrame:
        """``n`` distinct entities of the pool (fewer if the pool has fewer), one row each."""
        entity = self.inj.ctx.entity
        if entity is None:
            return self.rows(n, salt)
        last = self.pool.unique(entity, keep="last", maintain_order=True)
        keys = rng.uniform(self.inj.seed, last[EVENT_ID].hash(seed=7).to_numpy(), 50 + salt)
        order = np.argsort(keys, kind="stable")[:n]
        return last[order]

    def rows(self, n: int, salt: int = 0) -> pl.DataFrame:
        """``n`` template rows drawn from the pool, with replacement."""
        idx = rng.integers(self.inj.seed, self.pool.height, np.arange(n), 60 + salt)
        return self.pool[idx]

    def events(self, n: int, salt: int = 0) -> pl.DataFrame:
        """``n`` template events: fraud-conditioned ones from the model when asked and possible."""
        inj, ctx = self.inj, self.inj.ctx
        use = inj.params.use_model
        conditions = dict(inj.params.conditions)
        if ctx.label_column and ctx.columns.get(ctx.label_column) == pl.Boolean:
            conditions.setdefault(ctx.label_column, True)
        if ctx.conditional is not None and use is not False and conditions:
            frame = ctx.conditional(conditions, n, inj.start, rng.child_seed(inj.seed, "model", salt))
            if frame.height >= n:
                inj.used_model = True
                return frame.head(n)
        return self.rows(n, salt)

    def assemble(
        self, events: pl.DataFrame, owners: pl.DataFrame, seconds: np.ndarray, overrides: dict[str, Any]
    ) -> pl.DataFrame:
        """Rows with the event columns of ``events``, the entity columns of ``owners`` (both one
        row per output row), event times ``seconds`` after the window start, and ``overrides``."""
        inj, ctx = self.inj, self.inj.ctx
        n = len(seconds)
        base_cols = [c for c in ctx.columns if c not in LABEL_COLUMNS]
        out = {}
        for c in base_cols:
            src = owners if c == ctx.entity or c in ctx.entity_level else events
            out[c] = src[c] if c in src.columns else pl.Series(c, [None] * n)
        frame = pl.DataFrame(out)
        for column, kind in sorted(ctx.event_identifiers.items()):
            keys = np.arange(n, dtype=np.int64) + (inj.seed % 10**9) * 1000
            frame = frame.with_columns(fake(kind, keys, rng.child_seed(inj.seed, "id", column)).alias(column))
        frame = frame.with_columns(inj.offsets_us(np.asarray(seconds, dtype=np.float64)))
        for column, value in overrides.items():
            if column is None:
                continue
            series = value if isinstance(value, pl.Series) else pl.Series([value] * n)
            frame = frame.with_columns(series.alias(column).cast(ctx.columns[column], strict=False))
        frame = frame.with_columns(
            [pl.col(c).cast(ctx.columns[c], strict=False) for c in base_cols]
            + [pl.lit(None, dtype=pl.String).alias(c) for c in LABEL_COLUMNS]
        )
        return inj.mark(frame).select([c for c in ctx.columns])


def device_columns(inj: Injector) -> tuple[str | None, str | None]:
    """The base's device and IP columns, if it has any (for account takeover)."""
    cols = inj.ctx.columns
    device = next((c for c in _DEVICE_COLUMNS if c in cols), None)
    ip = next((c for c in _IP_COLUMNS if c in cols), None)
    return device, ip


def amount_quantile(t: Templates, column: str, q: float) -> float:
    values = t.pool[column].drop_nulls()
    if values.len() == 0:
        return 100.0
    return float(values.cast(pl.Float64).quantile(q))


__all__ = ["Duration", "FraudInjector", "FraudParams", "Templates", "amount_quantile", "device_columns"]
