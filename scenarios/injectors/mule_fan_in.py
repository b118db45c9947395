"""Money-mule fan-in: many accounts each send one payment to the same mule account."""

from __future__ import annotations

import numpy as np
import polars as pl
from pydantic import Field
from streamsynth.scenarios.injectors.fraud_common import FraudInjector, FraudParams, Templates


class MuleFanInParams(FraudParams):
    senders: int = Field(25, gt=0)
    mule_id: str | None = Field(None, description="the receiving account (default: a new id)")
    amount_min: float = Field(200.0, ge=0)
    amount_max: float = Field(950.0, gt=0, description="kept under a reporting threshold")


class MuleFanIn(FraudInjector, kind="mule_fan_in", label="fraud.mule_fan_in", params=MuleFanInParams):
    def generate(self, t: Templates) -> pl.DataFrame:
        p = self.params
        owners = t.entities(p.senders)
        n = owners.height
        span = (self.end - self.start).total_seconds()
        seconds = np.sort(self.u(1, n) * span)
        amounts = np.round(p.amount_min + self.u(2, n) * (p.amount_max - p.amount_min), 2)
        mule = p.mule_id if p.mule_id is not None else self.new_codes(1, 3, self.cols["merchant"])[0]
        overrides = {self.cols["amount"]: pl.Series(amounts), self.cols["merchant"]: mule}
        if self.cols["channel"] is not None:
            overrides[self.cols["channel"]] = "online"
        return t.assemble(t.events(n), owners, seconds, overrides)
