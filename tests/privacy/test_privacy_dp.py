"""DP-SGD toolkit: calibrated noise keeps the accountant within budget, entity-level clipping,
clear errors for budgets that cannot be met; on a tiny embedding + GRU model over entity sequences."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from opacus.validators import ModuleValidator
from torch import nn

from streamsynth.errors import StreamsynthError
from streamsynth.privacy import PrivacyBudget, PrivacyRecord, PrivateTraining

VOCAB, LENGTH = 6, 10


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matrices: on shared cores extra torch threads only spin."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class TinySequenceModel(nn.Module):
    """Next-token model over one entity's event sequence: embedding, GRU, linear read-out."""

    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(VOCAB, 8)
        self.gru = nn.GRU(8, 16, batch_first=True)
        self.out = nn.Linear(16, VOCAB)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        hidden, _ = self.gru(self.emb(tokens[:, :-1]))
        logits = self.out(hidden)
        # summed per entity, then over entities: each entity's loss depends on it alone
        return nn.functional.cross_entropy(logits.reshape(-1, VOCAB), tokens[:, 1:].reshape(-1), reduction="sum")


def entity_sequences(n: int, seed: int = 0) -> torch.Tensor:
    """One row per entity: a cyclic token pattern with a per-entity phase and some noise."""
    rng = np.random.default_rng(seed)
    phase = rng.integers(0, VOCAB, n)[:, None]
    tokens = (phase + np.arange(LENGTH)[None, :]) % VOCAB
    noise = rng.random((n, LENGTH)) < 0.1
    tokens[noise] = rng.integers(0, VOCAB, noise.sum())
    return torch.from_numpy(tokens)


def train(dp: PrivateTraining, data: torch.Tensor, epochs: int, seed: int = 0) -> tuple[nn.Module, list[float]]:
    torch.manual_seed(seed)
    model = dp.module(TinySequenceModel())
    opt = dp.optimizer(torch.optim.Adam(model.parameters(), lr=0.05))
    losses = []
    for _ in range(epochs):
        total, seen = 0.0, 0
        for idx in dp.batches():
            total += dp.step(opt, idx, lambda i: model(data[torch.from_numpy(i)]))
            seen += len(idx)
        losses.append(total / max(seen, 1) / (LENGTH - 1))
    return model, losses


@pytest.mark.parametrize("epsilon", [1.0, 3.0])
def test_dp_training_stays_within_budget_and_learns(epsilon: float) -> None:
    data = entity_sequences(400)
    epochs, batch = 4, 40
    dp = PrivateTraining(
        PrivacyBudget(epsilon=epsilon, delta=1e-5), entities=400, batch_size=batch,
        steps=epochs * 10, entity_column="card_id", seed=0,
    )
    assert dp.steps_per_epoch == 10
    model, losses = train(dp, data, epochs)
    record = dp.record()
    assert record.steps == epochs * 10
    assert 0 < record.epsilon <= epsilon
    assert record.epsilon > 0.8 * epsilon  # the whole budget is used, not wasted
    assert record.delta == 1e-5 and record.unit == "entity" and record.entity_column == "card_id"
    assert record.accountant == "rdp" and record.noise_multiplier > 0.5
    assert any(isinstance(m, nn.Module) and type(m).__name__ == "DPGRU" for m in model.modules())
    assert losses[-1] < losses[0]  # still learns through the noise
    assert PrivacyRecord.from_dict(record.to_dict()) == record
    assert any("fixed seed" in note for note in record.notes)


def test_noise_is_secret_by_default() -> None:
    """Without a seed, two runs on the same data draw different batches and noise."""
    data = entity_sequences(100)
    params = []
    for _ in range(2):
        dp = PrivateTraining(PrivacyBudget(epsilon=5, delta=1e-4), entities=100, batch_size=10, steps=1)
        torch.manual_seed(0)
        model = dp.module(TinySequenceModel())
        opt = dp.optimizer(torch.optim.SGD(model.parameters(), lr=1.0))
        dp.step(opt, np.arange(10), lambda i, m=model: m(data[torch.from_numpy(i)]))
        params.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
        assert not any("seed" in note for note in dp.record().notes)
    assert not torch.allclose(params[0], params[1])


def test_prv_accountant_and_default_delta() -> None:
    dp = PrivateTraining(PrivacyBudget(epsilon=2.0, accountant="prv"), entities=200, batch_size=20, steps=20)
    assert dp.plan.delta == pytest.approx(1 / 2000)
    train(dp, entity_sequences(200), 2)
    assert dp.record().accountant == "prv"
    assert dp.spent() <= 2.0


def test_more_steps_than_planned_is_refused() -> None:
    data = entity_sequences(100)
    dp = PrivateTraining(PrivacyBudget(epsilon=5, delta=1e-4), entities=100, batch_size=10, steps=3)
    model = dp.module(TinySequenceModel())
    opt = dp.optimizer(torch.optim.SGD(model.parameters(), lr=0.1))
    for idx in dp.batches(3):
        dp.step(opt, idx, lambda i: model(data[torch.from_numpy(i)]))
    with pytest.raises(RuntimeError, match="planned"):
        dp.step(opt, np.arange(5), lambda i: model(data[torch.from_numpy(i)]))
    assert dp.spent() <= 5


def test_hooks_and_loop_give_the_same_per_entity_clipping() -> None:
    """Vectorised per-sample gradients equal one backward pass per entity: same noise seed,
    same clipped sum, same parameters after a step; an empty batch is a pure-noise step."""
    data = entity_sequences(64)
    torch.manual_seed(3)
    base = ModuleValidator.fix(TinySequenceModel())  # GRU -> DPGRU once, for both modes
    results = []
    for mode in ("hooks", "loop"):
        dp = PrivateTraining(
            PrivacyBudget(epsilon=8, delta=1e-3, max_grad_norm=0.5), entities=64, batch_size=8,
            steps=2, per_sample=mode, seed=0,
        )
        model = dp.module(copy.deepcopy(base))
        opt = dp.optimizer(torch.optim.SGD(model.parameters(), lr=1.0))
        dp.step(opt, np.arange(8), lambda i, m=model: m(data[torch.from_numpy(i)]))
        dp.step(opt, np.arange(0), lambda i, m=model: m(data[torch.from_numpy(i)]))
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
        assert dp.steps_taken == 2
    assert torch.allclose(results[0], results[1], atol=1e-5)


@pytest.mark.parametrize(
    ("budget", "entities", "batch", "steps", "message"),
    [
        (PrivacyBudget(epsilon=0.01, delta=1e-5), 1000, 100, 5000, "too tight"),
        (PrivacyBudget(epsilon=3, delta=1e-5), 6, 4, 10, "at least 8 entities"),
        (PrivacyBudget(epsilon=3, delta=1e-5), 100, 80, 10, "half of the entities"),
        (PrivacyBudget(epsilon=3, delta=0.05), 100, 10, 10, "not below 1/100"),
    ],
)
def test_budgets_that_cannot_be_met_are_clear_errors(
    budget: PrivacyBudget, entities: int, batch: int, steps: int, message: str
) -> None:
    with pytest.raises(StreamsynthError, match=message) as info:
        PrivateTraining(budget, entities=entities, batch_size=batch, steps=steps)
    assert info.value.hint


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"epsilon": 0}, "positive"), ({"epsilon": 1, "delta": 1.5}, "between 0 and 1"),
     ({"epsilon": 1, "accountant": "moments"}, "accountant")],
)
def test_bad_budget_values(kwargs: dict, message: str) -> None:
    with pytest.raises(StreamsynthError, match=message):
        PrivacyBudget(**kwargs)


def test_spent_budget_travels_from_model_config_into_every_manifest(tmp_path) -> None:
    """``metadata["privacy"]`` is saved in config.json and copied into the manifest of each output."""
    import json

    from streamsynth.cli import main
    from streamsynth.datasets import payments
    from streamsynth.manifest import manifest_path
    from streamsynth.models import create

    frame = payments(n_customers=60, n_days=3, seed=0)
    record = PrivacyRecord(
        epsilon=2.97, delta=1e-5, target_epsilon=3.0, accountant="rdp", unit="entity",
        entity_column="customer_id", entities=60, noise_multiplier=1.1, max_grad_norm=1.0,
        sample_rate=0.1, steps=100,
    )
    for name, privacy in (("dp", record.to_dict()), ("plain", None)):
        model = create("baseline", seed=0).fit(frame)
        if privacy:
            model.metadata["privacy"] = privacy
        model.save(tmp_path / name)
        out = tmp_path / f"{name}.parquet"
        assert main(["sample", str(tmp_path / name), "-n", "50", "-o", str(out)]) == 0
        manifest = json.loads(manifest_path(out).read_text())
        assert manifest["privacy"] == privacy
        assert json.loads((tmp_path / name / "config.json").read_text())["metadata"].get("privacy") == privacy
