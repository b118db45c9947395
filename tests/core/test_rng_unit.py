"""Unit tests of the counter-based random numbers (:mod:`streamsynth.rng`, :mod:`streamsynth.rng_torch`).

The reference below is SplitMix64 written out in plain Python integers, so the numpy and torch
chains are held against a third, independent computation, not only against each other.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from streamsynth import rng
from streamsynth.rng_torch import torch_uniform

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def _ref_mix(x: int) -> int:
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & MASK
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def _ref_hash(seed: int, *keys: int) -> int:
    h = _ref_mix(((seed & MASK) + GOLDEN) & MASK)
    for key in keys:
        h = _ref_mix(h ^ (((key & MASK) + GOLDEN) & MASK))
    return h


def _ref_uniform(seed: int, *keys: int) -> float:
    return ((_ref_hash(seed, *keys) >> 11) + 0.5) / 2.0**53


ENTITIES = np.arange(0, 2000, dtype=np.int64)
EVENTS = (ENTITIES * 7 + 3) % 101


def test_splitmix64_known_answer():
    # SplitMix64's published first output for state 0 is mix(0 + golden) = 0xE220A8397B1DCDAF
    assert _ref_mix(GOLDEN) == 0xE220A8397B1DCDAF
    assert int(rng.hash64(0)[0]) == 0xE220A8397B1DCDAF


@pytest.mark.parametrize("seed,keys", [(0, ()), (1, (5,)), (42, (17, 4, 2)), (2**63 + 5, (2**40, 0, 9))])
def test_hash64_and_uniform_match_the_reference(seed, keys):
    assert int(rng.hash64(seed, *keys)[0]) == _ref_hash(seed, *keys)
    assert rng.uniform(seed, *keys)[0] == _ref_uniform(seed, *keys)


def test_uniform_is_deterministic_and_inside_the_open_interval():
    a = rng.uniform(7, ENTITIES, EVENTS, 3)
    b = rng.uniform(7, ENTITIES, EVENTS, 3)
    assert a.dtype == np.float64 and a.shape == ENTITIES.shape
    np.testing.assert_array_equal(a, b)
    assert (a > 0).all() and (a < 1).all()
    # a uniform sample: mean near 1/2, all ten deciles populated
    assert abs(a.mean() - 0.5) < 0.03
    assert np.bincount((a * 10).astype(int), minlength=10).min() > 120


def _ref_unxorshift(y: int, s: int) -> int:
    x = y
    for _ in range(64 // s + 2):
        x = y ^ (x >> s)
    return x


def _ref_unmix(y: int) -> int:
    """The inverse of SplitMix64's finaliser (a bijection on 64-bit words)."""
    y = _ref_unxorshift(y, 31)
    y = (y * pow(0x94D049BB133111EB, -1, 1 << 64)) & MASK
    y = _ref_unxorshift(y, 27)
    y = (y * pow(0xBF58476D1CE4E5B9, -1, 1 << 64)) & MASK
    return _ref_unxorshift(y, 30)


def _key_hashing_to(seed: int, target: int) -> int:
    """The one key with ``hash64(seed, key) == target`` (mix is invertible)."""
    return ((_ref_unmix(target) ^ _ref_hash(seed)) - GOLDEN) & MASK


def test_key_inversion_helper_hits_its_target():
    for target in (0, 1, 2**63, 0x0123456789ABCDEF):
        key = _key_hashing_to(7, target)
        assert _ref_hash(7, key) == target
        assert int(rng.hash64(7, np.uint64(key))[0]) == target


def test_uniform_lowest_word_stays_above_zero():
    key = _key_hashing_to(7, 0)
    u = rng.uniform(7, np.uint64(key))[0]
    assert 0 < u < 2.0**-52


def test_uniform_highest_word_stays_below_one():
    key = _key_hashing_to(7, MASK)  # a hash of all ones: 0x0E1A6B92240F2402 for seed 7
    assert key < 2**63
    u = rng.uniform(7, key)[0]
    assert u < 1.0, f"uniform(7, {key:#x}) == {u!r}"
    assert np.isfinite(rng.normal(7, key)[0])
    assert torch_uniform(7, key).item() < 1.0


def test_uniform_depends_on_seed_and_every_key():
    base = rng.uniform(7, ENTITIES, EVENTS, 3)
    for other in (rng.uniform(8, ENTITIES, EVENTS, 3), rng.uniform(7, ENTITIES + 1, EVENTS, 3),
                  rng.uniform(7, ENTITIES, EVENTS + 1, 3), rng.uniform(7, ENTITIES, EVENTS, 4)):
        assert (other != base).mean() > 0.99
    # key order matters (the chain is not symmetric)
    assert rng.uniform(7, 1, 2)[0] != rng.uniform(7, 2, 1)[0]


def test_uniform_is_independent_of_the_batch_split():
    whole = rng.uniform(11, ENTITIES, EVENTS)
    halves = np.concatenate([rng.uniform(11, ENTITIES[:1000], EVENTS[:1000]),
                             rng.uniform(11, ENTITIES[1000:], EVENTS[1000:])])
    np.testing.assert_array_equal(whole, halves)
    singles = np.array([rng.uniform(11, int(e), int(v))[0] for e, v in zip(ENTITIES[:50], EVENTS[:50], strict=True)])
    np.testing.assert_array_equal(whole[:50], singles)
    # a shuffled batch gives the same draw per counter
    order = np.random.default_rng(0).permutation(len(ENTITIES))
    np.testing.assert_array_equal(rng.uniform(11, ENTITIES[order], EVENTS[order]), whole[order])


def test_scalar_keys_broadcast_against_arrays():
    got = rng.uniform(3, ENTITIES[:10], 5)
    want = np.array([_ref_uniform(3, int(e), 5) for e in ENTITIES[:10]])
    np.testing.assert_array_equal(got, want)


def test_normal_is_the_inverse_cdf_of_uniform():
    from scipy.stats import norm

    u = rng.uniform(5, ENTITIES)
    z = rng.normal(5, ENTITIES)
    np.testing.assert_allclose(z, norm.ppf(u), rtol=0, atol=1e-12)
    assert np.isfinite(z).all()


def test_integers_within_bounds_including_array_high():
    ints = rng.integers(9, 6, ENTITIES)
    assert ints.dtype == np.int64
    assert ints.min() == 0 and ints.max() == 5
    np.testing.assert_array_equal(ints, np.floor(rng.uniform(9, ENTITIES) * 6).astype(np.int64))
    high = ENTITIES % 4 + 1
    per = rng.integers(9, high, ENTITIES)
    assert (per >= 0).all() and (per < high).all()
    assert (per[high == 1] == 0).all()


def test_child_seed_distinct_per_name_and_stable():
    names = ["amount", "merchant", "time", "fraud", "card", "a", "b", "ab", "ba", ""]
    seeds = [rng.child_seed(42, n) for n in names]
    assert len(set(seeds)) == len(names)
    assert seeds == [rng.child_seed(42, n) for n in names]
    assert all(0 <= s < 2**63 for s in seeds)
    assert rng.child_seed(42, "amount") != rng.child_seed(43, "amount")
    assert rng.child_seed(42, "scenario", 1) != rng.child_seed(42, "scenario", 2)
    assert rng.child_seed(42, "x", "y") != rng.child_seed(42, "y", "x")
    assert rng.child_seed(42, "amount") == _ref_hash(42, rng.stable_int("amount")) & (2**63 - 1)


def test_stable_int_is_fnv1a():
    assert rng.stable_int("") == 0xCBF29CE484222325
    assert rng.stable_int("a") == 0xAF63DC4C8601EC8C  # FNV-1a 64 of "a"
    assert rng.stable_int(12345) == 12345


def test_torch_uniform_equals_numpy_bit_for_bit():
    e, v = torch.from_numpy(ENTITIES), torch.from_numpy(EVENTS)
    got = torch_uniform(42, e, v, 3)
    assert got.dtype == torch.float64 and got.device.type == "cpu"
    np.testing.assert_array_equal(got.numpy(), rng.uniform(42, ENTITIES, EVENTS, 3))
    # large seeds and keys with the top bit set (the int64 bit-pattern path)
    big = np.array([2**63 - 1, 2**62 + 17, 0, 1], dtype=np.int64)
    np.testing.assert_array_equal(torch_uniform(2**63 + 5, torch.from_numpy(big)).numpy(),
                                  rng.uniform(2**63 + 5, big))
    # scalar keys only
    assert torch_uniform(42, 17, 4).item() == rng.uniform(42, 17, 4)[0]


def test_torch_uniform_is_independent_of_the_batch_split():
    e, v = torch.from_numpy(ENTITIES), torch.from_numpy(EVENTS)
    whole = torch_uniform(1, e, v)
    halves = torch.cat([torch_uniform(1, e[:700], v[:700]), torch_uniform(1, e[700:], v[700:])])
    assert torch.equal(whole, halves)
    assert bool((whole > 0).all()) and bool((whole < 1).all())
