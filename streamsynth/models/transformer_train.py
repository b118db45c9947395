"""Training of the event transformer: AdamW, warm-up + cosine schedule, early stopping on held-out
entities, a progress bar with the loss; one process or DistributedDataParallel under ``torchrun``
(gloo on CPU, nccl on GPU). Deterministic under a seed on a given machine and process count.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from streamsynth.devices import default_device
from streamsynth.distributed import Dist
from streamsynth.models.transformer_network import EventTransformer, TransformerConfig, plan_features, time_features
from streamsynth.progress import Progress
from streamsynth.threads import threads_for

ENTITY_BATCH = 32
SEGMENT_BATCH = 4
SEGMENT_EPOCH_STEPS = 32


@dataclass
class TrainConfig:
    epochs: int | None = None  # None: the preset's for the data (transformer_sizing)
    # Entities per optimiser step (per process). None: ENTITY_BATCH, or SEGMENT_BATCH for a stream
    # without entities (its segments are long: 32 of them made one or two steps an epoch on a
    # 5,000-event series, too few to leave the plateau where the network ignores its inputs).
    batch_size: int | None = None
    # Least optimiser steps an epoch takes: a small data set is passed over as often as that
    # needs (None: 1, or SEGMENT_EPOCH_STEPS for a stream without entities, whose few long
    # segments made 4 steps an epoch, so that early stopping ended fits on the plateau).
    min_epoch_steps: int | None = None
    lr: float = 3e-3
    weight_decay: float = 0.01
    warmup: float = 0.05  # share of all steps spent warming up
    val_fraction: float = 0.1  # entities held out for early stopping
    patience: int | None = None  # epochs without a better validation loss before stopping (None: the preset's)
    device: str | None = None
    progress: bool = True
    grad_clip: float = 1.0
    dp_epsilon: float | None = None  # train with DP-SGD within this budget (streamsynth.privacy)
    dp_delta: float | None = None


@dataclass(frozen=True)
class Encoded:
    """Entities as the codec encodes them (arrays by name), and the time frame of their times."""

    arrays: dict[str, np.ndarray]
    origin_s: float  # the training start, in epoch seconds
    span_s: float  # the training span: a time feature's unit


def train(
    cfg: TransformerConfig, data: Encoded, tc: TrainConfig, *, seed: int
) -> tuple[EventTransformer, list[dict[str, float]]]:
    """Fit a fresh model on encoded entities; returns the best model (on CPU, eval mode) and
    the per-epoch history of train and validation loss (nats per predicted item)."""
    device = default_device(tc.device)
    dist = Dist(device)
    device = dist.device
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = EventTransformer(cfg).to(device)
    wrapped: torch.nn.Module = model
    if dist.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    batches = Batches(data, cfg.block_size, device, plan=cfg.plan, share=cfg.window_share)
    n = batches.n_entities
    order = rng.permutation(n)
    n_val = validation_size(n, tc)
    val, fit = np.sort(order[:n_val]), order[n_val:]
    passes = passes_per_epoch(n, tc)
    steps_per_epoch = max(1, math.ceil(passes * len(fit) / tc.batch_size) // dist.world)
    total = steps_per_epoch * tc.epochs
    opt, sched = _optimizer(model, tc, total)
    amp = device.type == "cuda"
    history: list[dict[str, float]] = []
    best, best_state, bad = math.inf, None, 0
    bar = Progress(label="transformer", total=total, unit="steps", enabled=tc.progress and dist.rank == 0).start()
    steps = _Steps(model, wrapped, batches, opt, sched, tc, amp, bar)
    try:
        for epoch in range(tc.epochs):
            model.train()
            perm = np.concatenate([rng.permutation(fit) for _ in range(passes)])
            chunks = [perm[i : i + tc.batch_size] for i in range(0, len(perm), tc.batch_size)]
            while len(chunks) < steps_per_epoch * dist.world:  # every rank needs as many steps
                chunks += chunks[: steps_per_epoch * dist.world - len(chunks)]
            train_nll = steps.epoch(chunks[dist.rank :: dist.world][:steps_per_epoch], f"{epoch + 1}/{tc.epochs}")
            record = {"epoch": epoch + 1, "train": dist.mean(train_nll)}
            if len(val):
                record["val"] = dist.mean(_evaluate(model, batches, val, tc.batch_size, amp))
            history.append(record)
            score = record.get("val", record["train"])
            if score < best - 1e-4:
                best, bad = score, 0
                best_state = copy.deepcopy(model.state_dict())
            else:
                bad += 1
                if len(val) and bad >= tc.patience:
                    break
    finally:
        bar.close()
        dist.close()
    if best_state is not None:
        model.load_state_dict(best_state)
    return model.cpu().eval(), history


def validation_size(n_entities: int, tc: TrainConfig) -> int:
    """Entities held out for early stopping (none from fewer than 10)."""
    return int(round(n_entities * tc.val_fraction)) if n_entities >= 10 else 0


def passes_per_epoch(n_entities: int, tc: TrainConfig) -> int:
    """Passes over the training entities in one epoch: enough for ``tc.min_epoch_steps`` steps."""
    per_pass = max(1, math.ceil((n_entities - validation_size(n_entities, tc)) / tc.batch_size))
    return max(1, math.ceil((tc.min_epoch_steps or 1) / per_pass))


def _optimizer(model: EventTransformer, tc: TrainConfig, total: int) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW (:func:`weight_groups`) and its schedule: a linear warm-up, then a cosine down to a
    tenth of the peak rate."""
    opt = torch.optim.AdamW(weight_groups(model, tc.weight_decay), lr=tc.lr, betas=(0.9, 0.95))
    warm = max(1, int(tc.warmup * total))

    def schedule(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        progress = (step - warm) / max(1, total - warm)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))

    return opt, torch.optim.lr_scheduler.LambdaLR(opt, schedule)


def weight_groups(model: EventTransformer, weight_decay: float) -> list[dict[str, Any]]:
    """AdamW's parameter groups: weight decay on matrices, none on embeddings, norms and biases."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() >= 2 and "emb" not in name else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@dataclass
class _Steps:
    """The optimiser steps of training: one per batch of entities."""

    model: EventTransformer
    wrapped: torch.nn.Module  # the model, or its DistributedDataParallel wrapper
    batches: Batches
    opt: torch.optim.Optimizer
    sched: Any
    tc: TrainConfig
    amp: bool
    bar: Progress

    def epoch(self, chunks: list[np.ndarray], label: str) -> float:
        """Train on each chunk of entity indices; the mean loss per predicted item."""
        seen, total_nll = 0.0, 0.0
        for idx in chunks:
            batch = self.batches.make(idx)
            with threads_for(batch["tfeat"].shape[0] * batch["tfeat"].shape[1] * self.model.cfg.n_embd):
                with torch.autocast(self.batches.device.type, dtype=torch.bfloat16, enabled=self.amp):
                    nll, count = self.wrapped(batch)
                loss = nll / count
                self.opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.tc.grad_clip)
                self.opt.step()
            self.sched.step()
            total_nll += float(nll.detach())
            seen += float(count)
            self.bar.advance(epoch=label, loss=round(total_nll / seen, 3))
        return total_nll / max(seen, 1.0)


@torch.no_grad()
def _evaluate(model: EventTransformer, batches: Batches, idx: np.ndarray, size: int, amp: bool) -> float:
    model.eval()
    nll, count = 0.0, 0.0
    for i in range(0, len(idx), size):
        batch = batches.make(idx[i : i + size])
        elements = batch["tfeat"].shape[0] * batch["tfeat"].shape[1] * model.cfg.n_embd
        with threads_for(elements), torch.autocast(batches.device.type, dtype=torch.bfloat16, enabled=amp):
            a, b = model(batch)
        nll += float(a)
        count += float(b)
    model.train()
    return nll / max(count, 1.0)


class Batches:
    """Pads encoded entities into model batches (events, attributes, time features, censoring);
    with ``plan``, each entity's real count and last event time as its plan (plan_features)."""

    def __init__(self, data: Encoded, block: int, device: torch.device, *, plan: bool = False,
                 share: bool = True) -> None:
        arrays = data.arrays
        self.events = torch.from_numpy(arrays["events"])
        self.attrs = torch.from_numpy(arrays["attrs"])
        self.times = torch.from_numpy(arrays["times"])
        self.offsets = arrays["offsets"]
        self.log_survival = torch.from_numpy(arrays["log_survival"])
        self.block, self.origin_s, self.span_s, self.device = block, data.origin_s, data.span_s, device
        self.n_entities = len(self.offsets) - 1
        self.plan, self.share = plan, share

    def make(self, idx: np.ndarray) -> dict[str, torch.Tensor]:
        starts, ends = self.offsets[idx], self.offsets[idx + 1]
        n_events = np.minimum(ends - starts, self.block - 1)
        censor = ends - starts <= self.block - 2  # the sequence ends inside the model's context
        p = int(min(self.block, max(int((n_events + 1 + censor).max()), 2)))
        b, f = len(idx), self.events.shape[1]
        events = torch.zeros(b, p - 1, f, dtype=torch.long)
        t = torch.zeros(b, p, dtype=torch.float64)
        for row, (s, n) in enumerate(zip(starts, n_events, strict=True)):
            events[row, :n] = self.events[s : s + n]
            # positions 0 and 1 sit at the window start; position k >= 2 at event k-1's time
            t[row, 2 : 2 + min(n, p - 2)] = self.times[s : s + min(n, p - 2)]
        tfeat = time_features(t, self.origin_s, torch.zeros(()), self.span_s, self.share)
        if self.plan:  # position k has made k - 1 events (the start and attribute tokens none)
            count = torch.from_numpy(ends - starts)[:, None]
            made = (torch.arange(p)[None, :] - 1).clamp(min=0)
            last = self.times[torch.from_numpy(ends - 1)][:, None]
            tfeat = torch.cat([tfeat, plan_features(t, last, count - made, self.span_s)], dim=-1)
        return {
            "events": events.to(self.device),
            "attrs": self.attrs[idx].to(self.device),
            "tfeat": tfeat.to(self.device),
            "n_events": torch.from_numpy(n_events).to(self.device),
            "censor": torch.from_numpy(censor).to(self.device),
            "log_survival": self.log_survival[idx].to(self.device),
        }
