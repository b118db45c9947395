"""DP-SGD training of TimeGAN with the series (entity) as the unit of privacy.

Every step of every objective that reads real windows (autoencoder, supervisor, generator with
its supervised and moment losses, embedder, discriminator) draws a Poisson batch of entities;
each entity's loss over a few of its own windows is clipped, then noise is added. The whole
plan, ``7 x iterations`` steps, is calibrated at once. The discriminator steps every time: the
paper's "only while its loss is above a threshold" would be a decision read from the data.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from streamsynth.errors import StreamsynthError
from streamsynth.models.timegan.network import Layout, TimeGANConfig, TimeGANNet
from streamsynth.models.timegan.train import Windows
from streamsynth.privacy.budget import PrivacyBudget, PrivacyRecord
from streamsynth.privacy.dp import PrivateTraining, refuse_torchrun
from streamsynth.progress import Progress
from streamsynth.threads import threads_for

WINDOWS_PER_ENTITY = 4  # windows of its own series that one entity contributes to a step
STEPS_PER_ITERATION = 7  # autoencoder 1, supervised 1, joint 2 x (generator, embedder) + discriminator
NOTES = (
    "DP-SGD covers the network weights; the min-max scaling and category levels are fitted on "
    "the data without noise",
)


@dataclass(frozen=True)
class PrivateRun:
    """Who is protected and how the private training runs."""

    budget: PrivacyBudget
    entity_column: str | None  # the unit of privacy; None (one series) is refused
    seed: int
    device: torch.device
    log: Callable[[str], None] | None = None
    progress: bool = False


def train_private(
    windows: Windows, window_entity: np.ndarray, config: TimeGANConfig, layout: Layout, run: PrivateRun
) -> tuple[TimeGANNet, PrivacyRecord]:
    """(trained network in eval mode, spent budget) for ``windows``; ``window_entity[i]`` is
    the entity number of window ``i``."""
    refuse_torchrun()
    if run.entity_column is None:
        raise StreamsynthError(
            "differentially private TimeGAN needs an entity column: with one series there is "
            "one entity, and no budget can hide it",
            hint="name the series column with --entity (one host's or one instrument's metrics)",
        )
    codes, inverse = np.unique(window_entity, return_inverse=True)
    n = len(codes)
    dp = PrivateTraining(
        run.budget, entities=n, batch_size=max(1, min(config.batch_size, n // 2)),
        steps=STEPS_PER_ITERATION * config.iterations, entity_column=run.entity_column,
        per_sample="loop", notes=NOTES,
    )
    with torch.random.fork_rng(devices=[run.device] if run.device.type == "cuda" else []):
        torch.manual_seed(run.seed)
        net = TimeGANNet(config, layout).to(run.device)
    loss = _Objectives(net, config, windows, [np.flatnonzero(inverse == e) for e in range(n)], run)

    def adam(*modules: torch.nn.Module) -> torch.optim.Optimizer:
        params = [p for m in modules for p in m.parameters()]
        return dp.optimizer(torch.optim.Adam(params, lr=config.learning_rate))

    ae = (net.embedder, net.recovery)
    # created in this order, as before: each wraps its optimizer in the DP engine
    opt_e0, opt_s0, opt_e, opt_g, opt_d = (adam(*ae), adam(net.supervisor), adam(*ae),
                                           adam(net.generator, net.supervisor), adam(net.discriminator))
    net.train()
    with threads_for(0, run.device):  # one entity's few windows at a time: extra threads only spin
        _run(dp, config.iterations, run.log, run.progress, (
            ("autoencoder", [(opt_e0, loss.autoencoder)]),
            ("supervised", [(opt_s0, loss.supervisor)]),
            ("joint", [(opt_g, loss.generator), (opt_e, loss.embedder)] * 2 + [(opt_d, loss.discriminator)]),
        ))
    net.eval()
    for p in net.parameters():  # leave no per-sample state on the returned network
        p.grad = None
        p.grad_sample = None
    return net, dp.record()


class _Objectives:
    """TimeGAN's five losses on one entity's windows (a few of its own, drawn at random): the
    per-entity losses that DP-SGD clips."""

    def __init__(self, net: TimeGANNet, config: TimeGANConfig, windows: Windows, by_entity: list[np.ndarray],
                 run: PrivateRun) -> None:
        self.net, self.config, self.by_entity, self.device = net, config, by_entity, run.device
        self.gen = torch.Generator(device="cpu").manual_seed(run.seed)
        self.rng = np.random.default_rng([run.seed, 29])
        self.data = torch.as_tensor(windows.rows, dtype=torch.float32, device=run.device)
        self.offsets = torch.arange(config.seq_len, device=run.device)
        self.starts = torch.as_tensor(windows.starts, dtype=torch.long, device=run.device)

    def windows(self, idx: np.ndarray) -> torch.Tensor:
        own = self.by_entity[int(idx[0])]
        pick = self.rng.choice(own, min(WINDOWS_PER_ENTITY, len(own)), replace=False)
        return self.data[self.starts[torch.as_tensor(pick, device=self.device)][:, None] + self.offsets]

    def noise(self, k: int) -> torch.Tensor:
        return torch.rand(k, self.config.seq_len, self.net.z_dim, generator=self.gen).to(self.device)

    def supervised(self, h: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(self.net.supervise(h)[:, :-1], h[:, 1:])

    def autoencoder(self, idx: np.ndarray) -> torch.Tensor:
        x = self.windows(idx)
        return 10 * torch.sqrt(F.mse_loss(self.net.recover(self.net.embed(x)), x) + 1e-12)

    def supervisor(self, idx: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            h = self.net.embed(self.windows(idx))
        return self.supervised(h)

    def generator(self, idx: np.ndarray) -> torch.Tensor:
        net, x = self.net, self.windows(idx)
        k = len(x)
        with torch.no_grad():
            h = net.embed(x)
        e_hat = net.generate_latent(self.noise(k))
        s_out = net.supervise(torch.cat([e_hat, h]))
        h_hat, h_sup = s_out[:k], s_out[k:]
        x_hat = net.recover(h_hat)
        y = net.discriminate(torch.cat([h_hat, e_hat]))
        g_s = F.mse_loss(h_sup[:, :-1], h[:, 1:])
        var_hat, mean_hat = torch.var_mean(x_hat, dim=0, unbiased=False)
        var, mean = torch.var_mean(x, dim=0, unbiased=False)
        moments = (torch.sqrt(var_hat + 1e-6) - torch.sqrt(var + 1e-6)).abs().mean() + (mean_hat - mean).abs().mean()
        return (_bce(y[:k], 1.0) + self.config.gamma * _bce(y[k:], 1.0) + 100 * torch.sqrt(g_s + 1e-12)
                + 100 * moments)

    def embedder(self, idx: np.ndarray) -> torch.Tensor:
        x = self.windows(idx)
        h = self.net.embed(x)
        return 10 * torch.sqrt(F.mse_loss(self.net.recover(h), x) + 1e-12) + 0.1 * self.supervised(h)

    def discriminator(self, idx: np.ndarray) -> torch.Tensor:
        net, x = self.net, self.windows(idx)
        k = len(x)
        with torch.no_grad():
            h = net.embed(x)
            e_hat = net.generate_latent(self.noise(k))
            h_hat = net.supervise(e_hat)
        y = net.discriminate(torch.cat([h, h_hat, e_hat]))
        return _bce(y[:k], 1.0) + _bce(y[k : 2 * k], 0.0) + self.config.gamma * _bce(y[2 * k :], 0.0)


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def _run(
    dp: PrivateTraining, iterations: int, log: Callable[[str], None] | None, progress: bool, phases: tuple
) -> None:
    """Every phase's iterations; each objective's step draws its own Poisson batch of entities."""
    for number, (name, plan) in enumerate(phases, 1):
        label = f"timegan {number}/{len(phases)} {name} (DP)"
        with Progress(label=label, total=iterations, unit="steps", enabled=progress) as bar:
            for i in range(iterations):
                total = 0.0
                for opt, loss_fn in plan:
                    idx = next(dp.batches(1))
                    total = dp.step(opt, idx, loss_fn) / max(len(idx), 1)
                bar.advance(loss=round(total, 4), epsilon=lambda: round(dp.spent(), 3))
                if log and (i + 1) % max(1, iterations // 4) == 0:
                    log(f"timegan {name} (DP) {i + 1}/{iterations}: loss {total:.4f}, epsilon {dp.spent():.3f}")
