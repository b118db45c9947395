"""DP-SGD for a model's own training loop, with the entity as the unit of privacy.

A :class:`PrivateTraining` plans the noise for the whole run, draws Poisson batches of entities,
turns the model's optimizer into an Opacus ``DPOptimizer`` (per-entity clipping, Gaussian noise,
the accountant on every step) and gives the spent budget as a :class:`PrivacyRecord`.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from streamsynth.distributed import world_size
from streamsynth.errors import StreamsynthError
from streamsynth.privacy.budget import UNIT_ENTITY, Plan, PrivacyBudget, PrivacyRecord, plan

#: "hooks": Opacus' vectorised per-sample gradients; every layer with parameters must see one
#: entity per row of dim 0. "loop": one backward pass per entity; right for any model, slower.
PerSample = Literal["hooks", "loop"]
#: The summed loss of the entities whose indices are given (one entity's loss must not depend
#: on the other entities of the batch, or clipping would not bound its influence).
LossFn = Callable[[np.ndarray], torch.Tensor]


def refuse_torchrun() -> None:
    """DP-SGD trains in one process: its batches, clipping and accountant assume one optimiser."""

    if world_size() > 1:
        raise StreamsynthError(
            "differentially private training runs in one process, not under torchrun",
            hint="run `streamsynth fit` without torchrun when --dp-epsilon is set",
        )


class PrivateTraining:
    """One differentially private training run over ``entities`` training entities.

    ``steps`` counts the optimiser steps of the whole plan (every epoch, every phase, every
    private optimizer together); the noise multiplier keeps all of them within ``budget``.
    With ``seed=None`` (the default) batches and noise come from OS entropy: DP assumes the
    noise is secret, and a model's seed is saved in its config. A seed makes a run reproducible
    (tests, benchmarks) and is noted in the record.
    """

    def __init__(
        self,
        budget: PrivacyBudget,
        *,
        entities: int,
        batch_size: int,
        steps: int,
        entity_column: str | None = None,
        seed: int | None = None,
        per_sample: PerSample = "hooks",
        notes: Sequence[str] = (),
    ) -> None:
        from opacus.accountants import create_accountant

        self.budget = budget
        self.plan: Plan = plan(budget, entities=entities, batch_size=batch_size, steps=steps)
        self.entity_column = entity_column
        self.per_sample = per_sample
        self.notes = list(notes)
        self.accountant = create_accountant(budget.accountant)
        self.steps_taken = 0
        self._seed = seed
        self._optimizers = 0
        self._rng = np.random.default_rng(None if seed is None else [seed, 0x0D9])
        if seed is not None:
            self.notes.append("batches and noise drawn from a fixed seed: reproducible, not secret")

    @property
    def steps_per_epoch(self) -> int:
        """Steps in one expected pass over the entities: one over the sample rate."""
        return max(1, round(1.0 / self.plan.sample_rate))

    # -- wrapping ----------------------------------------------------------------------------
    def module(self, module: nn.Module) -> nn.Module:
        """``module`` ready for private training: Opacus' replacements for layers it cannot
        handle (``nn.GRU``/``nn.LSTM`` -> ``DPGRU``/``DPLSTM``, BatchNorm -> GroupNorm), and with
        ``per_sample="hooks"`` wrapped to record per-entity gradients. Build the optimizer on
        the returned module's parameters."""
        from opacus.validators import ModuleValidator

        if self.per_sample == "loop":
            return module
        errors = ModuleValidator.validate(module, strict=False)
        if errors:
            module = ModuleValidator.fix(module)
            errors = ModuleValidator.validate(module, strict=False)
        if errors:
            raise StreamsynthError(
                f"the network cannot be trained with DP-SGD: {errors[0]}",
                hint="this is a limitation of the model; train it without --dp-epsilon",
            )
        from opacus import GradSampleModule

        return GradSampleModule(module, batch_first=True, loss_reduction="sum")

    def optimizer(self, optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
        """Wrap ``optimizer``: clip each entity's gradient, add calibrated noise, count the step."""
        from opacus.optimizers import DPOptimizer

        params = [p for group in optimizer.param_groups for p in group["params"]]
        device = params[0].device if params else torch.device("cpu")
        generator = torch.Generator(device=device)
        self._optimizers += 1  # every optimizer draws noise independent of the others'
        if self._seed is None:
            generator.seed()
        else:
            generator.manual_seed(int(np.random.SeedSequence([self._seed, self._optimizers]).generate_state(1)[0]))
        private = DPOptimizer(
            optimizer,
            noise_multiplier=self.plan.noise_multiplier,
            max_grad_norm=self.budget.max_grad_norm,
            expected_batch_size=self.plan.expected_batch_size,
            loss_reduction="mean",
            generator=generator,
        )
        private.attach_step_hook(self._count)
        return private

    # -- the loop ------------------------------------------------------------------------------
    def batches(self, steps: int | None = None) -> Iterator[np.ndarray]:
        """Entity indices of each step: every entity joins a step's batch independently with
        the plan's sample rate (Poisson sampling, which the accountant assumes). May be empty."""
        steps = self.steps_per_epoch if steps is None else steps
        n, q = self.plan.entities, self.plan.sample_rate
        for _ in range(steps):
            yield np.flatnonzero(self._rng.random(n) < q)

    def step(self, optimizer: torch.optim.Optimizer, idx: np.ndarray, loss_fn: LossFn) -> float:
        """One private step on entities ``idx``; returns their summed loss (0 for an empty batch).

        An empty batch still takes a step of pure noise: skipping it would reveal, beyond the
        accountant's analysis, that no entity was drawn.
        """
        params = [p for p in optimizer.params if p.requires_grad]  # type: ignore[attr-defined]
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        if len(idx) == 0:
            for p in params:
                p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype, device=p.device)
        elif self.per_sample == "hooks":
            loss = loss_fn(idx)
            loss.backward()
            total = float(loss.detach())
        else:
            per_entity: list[list[torch.Tensor]] = [[] for _ in params]
            for i in idx:
                loss = loss_fn(np.asarray([i]))
                grads = torch.autograd.grad(loss, params, allow_unused=True)
                for slot, p, g in zip(per_entity, params, grads, strict=True):
                    slot.append(torch.zeros_like(p) if g is None else g.detach())
                total += float(loss.detach())
            for p, slot in zip(params, per_entity, strict=True):
                p.grad_sample = torch.stack(slot)
        optimizer.step()
        return total

    def _count(self, _optimizer: Any) -> None:
        if self.steps_taken >= self.plan.steps:
            raise RuntimeError(
                f"DP training took more than the {self.plan.steps} planned steps; the budget "
                "would be exceeded (a bug in the model's training loop)"
            )
        self.steps_taken += 1
        self.accountant.step(noise_multiplier=self.plan.noise_multiplier, sample_rate=self.plan.sample_rate)

    # -- the spent budget ----------------------------------------------------------------------
    def spent(self) -> float:
        """Epsilon spent so far at the plan's delta, as the accountant computes it."""
        if not self.accountant.history:
            return 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return float(self.accountant.get_epsilon(delta=self.plan.delta))

    def record(self) -> PrivacyRecord:
        """The spent budget for the model's ``metadata["privacy"]``."""
        import opacus

        return PrivacyRecord(
            epsilon=round(self.spent(), 6),
            delta=self.plan.delta,
            target_epsilon=self.budget.epsilon,
            accountant=self.budget.accountant,
            unit=UNIT_ENTITY,
            entity_column=self.entity_column,
            entities=self.plan.entities,
            noise_multiplier=self.plan.noise_multiplier,
            max_grad_norm=self.budget.max_grad_norm,
            sample_rate=self.plan.sample_rate,
            steps=self.steps_taken,
            library=f"opacus {opacus.__version__}",
            notes=self.notes,
        )
