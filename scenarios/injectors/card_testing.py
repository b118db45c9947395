"""Card testing: stolen card numbers checked with many tiny authorisations at new merchants."""

from __future__ import annotations

import numpy as np
import polars as pl
from pydantic import Field
from streamsynth.scenarios.fields import Duration
from streamsynth.scenarios.injectors.fraud_common import FraudInjector, FraudParams, Templates


class CardTestingParams(FraudParams):
    cards: int = Field(5, gt=0, description="cards being tested")
    attempts: int = Field(20, gt=0, description="authorisations per card")
    amount_min: float = Field(0.5, ge=0)
    amount_max: float = Field(5.0, gt=0)
    gap: Duration = Field(default="20s", description="mean time between a card's attempts")
    channel_value: str | None = "online"


class CardTesting(FraudInjector, kind="card_testing", label="fraud.card_testing", params=CardTestingParams):
    def generate(self, t: Templates) -> pl.DataFrame:
        p = self.params
        owners = t.entities(p.cards)
        group, seconds = self.bursts(owners.height, p.attempts, p.gap, salt=1)
        n = len(seconds)
        amounts = np.round(p.amount_min + self.u(3, n) * (p.amount_max - p.amount_min), 2)
        overrides = {
            self.cols["amount"]: pl.Series(amounts),
            self.cols["merchant"]: self.new_codes(n, 4, self.cols["merchant"]),
        }
        if p.channel_value is not None:
            overrides[self.cols["channel"]] = p.channel_value
        return t.assemble(t.events(n), owners[group], seconds, overrides)
