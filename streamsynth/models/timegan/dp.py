"""DP-SGD training of TimeGAN with the series (entity) as the unit of privacy.

Every step of every objective that reads real windows (autoencoder, supervisor, generator with
its supervised and moment losses, embedder, discriminator) draws a Poisson batch of entities;
each entity's loss over a few of its own windows is clipped, then noise is added. The whole
plan, ``7 x iterations`` steps, is calibrated at once. The discriminator steps every time: the
paper's "only while its loss is above a threshold" would be a decision read from the data.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from streamsynth.errors import StreamsynthError
from streamsynth.models.timegan.network import TimeGANNet
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


def train_private(
    rows: np.ndarray,
    starts: np.ndarray,
    window_entity: np.ndarray,
    config: object,
    layout: object,
    *,
    budget: PrivacyBudget,
    entity_column: str | None,
    seed: int,
    device: torch.device,
    log: Callable[[str], None] | None = None,
    progress: bool = False,
) -> tuple[object, PrivacyRecord]:
    """(trained ``TimeGANNet`` in eval mode, spent budget) for windows ``starts`` of ``rows``;
    ``window_entity[i]`` is the entity number of window ``i``."""

    refuse_torchrun()
    if entity_column is None:
        raise StreamsynthError(
            "differentially private TimeGAN needs an entity column: with one series there is "
            "one entity, and no budget can hide it",
            hint="name the series column with --entity (one host's or one instrument's metrics)",
        )
    codes, inverse = np.unique(window_entity, return_inverse=True)
    n = len(codes)
    batch = max(1, min(config.batch_size, n // 2))
    steps = STEPS_PER_ITERATION * config.iterations
    dp = PrivateTraining(
        budget, entities=n, batch_size=batch, steps=steps, entity_column=entity_column,
        per_sample="loop", notes=NOTES,
    )
    by_entity = [np.flatnonzero(inverse == e) for e in range(n)]
    gen = torch.Generator(device="cpu").manual_seed(seed)
    rng = np.random.default_rng([seed, 29])
    data = torch.as_tensor(rows, dtype=torch.float32, device=device)
    offsets = torch.arange(config.seq_len, device=device)
    starts_t = torch.as_tensor(starts, dtype=torch.long, device=device)

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        net = TimeGANNet(config, layout).to(device)
    mods = (net.embedder, net.recovery, net.supervisor, net.generator, net.discriminator)
    emb, rec, sup, gen_net, disc = mods

    def adam(*modules: torch.nn.Module) -> torch.optim.Optimizer:
        params = [p for m in modules for p in m.parameters()]
        return dp.optimizer(torch.optim.Adam(params, lr=config.learning_rate))

    opt_e0, opt_s0, opt_e, opt_g, opt_d = adam(emb, rec), adam(sup), adam(emb, rec), adam(gen_net, sup), adam(disc)

    def windows(idx: np.ndarray) -> torch.Tensor:
        own = by_entity[int(idx[0])]
        pick = rng.choice(own, min(WINDOWS_PER_ENTITY, len(own)), replace=False)
        return data[starts_t[torch.as_tensor(pick, device=device)][:, None] + offsets]

    def noise(k: int) -> torch.Tensor:
        return torch.rand(k, config.seq_len, net.z_dim, generator=gen).to(device)

    def bce(logits: torch.Tensor, target: float) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))

    def supervised(h: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(net.supervise(h)[:, :-1], h[:, 1:])

    def autoencoder_loss(idx: np.ndarray) -> torch.Tensor:
        x = windows(idx)
        return 10 * torch.sqrt(F.mse_loss(net.recover(net.embed(x)), x) + 1e-12)

    def supervisor_loss(idx: np.ndarray) -> torch.Tensor:
        with torch.no_grad():
            h = net.embed(windows(idx))
        return supervised(h)

    def generator_loss(idx: np.ndarray) -> torch.Tensor:
        x = windows(idx)
        k = len(x)
        with torch.no_grad():
            h = net.embed(x)
        e_hat = net.generate_latent(noise(k))
        s_out = net.supervise(torch.cat([e_hat, h]))
        h_hat, h_sup = s_out[:k], s_out[k:]
        x_hat = net.recover(h_hat)
        y = net.discriminate(torch.cat([h_hat, e_hat]))
        g_s = F.mse_loss(h_sup[:, :-1], h[:, 1:])
        var_hat, mean_hat = torch.var_mean(x_hat, dim=0, unbiased=False)
        var, mean = torch.var_mean(x, dim=0, unbiased=False)
        moments = (torch.sqrt(var_hat + 1e-6) - torch.sqrt(var + 1e-6)).abs().mean() + (mean_hat - mean).abs().mean()
        return bce(y[:k], 1.0) + config.gamma * bce(y[k:], 1.0) + 100 * torch.sqrt(g_s + 1e-12) + 100 * moments

    def embedder_loss(idx: np.ndarray) -> torch.Tensor:
        x = windows(idx)
        h = net.embed(x)
        return 10 * torch.sqrt(F.mse_loss(net.recover(h), x) + 1e-12) + 0.1 * supervised(h)

    def discriminator_loss(idx: np.ndarray) -> torch.Tensor:
        x = windows(idx)
        k = len(x)
        with torch.no_grad():
            h = net.embed(x)
            e_hat = net.generate_latent(noise(k))
            h_hat = net.supervise(e_hat)
        y = net.discriminate(torch.cat([h, h_hat, e_hat]))
        return bce(y[:k], 1.0) + bce(y[k : 2 * k], 0.0) + config.gamma * bce(y[2 * k :], 0.0)

    net.train()
    iterations = config.iterations
    with threads_for(0, device):  # one entity's few windows at a time: extra threads only spin
        _run(dp, iterations, log, progress, (
            ("autoencoder", [(opt_e0, autoencoder_loss)]),
            ("supervised", [(opt_s0, supervisor_loss)]),
            ("joint", [(opt_g, generator_loss), (opt_e, embedder_loss)] * 2 + [(opt_d, discriminator_loss)]),
        ))
    net.eval()
    for p in net.parameters():  # leave no per-sample state on the returned network
        p.grad = None
        p.grad_sample = None
    return net, dp.record()


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
