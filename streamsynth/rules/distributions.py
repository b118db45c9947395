"""Vectorised inverse-CDF samplers: each turns counter-based uniforms into draws.

Parameters are scalars or per-row arrays (a mean that depends on a merchant category), so
one call draws a whole batch; the uniforms come from :mod:`streamsynth.rng`, keeping every
draw a pure function of (seed, entity, event, field).
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri

_POISSON_EXACT_MAX = 60.0  # beyond this mean a continuity-corrected normal is accurate enough


def normal(u: np.ndarray, mean: np.ndarray | float, std: np.ndarray | float) -> np.ndarray:
    return mean + std * ndtri(u)


def lognormal(u: np.ndarray, mu: np.ndarray | float, sigma: np.ndarray | float) -> np.ndarray:
    return np.exp(mu + sigma * ndtri(u))


def uniform(u: np.ndarray, low: np.ndarray | float, high: np.ndarray | float) -> np.ndarray:
    return low + (high - low) * u


def exponential(u: np.ndarray, scale: np.ndarray | float) -> np.ndarray:
    return -scale * np.log1p(-u)


def poisson(u: np.ndarray, lam: np.ndarray | float) -> np.ndarray:
    """Poisson draws by CDF inversion (exact for means up to 60, normal beyond)."""
    lam = np.broadcast_to(np.asarray(lam, dtype=np.float64), u.shape)
    out = np.zeros(u.shape, dtype=np.int64)
    small = lam <= _POISSON_EXACT_MAX
    if small.any():
        us, ls = u[small], lam[small]
        p = np.exp(-ls)
        cdf = p.copy()
        k = np.zeros(us.shape, dtype=np.int64)
        todo = np.flatnonzero(us > cdf)
        step = 0
        # Walk the CDF up only for the rows still below their uniform; the tail is short.
        while todo.size and step < 400:
            step += 1
            p[todo] *= ls[todo] / step
            cdf[todo] += p[todo]
            k[todo] = step
            todo = todo[us[todo] > cdf[todo]]
        out[small] = k
    if (~small).any():
        lb = lam[~small]
        out[~small] = np.maximum(np.floor(lb + np.sqrt(lb) * ndtri(u[~small]) + 0.5), 0)
    return out


def bernoulli(u: np.ndarray, p: np.ndarray | float) -> np.ndarray:
    return u < p


def zipf_cdf(s: float, n: int) -> np.ndarray:
    """Cumulative probabilities of ranks 1..n with P(k) proportional to k**-s."""
    weights = np.arange(1, n + 1, dtype=np.float64) ** -s
    cdf = np.cumsum(weights)
    return cdf / cdf[-1]


def zipf(u: np.ndarray, cdf: np.ndarray) -> np.ndarray:
    """Ranks starting at 1 (index + 1 into the support)."""
    return np.minimum(np.searchsorted(cdf, u, side="right"), cdf.size - 1) + 1


def choice(u: np.ndarray, cum_weights: np.ndarray) -> np.ndarray:
    """Indices into the values: ``cum_weights`` is (k,) or per-row (n, k), ending in 1."""
    if cum_weights.ndim == 1:
        return np.minimum(np.searchsorted(cum_weights, u, side="right"), cum_weights.size - 1)
    idx = (u[:, None] >= cum_weights).sum(axis=1)
    return np.minimum(idx, cum_weights.shape[1] - 1)


def cumulative(weights: np.ndarray) -> np.ndarray:
    """Normalised cumulative weights along the last axis."""
    cum = np.cumsum(np.asarray(weights, dtype=np.float64), axis=-1)
    return cum / cum[..., -1:]
