"""Compromised merchant: many different cards are hit at one terminal within the window."""

from __future__ import annotations

import numpy as np
import polars as pl
from pydantic import Field
from streamsynth.scenarios.injectors.fraud_common import FraudInjector, FraudParams, Templates


class CompromisedMerchantParams(FraudParams):
    cards: int = Field(40, gt=0, description="cards used at the terminal")
    terminal: str | None = Field(None, description="the terminal (default: the busiest one near the window)")


class CompromisedMerchant(
    FraudInjector, kind="compromised_merchant", label="fraud.compromised_merchant", params=CompromisedMerchantParams
):
    def _bind(self) -> None:
        super()._bind()
        self.require(self.params.merchant or "terminal_id", "params.merchant")

    def generate(self, t: Templates) -> pl.DataFrame:
        p = self.params
        column = self.cols["merchant"]
        terminal = p.terminal
        at_terminal = None
        if terminal is None:
            counts = t.pool.group_by(column).len().sort(["len", column], descending=[True, False])
            terminal = counts[column][0]
        at_terminal = t.pool.filter(pl.col(column) == terminal)
        owners = t.entities(p.cards)
        n = owners.height
        span = (self.end - self.start).total_seconds()
        seconds = np.sort(self.u(1, n) * span)
        events = t.events(n)
        if at_terminal.height:  # the terminal's own category, channel and country
            idx = (self.u(2, n) * at_terminal.height).astype(np.int64)
            local = at_terminal[idx]
            keep = [c for c in local.columns if c not in (self.ctx.entity, *self.ctx.entity_level)]
            events = events.with_columns(local.select(keep))
        return t.assemble(events, owners, seconds, {column: terminal})
