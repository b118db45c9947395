"""Entity lifecycles drawn for sampled entities: the training entities' joint shapes, moved only
within their neighbours' room, the same for the same entity, and kept in a model file."""

from __future__ import annotations

import json

import numpy as np

from streamsynth.models.lifecycle import SAMPLES, Lifecycles


def _cohort(n: int = 500) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Births in the first tenth of a 100-day span; the early-born live longer and make more."""
    g = np.random.default_rng(3)
    span = 100 * 86_400.0
    birth = g.uniform(0, 0.1 * span, n)
    count = 1 + g.poisson(1 + 20 * (1 - birth / (0.1 * span)))
    life = np.where(count > 1, g.uniform(0.2, 0.5, n) * span, 0.0)
    return birth, birth + life, count


def test_draws_keep_the_joint_shape_of_births_lifetimes_and_counts():
    birth, last, count = _cohort()
    life = Lifecycles.fit(birth, last, count, 100 * 86_400.0, seed=0)
    b, end, n = life.draw(seed=7, entities=np.arange(20_000))
    assert b.min() >= birth.min() and b.max() <= birth.max()  # a cohort's edges stay sharp
    assert (end >= b).all() and (n >= 1).all()
    assert set(np.unique(n)) <= set(np.unique(count))
    # counts come from the data's distribution, and with them their tie to the birth
    assert abs(n.mean() - count.mean()) < 0.05 * count.mean()
    assert np.corrcoef(b, n)[0, 1] < -0.5 and np.corrcoef(birth, count)[0, 1] < -0.5
    # no sampled birth repeats a real one: each moves within its room
    assert np.isin(b, birth).mean() < 0.01


def test_the_same_entity_gets_the_same_plan_and_others_differ():
    life = Lifecycles.fit(*_cohort(), 100 * 86_400.0, seed=0)
    first = life.draw(seed=1, entities=np.arange(100))
    again = life.draw(seed=1, entities=np.arange(50, 100))
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a[50:], b)
    other = life.draw(seed=2, entities=np.arange(100))
    assert not np.array_equal(first[0], other[0])


def test_at_most_samples_shapes_are_kept_and_they_survive_json():
    n = SAMPLES + 1000
    birth = np.linspace(0, 10, n)
    life = Lifecycles.fit(birth, birth + 1, np.full(n, 2), 20.0, seed=0)
    assert len(life.count) == SAMPLES
    back = Lifecycles.from_json(json.loads(json.dumps(life.to_json())))
    for a, b in ((life.birth, back.birth), (life.last, back.last), (life.count, back.count)):
        np.testing.assert_allclose(a, b, atol=1e-6)
    assert Lifecycles.from_json(None) is None


def test_one_entity_is_drawn_as_it_was():
    life = Lifecycles.fit(np.array([5.0]), np.array([9.0]), np.array([4]), 10.0, seed=0)
    b, end, n = life.draw(seed=0, entities=np.arange(3))
    assert b.tolist() == [5.0] * 3 and end.tolist() == [9.0] * 3 and n.tolist() == [4] * 3


def test_a_birth_moves_at_most_a_quarter_of_an_hour_keeping_its_time_of_day():
    birth = np.arange(10) * 86_400.0 + 9 * 3600  # one customer a day, each at 9:00
    life = Lifecycles.fit(birth, birth + 3600, np.full(10, 3), 10 * 86_400.0, seed=0)
    b, _, _ = life.draw(seed=0, entities=np.arange(1000))
    assert np.abs(b % 86_400 - 9 * 3600).max() <= 900


def test_the_samplers_gap_tokens_are_the_codecs():
    import polars as pl
    import torch

    from streamsynth.encoders import InterArrivalEncoder
    from streamsynth.models.transformer_codec import offset_class
    from streamsynth.models.transformer_sample import gap_tokens

    g = np.random.default_rng(0)
    train = np.concatenate([np.zeros(50), np.exp(g.uniform(-3, 14, 2000))])
    enc = InterArrivalEncoder().fit(pl.Series("gap", train))
    gaps = np.concatenate([[0.0, 1e-9, 1e-3, 1e9], np.exp(g.uniform(-8, 18, 5000))])
    bins, off = enc.encode(gaps)
    got = gap_tokens(torch.as_tensor(gaps), torch.as_tensor(enc.edges)).numpy()
    np.testing.assert_array_equal(got[:, 0], bins)
    np.testing.assert_array_equal(got[:, 1], offset_class(off))


def test_only_entities_born_and_gone_inside_the_span_are_bounded():
    birth, last, count = _cohort()  # lives of 20-50% of the span
    assert Lifecycles.fit(birth, last, count, 100 * 86_400.0, seed=0).bounded
    lifelong = Lifecycles.fit(birth, birth + 90 * 86_400.0, count, 100 * 86_400.0, seed=0)
    assert not lifelong.bounded
    assert not Lifecycles.fit(birth[:5], last[:5], count[:5], 100 * 86_400.0, seed=0).bounded  # too few
    assert not Lifecycles.from_json(json.loads(json.dumps(lifelong.to_json()))).bounded
