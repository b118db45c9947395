"""Counter-based random numbers: every draw is a pure function of (seed, entity, event, field).

Generators draw through these helpers instead of a sequential RNG so that output does not
depend on batch size, window size or sharding: entity 17's 5th event is the same whether
it is generated alone, in a batch of 4,096 or on shard 3/16.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_BELOW_ONE = np.nextafter(1.0, 0.0)  # the largest double under 1
_TWO_POW_53 = float(2**53)


def _mix(x: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser on a uint64 array (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def _as_u64(values: int | np.ndarray) -> np.ndarray:
    return np.atleast_1d(np.asarray(values).astype(np.uint64, copy=False))


def hash64(seed: int, *keys: int | np.ndarray) -> np.ndarray:
    """A well-mixed uint64 per element of the broadcast ``keys``, keyed by ``seed``."""
    with np.errstate(over="ignore"):
        h = _mix(_as_u64(seed & 0xFFFFFFFFFFFFFFFF) + _GOLDEN)
        for key in keys:
            h = _mix(h ^ (_as_u64(key) + _GOLDEN))
    return h


def uniform(seed: int, *keys: int | np.ndarray) -> np.ndarray:
    """Uniform floats in the open interval (0, 1), one per element of the broadcast keys."""
    bits = hash64(seed, *keys) >> np.uint64(11)
    # The top word, (2**53 - 1 + 0.5) / 2**53, rounds to 1.0: held just below it, every other value unchanged.
    return np.minimum((bits.astype(np.float64) + 0.5) / _TWO_POW_53, _BELOW_ONE)


def normal(seed: int, *keys: int | np.ndarray) -> np.ndarray:
    """Standard normal draws (inverse CDF of :func:`uniform`)."""
    # scipy.special costs about 0.3 s to import: only the normal draws pay it, not the CLI's start
    from scipy.special import ndtri

    return ndtri(uniform(seed, *keys))


def integers(seed: int, high: int | np.ndarray, *keys: int | np.ndarray) -> np.ndarray:
    """Integers in ``[0, high)`` (``high`` may be an array), one per element of the keys."""
    u = uniform(seed, *keys)
    return np.minimum((u * high).astype(np.int64), np.asarray(high, dtype=np.int64) - 1)


def child_seed(seed: int, *path: int | str) -> int:
    """A derived seed for a named sub-stream (a column, a scenario, a shard of work)."""
    keys = [stable_int(p) for p in path]
    return int(hash64(seed, *keys)[0] & np.uint64(0x7FFFFFFFFFFFFFFF))


def stable_int(part: int | str) -> int:
    """Strings become integers stably across runs (Python's hash() is salted)."""
    if isinstance(part, int):
        return part
    h = 0xCBF29CE484222325
    for byte in part.encode():
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h
