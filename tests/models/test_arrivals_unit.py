"""Unit tests of the baseline's arrival clock (:mod:`streamsynth.models.arrivals`): the weekly
profile's fit, its time warp and unwarp, and the microsecond conversions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from streamsynth.models.arrivals import HOURS_PER_WEEK, WeeklyProfile, from_micros, to_micros

HOUR_US = 3_600_000_000
MONDAY = datetime(2024, 4, 1, tzinfo=UTC)  # a Monday
MONDAY_US = int(MONDAY.timestamp() * 1_000_000)
WEEKS_SINCE_EPOCH_MONDAY = (MONDAY - datetime(1970, 1, 5, tzinfo=UTC)).days // 7


def office_hours_times(weeks: int = 4, seed: int = 0) -> np.ndarray:
    """Events on weekdays 09:00-17:00 only, a few per hour, over ``weeks`` weeks (microseconds)."""
    rng = np.random.default_rng(seed)
    out = []
    for day in range(7 * weeks):
        if day % 7 >= 5:
            continue
        for hour in range(9, 17):
            base = MONDAY_US + (day * 24 + hour) * HOUR_US
            out.append(base + rng.integers(0, HOUR_US, 5))
    return np.sort(np.concatenate(out))


def test_warp_by_hand_on_a_two_level_profile():
    profile = WeeklyProfile(np.array([1.5] * 84 + [0.5] * 84))
    assert profile.cumulative[-1] == pytest.approx(HOURS_PER_WEEK)
    week0 = WEEKS_SINCE_EPOCH_MONDAY * HOURS_PER_WEEK
    cases = {
        0: 0.0,
        HOUR_US: 1.5,  # one hour at intensity 1.5
        HOUR_US // 2: 0.75,
        85 * HOUR_US: 84 * 1.5 + 0.5,  # past the change at hour 84
        HOURS_PER_WEEK * HOUR_US: 168.0,  # a whole week is a week of average hours
    }
    for offset, want in cases.items():
        assert profile.warp(np.array([MONDAY_US + offset]))[0] == pytest.approx(week0 + want, abs=1e-9)
    # and back
    for offset, want in cases.items():
        assert profile.unwarp(np.array([week0 + want]))[0] == MONDAY_US + offset


def test_fit_finds_office_hours():
    times = office_hours_times()
    profile = WeeklyProfile.fit(times)
    intensity = profile.intensity.reshape(7, 24)
    assert profile.intensity.shape == (HOURS_PER_WEEK,)
    assert profile.intensity.mean() == pytest.approx(1.0)
    assert (profile.intensity > 0).all()
    # busy hours are the office hours of weekdays; nights and weekends sit far below them
    busy = intensity[:5, 9:17]
    assert busy.min() > 5 * intensity[:5, :9].max()
    assert busy.min() > 5 * intensity[5:, :].max()
    assert np.ptp(busy) / busy.mean() < 0.3  # about equal across the office hours


def test_fit_with_little_data_shrinks_the_weekdays_towards_flat():
    times = office_hours_times(weeks=4)
    short = times[times < MONDAY_US + 4 * 24 * HOUR_US]  # Monday to Thursday only
    monday = short[short < MONDAY_US + 24 * HOUR_US]
    short = np.sort(np.concatenate([short, monday + 1]))  # twice as busy: a weekday effect past chance
    profile = WeeklyProfile.fit(short)
    day_means = profile.intensity.reshape(7, 24).mean(1)
    # the days never observed get the average observed day, not zero
    np.testing.assert_allclose(day_means[4:], day_means[:4].mean(), rtol=1e-9)
    # by hand: 80 events on Monday, 40 on the others, seen Mon 09:00 .. Thu 16:59 (80 hours: exposure
    # 15, 24, 24, 17 hours); weekday rates relative to their mean, shrunk towards 1 by weight (80 / 168) / 2
    rates = np.array([80, 40, 40, 40]) / np.array([15, 24, 24, 17])
    weight = (80 / HOURS_PER_WEEK) / 2
    dow = weight * rates / rates.mean() + (1 - weight)
    # (office hours only: the night hours sit on the intensity floor, the same on every day)
    office = profile.intensity.reshape(7, 24)[:, 9:17].mean(1)
    np.testing.assert_allclose(office[:4] / office[:4].mean(), dow, rtol=1e-9)


@pytest.mark.parametrize("weeks", [1, 4])
def test_warp_unwarp_are_inverse_and_monotone(weeks):
    profile = WeeklyProfile.fit(office_hours_times(weeks=weeks))
    rng = np.random.default_rng(3)
    t = np.sort(MONDAY_US + rng.integers(-5 * HOURS_PER_WEEK * HOUR_US, 10 * HOURS_PER_WEEK * HOUR_US, 5000))
    w = profile.warp(t)
    assert np.all(np.diff(w) >= 0)  # monotone
    strictly = np.diff(t) > 0
    assert np.all(np.diff(w)[strictly] > 0)  # every hour has some intensity
    back = profile.unwarp(w)
    assert back.dtype == np.int64
    # microseconds: float rounding of ~5e5 warped hours, divided by an hour's intensity (down to
    # 0.02 at night), costs up to a few tens of microseconds
    assert np.abs(back - t).max() <= 100
    # unwarp is monotone on warped time too
    grid = np.linspace(w.min(), w.max(), 4000)
    assert np.all(np.diff(profile.unwarp(grid)) >= 0)


def test_warp_repeats_weekly():
    profile = WeeklyProfile.fit(office_hours_times())
    t = MONDAY_US + np.arange(0, HOURS_PER_WEEK * HOUR_US, 7 * 60_000_000)
    np.testing.assert_allclose(profile.warp(t + HOURS_PER_WEEK * HOUR_US) - profile.warp(t), HOURS_PER_WEEK,
                               rtol=0, atol=1e-6)
    # over a whole week warped time advances by exactly a week's average hours
    assert profile.warp(np.array([MONDAY_US + HOURS_PER_WEEK * HOUR_US]))[0] - profile.warp(
        np.array([MONDAY_US]))[0] == pytest.approx(HOURS_PER_WEEK)


def test_warp_before_the_epoch_monday():
    profile = WeeklyProfile(np.ones(HOURS_PER_WEEK))
    sunday_1970 = int(datetime(1970, 1, 4, 23, 0, tzinfo=UTC).timestamp() * 1_000_000)
    assert profile.warp(np.array([sunday_1970]))[0] == pytest.approx(-1.0)
    assert profile.unwarp(np.array([-1.0]))[0] == sunday_1970


def test_micros_round_trip():
    times = [MONDAY + timedelta(microseconds=1), MONDAY + timedelta(days=3, hours=5, microseconds=7),
             datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC)]
    series = pl.Series("ts", times).cast(pl.Datetime("us", "UTC"))
    us = to_micros(series)
    assert us.dtype == np.int64
    assert us[0] == MONDAY_US + 1 and us[2] == -1
    back = from_micros(us, "ts")
    assert back.name == "ts" and back.dtype == pl.Datetime("us", "UTC")
    assert back.to_list() == times
    # a millisecond column gives microseconds too
    assert to_micros(series.cast(pl.Datetime("ms", "UTC")))[1] == us[1] - 7


def test_counts_that_differ_by_chance_only_give_a_flat_profile():
    """A reading every 5 minutes, a few missing, and a Poisson stream with no daily cycle: the
    hours differ from flat no more than chance, so the profile is flat and a regular series keeps
    its regular gaps."""
    regular = MONDAY_US + np.arange(0, 14 * 24 * 12) * 300_000_000
    regular = np.delete(regular, [100, 101, 2_000, 3_333])
    assert np.allclose(WeeklyProfile.fit(regular).intensity, 1.0)
    poisson = MONDAY_US + np.sort(np.random.default_rng(1).integers(0, 14 * 24 * HOUR_US, 3_000))
    assert np.allclose(WeeklyProfile.fit(poisson).intensity, 1.0)
    assert np.ptp(WeeklyProfile.fit(office_hours_times(weeks=2)).intensity) > 1.0
