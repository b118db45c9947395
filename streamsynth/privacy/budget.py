"""The privacy budget: calibrate DP-SGD noise so a whole planned training fits (epsilon, delta),
and the record of the budget actually spent that models keep in their config and manifests.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any

from streamsynth.errors import StreamsynthError

#: The unit of privacy: adding or removing one entity (all events of one card, user or host)
#: changes the output distribution by at most (epsilon, delta).
UNIT_ENTITY = "entity"
ACCOUNTANTS = ("rdp", "prv")
#: Beyond this noise multiplier the gradients are pure noise: the budget is too tight to learn.
MAX_NOISE_MULTIPLIER = 20.0
#: Fewer entities per expected batch than this and Poisson batches are mostly noise or empty.
MIN_EXPECTED_BATCH = 4


@dataclass(frozen=True)
class PrivacyBudget:
    """What the user asks for: (epsilon, delta) per entity, the clipping bound, the accountant.

    ``delta=None`` picks ``1 / (10 * entities)`` at planning time, well under one over the
    number of entities (a delta near that would allow releasing one entity outright).
    """

    epsilon: float
    delta: float | None = None
    max_grad_norm: float = 1.0
    accountant: str = "rdp"

    def __post_init__(self) -> None:
        if not (isinstance(self.epsilon, int | float) and math.isfinite(self.epsilon) and self.epsilon > 0):
            raise StreamsynthError(
                f"dp_epsilon must be a positive number, got {self.epsilon!r}",
                hint="e.g. --dp-epsilon 3 (smaller is more private; 1-10 is usual)",
            )
        if self.delta is not None and not (0 < self.delta < 1):
            raise StreamsynthError(
                f"dp_delta must lie strictly between 0 and 1, got {self.delta!r}",
                hint="e.g. --dp-delta 1e-5, below one over the number of entities",
            )
        if not self.max_grad_norm > 0:
            raise StreamsynthError(f"max_grad_norm must be positive, got {self.max_grad_norm!r}")
        if self.accountant not in ACCOUNTANTS:
            raise StreamsynthError(
                f"unknown privacy accountant {self.accountant!r}", hint=f"use one of: {', '.join(ACCOUNTANTS)}"
            )

    def delta_for(self, entities: int) -> float:
        """The delta to use for ``entities`` training entities; rejects a delta too large for them."""
        if self.delta is None:
            return 1.0 / (10.0 * entities)
        if self.delta >= 1.0 / entities:
            raise StreamsynthError(
                f"dp_delta {self.delta:g} is not below 1/{entities} (one over the number of training "
                "entities): that budget would allow publishing one entity's data outright",
                hint=f"use --dp-delta {1.0 / (10 * entities):.1e} or smaller",
            )
        return self.delta


@dataclass(frozen=True)
class Plan:
    """The calibrated DP-SGD settings of one whole training run."""

    noise_multiplier: float
    sample_rate: float  # chance of each entity to be in a step's batch (Poisson sampling)
    steps: int  # optimiser steps of the whole run, every phase together
    expected_batch_size: int
    entities: int
    delta: float


def plan(budget: PrivacyBudget, *, entities: int, batch_size: int, steps: int) -> Plan:
    """The noise multiplier that keeps ``steps`` steps at ``batch_size / entities`` within budget.

    Raises :class:`StreamsynthError` rather than train without meaningful privacy or learning:
    too few entities for the batch, or a budget so tight that the noise would drown the signal.
    """
    if entities < 2 * MIN_EXPECTED_BATCH:
        raise StreamsynthError(
            f"differentially private training needs at least {2 * MIN_EXPECTED_BATCH} entities, "
            f"the data has {entities}",
            hint="train without --dp-epsilon, or give data with more entities (cards, users, hosts)",
        )
    if batch_size < MIN_EXPECTED_BATCH or batch_size > entities // 2:
        raise StreamsynthError(
            f"batch of {batch_size} entities out of {entities}: DP-SGD's Poisson sampling needs "
            f"between {MIN_EXPECTED_BATCH} and half of the entities per step",
            hint=f"set the model's batch_size option to at most {entities // 2}",
        )
    if steps < 1:
        raise StreamsynthError(f"a training of {steps} steps spends no budget", hint="train for at least one step")
    delta = budget.delta_for(entities)
    sample_rate = batch_size / entities
    from opacus.accountants.utils import get_noise_multiplier

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "optimal order is the largest alpha": a looser bound, still valid
            sigma = get_noise_multiplier(
                target_epsilon=budget.epsilon,
                target_delta=delta,
                sample_rate=sample_rate,
                steps=steps,
                accountant=budget.accountant,
                epsilon_tolerance=0.01 * budget.epsilon,
            )
    except ValueError:
        sigma = math.inf
    if sigma > MAX_NOISE_MULTIPLIER:
        raise StreamsynthError(
            f"the privacy budget epsilon={budget.epsilon:g}, delta={delta:.1e} is too tight for "
            f"{steps:,} steps over {entities:,} entities (batches of {batch_size}): it needs a noise "
            f"multiplier of {sigma:.3g}, above the useful maximum {MAX_NOISE_MULTIPLIER:g}",
            hint="raise --dp-epsilon, train fewer epochs, or give data with more entities",
        )
    return Plan(sigma, sample_rate, steps, batch_size, entities, delta)


@dataclass
class PrivacyRecord:
    """The spent budget, as saved in ``config.json`` (``metadata["privacy"]``) and manifests."""

    epsilon: float  # spent, as the accountant reports it
    delta: float
    target_epsilon: float
    accountant: str
    unit: str
    entity_column: str | None
    entities: int
    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    steps: int
    mechanism: str = "DP-SGD (Opacus, Poisson sampling of entities)"
    library: str = ""
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PrivacyRecord:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)
