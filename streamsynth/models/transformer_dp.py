"""DP-SGD training of the event transformer: one entity's whole sequence is one example.

The private counterpart of ``transformer_train.train``, beside it: Poisson batches of entities, each
entity's gradient (of its own mean negative log-likelihood) clipped, calibrated noise, and no
early stopping on held-out entities (choosing an epoch by their loss would leak them).
"""

from __future__ import annotations

import numpy as np
import torch

from streamsynth.devices import default_device
from streamsynth.errors import StreamsynthError
from streamsynth.models.transformer_network import EventTransformer, TransformerConfig
from streamsynth.models.transformer_train import Batches, Encoded, TrainConfig, weight_groups
from streamsynth.privacy.budget import PrivacyBudget, PrivacyRecord
from streamsynth.privacy.dp import PrivateTraining, refuse_torchrun
from streamsynth.progress import Progress
from streamsynth.threads import threads_for

#: What DP-SGD covers and what it does not, written into the record.
NOTES = (
    "DP-SGD covers the network weights; the codec (category vocabularies, numeric quantile bins, "
    "the time span) is fitted on the data without noise",
)


def require_entity(entity_column: str | None) -> None:
    """DP-SGD's unit of privacy is the entity: refuse data without one, before any training."""
    if entity_column is None:
        raise StreamsynthError(
            "differentially private training needs an entity column (the unit of privacy)",
            hint="name it with --entity COLUMN (the card, user or host whose events belong together), "
                 "or fit without --dp-epsilon",
        )


def train_private(
    cfg: TransformerConfig, data: Encoded, tc: TrainConfig, *, seed: int, entity_column: str | None
) -> tuple[EventTransformer, list[dict[str, float]], PrivacyRecord]:
    """(model on CPU in eval mode, per-epoch history, the spent budget) for ``tc.dp_epsilon``."""
    refuse_torchrun()
    require_entity(entity_column)
    budget = PrivacyBudget(epsilon=tc.dp_epsilon, delta=tc.dp_delta)
    device = default_device(tc.device)
    batches = Batches(data, cfg.block_size, device)
    n = batches.n_entities
    steps_per_epoch = max(1, round(n / tc.batch_size))
    dp = PrivateTraining(
        budget, entities=n, batch_size=tc.batch_size, steps=steps_per_epoch * tc.epochs,
        entity_column=entity_column, per_sample="loop", notes=NOTES,
    )
    torch.manual_seed(seed)
    model = EventTransformer(cfg).to(device)
    opt = dp.optimizer(torch.optim.AdamW(weight_groups(model, tc.weight_decay), lr=tc.lr, betas=(0.9, 0.95)))

    def entity_loss(idx: np.ndarray) -> torch.Tensor:
        nll, count = model(batches.make(idx))
        return nll / count  # the entity's own mean: no other entity enters its gradient

    history: list[dict[str, float]] = []
    bar = Progress(label="transformer (DP)", total=steps_per_epoch * tc.epochs, unit="steps",
                   enabled=tc.progress).start()
    model.train()
    try:
        for epoch in range(tc.epochs):
            total, seen = 0.0, 0
            for idx in dp.batches(steps_per_epoch):
                with threads_for(cfg.block_size * cfg.n_embd):
                    total += dp.step(opt, idx, entity_loss)
                seen += len(idx)
                bar.advance(epoch=f"{epoch + 1}/{tc.epochs}", loss=round(total / max(seen, 1), 3),
                            epsilon=lambda: round(dp.spent(), 3))
            history.append({"epoch": epoch + 1, "train": total / max(seen, 1), "epsilon": dp.spent()})
    finally:
        bar.close()
    return model.cpu().eval(), history, dp.record()
