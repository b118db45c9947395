"""Money-mule fan-out: one (mule) account quickly pays out to many new counterparties."""

from __future__ import annotations

import numpy as np
import polars as pl
from pydantic import Field
from streamsynth.scenarios.fields import Duration
from streamsynth.scenarios.injectors.fraud_common import FraudInjector, FraudParams, Templates

from streamsynth import rng
from streamsynth.identifiers import fake


class MuleFanOutParams(FraudParams):
    recipients: int = Field(25, gt=0)
    mule_id: str | None = Field(None, description="the paying account (default: a base entity)")
    amount_min: float = Field(200.0, ge=0)
    amount_max: float = Field(950.0, gt=0)
    gap: Duration = Field(default="1m", description="mean time between payouts")


class MuleFanOut(FraudInjector, kind="mule_fan_out", label="fraud.mule_fan_out", params=MuleFanOutParams):
    def generate(self, t: Templates) -> pl.DataFrame:
        p = self.params
        owner = t.entities(1)
        if p.mule_id is not None and self.ctx.entity is not None:
            owner = self._new_entity(owner, p.mule_id)
        _, seconds = self.bursts(1, p.recipients, p.gap, salt=1)
        n = len(seconds)
        amounts = np.round(p.amount_min + self.u(2, n) * (p.amount_max - p.amount_min), 2)
        overrides = {
            self.cols["amount"]: pl.Series(amounts),
            self.cols["merchant"]: self.new_codes(n, 3, self.cols["merchant"]),
        }
        if self.cols["channel"] is not None:
            overrides[self.cols["channel"]] = "online"
        return t.assemble(t.events(n), owner[np.zeros(n, dtype=np.int64)], seconds, overrides)

    def _new_entity(self, template: pl.DataFrame, mule_id: str) -> pl.DataFrame:
        """An entity the base does not have: its id is ``mule_id``, its identifiers are new."""
        key = np.array([rng.child_seed(self.seed, mule_id) % 10**12], dtype=np.int64)
        changes = [pl.lit(mule_id, dtype=pl.String).alias(self.ctx.entity)]
        kinds = self.ctx.entity_identifiers
        for column, kind in kinds.items():
            changes.append(pl.lit(fake(kind, key, rng.child_seed(self.seed, column))[0]).alias(column))
        return template.with_columns(changes)
