"""DP-SGD in the deep models: `fit --dp-epsilon/--dp-delta` trains the transformer within budget
on CPU, records the spent budget in config.json and every manifest, and refuses what it cannot do."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from streamsynth.cli import main
from streamsynth.datasets import payments
from streamsynth.manifest import manifest_path
from streamsynth.models import create, load_model

TINY = ["--option", "n_layer=1", "--option", "n_head=2", "--option", "n_embd=16",
        "--option", "batch_size=8", "--option", "progress=false"]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("dp") / "payments.parquet"
    payments(n_customers=60, n_days=2, seed=3).write_parquet(path)
    return path


def test_fit_with_dp_flags_records_the_budget_in_config_and_manifest(data: Path, tmp_path: Path) -> None:
    model_dir, out = tmp_path / "model", tmp_path / "synth.parquet"
    args = ["fit", str(data), "-o", str(model_dir), "--model", "transformer", "--dp-epsilon", "3",
            "--dp-delta", "1e-5", "--option", "epochs=1", *TINY]
    assert main(args) == 0
    privacy = json.loads((model_dir / "config.json").read_text())["metadata"]["privacy"]
    assert 0 < privacy["epsilon"] <= 3.0 and privacy["delta"] == 1e-5 and privacy["target_epsilon"] == 3.0
    assert privacy["unit"] == "entity" and privacy["entity_column"] == "customer_id"
    assert privacy["accountant"] == "rdp" and privacy["steps"] > 0 and privacy["entities"] >= 50
    assert main(["sample", str(model_dir), "-n", "200", "-o", str(out)]) == 0
    assert json.loads(manifest_path(out).read_text())["privacy"] == privacy
    assert load_model(model_dir).metadata["privacy"] == privacy


def test_over_tight_budget_is_a_clear_error(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    args = ["fit", str(data), "-o", str(tmp_path / "m"), "--model", "transformer", "--dp-epsilon", "0.01",
            "--option", "epochs=50", *TINY]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "too tight" in err and "--dp-epsilon" in err
    assert not (tmp_path / "m").exists()  # nothing trained, nothing saved without privacy


def test_models_without_sgd_refuse_a_dp_budget(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["fit", str(data), "-o", str(tmp_path / "b"), "--dp-epsilon", "3"]) == 2
    assert "cannot train with differential privacy" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("epsilon", [1.0, 10.0])
def test_transformer_dp_training_on_cpu_stays_within_budget(epsilon: float) -> None:
    frame = payments(n_customers=150, n_days=4, seed=1)
    model = create(
        "transformer", seed=0, epochs=3, n_layer=1, n_head=2, n_embd=32, batch_size=16,
        progress=False, device="cpu", dp_epsilon=epsilon, dp_delta=1e-5,
    ).fit(frame)
    privacy = model.metadata["privacy"]
    assert 0.8 * epsilon < privacy["epsilon"] <= epsilon
    assert privacy["steps"] == 3 * round(privacy["entities"] / 16)
    assert [h["epsilon"] for h in model.history] == sorted(h["epsilon"] for h in model.history)
    out = model.sample(n_entities=50)
    assert out.height > 0 and set(frame.columns) <= set(out.columns)


def metrics(hosts: int, steps: int = 30, seed: int = 0) -> pl.DataFrame:
    """Five-minute CPU and memory readings of ``hosts`` hosts (one series each)."""
    rng = np.random.default_rng(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    level = rng.uniform(20, 80, hosts)
    t = np.arange(steps)
    return pl.DataFrame({
        "ts": [start + timedelta(minutes=5 * int(i)) for _ in range(hosts) for i in t],
        "host": [f"h{h:03d}" for h in range(hosts) for _ in t],
        "cpu": (level[:, None] + 10 * np.sin(t / 4)[None, :] + rng.normal(0, 2, (hosts, steps))).ravel(),
        "mem": (0.5 * level[:, None] + rng.normal(0, 1, (hosts, steps))).ravel(),
    })


def test_timegan_refuses_dp_on_a_single_series(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "one.csv"
    metrics(1).drop("host").write_csv(path)
    args = ["fit", str(path), "-o", str(tmp_path / "m"), "--model", "timegan", "--dp-epsilon", "3",
            "--option", "iterations=2", "--option", "device=cpu"]
    assert main(args) == 2
    assert "one entity" in capsys.readouterr().err


@pytest.mark.slow
def test_timegan_dp_training_on_cpu_stays_within_budget(tmp_path: Path) -> None:
    model = create(
        "timegan", seed=0, seq_len=8, hidden_dim=8, num_layers=1, iterations=4, batch_size=16,
        device="cpu", dp_epsilon=3.0, dp_delta=1e-5,
    ).fit(metrics(60))
    privacy = model.metadata["privacy"]
    assert 0 < privacy["epsilon"] <= 3.0 and privacy["steps"] == 7 * 4
    assert privacy["unit"] == "entity" and privacy["entity_column"] == "host" and privacy["entities"] == 60
    model.save(tmp_path / "tg")
    again = load_model(tmp_path / "tg")
    assert again.metadata["privacy"] == privacy
    out = again.sample(n_entities=4, n_events=40)
    assert out.height == 40 and out["cpu"].is_finite().all()
