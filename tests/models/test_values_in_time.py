"""The baseline's values in time: a value that moves smoothly along an entity's events keeps doing
so, and one that follows the hour of day or of the week keeps following it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
from scipy import stats

from streamsynth.models import load_model
from streamsynth.models.baseline import BaselineSynthesizer
from streamsynth.models.persistence import Persistence

START = datetime(2024, 3, 4, tzinfo=UTC)


def _lag_one(values: np.ndarray) -> float:
    return float(np.corrcoef(values[1:], values[:-1])[0, 1])


def _ar_series(rho: float, n: int, seed: int, entities: int = 1) -> pl.DataFrame:
    """``entities`` sensors, each reading every 5 minutes a value following an AR(1) with ``rho``
    (on a skewed scale, so the marginal is not normal), and a noise column drawn afresh."""
    rng = np.random.default_rng(seed)
    frames = []
    for k in range(entities):
        z = np.empty(n)
        z[0] = rng.normal()
        for i in range(1, n):
            z[i] = rho * z[i - 1] + np.sqrt(1 - rho**2) * rng.normal()
        frames.append(pl.DataFrame({
            "ts": [START + timedelta(minutes=5 * i) for i in range(n)],
            "sensor": f"s{k:03d}",
            "temperature": np.round(np.exp(0.3 * z) * 60.0, 2),
            "noise": rng.normal(size=n),
        }))
    return pl.concat(frames)


def test_a_smooth_series_stays_smooth_and_keeps_its_marginal():
    real = _ar_series(0.97, 3_000, seed=1).drop("sensor")
    model = BaselineSynthesizer(seed=0).fit(real)
    out = model.sample(n_events=3_000, start=START)
    temperature = out["temperature"].to_numpy()
    assert abs(_lag_one(temperature) - _lag_one(real["temperature"].to_numpy())) < 0.05
    # The noise column does not move with its past in the data, and stays so.
    assert abs(_lag_one(out["noise"].to_numpy())) < 0.1
    # Only the order along the series changes: the values are the real ones' distribution.
    assert stats.ks_2samp(temperature, real["temperature"].to_numpy()).statistic < 0.15


def test_each_entity_keeps_its_own_path_whatever_the_batches_and_shards():
    real = _ar_series(0.9, 200, seed=2, entities=30)
    model = BaselineSynthesizer(seed=0, lifecycle="off").fit(real)
    whole = model.sample(n_events=4_000, start=START)
    assert whole.equals(model.sample(n_events=4_000, start=START, batch_size=333))
    per_sensor = [g["temperature"].to_numpy() for _, g in whole.group_by("sensor") if g.height > 20]
    assert np.median([_lag_one(v) for v in per_sensor]) > 0.7
    # Entities never share a path: the lag-one correlation across neighbours in time is low.
    assert abs(_lag_one(whole["temperature"].to_numpy())) < 0.5


def test_persistence_is_saved_with_the_model(tmp_path):
    model = BaselineSynthesizer(seed=0).fit(_ar_series(0.95, 1_000, seed=3).drop("sensor"))
    assert model.persistence.rho.max() > 0.9
    model.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert again.sample(n_events=500, start=START).equals(model.sample(n_events=500, start=START))


def test_the_recursion_continues_across_batches_and_restarts_after_a_gap():
    """Cut anywhere, the paths are those of one pass; an entity whose previous event was not
    seen starts afresh from its draw."""
    rho = np.array([0.8, 0.0, -0.5])
    persistence = Persistence(rho)
    rng = np.random.default_rng(0)
    # Entity 0 with a long run (the linear filter), entities 1-4 with short ones, interleaved.
    entity = np.r_[np.zeros(150, dtype=np.int64), rng.integers(1, 5, 200)]
    seq = np.zeros_like(entity)
    for e in np.unique(entity):
        seq[entity == e] = np.arange((entity == e).sum())
    shuffle = rng.permutation(entity.size)
    entity, seq = entity[shuffle], seq[shuffle]
    z = rng.normal(size=(entity.size, 3))
    expected = z.copy()
    for e in np.unique(entity):
        rows = np.flatnonzero(entity == e)[np.argsort(seq[entity == e])]
        for k in range(1, rows.size):
            for c in (0, 2):
                expected[rows[k], c] = rho[c] * expected[rows[k - 1], c] + np.sqrt(1 - rho[c] ** 2) * z[rows[k], c]
    one_pass = persistence.apply(z, entity, seq, persistence.carry(5))
    np.testing.assert_allclose(one_pass, expected, atol=1e-12)
    # The same events in batches of events in order of their number (as a stream releases them).
    order = np.argsort(seq, kind="stable")
    carry = persistence.carry(5)
    pieces = [persistence.apply(z[part], entity[part], seq[part], carry) for part in np.array_split(order, 7)]
    np.testing.assert_allclose(np.concatenate(pieces), expected[order], atol=1e-12)
    # An event whose predecessor never came starts from its own draw.
    fresh = persistence.apply(z[:1], np.array([0]), np.array([10_000]), carry)
    np.testing.assert_allclose(fresh, z[:1])


def _hourly(days: int, seed: int) -> pl.DataFrame:
    """Readings every 10 minutes of a demand that peaks at 18:00 on weekdays and at noon on
    weekends, with noise."""
    rng = np.random.default_rng(seed)
    ts = [START + timedelta(minutes=10 * i) for i in range(days * 144)]
    hour = np.array([t.hour + t.minute / 60 for t in ts])
    weekend = np.array([t.weekday() >= 5 for t in ts])
    peak = np.where(weekend, 12.0, 18.0)
    demand = 100 + 80 * np.exp(-(((hour - peak) / 3.0) ** 2)) + rng.normal(0, 5, len(ts))
    return pl.DataFrame({"ts": ts, "demand": np.round(demand, 1)})


def test_a_value_that_follows_the_hour_and_weekday_keeps_following_them():
    real = _hourly(56, seed=4)
    model = BaselineSynthesizer(seed=0).fit(real)
    out = model.sample(start=START)

    def profile(frame: pl.DataFrame) -> pl.DataFrame:
        weekend = (pl.col("ts").dt.weekday() >= 6).alias("weekend")
        return (frame.with_columns(pl.col("ts").dt.hour().alias("hour"), weekend)
                .group_by("weekend", "hour").agg(pl.col("demand").mean()).sort("weekend", "hour"))

    mine, theirs = profile(out), profile(real)
    assert mine.height == theirs.height == 48
    # Hour and weekday means within a few units of the real ones (the peak is 80 above the base).
    assert float((mine["demand"] - theirs["demand"]).abs().max()) < 15


def test_a_wandering_series_is_not_mistaken_for_a_daily_cycle():
    """Over a few days a slow random walk differs by hour by chance; on days it was not learned
    from the hours explain nothing, so no calendar is kept."""
    real = _ar_series(0.995, 8 * 288, seed=5).drop("sensor")  # 8 days every 5 minutes
    model = BaselineSynthesizer(seed=0).fit(real)
    assert all(plan.parent is None for plan in model.plans)
    assert model.persistence.rho.max() > 0.9


def _sessions(n: int, seed: int) -> pl.DataFrame:
    """Web sessions that follow a grammar: login, a few views and searches (a search is always
    followed by a view), then logout; a device column drawn afresh per event."""
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n):
        steps = ["login"]
        for _ in range(rng.integers(1, 6)):
            steps += ["search", "view"] if rng.random() < 0.4 else ["view"]
        steps.append("logout")
        born = START + timedelta(minutes=int(rng.integers(0, 20 * 24 * 60)))
        for k, step in enumerate(steps):
            rows.append({"ts": born + timedelta(seconds=30 * k), "session": f"S{s:05d}", "action": step,
                         "device": str(rng.choice(["ios", "android", "web"]))})
    return pl.DataFrame(rows).sort("ts")


def _pairs(frame: pl.DataFrame) -> list[tuple[str, str]]:
    frame = frame.sort("session", "ts", maintain_order=True)
    actions, sessions = frame["action"].to_list(), frame["session"].to_list()
    return [(a, b) for a, b, s, t in zip(actions, actions[1:], sessions, sessions[1:], strict=False) if s == t]


def test_a_session_keeps_the_order_of_its_steps():
    real = _sessions(600, seed=6)
    model = BaselineSynthesizer(seed=0).fit(real)
    assert "action" in model.transitions and "device" not in model.transitions
    out = model.sample(start=START)
    allowed = set(_pairs(real))
    pairs = _pairs(out)
    assert len(pairs) > 1_000
    assert sum(p in allowed for p in pairs) / len(pairs) > 0.95
    firsts = out.sort("ts").group_by("session", maintain_order=True).agg(pl.col("action").first())["action"]
    assert (firsts == "login").mean() > 0.9
    assert out.equals(model.sample(start=START, batch_size=97))


def test_transitions_are_saved_with_the_model(tmp_path):
    model = BaselineSynthesizer(seed=0).fit(_sessions(200, seed=7))
    model.save(tmp_path / "m")
    again = load_model(tmp_path / "m")
    assert again.sample(n_events=800, start=START).equals(model.sample(n_events=800, start=START))


def test_events_held_back_at_a_window_end_keep_their_own_entity():
    """Past the training span, each span brings a new population; the time snapper can hold the
    last events of one until the next one's first arrive, and those keep their own entity (its
    id, its previous step), not the next population's entity of the same row."""
    model = BaselineSynthesizer(seed=0).fit(_sessions(300, seed=8))
    span = model.fitted_span
    out = model.sample(start=START, end=START + 3 * span)
    number = out["event_id"].str.split("-").list.get(1)
    per_number = out.group_by(number.alias("number")).agg(pl.col("session").n_unique())
    assert out.height > 3_000 and per_number["session"].max() == 1
    assert out["ts"].is_sorted()
