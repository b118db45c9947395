"""The TimeGAN paper's discriminative and predictive scores on window arrays."""

from __future__ import annotations

import numpy as np
import pytest

from streamsynth.errors import StreamsynthError
from streamsynth.evaluate.utility import discriminative_score, predictive_score


def sines(n: int, seed: int, length: int = 24, features: int = 4) -> np.ndarray:
    """Sine windows as in the paper: frequency and phase uniform in [0, 0.1], scaled to [0, 1]."""
    rng = np.random.default_rng(seed)
    freq = rng.uniform(0, 0.1, (n, 1, features))
    phase = rng.uniform(0, 0.1, (n, 1, features))
    steps = np.arange(length)[None, :, None]
    return ((np.sin(freq * steps + phase) + 1) / 2).astype(np.float32)


REAL = sines(600, seed=1)
OTHER = sines(600, seed=2)
NOISE = np.random.default_rng(3).uniform(size=REAL.shape).astype(np.float32)


def test_discriminative_score_is_near_zero_for_the_same_distribution() -> None:
    assert discriminative_score(REAL, REAL.copy(), iterations=150) <= 0.05
    assert discriminative_score(REAL, OTHER, iterations=150) <= 0.1


def test_discriminative_score_is_large_against_noise() -> None:
    assert discriminative_score(REAL, NOISE, iterations=150) >= 0.4


def test_discriminative_score_is_deterministic_under_the_seed() -> None:
    shifted = np.clip(OTHER + 0.05, 0, 1)
    first = discriminative_score(REAL, shifted, iterations=60, seed=7)
    assert first == discriminative_score(REAL, shifted, iterations=60, seed=7)


def test_predictive_score_real_beats_noise() -> None:
    on_real = predictive_score(REAL, OTHER, iterations=300)
    on_noise = predictive_score(REAL, NOISE, iterations=300)
    assert on_real < on_noise
    assert on_real < 0.15
    assert predictive_score(REAL, OTHER, iterations=50, seed=3) == predictive_score(
        REAL, OTHER, iterations=50, seed=3
    )


def test_predictive_score_works_with_one_feature() -> None:
    assert 0 <= predictive_score(REAL[:, :, :1], OTHER[:, :, :1], iterations=30) <= 1


def test_bad_windows_give_clear_errors() -> None:
    with pytest.raises(StreamsynthError, match=r"expected \(n, T, F\)"):
        discriminative_score(REAL[0], OTHER)
    with pytest.raises(StreamsynthError, match="same window length"):
        discriminative_score(REAL, OTHER[:, :10])
    bad = OTHER.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(StreamsynthError, match="NaN"):
        predictive_score(REAL, bad)
