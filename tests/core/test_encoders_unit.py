"""Unit tests of the per-type column encoders (:mod:`streamsynth.encoders`): fit, encode/decode,
cdf/ppf, null handling, and the JSON round trip through ``encoder_from_json``."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest

from streamsynth.encoders import (
    ENCODERS,
    CategoricalEncoder,
    InterArrivalEncoder,
    QuantileEncoder,
    encoder_from_json,
)
from streamsynth.errors import StreamsynthError


def via_json(encoder):
    return encoder_from_json(json.loads(json.dumps(encoder.to_json())))


# -- categorical ----------------------------------------------------------------------------------

COLOURS = pl.Series("colour", ["red"] * 5 + ["blue"] * 3 + [None] * 2 + ["green"])


def test_categorical_codes_are_frequency_ordered_with_nulls():
    enc = CategoricalEncoder().fit(COLOURS)
    assert enc.values == ["red", "blue", None, "green"]
    np.testing.assert_allclose(enc.probs, [5 / 11, 3 / 11, 2 / 11, 1 / 11])
    assert enc.size == 4 and enc.dtype == "String"
    codes = enc.encode(COLOURS)
    assert codes.tolist() == [0] * 5 + [1] * 3 + [2] * 2 + [3]
    assert enc.decode(codes).to_list() == COLOURS.to_list()  # nulls round-trip too


def test_categorical_unseen_values_go_to_the_last_code_in_order():
    enc = CategoricalEncoder().fit(COLOURS)
    codes = enc.encode(pl.Series("colour", ["purple", "red", None, "blue", "purple"]))
    assert codes.tolist() == [3, 0, 2, 1, 3]  # the input order is kept


def test_categorical_rare_tail_shares_one_bucket():
    values = pl.Series("c", ["a"] * 6 + ["b"] * 5 + ["c"] * 4 + ["d"] * 2 + ["e"])
    enc = CategoricalEncoder(max_categories=3).fit(values)
    assert enc.values == ["a", "b", "c"]  # the bucket decodes to its most frequent member
    np.testing.assert_allclose(enc.probs, [6 / 18, 5 / 18, 7 / 18])
    assert enc.encode(values).tolist() == [0] * 6 + [1] * 5 + [2] * 7


@pytest.mark.parametrize("series", [
    pl.Series("flag", [True, False, True, True]),
    pl.Series("code", [404, 200, 200, 500, 200], dtype=pl.Int64),
    pl.Series("small", [1, 2, 2], dtype=pl.Int32),
])
def test_categorical_keeps_the_dtype_through_json(series):
    enc = CategoricalEncoder().fit(series)
    back = via_json(enc)
    assert isinstance(back, CategoricalEncoder)
    assert back.values == enc.values and back.dtype == str(series.dtype)
    np.testing.assert_array_equal(back.probs, enc.probs)
    decoded = back.decode(back.encode(series))
    assert decoded.dtype == series.dtype and decoded.to_list() == series.to_list()


# -- quantile -------------------------------------------------------------------------------------

def normal_values(n: int = 2000, seed: int = 1) -> pl.Series:
    return pl.Series("x", np.random.default_rng(seed).normal(10.0, 3.0, n))


def test_quantile_knots_span_the_data():
    x = normal_values()
    enc = QuantileEncoder(n_bins=16).fit(x)
    assert enc.log is False and enc.integer is False and enc.null_rate == 0.0
    assert enc.knots[0] == x.min() and enc.knots[-1] == x.max()
    assert np.all(np.diff(enc.knots) >= 0) and np.all(np.diff(enc.probs) > 0)
    assert enc.probs[0] == 0.0 and enc.probs[-1] == 1.0
    assert enc.size == len(enc.knots) - 1
    np.testing.assert_allclose(enc.bin_probs().sum(), 1.0)
    # equal-probability core knots, plus tail knots the sample supports (1/2000 < 1e-3, not 3e-4)
    assert {1e-3, 3e-3, 1e-2, 1 - 1e-3}.issubset(set(np.round(enc.probs, 12)))
    assert 3e-4 not in set(np.round(enc.probs, 12))


def test_quantile_encode_decode_round_trip():
    x = normal_values().to_numpy()
    enc = QuantileEncoder().fit(pl.Series("x", x))
    bins, offset = enc.encode(x)
    assert bins.min() >= 0 and bins.max() <= enc.size - 1
    assert (offset >= 0).all() and (offset < 1).all()
    # exact up to the offset's clip below 1 (1e-9 of a bin's width)
    np.testing.assert_allclose(enc.decode(bins, offset), x, rtol=0, atol=1e-8)
    # out-of-range values are clipped to the ends
    b, o = enc.encode(np.array([x.min() - 100, x.max() + 100]))
    np.testing.assert_allclose(enc.decode(b, o), [x.min(), x.max()], atol=1e-9)


def test_quantile_cdf_ppf_are_inverse_and_monotone():
    x = normal_values().to_numpy()
    enc = QuantileEncoder().fit(pl.Series("x", x))
    grid = np.linspace(x.min(), x.max(), 500)
    u = enc.cdf(grid)
    assert np.all(np.diff(u) >= 0) and u.min() > 0 and u.max() < 1
    np.testing.assert_allclose(enc.ppf(u)[1:], grid[1:], atol=1e-6)  # cdf(min) is clipped to 1e-9
    assert 0 <= enc.ppf(u)[0] - grid[0] < 1e-4
    p = np.linspace(0.001, 0.999, 200)
    np.testing.assert_allclose(enc.cdf(enc.ppf(p)), p, atol=1e-9)
    # the median of the fitted data sits at 1/2
    assert abs(enc.cdf(np.array([np.median(x)]))[0] - 0.5) < 0.01


def test_quantile_log_space_for_heavy_tails():
    x = pl.Series("amount", np.random.default_rng(2).lognormal(3.0, 1.5, 3000))
    enc = QuantileEncoder().fit(x)
    assert enc.log is True
    np.testing.assert_allclose(np.exp(enc.knots[[0, -1]]), [x.min(), x.max()], rtol=1e-12)
    values = x.to_numpy()
    np.testing.assert_allclose(enc.decode(*enc.encode(values)), values, rtol=1e-9)
    assert (enc.ppf(np.array([1e-6, 0.5, 1 - 1e-6])) > 0).all()
    with pytest.raises(StreamsynthError, match="positive"):
        QuantileEncoder(log=True).fit(pl.Series("x", [0.0, 1.0, 2.0]))


def test_quantile_integers_decode_to_integers_and_null_rate():
    x = pl.Series("n", [1, None, 3, 7, None, 10, 12, None], dtype=pl.Int64)
    enc = QuantileEncoder(n_bins=4).fit(x)
    assert enc.integer is True and enc.null_rate == pytest.approx(3 / 8)
    out = enc.ppf(np.linspace(0.01, 0.99, 50))
    np.testing.assert_array_equal(out, np.round(out))
    assert out.min() >= 1 and out.max() <= 12
    present = x.drop_nulls().to_numpy()
    np.testing.assert_array_equal(enc.decode(*enc.encode(present)), present)


def test_quantile_point_mass_and_jitter():
    x = pl.Series("x", [5.0] * 90 + list(np.linspace(6, 15, 10)))
    enc = QuantileEncoder(n_bins=10).fit(x)
    plain = enc.cdf(np.full(200, 5.0))
    assert np.unique(plain).size == 1
    jitter = np.random.default_rng(0).uniform(size=200)
    spread = enc.cdf(np.full(200, 5.0), jitter=jitter)
    # the tie is spread over the knots it covers (probabilities 0 .. 0.8 of the ten-bin grid)
    assert spread.min() < 0.01 and 0.75 < spread.max() <= 0.8
    assert np.all(np.diff(spread[np.argsort(jitter)]) >= 0)  # in jitter order
    b, o = enc.encode(np.array([5.0]))
    assert enc.decode(b, o)[0] == 5.0


def test_quantile_needs_values():
    with pytest.raises(StreamsynthError, match="no numeric values"):
        QuantileEncoder().fit(pl.Series("x", [None, None], dtype=pl.Float64))
    with pytest.raises(StreamsynthError, match="no numeric values"):
        QuantileEncoder().fit(pl.Series("x", [float("nan"), float("inf")]))


def test_quantile_json_round_trip_is_exact():
    x = pl.Series("amount", list(np.random.default_rng(4).lognormal(2, 1, 500)) + [None] * 5)
    enc = QuantileEncoder(n_bins=32).fit(x)
    back = via_json(enc)
    assert isinstance(back, QuantileEncoder)
    assert (back.name, back.n_bins, back.log, back.integer, back.null_rate) == (
        "amount", 32, enc.log, False, pytest.approx(5 / 505))
    np.testing.assert_array_equal(back.knots, enc.knots)
    np.testing.assert_array_equal(back.probs, enc.probs)
    u = np.linspace(0.01, 0.99, 33)
    np.testing.assert_array_equal(back.ppf(u), enc.ppf(u))


# -- inter-arrival --------------------------------------------------------------------------------

def test_interarrival_zero_bin_and_round_trip():
    gaps = pl.Series("g", [0.0, 0.0, 0.5, 2.0, 60.0, 3600.0, None])
    enc = InterArrivalEncoder(n_bins=8).fit(gaps)
    assert enc.zero_rate == pytest.approx(2 / 6) and enc.size == 9
    bins, offset = enc.encode(np.array([0.0, 0.5, 2.0, 60.0, 3600.0]))
    assert bins[0] == 0 and (bins[1:] >= 1).all() and np.all(np.diff(bins[1:]) >= 0)
    back = enc.decode(bins, offset)
    assert back[0] == 0.0
    np.testing.assert_allclose(back[1:], [0.5, 2.0, 60.0, 3600.0], rtol=1e-9)
    again = via_json(enc)
    np.testing.assert_array_equal(again.edges, enc.edges)
    assert again.zero_rate == enc.zero_rate


def test_unknown_encoder_type_is_a_clear_error():
    assert set(ENCODERS) == {"categorical", "quantile", "interarrival"}
    with pytest.raises(StreamsynthError, match="unknown encoder type 'nope'"):
        encoder_from_json({"type": "nope"})
    with pytest.raises(StreamsynthError, match="unknown encoder type None"):
        encoder_from_json({})
