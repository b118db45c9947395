"""The transformer's fit sizes itself from the data: a preset picks depth, width, epochs and patience
for what the user left unset, says so in one line, and saves what it chose."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from streamsynth.datasets.payments import payments
from streamsynth.errors import StreamsynthError
from streamsynth.models import create, load_model
from streamsynth.models.transformer import NetworkSize
from streamsynth.models.transformer_sizing import PRESETS, budget_for, network_for
from streamsynth.models.transformer_train import TrainConfig


def _sized(preset: str, n_events: int, *, parameters: int = 1_000_000, positions: int = 100_000, **given):
    asked = NetworkSize(**{k: v for k, v in given.items() if k in ("n_layer", "n_embd", "n_head")})
    train = TrainConfig(**{k: v for k, v in given.items() if k in ("epochs", "patience")})
    size = network_for(preset, asked, n_events)
    return budget_for(preset, (asked, train), size, parameters=parameters, positions=positions, n_events=n_events)


@pytest.mark.parametrize(("preset", "n_events", "network"), [
    ("auto", 3_000, (4, 128)), ("auto", 50_000, (4, 128)), ("fast", 3_000, (2, 64)), ("auto", 5_000_000, (4, 128)),
    ("fast", 50_000, (2, 64)), ("best", 50_000, (4, 128)), ("best", 200_000, (6, 192)),
])
def test_the_network_grows_with_the_data_and_the_preset(preset, n_events, network):
    sizing = _sized(preset, n_events)
    assert (sizing.size.n_layer, sizing.size.n_embd) == network
    assert sizing.size.n_embd % sizing.size.n_head == 0 and sizing.size.n_embd // sizing.size.n_head >= 32


def test_epochs_follow_the_compute_a_pass_takes():
    # auto: 1.2e12 of compute; a pass of 1e6 parameters over 20,000 positions costs 1.2e11: 10 epochs
    assert _sized("auto", 50_000, positions=20_000).train.epochs == 10
    # long histories (a pass far dearer) get the fewest epochs, small data sets the most
    assert _sized("auto", 50_000, positions=1_000_000).train.epochs == PRESETS["auto"].min_epochs
    assert _sized("auto", 50_000, positions=1_000).train.epochs == PRESETS["auto"].max_epochs
    fast = _sized("fast", 50_000, positions=1_000)
    assert fast.train.epochs == PRESETS["fast"].max_epochs and fast.train.patience == PRESETS["fast"].patience
    assert _sized("best", 50_000, positions=20_000).train.epochs > 10


def test_what_the_user_gives_is_kept_and_named():
    sizing = _sized("fast", 50_000, n_layer=3, n_embd=100, epochs=7, parameters=12345)
    assert (sizing.size.n_layer, sizing.size.n_embd, sizing.train.epochs) == (3, 100, 7)
    assert 100 % sizing.size.n_head == 0  # heads chosen to divide the given width
    line = sizing.describe()
    assert "given: n_layer, n_embd, epochs" in line and "preset fast" in line and "12,345 parameters" in line


def test_an_unknown_preset_names_the_known_ones():
    with pytest.raises(StreamsynthError, match="unknown transformer preset 'huge'") as err:
        create("transformer", preset="huge")
    assert "fast, auto, best" in err.value.hint


def test_fit_prints_the_choice_and_saves_it(tmp_path):
    data = tmp_path / "payments.csv"
    payments(n_customers=40, n_days=3, seed=5).write_csv(data)
    model_dir = tmp_path / "m"
    fit = subprocess.run(
        [sys.executable, "-m", "streamsynth", "fit", str(data), "--model", "transformer", "-o", str(model_dir),
         "--preset", "fast", "--option", "epochs=1"],
        capture_output=True, text=True, timeout=300,
    )
    assert fit.returncode == 0, fit.stderr[-3000:]
    line = next(x for x in fit.stderr.splitlines() if x.startswith("transformer: "))
    assert "2 blocks x 64 wide" in line and "up to 1 epoch of" in line and "preset fast" in line
    config = json.loads((model_dir / "config.json").read_text())
    assert config["config"]["preset"] == "fast" and config["config"]["train"]["epochs"] == 1
    assert config["metadata"]["sizing"] == line
    loaded = load_model(model_dir)
    assert loaded.options.preset == "fast" and loaded.options.size.n_embd == 64
    assert loaded.options.train.patience == PRESETS["fast"].patience
    bad = subprocess.run(
        [sys.executable, "-m", "streamsynth", "fit", str(data), "--model", "transformer", "-o",
         str(tmp_path / "m2"), "--preset", "huge"],
        capture_output=True, text=True, timeout=300,
    )
    assert bad.returncode == 2 and "fast, auto, best" in bad.stderr and "Traceback" not in bad.stderr
