"""Per-entity windows of events for the sequence-level discriminative and predictive scores.

Each entity's events (sorted by time) are cut into non-overlapping windows of a fixed length;
every event becomes a feature vector in [0, 1] (see ``features.py``); a sample of windows from
each side goes to the GRU scores of ``utility.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from streamsynth.evaluate import utility
from streamsynth.evaluate.data import SEQ, Prepared
from streamsynth.evaluate.features import FeatureEncoder
from streamsynth.evaluate.result import Utility
from streamsynth.progress import Progress

MAX_WINDOW = 24


@dataclass
class SequenceOptions:
    window: int | None = None  # events per window; default: median events per entity, <= 24
    max_windows: int = 2000  # windows per side fed to the GRUs
    discriminative_iterations: int = 1000
    predictive_iterations: int = 1000
    device: str | None = None
    progress: bool = True  # a bar (terminal) or a line every 10 s (logs) while the GRUs train


def window_length(prep: Prepared) -> int:
    if not prep.entity:
        return MAX_WINDOW
    counts = np.bincount(prep.real[SEQ].to_numpy())
    return int(np.clip(np.median(counts), 2, MAX_WINDOW))


def window_starts(frame: pl.DataFrame, length: int) -> np.ndarray:
    """Row index of the first event of every full non-overlapping window within an entity."""
    seq = frame[SEQ].to_numpy()
    if len(seq) == 0:
        return np.zeros(0, dtype=np.int64)
    boundary = np.r_[True, seq[1:] != seq[:-1]]
    entity_start = np.maximum.accumulate(np.where(boundary, np.arange(len(seq)), 0))
    pos = np.arange(len(seq)) - entity_start
    entity_len = np.bincount(seq)[seq]
    ok = (pos % length == 0) & (pos + length <= entity_len)
    return np.nonzero(ok)[0]


def windows(
    frame: pl.DataFrame, encoder: FeatureEncoder, length: int, limit: int, rng: np.random.Generator
) -> np.ndarray:
    """(n, length, F) windows, at most ``limit``, sampled without replacement."""
    starts = window_starts(frame, length)
    if len(starts) > limit:
        starts = np.sort(rng.choice(starts, limit, replace=False))
    rows = (starts[:, None] + np.arange(length)[None, :]).ravel()
    encoded = encoder.encode(frame[rows]) if len(rows) else np.zeros((0, encoder.width), np.float32)
    return encoded.reshape(len(starts), length, encoder.width)


def predictive_order(encoder: FeatureEncoder) -> np.ndarray:
    """Feature order with the target last: the first numeric column, else the inter-arrival."""
    names = encoder.names
    target = names.index(encoder.numeric[0]) if encoder.numeric else len(names) - 1
    order = [i for i in range(len(names)) if i != target] + [target]
    return np.array(order)


def sequence_scores(prep: Prepared, options: SequenceOptions, seed: int = 0) -> Utility:
    """Discriminative score and predictive scores (synthetic->real and the real->real reference)."""
    out = Utility()
    if not prep.time and not prep.entity:
        out.notes.append("no time or entity column: sequence scores skipped")
        return out
    encoder = FeatureEncoder(prep, seed=seed)
    length = options.window or window_length(prep)
    out.window_length, out.features = length, encoder.names
    rng = np.random.default_rng(seed)
    real = windows(prep.real, encoder, length, options.max_windows, rng)
    synth = windows(prep.synth, encoder, length, options.max_windows, rng)
    out.windows_real, out.windows_synth = len(real), len(synth)
    if len(real) < 10 or len(synth) < 10 or encoder.width == 0:
        out.notes.append(
            f"too few windows of {length} events (real {len(real)}, synthetic {len(synth)}): "
            "sequence scores skipped; try a shorter --window"
        )
        return out
    total = options.discriminative_iterations + 2 * options.predictive_iterations
    with Progress(label="evaluate sequences", total=total, unit="steps", enabled=options.progress) as bar:
        fit = utility.discriminative_fit(
            real, synth, seed=seed, iterations=options.discriminative_iterations, device=options.device,
            progress=bar,
        )
        out.discriminative, out.discriminative_steps = fit.score, fit.steps
        out.discriminative_converged = fit.converged
        if not fit.converged:
            out.notes.append(
                f"discriminative: the GRU was still improving when its budget of {fit.steps} steps ran out, "
                "so the score may understate the difference; raise --iterations"
            )
        order = predictive_order(encoder)
        real, synth = real[:, :, order], synth[:, :, order]
        # The real->real reference needs real windows kept out of its training: split them.
        perm = rng.permutation(len(real))
        half = len(real) // 2
        train, test = real[perm[:half]], real[perm[half:]]
        out.predictive = utility.predictive_score(
            test, synth, seed=seed, iterations=options.predictive_iterations, device=options.device, progress=bar
        )
        out.predictive_real = utility.predictive_score(
            test, train, seed=seed, iterations=options.predictive_iterations, device=options.device, progress=bar
        )
    if out.predictive_real > 0:
        out.predictive_ratio = out.predictive / out.predictive_real
    return out
