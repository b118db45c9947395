"""Velocity burst: a few entities suddenly transact many times within minutes."""

from __future__ import annotations

import polars as pl
from pydantic import Field
from streamsynth.scenarios.fields import Duration
from streamsynth.scenarios.injectors.fraud_common import FraudInjector, FraudParams, Templates


class VelocityBurstParams(FraudParams):
    entities: int = Field(5, gt=0)
    transactions: int = Field(15, gt=0, description="events per entity in the burst")
    gap: Duration = Field(default="30s", description="mean time between an entity's events")


class VelocityBurst(FraudInjector, kind="velocity_burst", label="fraud.velocity_burst", params=VelocityBurstParams):
    def generate(self, t: Templates) -> pl.DataFrame:
        p = self.params
        owners = t.entities(p.entities)
        group, seconds = self.bursts(owners.height, p.transactions, p.gap, salt=1)
        return t.assemble(t.events(len(seconds)), owners[group], seconds, {})
