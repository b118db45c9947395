"""Account takeover: a new device, IP and country on an account, then high-value spending."""

from __future__ import annotations

import numpy as np
import polars as pl
from pydantic import Field
from streamsynth.scenarios.fields import Duration
from streamsynth.scenarios.injectors.fraud_common import (
    FraudInjector,
    FraudParams,
    Templates,
    amount_quantile,
    device_columns,
)

from streamsynth import rng
from streamsynth.identifiers import fake


class AccountTakeoverParams(FraudParams):
    accounts: int = Field(3, gt=0, description="accounts taken over")
    transactions: int = Field(6, gt=0, description="payments per account after the takeover")
    amount_quantile: float = Field(0.99, gt=0, lt=1, description="spending starts at this quantile")
    multiplier_max: float = Field(3.0, ge=1, description="amounts go up to quantile x this")
    gap: Duration = Field(default="3m", description="mean time between payments")
    countries: list[str] | None = Field(None, description="where the attacker is (default: abroad)")


class AccountTakeover(
    FraudInjector, kind="account_takeover", label="fraud.account_takeover", params=AccountTakeoverParams
):
    def generate(self, t: Templates) -> pl.DataFrame:
        p = self.params
        owners = t.entities(p.accounts)
        per = p.transactions + 1  # a small first probe, then the spending
        group, seconds = self.bursts(owners.height, per, p.gap, salt=1)
        n = len(seconds)
        first = np.arange(n) % per == 0
        high = amount_quantile(t, self.cols["amount"], p.amount_quantile)
        amounts = high * (1 + self.u(3, n) * (p.multiplier_max - 1))
        amounts = np.round(np.where(first, 1 + 4 * self.u(4, n), amounts), 2)
        overrides: dict = {self.cols["amount"]: pl.Series(amounts)}
        country = self.cols["country"]
        if country is not None:
            overrides[country] = self._countries(t, owners, group, country)
        device, ip = device_columns(self)
        keys = (self.seed % 10**9) * 100 + group.astype(np.int64)  # one new device and IP per account
        if device is not None:
            kind = "uuid" if device != "user_agent" else "user_agent"
            overrides[device] = fake(kind, keys, rng.child_seed(self.seed, "device"))
        if ip is not None:
            overrides[ip] = fake("ipv4", keys, rng.child_seed(self.seed, "ip"))
        if self.cols["channel"] is not None:
            overrides[self.cols["channel"]] = "online"
        return t.assemble(t.events(n), owners[group], seconds, overrides)

    def _countries(self, t: Templates, owners: pl.DataFrame, group: np.ndarray, column: str) -> pl.Series:
        """A country per account that is not the account's usual one."""
        choices = self.params.countries or sorted(v for v in t.pool[column].drop_nulls().unique().to_list())
        home = owners[column].to_list()
        picked = []
        for i, h in enumerate(home):
            options = [c for c in choices if c != h] or choices
            picked.append(options[int(self.u(5, len(home))[i] * len(options))])
        return pl.Series([picked[g] for g in group])
