"""TimeGAN's three training phases: autoencoder, supervised, joint (with moment matching).

Every step runs on the device with no host synchronisation (mini-batches and noise are drawn
there), so on CUDA each phase's step is captured once as a CUDA graph and replayed. Losses
are kept per replica, and each replica's discriminator steps only while its own loss is above
the threshold, so packed replicas train exactly as separate runs would.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from streamsynth.models.timegan.network import Layout, TimeGANConfig, TimeGANNet

Log = Callable[[str], None]


@dataclass
class Windows:
    """One replica's training data: scaled rows (N, F) in [0, 1] and window start rows."""

    rows: np.ndarray
    starts: np.ndarray


class MaskedAdam:
    """Adam whose update of every weight is gated by its owner replica being active.

    Off-block weights (owner ``R``) never move; a replica that skips a step keeps its
    moments and its step count, as a separate optimizer that did not step would.
    """

    def __init__(self, owned, replicas: int, lr: float, betas=(0.9, 0.999), eps: float = 1e-8):
        self.params = [p for p, _ in owned]
        self.owners = [o for _, o in owned]
        self.m = [torch.zeros_like(p) for p in self.params]
        self.v = [torch.zeros_like(p) for p in self.params]
        device = self.params[0].device
        self.steps = torch.zeros(replicas + 1, device=device)
        self.all_active = torch.ones(replicas, dtype=torch.bool, device=device)
        self.lr, self.b1, self.b2, self.eps = lr, betas[0], betas[1], eps

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    @torch.no_grad()
    def step(self, active: torch.Tensor | None = None) -> None:
        active = self.all_active if active is None else active
        on = torch.cat([active.float(), active.new_zeros(1, dtype=torch.float)])
        self.steps += on
        t = self.steps.clamp(min=1.0)
        lr_t = self.lr / (1 - self.b1**t)  # bias corrections per replica
        root_t = torch.rsqrt(1 - self.b2**t)
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in self.params]
        gate = [on[o] for o in self.owners]
        d1 = torch._foreach_sub(grads, self.m)
        torch._foreach_mul_(d1, gate)
        torch._foreach_add_(self.m, d1, alpha=1 - self.b1)
        d2 = torch._foreach_mul(grads, grads)
        torch._foreach_sub_(d2, self.v)
        torch._foreach_mul_(d2, gate)
        torch._foreach_add_(self.v, d2, alpha=1 - self.b2)
        denom = torch._foreach_sqrt(self.v)
        torch._foreach_mul_(denom, [root_t[o] for o in self.owners])
        torch._foreach_add_(denom, self.eps)
        upd = torch._foreach_div(self.m, denom)
        torch._foreach_mul_(upd, [lr_t[o] * g for o, g in zip(self.owners, gate, strict=True)])
        torch._foreach_sub_(self.params, upd)


class Trainer:
    """Trains a :class:`TimeGANNet` on one :class:`Windows` per replica."""

    def __init__(self, net: TimeGANNet, data: list[Windows], device: torch.device, log: Log | None = None):
        cfg = net.config
        self.net, self.cfg, self.device, self.log = net, cfg, device, log or (lambda _m: None)
        if len(data) != net.layout.replicas:
            raise ValueError("one Windows per replica")
        self.rows = [torch.as_tensor(d.rows, dtype=torch.float32, device=device) for d in data]
        self.starts = [torch.as_tensor(d.starts, dtype=torch.long, device=device) for d in data]
        self.offsets = torch.arange(cfg.seq_len, device=device)
        r, lr = net.layout.replicas, cfg.learning_rate

        def owned(*nets):
            return [pair for n in nets for pair in n.owned_parameters()]

        # One Adam per objective, as in the paper's code (phase 1 and joint E have their own).
        self.opt_e0 = MaskedAdam(owned(net.embedder, net.recovery), r, lr)
        self.opt_s0 = MaskedAdam(owned(net.supervisor), r, lr)
        self.opt_e = MaskedAdam(owned(net.embedder, net.recovery), r, lr)
        self.opt_g = MaskedAdam(owned(net.generator, net.supervisor), r, lr)
        self.opt_d = MaskedAdam(owned(net.discriminator), r, lr)
        self.timings: dict[str, float] = {}
        self.graphed = False

    # -- data ----------------------------------------------------------------------------
    def batch(self) -> torch.Tensor:
        b = self.cfg.batch_size
        parts = []
        for rows, starts in zip(self.rows, self.starts, strict=True):
            pick = (torch.rand(b, device=self.device) * len(starts)).long().clamp_(max=len(starts) - 1)
            parts.append(rows[starts[pick][:, None] + self.offsets])
        return torch.cat(parts, dim=-1) if len(parts) > 1 else parts[0]

    def noise(self) -> torch.Tensor:
        return torch.rand(self.cfg.batch_size, self.cfg.seq_len, self.net.z_dim, device=self.device)

    # -- per-replica losses: every function returns shape (R,) ---------------------------
    def _mse(self, a: torch.Tensor, b: torch.Tensor, avg: torch.Tensor) -> torch.Tensor:
        return ((a - b) ** 2).mean(dim=(0, 1)) @ avg

    def _bce(self, logits: torch.Tensor, target: float) -> torch.Tensor:
        full = torch.full_like(logits, target)
        return F.binary_cross_entropy_with_logits(logits, full, reduction="none").mean(dim=(0, 1))

    def _moments(self, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        var_hat, mean_hat = torch.var_mean(x_hat, dim=0, unbiased=False)
        var, mean = torch.var_mean(x, dim=0, unbiased=False)
        v1 = (torch.sqrt(var_hat + 1e-6) - torch.sqrt(var + 1e-6)).abs().mean(0)
        v2 = (mean_hat - mean).abs().mean(0)
        return (v1 + v2) @ self.net.avg_x

    def _supervised(self, h: torch.Tensor) -> torch.Tensor:
        return self._mse(h[:, 1:], self.net.supervise(h)[:, :-1], self.net.avg_h)

    # -- one step of each phase --------------------------------------------------------------
    def step_autoencoder(self) -> torch.Tensor:
        net = self.net
        x = self.batch()
        e_t0 = self._mse(x, net.recover(net.embed(x)), net.avg_x)
        self.opt_e0.zero_grad()
        (10 * torch.sqrt(e_t0)).sum().backward()
        self.opt_e0.step()
        return e_t0.detach()

    def step_supervised(self) -> torch.Tensor:
        with torch.no_grad():
            h = self.net.embed(self.batch())
        g_s = self._supervised(h)
        self.opt_s0.zero_grad()
        g_s.sum().backward()
        self.opt_s0.step()
        return g_s.detach()

    def step_joint(self) -> torch.Tensor:
        net, cfg, b = self.net, self.cfg, self.cfg.batch_size
        for _ in range(2):
            x, z = self.batch(), self.noise()
            # Generator and supervisor: adversarial (both latent paths), supervised, moments.
            # Networks this objective does not update are frozen so no weight gradients are
            # computed for them; independent passes share one recurrent call on a stacked batch.
            for opt in (self.opt_g, self.opt_e, self.opt_d):
                opt.zero_grad()
            with torch.no_grad():
                h = net.embed(x)
            with _frozen(net.recovery, net.discriminator):
                e_hat = net.generate_latent(z)
                s_out = net.supervise(torch.cat([e_hat, h]))
                h_hat, h_sup = s_out[:b], s_out[b:]
                x_hat = net.recover(h_hat)
                y = net.discriminate(torch.cat([h_hat, e_hat]))
                g_s = self._mse(h[:, 1:], h_sup[:, :-1], net.avg_h)
                g_loss = (
                    self._bce(y[:b], 1.0)
                    + cfg.gamma * self._bce(y[b:], 1.0)
                    + 100 * torch.sqrt(g_s + 1e-12)
                    + 100 * self._moments(x_hat, x)
                )
                g_loss.sum().backward()
            self.opt_g.step()
            # Embedder and recovery: reconstruction plus a little of the supervised loss.
            self.opt_e.zero_grad()
            with _frozen(net.supervisor):
                h = net.embed(x)
                e_t0 = self._mse(x, net.recover(h), net.avg_x)
                e_loss = 10 * torch.sqrt(e_t0) + 0.1 * self._supervised(h)
                e_loss.sum().backward()
            self.opt_e.step()
        # Discriminator, on a fresh batch, only for replicas whose loss is above threshold.
        x, z = self.batch(), self.noise()
        with torch.no_grad():
            h = net.embed(x)
            e_hat = net.generate_latent(z)
            h_hat = net.supervise(e_hat)
        self.opt_d.zero_grad()
        y = net.discriminate(torch.cat([h, h_hat, e_hat]))
        d_loss = (
            self._bce(y[:b], 1.0)
            + self._bce(y[b : 2 * b], 0.0)
            + cfg.gamma * self._bce(y[2 * b :], 0.0)
        )
        d_loss.sum().backward()
        self.opt_d.step(d_loss.detach() > cfg.d_threshold)
        return torch.stack([g_loss.detach(), e_t0.detach(), d_loss.detach()])

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, use_graphs: bool = True, log_every: int = 1000) -> dict[str, float]:
        n = self.cfg.iterations
        phases = [
            ("autoencoder", self.step_autoencoder),
            ("supervised", self.step_supervised),
            ("joint", self.step_joint),
        ]
        self.net.train()
        for name, step in phases:
            t0 = time.perf_counter()
            run, done = self._runner(step, n, use_graphs)
            last = None
            while done < n:
                last = run()
                done += 1
                if log_every and (done % log_every == 0 or done == n):
                    self.log(f"timegan {name} {done}/{n}: {np.round(last.cpu().numpy(), 4).tolist()}")
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            self.timings[name] = time.perf_counter() - t0
        self.net.eval()
        return self.timings

    def _runner(self, step: Callable[[], torch.Tensor], n: int, use_graphs: bool):
        """``(callable, iterations already done)``: the step itself, or a replayed CUDA graph."""
        if self.device.type != "cuda" or not use_graphs or n < 10:
            return step, 0
        warm = 3
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(warm):
                step()
        torch.cuda.current_stream(self.device).wait_stream(side)
        try:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = step()
        except RuntimeError as exc:  # e.g. an op that cannot be captured: fall back to eager
            self.log(f"timegan: CUDA graph capture failed ({exc}); training eagerly")
            torch.cuda.synchronize(self.device)
            return step, warm
        self.graphed = True

        def replay() -> torch.Tensor:
            graph.replay()
            return out

        return replay, warm


@contextmanager
def _frozen(*modules: torch.nn.Module) -> Iterator[None]:
    """No weight gradients for ``modules`` (gradients still flow through them)."""
    params = [p for m in modules for p in m.parameters()]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def train(
    data: list[Windows],
    config: TimeGANConfig,
    layout: Layout,
    *,
    seed: int,
    device: torch.device,
    log: Log | None = None,
    use_graphs: bool = True,
) -> tuple[TimeGANNet, Trainer]:
    """Build and train a (packed) TimeGAN; the caller's global RNG state is left untouched."""
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        net = TimeGANNet(config, layout).to(device)
        trainer = Trainer(net, data, device, log)
        trainer.fit(use_graphs=use_graphs)
    return net, trainer
