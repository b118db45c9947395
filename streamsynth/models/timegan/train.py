"""TimeGAN's three training phases: autoencoder, supervised, joint (with moment matching).

Every step runs on the device with no host synchronisation (mini-batches and noise are drawn
there), so on CUDA each phase's step is captured once as a CUDA graph and replayed. Losses
are kept per replica, and each replica's discriminator steps only while its own loss is above
the threshold, so packed replicas train exactly as separate runs would. Under ``torchrun``
each process draws its own mini-batches and DistributedDataParallel averages the gradients.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from streamsynth import rng
from streamsynth.distributed import Dist
from streamsynth.models.timegan.network import Layout, TimeGANConfig, TimeGANNet
from streamsynth.progress import Progress
from streamsynth.threads import threads_for

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


class _Objective(nn.Module):
    """One optimiser's loss as a module whose parameters are exactly the networks it trains.

    Under torchrun it is wrapped in DistributedDataParallel: a call computes this process's loss
    and its backward averages those networks' gradients over all processes. The networks it
    only reads (frozen, or run under ``no_grad``) are not its parameters, so DDP neither waits
    for their gradients nor needs ``find_unused_parameters``.
    """

    def __init__(self, loss: Callable[..., torch.Tensor], *trained: nn.Module) -> None:
        super().__init__()
        self.trained = nn.ModuleList(trained)
        self.loss = loss

    def forward(self, *inputs: torch.Tensor):
        return self.loss(*inputs)


class Trainer:
    """Trains a :class:`TimeGANNet` on one :class:`Windows` per replica, in this process or as
    one of ``dist.world`` processes (``cfg.batch_size`` windows per process and step)."""

    def __init__(self, net: TimeGANNet, data: list[Windows], dist: Dist, log: Log | None = None):
        cfg, device = net.config, dist.device
        self.net, self.cfg, self.dist, self.device = net, cfg, dist, device
        self.log = log or (lambda _m: None)
        if len(data) != net.layout.replicas:
            raise ValueError("one Windows per replica")
        self.rows = [torch.as_tensor(d.rows, dtype=torch.float32, device=device) for d in data]
        self.starts = [torch.as_tensor(d.starts, dtype=torch.long, device=device) for d in data]
        self.offsets = torch.arange(cfg.seq_len, device=device)
        r, lr = net.layout.replicas, cfg.learning_rate

        def objective(loss: Callable[..., torch.Tensor], *nets: nn.Module) -> tuple[MaskedAdam, nn.Module]:
            adam = MaskedAdam([pair for n in nets for pair in n.owned_parameters()], r, lr)
            module = _Objective(loss, *nets)
            if dist.world > 1:
                module = _distributed(module, device)
            return adam, module

        # One Adam per objective, as in the paper's code (phase 1 and joint E have their own).
        self.opt_e0, self.loss_e0 = objective(self._autoencoder_loss, net.embedder, net.recovery)
        self.opt_s0, self.loss_s0 = objective(self._supervised, net.supervisor)
        self.opt_e, self.loss_e = objective(self._embedder_loss, net.embedder, net.recovery)
        self.opt_g, self.loss_g = objective(self._generator_loss, net.generator, net.supervisor)
        self.opt_d, self.loss_d = objective(self._discriminator_loss, net.discriminator)
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

    def _autoencoder_loss(self, x: torch.Tensor) -> torch.Tensor:
        return self._mse(x, self.net.recover(self.net.embed(x)), self.net.avg_x)

    def _generator_loss(self, x: torch.Tensor, z: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """Adversarial (both latent paths), supervised and moment losses of generator + supervisor;
        independent passes share one recurrent call on a stacked batch."""
        net, b = self.net, self.cfg.batch_size
        e_hat = net.generate_latent(z)
        s_out = net.supervise(torch.cat([e_hat, h]))
        h_hat, h_sup = s_out[:b], s_out[b:]
        x_hat = net.recover(h_hat)
        y = net.discriminate(torch.cat([h_hat, e_hat]))
        g_s = self._mse(h[:, 1:], h_sup[:, :-1], net.avg_h)
        return (
            self._bce(y[:b], 1.0)
            + self.cfg.gamma * self._bce(y[b:], 1.0)
            + 100 * torch.sqrt(g_s + 1e-12)
            + 100 * self._moments(x_hat, x)
        )

    def _embedder_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(reconstruction loss, it plus a little of the supervised loss) of embedder + recovery."""
        h = self.net.embed(x)
        e_t0 = self._mse(x, self.net.recover(h), self.net.avg_x)
        return e_t0, 10 * torch.sqrt(e_t0) + 0.1 * self._supervised(h)

    def _discriminator_loss(self, h: torch.Tensor, h_hat: torch.Tensor, e_hat: torch.Tensor) -> torch.Tensor:
        b = self.cfg.batch_size
        y = self.net.discriminate(torch.cat([h, h_hat, e_hat]))
        return self._bce(y[:b], 1.0) + self._bce(y[b : 2 * b], 0.0) + self.cfg.gamma * self._bce(y[2 * b :], 0.0)

    # -- one step of each phase --------------------------------------------------------------
    def step_autoencoder(self) -> torch.Tensor:
        e_t0 = self.loss_e0(self.batch())
        self.opt_e0.zero_grad()
        (10 * torch.sqrt(e_t0)).sum().backward()
        self.opt_e0.step()
        return e_t0.detach()

    def step_supervised(self) -> torch.Tensor:
        with torch.no_grad():
            h = self.net.embed(self.batch())
        g_s = self.loss_s0(h)
        self.opt_s0.zero_grad()
        g_s.sum().backward()
        self.opt_s0.step()
        return g_s.detach()

    def step_joint(self) -> torch.Tensor:
        net, cfg = self.net, self.cfg
        for _ in range(2):
            x, z = self.batch(), self.noise()
            # Networks an objective does not update are frozen so no weight gradients are
            # computed for them (gradients still flow through them).
            for opt in (self.opt_g, self.opt_e, self.opt_d):
                opt.zero_grad()
            with torch.no_grad():
                h = net.embed(x)
            with _frozen(net.recovery, net.discriminator):
                g_loss = self.loss_g(x, z, h)
                g_loss.sum().backward()
            self.opt_g.step()
            # Embedder and recovery: reconstruction plus a little of the supervised loss.
            self.opt_e.zero_grad()
            with _frozen(net.supervisor):
                e_t0, e_loss = self.loss_e(x)
                e_loss.sum().backward()
            self.opt_e.step()
        # Discriminator, on a fresh batch, only for replicas whose loss is above threshold.
        x, z = self.batch(), self.noise()
        with torch.no_grad():
            h = net.embed(x)
            e_hat = net.generate_latent(z)
            h_hat = net.supervise(e_hat)
        self.opt_d.zero_grad()
        d_loss = self.loss_d(h, h_hat, e_hat)
        d_loss.sum().backward()
        # The gate reads the loss averaged over all processes, so every process takes the same
        # decision and their weights stay identical.
        d_loss = self.dist.average_(d_loss.detach().clone())
        self.opt_d.step(d_loss > cfg.d_threshold)
        return torch.stack([g_loss.detach(), e_t0.detach(), d_loss])

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, use_graphs: bool = True, log_every: int = 1000, progress: bool = False) -> dict[str, float]:
        n = self.cfg.iterations
        phases = [
            ("autoencoder", self.step_autoencoder),
            ("supervised", self.step_supervised),
            ("joint", self.step_joint),
        ]
        self.net.train()
        # Every op is a few thousand elements (batch x hidden units), too small to share among
        # threads: on a busy machine thread hand-offs made a fit 10x slower (see threads.py).
        with threads_for(self.cfg.batch_size * self.cfg.hidden_dim * self.net.layout.replicas, self.device):
            for i, (name, step) in enumerate(phases):
                t0 = time.perf_counter()
                run, done = self._runner(step, n, use_graphs)
                last = None
                label = f"timegan {i + 1}/{len(phases)} {name}"
                with Progress(label=label, total=n, done=done, unit="steps", enabled=progress) as bar:
                    while done < n:
                        last = run()
                        done += 1
                        # the loss is read from the device only when a line is drawn
                        bar.advance(**{LOSS_NAMES[name]: lambda t=last: _losses(t)})
                        if log_every and (done % log_every == 0 or done == n):
                            self.log(f"timegan {name} {done}/{n}: {np.round(last.cpu().numpy(), 4).tolist()}")
                    if self.device.type == "cuda":
                        torch.cuda.synchronize(self.device)
                self.timings[name] = time.perf_counter() - t0
        self.net.eval()
        return self.timings

    def _runner(self, step: Callable[[], torch.Tensor], n: int, use_graphs: bool):
        """``(callable, iterations already done)``: the step itself, or a replayed CUDA graph."""
        # Under torchrun the step stays eager: DDP's gradient all-reduce is started by autograd
        # hooks and bucketed on the host, which a captured graph would not replay.
        if self.device.type != "cuda" or not use_graphs or n < 10 or self.dist.world > 1:
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


#: How each phase's loss is labelled in the progress line (the joint phase has three).
LOSS_NAMES = {"autoencoder": "loss", "supervised": "loss", "joint": "loss g/e/d"}


def _losses(t: torch.Tensor) -> list[float]:
    """A step's losses as numbers (averaged over packed replicas)."""
    values = t.detach().float().reshape(t.shape[0] if t.dim() > 1 else 1, -1).mean(-1)
    return [round(float(v), 4) for v in values.cpu()]


def _distributed(module: nn.Module, device: torch.device) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    # The owner masks are constant buffers: no broadcast of them before every call (the keyword
    # is forward_sync_buffers from torch 2.13 on, broadcast_buffers, now deprecated, before).
    params = inspect.signature(DistributedDataParallel).parameters
    no_sync = "forward_sync_buffers" if "forward_sync_buffers" in params else "broadcast_buffers"
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(module, device_ids=ids, **{no_sync: False})


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
    progress: bool = False,
) -> tuple[TimeGANNet, Trainer]:
    """Build and train a (packed) TimeGAN; the caller's global RNG state is left untouched.

    Under ``torchrun`` (one process group, gloo on CPU, nccl on GPU with one GPU per process)
    every process starts from the same weights, draws its own mini-batches and noise, and
    averages gradients with the others, so all end with the same weights (the same ones again
    for the same seed and number of processes); only rank 0 logs.
    """
    dist = Dist(device)
    devices = [dist.device] if dist.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            net = TimeGANNet(config, layout).to(dist.device)
            if dist.rank > 0:  # rank 0 draws what one process would; every other rank its own
                torch.manual_seed(rng.child_seed(seed, "timegan", "rank", dist.rank))
            trainer = Trainer(net, data, dist, log if dist.rank == 0 else None)
            trainer.fit(use_graphs=use_graphs, progress=progress and dist.rank == 0)
    finally:
        dist.close()
    return net, trainer
