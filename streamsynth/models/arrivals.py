"""Arrival process of the baseline: a weekly intensity profile and per-entity renewal gaps.

Time is warped by the cumulative weekly intensity (hour-of-day x day-of-week), so in warped
time every entity is a renewal process whose rate varies between entities. Both directions of
the warp are closed-form over the repeating week, so endless streams need no grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import polars as pl
from scipy.stats import chi2

HOURS_PER_WEEK = 168
_US_PER_HOUR = 3_600_000_000
# A Monday, so hour-of-week 0 is Monday 00:00 UTC.
_EPOCH = datetime(1970, 1, 5, tzinfo=UTC)
_EPOCH_US = int(_EPOCH.timestamp() * 1_000_000)
_MIN_INTENSITY = 0.02
#: a profile is kept only where the counts by hour (or weekday) differ from flat at this significance
_FLAT_P = 0.01


@dataclass
class WeeklyProfile:
    """Relative intensity per hour of the week (mean 1), separable into hour x weekday."""

    intensity: np.ndarray  # (168,)

    def __post_init__(self) -> None:
        self.cumulative = np.concatenate([[0.0], np.cumsum(self.intensity)])

    @classmethod
    def fit(cls, times_us: np.ndarray) -> WeeklyProfile:
        """Estimate hour-of-day and day-of-week intensities, each divided by its exposure."""
        hours = (times_us - _EPOCH_US) // _US_PER_HOUR
        first, last = int(hours.min()), int(hours.max())
        span = np.arange(first, last + 1)
        how = hours % HOURS_PER_WEEK
        exposure = np.bincount(span % HOURS_PER_WEEK, minlength=HOURS_PER_WEEK).astype(float)
        counts = np.bincount(how, minlength=HOURS_PER_WEEK).astype(float)
        hod = _rate(counts.reshape(7, 24).sum(0), exposure.reshape(7, 24).sum(0))
        dow = _rate(counts.reshape(7, 24).sum(1), exposure.reshape(7, 24).sum(1))
        # Fewer than two weeks of data say little about weekdays: shrink towards flat.
        weeks = (last - first + 1) / HOURS_PER_WEEK
        weight = min(1.0, weeks / 2.0)
        dow = weight * dow + (1 - weight) * np.where(dow > 0, 1.0, 0.0)
        intensity = np.outer(dow, hod).reshape(-1)
        intensity = np.maximum(intensity / intensity.mean(), _MIN_INTENSITY)
        return cls(intensity / intensity.mean())

    def warp(self, times_us: np.ndarray) -> np.ndarray:
        """Warped time in 'average hours' since the epoch Monday."""
        hours = (np.asarray(times_us, dtype=np.int64) - _EPOCH_US) / _US_PER_HOUR
        whole = np.floor(hours)
        weeks, hour = np.divmod(whole.astype(np.int64), HOURS_PER_WEEK)
        frac = hours - whole
        return weeks * HOURS_PER_WEEK + self.cumulative[hour] + frac * self.intensity[hour]

    def unwarp(self, warped: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`warp`, in microseconds since the Unix epoch."""
        warped = np.asarray(warped, dtype=np.float64)
        weeks = np.floor(warped / HOURS_PER_WEEK)
        rest = warped - weeks * HOURS_PER_WEEK
        hour = np.clip(np.searchsorted(self.cumulative, rest, side="right") - 1, 0, HOURS_PER_WEEK - 1)
        frac = np.clip((rest - self.cumulative[hour]) / self.intensity[hour], 0.0, 1.0)
        hours = weeks * HOURS_PER_WEEK + hour + frac
        return _EPOCH_US + np.round(hours * _US_PER_HOUR).astype(np.int64)


def _rate(counts: np.ndarray, exposure: np.ndarray) -> np.ndarray:
    """Relative rate per bin (mean 1); flat where the counts differ from their exposure's share
    no more than Poisson chance would (a reading every 5 minutes with a few missing is flat,
    not a profile of its gaps)."""
    seen = exposure > 0
    expected = counts[seen].sum() * exposure[seen] / exposure[seen].sum()
    if seen.sum() > 1 and (expected > 0).all():
        statistic = float((((counts[seen] - expected) ** 2) / expected).sum())
        if chi2.sf(statistic, int(seen.sum()) - 1) >= _FLAT_P:
            return np.ones_like(counts, dtype=float)
    rate = np.where(exposure > 0, counts / np.maximum(exposure, 1), 0.0)
    mean = rate[exposure > 0].mean() if (exposure > 0).any() else 1.0
    # Hours never observed get the average rather than zero.
    rate = np.where(exposure > 0, rate, mean)
    return rate / mean if mean > 0 else np.ones_like(rate)


def to_micros(series: pl.Series) -> np.ndarray:
    return series.dt.epoch("us").to_numpy()


def from_micros(values: np.ndarray, name: str) -> pl.Series:
    return pl.Series(name, values, dtype=pl.Int64).cast(pl.Datetime("us")).dt.replace_time_zone("UTC")


class TorchClock:
    """:meth:`WeeklyProfile.warp` and :meth:`~WeeklyProfile.unwarp` on float64 tensors of seconds
    since ``origin_s`` (a stream's start), in warped seconds; the identity without a profile
    (models saved before the transformer learned one). Tested equal to the numpy pair."""

    def __init__(self, profile: WeeklyProfile | None, origin_s: float, device: Any) -> None:
        import torch

        self.on = profile is not None
        self.origin_h = (origin_s * 1e6 - _EPOCH_US) / _US_PER_HOUR
        if profile is not None:
            self.intensity = torch.as_tensor(profile.intensity, dtype=torch.float64, device=device)
            self.cumulative = torch.as_tensor(profile.cumulative, dtype=torch.float64, device=device)

    def warp(self, t: Any) -> Any:
        if not self.on:
            return t
        hours = self.origin_h + t / 3600.0
        whole = hours.floor()
        weeks = (whole / HOURS_PER_WEEK).floor()
        hour = (whole - weeks * HOURS_PER_WEEK).long().clamp(0, HOURS_PER_WEEK - 1)
        return (weeks * HOURS_PER_WEEK + self.cumulative[hour] + (hours - whole) * self.intensity[hour]) * 3600.0

    def unwarp(self, w: Any) -> Any:
        import torch

        if not self.on:
            return w
        warped = w / 3600.0
        weeks = (warped / HOURS_PER_WEEK).floor()
        rest = warped - weeks * HOURS_PER_WEEK
        hour = (torch.searchsorted(self.cumulative, rest, right=True) - 1).clamp(0, HOURS_PER_WEEK - 1)
        frac = ((rest - self.cumulative[hour]) / self.intensity[hour]).clamp(0.0, 1.0)
        return (weeks * HOURS_PER_WEEK + hour + frac - self.origin_h) * 3600.0
