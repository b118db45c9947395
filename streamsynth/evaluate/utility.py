"""The TimeGAN paper's two utility metrics on window arrays (n, T, F) scaled to [0, 1].

``discriminative_score``: a post-hoc GRU tells real from synthetic windows, |accuracy - 0.5|
on a held-out 20% (0 is best), trained until a validation part stops improving (``iterations``
caps it). ``predictive_score``: train-on-synthetic, test-on-real MAE of a
GRU predicting the next step of the last feature (lower is better). Both follow the
definitions of Yoon et al. (NeurIPS 2019), written in batched torch, deterministic under a seed.
"""

from __future__ import annotations

import math
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from streamsynth.devices import default_device
from streamsynth.errors import StreamsynthError
from streamsynth.threads import threads_for

BATCH = 128
TEST_FRACTION = 0.2
#: The discriminator's Adam step. The paper's 1e-3 left the GRU far from converged after 200
#: steps on the payments demo (score 0.14-0.18 against 0.40 after 1,000): the budget set the
#: score. A larger step converges within a few hundred steps, and early stopping ends it there.
DISCRIMINATOR_LR = 5e-3
CHECK_EVERY = 25  # steps between validation losses
PATIENCE = 8  # validation losses without improvement before stopping (200 steps)
MIN_IMPROVEMENT = 1e-4


def small_model_threads(dev: torch.device) -> AbstractContextManager[None]:
    """Train these small models on one CPU thread, restoring the caller's setting after.

    Their matrices are tiny, so extra threads gain at most 2x, while on shared cores OpenMP's
    spin-waiting made them 10-60x slower in our measurements.
    """
    return threads_for(0, dev)


def _as_windows(array: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(array, dtype=np.float32)
    if arr.ndim != 3:
        raise StreamsynthError(
            f"{name} windows have shape {arr.shape}, expected (n, T, F)",
            hint="stack fixed-length windows into one 3-d float array",
        )
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        raise StreamsynthError(
            f"{name} windows have shape {arr.shape}: need at least 2 windows of at least 2 steps"
        )
    if not np.isfinite(arr).all():
        raise StreamsynthError(
            f"{name} windows contain NaN or infinite values", hint="impute or drop them"
        )
    return arr


def _check_pair(real: np.ndarray, synth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    r, s = _as_windows(real, "real"), _as_windows(synth, "synthetic")
    if r.shape[1:] != s.shape[1:]:
        raise StreamsynthError(
            f"real windows are {r.shape[1:]} (T, F) but synthetic windows are {s.shape[1:]}",
            hint="build both sides with the same window length and features",
        )
    return r, s


class _GRUHead(nn.Module):
    """One GRU layer and a linear read-out: on the last state, or on every step."""

    def __init__(self, features: int, hidden: int, per_step: bool) -> None:
        super().__init__()
        self.gru = nn.GRU(features, hidden, batch_first=True)
        self.out = nn.Linear(hidden, 1)
        self.per_step = per_step

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs, last = self.gru(x)
        if self.per_step:
            return self.out(outputs)  # (n, T, 1)
        return self.out(last[-1]).squeeze(-1)  # (n,)


def _seeded_model(
    seed: int, features: int, hidden: int, per_step: bool, dev: torch.device
) -> nn.Module:
    # Initialise weights from the seed without touching the caller's global RNG state.
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        return _GRUHead(features, hidden, per_step).to(dev)


def _split(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    order = rng.permutation(n)
    n_train = max(1, min(n - 1, int(round(n * (1 - TEST_FRACTION)))))
    return order[:n_train], order[n_train:]


@dataclass
class DiscriminativeFit:
    """The discriminative score and how its GRU got there."""

    score: float  # |held-out accuracy - 0.5|
    steps: int  # training steps taken, at most the budget
    converged: bool  # True when early stopping ended it; False when the budget ran out first


def discriminative_score(real: np.ndarray, synth: np.ndarray, **options: Any) -> float:
    """|accuracy - 0.5| of a post-hoc GRU classifier of real vs synthetic windows (0 is best);
    ``options`` are :func:`discriminative_fit`'s (``seed``, ``iterations``, ``hidden``,
    ``device``, ``progress``).

    As in the paper: each side split 80/20, a GRU (``hidden`` = F // 2, at least 4) with a
    linear head on its last state, Adam, steps of 128 real + 128 synthetic windows, accuracy at
    threshold 0.5 on both held-out parts together. Unlike the paper's fixed step count, training
    stops early once the loss on a validation part of the training windows stops improving, and
    the best model so far is scored: ``iterations`` is a cap, so the score does not grow with it.
    ``progress`` (a :class:`streamsynth.progress.Progress`) is advanced once a step.
    """
    return discriminative_fit(real, synth, **options).score


def discriminative_fit(
    real: np.ndarray,
    synth: np.ndarray,
    *,
    seed: int = 0,
    iterations: int = 2000,
    hidden: int | None = None,
    device: str | None = None,
    progress: Any = None,
) -> DiscriminativeFit:
    """``discriminative_score`` with the steps it took and whether it converged in the budget."""
    r, s = _check_pair(real, synth)
    features = r.shape[2]
    hidden = hidden or max(4, features // 2)
    dev = default_device(device)
    rng = np.random.default_rng(seed)
    r_train, r_test = _split(len(r), rng)
    s_train, s_test = _split(len(s), rng)
    # A validation part of the training windows decides when to stop; the test part stays unseen.
    early = len(r_train) >= 2 and len(s_train) >= 2
    r_val = s_val = np.zeros(0, dtype=np.int64)
    if early:
        keep, val = _split(len(r_train), rng)
        r_train, r_val = r_train[keep], r_train[val]
        keep, val = _split(len(s_train), rng)
        s_train, s_val = s_train[keep], s_train[val]
    rt = torch.from_numpy(r).to(dev)
    st = torch.from_numpy(s).to(dev)
    model = _seeded_model(seed, features, hidden, per_step=False, dev=dev)
    opt = torch.optim.Adam(model.parameters(), lr=DISCRIMINATOR_LR)
    loss_fn = nn.BCEWithLogitsLoss()
    target = torch.cat([torch.ones(BATCH), torch.zeros(BATCH)]).to(dev)
    r_val_x, s_val_x = rt[torch.from_numpy(r_val).to(dev)], st[torch.from_numpy(s_val).to(dev)]
    best_loss, best_state, steps, stale, converged = math.inf, None, iterations, 0, False
    with small_model_threads(dev):
        model.train()
        for it in range(iterations):
            if it % CHECK_EVERY == 0:
                # Mini-batch indices a block at a time, in the same order whatever the budget: a
                # larger cap replays the same steps, so once converged it gives the same score.
                r_idx = torch.from_numpy(r_train[rng.integers(0, len(r_train), (CHECK_EVERY, BATCH))]).to(dev)
                s_idx = torch.from_numpy(s_train[rng.integers(0, len(s_train), (CHECK_EVERY, BATCH))]).to(dev)
            x = torch.cat([rt[r_idx[it % CHECK_EVERY]], st[s_idx[it % CHECK_EVERY]]])
            loss = loss_fn(model(x), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if progress is not None:
                progress.advance(score="discriminative")
            if not early or (it + 1) % CHECK_EVERY:
                continue
            val_loss = _validation_loss(model, r_val_x, s_val_x)
            if val_loss < best_loss - MIN_IMPROVEMENT:
                best_loss, stale = val_loss, 0
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            else:
                stale += 1
                if stale >= PATIENCE:
                    steps, converged = it + 1, True
                    if progress is not None:  # the steps not taken, so the bar's total adds up
                        progress.advance(iterations - steps, score="discriminative")
                    break
        if best_state is not None:
            # Score the model at its best validation loss, not the one that overfit since.
            model.load_state_dict(best_state)
        model.eval()
        with torch.no_grad():
            real_hits = _batched(model, rt[torch.from_numpy(r_test).to(dev)]) > 0
            synth_hits = _batched(model, st[torch.from_numpy(s_test).to(dev)]) <= 0
    correct = int(real_hits.sum()) + int(synth_hits.sum())
    accuracy = correct / (len(r_test) + len(s_test))
    return DiscriminativeFit(float(abs(accuracy - 0.5)), steps, converged)


def _validation_loss(model: nn.Module, real: torch.Tensor, synth: torch.Tensor) -> float:
    """Mean of the two sides' losses, so that the larger side does not dominate."""
    model.eval()
    with torch.no_grad():
        bce = nn.functional.binary_cross_entropy_with_logits
        r = bce(_batched(model, real), torch.ones(len(real), device=real.device))
        s = bce(_batched(model, synth), torch.zeros(len(synth), device=synth.device))
    model.train()
    return float(r + s) / 2


def _batched(model: nn.Module, x: torch.Tensor, size: int = 8192) -> torch.Tensor:
    return torch.cat([model(x[i : i + size]) for i in range(0, len(x), size)])


def _predictive_xy(windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    # Inputs: the first F-1 features at steps 0..T-2; target: the last feature at steps 1..T-1.
    # With one feature there is nothing else to predict from, so the feature predicts itself.
    features = windows.shape[2]
    x = windows[:, :-1, : features - 1] if features > 1 else windows[:, :-1, :]
    y = windows[:, 1:, features - 1 :]
    return x, y


def predictive_score(
    real: np.ndarray,
    synth: np.ndarray,
    *,
    seed: int = 0,
    iterations: int = 5000,
    device: str | None = None,
    progress: Any = None,
) -> float:
    """Train on synthetic, test on real: MAE of next-step prediction of the last feature.

    As in the paper: a GRU (hidden = F // 2, at least 4) over the first F-1 features, a
    sigmoid read-out at every step predicting the last feature one step ahead, L1 loss,
    Adam, ``iterations`` batches of 128 synthetic windows; the score is the MAE on all real
    windows (lower is better; compare with the real-on-real value). ``progress`` (a
    :class:`streamsynth.progress.Progress`) is advanced once a step.
    """
    r, s = _check_pair(real, synth)
    features = r.shape[2]
    dev = default_device(device)
    rng = np.random.default_rng(seed)
    rx, ry = _predictive_xy(torch.from_numpy(r).to(dev))
    sx, sy = _predictive_xy(torch.from_numpy(s).to(dev))
    hidden = max(4, features // 2)
    model = _seeded_model(seed, sx.shape[2], hidden, per_step=True, dev=dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    idx = torch.from_numpy(rng.integers(0, len(s), (iterations, BATCH))).to(dev)
    with small_model_threads(dev):
        model.train()
        for it in range(iterations):
            batch = idx[it]
            loss = (torch.sigmoid(model(sx[batch])) - sy[batch]).abs().mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if progress is not None:
                progress.advance(score="predictive")
        model.eval()
        with torch.no_grad():
            pred = torch.sigmoid(_batched(model, rx))
    return float((pred - ry).abs().mean())
