"""TimeGANSynthesizer through its public surface: fit, sample, stream, save/load, errors."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from streamsynth import io
from streamsynth.contract import check_stream, take
from streamsynth.errors import StreamsynthError
from streamsynth.models import create, load_model
from streamsynth.models.timegan import Layout, TimeGANConfig, TimeGANSynthesizer
from streamsynth.models.timegan.train import Windows, train
from streamsynth.schema import Schema

TINY = dict(seq_len=8, hidden_dim=6, num_layers=2, iterations=4, batch_size=16, device="cpu")
START = datetime(2024, 3, 1, tzinfo=UTC)
STEP = timedelta(minutes=5)


def sines_frame(n_rows: int = 120, hosts: int = 2, seed: int = 0) -> pl.DataFrame:
    """Per host: three sine metrics on a 5-minute grid, as a metrics table would hold them."""
    rng = np.random.default_rng(seed)
    parts = []
    t = np.arange(n_rows)
    for h in range(hosts):
        freq, phase = rng.uniform(0.05, 0.3, 3), rng.uniform(0, 3, 3)
        parts.append(pl.DataFrame({
            "ts": [START + i * STEP for i in range(n_rows)],
            "host": f"h{h}",
            "cpu": 50 + 40 * np.sin(freq[0] * t + phase[0]),
            "latency_ms": 200 + 50 * np.sin(freq[1] * t + phase[1]),
            "rps": (1000 + 300 * np.sin(freq[2] * t + phase[2])).astype(np.int64),
        }))
    return pl.concat(parts)


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return sines_frame()


@pytest.fixture(scope="module")
def model(frame) -> TimeGANSynthesizer:
    return TimeGANSynthesizer(seed=7, **TINY).fit(frame)


def test_fit_learns_grid_and_sample_has_contract_shape(model, frame):
    assert model.interval == STEP
    out = model.sample(n_entities=3, n_events=60)
    assert out.columns == [
        "event_id", "ts", "host", "cpu", "latency_ms", "rps", "label", "is_anomaly", "scenario_id"
    ]
    assert out.height == 60
    assert out["ts"].dtype == pl.Datetime("us", "UTC")
    assert out["rps"].dtype == pl.Int64
    assert sorted(out["host"].unique()) == ["host-0", "host-1", "host-2"]
    # Every series is on the learned grid from the start, and values stay in the data's range.
    for _, series in out.group_by("host"):
        steps = series["ts"].diff().drop_nulls().unique().to_list()
        assert steps == [STEP]
    assert out["ts"].min() == frame["ts"].min()
    for col in ("cpu", "latency_ms", "rps"):
        assert frame[col].min() <= out[col].min() and out[col].max() <= frame[col].max()
    assert out["label"].unique().to_list() == ["normal"]
    assert list(check_stream(iter([out]), "ts", "host"))


def test_sample_is_deterministic_and_seeded(model):
    a = model.sample(n_entities=4, n_events=80)
    b = model.sample(n_entities=4, n_events=80)
    c = model.sample(n_entities=4, n_events=80, seed=8)
    assert a.equals(b)
    assert not np.allclose(a["cpu"].to_numpy(), c["cpu"].to_numpy())


def test_save_load_gives_identical_samples(model, tmp_path):
    model.save(tmp_path / "tg")
    assert {p.name for p in (tmp_path / "tg").iterdir()} == {
        "config.json", "weights.safetensors", "encoders.json", "checksums.sha256"
    }
    loaded = load_model(tmp_path / "tg")
    assert isinstance(loaded, TimeGANSynthesizer)
    assert loaded.sample(n_entities=3, n_events=90).equals(model.sample(n_entities=3, n_events=90))


def test_long_stream_runs_past_the_window(model):
    """10x the window length per series, in small batches, one continuous series each."""
    n, length = 3, 10 * TINY["seq_len"]
    batches = list(take(check_stream(model.stream(n_entities=n, batch_size=7), "ts", "host"),
                        n * length))
    assert max(b.height for b in batches) <= 7
    out = pl.concat(batches)
    assert out.height == n * length
    assert out["event_id"].n_unique() == n * length
    per_host = out.group_by("host").agg(pl.len(), pl.col("ts").max(), pl.col("cpu").std())
    assert per_host["len"].to_list() == [length] * n
    assert per_host["ts"].to_list() == [START + (length - 1) * STEP] * n
    assert (per_host["cpu"] > 0).all()  # the generator keeps moving, it does not freeze
    # Batch size does not change the values: the stream is one recurrence carried across batches.
    big = pl.concat(list(take(model.stream(n_entities=n, batch_size=10_000), n * length)))
    np.testing.assert_allclose(big.sort("event_id")["cpu"].to_numpy(),
                               out.sort("event_id")["cpu"].to_numpy(), rtol=1e-5)


def test_shards_union_equals_unsharded(model):
    whole = model.sample(n_entities=5, n_events=5 * 12).sort("event_id")
    parts = pl.concat([model.sample(n_entities=5, n_events=60, shard=(k, 2)) for k in range(2)])
    parts = parts.filter(pl.col("ts") <= whole["ts"].max()).sort("event_id")
    assert parts["event_id"].to_list() == whole["event_id"].to_list()
    assert parts["ts"].to_list() == whole["ts"].to_list()
    np.testing.assert_allclose(parts["cpu"].to_numpy(), whole["cpu"].to_numpy(), rtol=1e-5)


def test_default_sample_covers_training_span(model, frame):
    out = model.sample()
    assert out["ts"].max() < frame["ts"].max() + STEP
    assert out["host"].n_unique() == 2


def test_categorical_and_boolean_columns_with_declared_schema():
    frame = sines_frame(hosts=1).with_columns(
        status=pl.when(pl.col("cpu") > 70).then(pl.lit("hot")).otherwise(pl.lit("ok")),
        degraded=pl.col("latency_ms") > 230,
    )
    schema = Schema.infer(frame)
    out = TimeGANSynthesizer(seed=1, **TINY).fit(frame, schema).sample(n_events=40)
    assert set(out["status"].unique()) <= {"hot", "ok"}
    assert out["degraded"].dtype == pl.Boolean
    assert "host" not in out.columns or out["host"].n_unique() == 1


def test_table_without_time_column_gets_a_daily_grid(frame):
    prices = frame.filter(pl.col("host") == "h0").select("cpu", "latency_ms")
    model = TimeGANSynthesizer(seed=2, **TINY).fit(prices)
    assert model.schema.time == "ts" and model.interval == timedelta(days=1)
    out = model.sample(n_events=10)
    assert out["ts"].to_list() == [datetime(2000, 1, 1, tzinfo=UTC) + timedelta(days=i) for i in range(10)]
    many = model.sample(n_entities=3, n_events=9)
    assert many["series"].unique().sort().to_list() == ["series-0", "series-1", "series-2"]


def test_registry_creates_timegan():
    assert isinstance(create("timegan", seed=3), TimeGANSynthesizer)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.group_by("host", maintain_order=True).head(5), "too little data to learn from: 10 events"),
        (lambda f: f.with_columns(region=pl.lit("eu-west")), "column 'region'"),
        (lambda f: f.with_columns(pl.when(pl.col("cpu") > 80).then(float("nan"))
                                  .otherwise(pl.col("cpu")).alias("cpu")), "column 'cpu' has"),
        (lambda f: f.with_columns(pl.when(pl.col("cpu") > 80).then(None)
                                  .otherwise(pl.col("latency_ms")).alias("latency_ms")),
         "column 'latency_ms' has"),
    ],
    ids=["too-little-data", "undeclared-text-column", "nan", "null"],
)
def test_bad_input_gives_clear_errors(frame, change, message):
    with pytest.raises(StreamsynthError, match=message) as info:
        TimeGANSynthesizer(**TINY).fit(change(frame))
    assert info.value.hint


def test_series_shorter_than_a_window_are_a_clear_error(frame):
    with pytest.raises(StreamsynthError, match="too few rows for one") as info:
        TimeGANSynthesizer(**{**TINY, "seq_len": 30}).fit(frame.group_by("host", maintain_order=True).head(12))
    assert info.value.hint


def test_bad_options_and_unfitted_use():
    with pytest.raises(StreamsynthError, match="module"):
        TimeGANSynthesizer(module="rnn")
    with pytest.raises(StreamsynthError, match="not fitted"):
        TimeGANSynthesizer().sample(n_events=1)


@pytest.mark.parametrize("module", ["gru", "lstm"])
def test_packed_replicas_stay_independent(module):
    """Replicas packed in one network never share a weight (off-block weights stay zero)."""
    rng = np.random.default_rng(0)
    data = [Windows(rng.random((50, w)).astype(np.float32), np.arange(40)) for w in (3, 2)]
    config = TimeGANConfig(seq_len=6, hidden_dim=4, num_layers=2, iterations=2, batch_size=8,
                           module=module)
    net, _ = train(data, config, Layout([3, 2], [[], [(0, 2)]]), seed=0, device=torch.device("cpu"))
    for module in (net.embedder, net.recovery, net.generator, net.supervisor, net.discriminator):
        for param, owner in module.owned_parameters():
            assert (param[owner == 2] == 0).all()
            assert param[owner < 2].abs().sum() > 0
    z = torch.rand(4, 12, net.z_dim)
    x, _ = net.sample(z)
    assert torch.allclose(x[..., 3:].sum(-1), torch.ones(4, 12))  # replica 1 is one softmax group
    # Generating in two chunks with the carried state continues the same series.
    head, state = net.sample(z[:, :5])
    tail, _ = net.sample(z[:, 5:], state)
    torch.testing.assert_close(torch.cat([head, tail], dim=1), x)


def _fit_as_rank(rank: int, world: int, data: str, out: str) -> None:
    """One of ``world`` training processes, as torchrun starts them (the process group meets in a
    file rather than on a port): fit through the public API, then ``save`` on every rank (only
    rank 0 writes the model) and keep every rank's weights to compare."""
    import torch.distributed as dist
    from safetensors.numpy import save_file

    os.environ.update(WORLD_SIZE=str(world), RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{out}/rendezvous", rank=rank, world_size=world)
    try:
        model = TimeGANSynthesizer(seed=7, **TINY).fit(io.read(data))
    finally:
        dist.destroy_process_group()
    model.save(Path(out) / f"model{rank}")
    save_file(model.net.weights(), str(Path(out) / f"weights{rank}.safetensors"))


@pytest.fixture(scope="module")
def metrics_csv(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("metrics") / "metrics.csv"
    sines_frame().write_csv(path)
    return path


@pytest.fixture(scope="module")
def two_process_fit(metrics_csv, tmp_path_factory) -> Path:
    """A folder with what two gloo processes trained together: the model rank 0 saved (``model0``)
    and each rank's weights (``weights0.safetensors``, ``weights1.safetensors``)."""
    out = tmp_path_factory.mktemp("two-processes")
    torch.multiprocessing.spawn(_fit_as_rank, args=(2, str(metrics_csv), str(out)), nprocs=2)
    return out


def test_two_processes_end_with_the_same_weights(two_process_fit, metrics_csv):
    from safetensors.numpy import load_file

    assert not (two_process_fit / "model1").exists(), "only rank 0 may write the model"
    rank0 = load_model(two_process_fit / "model0").net.weights()
    rank1 = load_file(str(two_process_fit / "weights1.safetensors"))
    assert rank0.keys() == rank1.keys()
    for name, value in rank0.items():
        np.testing.assert_array_equal(value, rank1[name], err_msg=name)
    # Rank 0 draws the batches one process would: had rank 1 drawn the same, or the gradients not
    # been averaged, rank 0 would have ended where one process does.
    alone = TimeGANSynthesizer(seed=7, **TINY).fit(io.read(metrics_csv)).net.weights()
    assert any(not np.array_equal(value, alone[name]) for name, value in rank0.items())


def test_torchrun_fit_through_the_cli_saves_a_model_that_samples(torchrun, two_process_fit, metrics_csv, tmp_path):
    options = [f"--option={k}={v}" for k, v in TINY.items()]
    torchrun(2, "fit", str(metrics_csv), "--model", "timegan", "--seed", "7", "-o", str(tmp_path / "m"), *options)
    model = load_model(tmp_path / "m")
    assert model.metadata["processes"] == 2
    # Deterministic for a seed and a number of processes: the same weights as the other 2-process run.
    same = load_model(two_process_fit / "model0").net.weights()
    for name, value in model.net.weights().items():
        np.testing.assert_array_equal(value, same[name], err_msg=name)
    out = model.sample(n_entities=3, n_events=45)
    assert out.height == 45 and out["host"].n_unique() == 3
    assert out.columns[:6] == ["event_id", "ts", "host", "cpu", "latency_ms", "rps"]
    assert out["ts"].min() == START


def test_private_training_refuses_torchrun(frame, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(StreamsynthError, match="not under torchrun"):
        TimeGANSynthesizer(dp_epsilon=3.0, **TINY).fit(frame)


def test_stocks_csv_without_dates(shared_data):
    from streamsynth import io

    prices = io.read(shared_data / "timegan" / "stock_data.csv")
    model = TimeGANSynthesizer(seed=0, **TINY).fit(prices)
    out = model.sample(n_events=48)
    assert out.columns[2:8] == ["Open", "High", "Low", "Close", "Adj_Close", "Volume"]
    assert out["ts"][0] == datetime(2000, 1, 1, tzinfo=UTC)


@pytest.mark.slow
def test_trained_model_matches_sine_statistics():
    """A longer fit: generated windows' per-step means come close to the real ones, and a GRU
    discriminator trained to convergence tells them from real ones less well than from noise
    (noise scores 0.475 here; 150 iterations scored the same, 500 score 0.36)."""
    from streamsynth.evaluate import discriminative_score

    frame = sines_frame(n_rows=240, hosts=4, seed=5)
    model = TimeGANSynthesizer(seed=0, preset="paper", seq_len=12, hidden_dim=12, iterations=500, device="cpu")
    model.fit(frame)
    lo = frame.select("cpu", "latency_ms", "rps").min().to_numpy()
    hi = frame.select("cpu", "latency_ms", "rps").max().to_numpy()
    synth = model.sample(n_entities=300, end=START + 12 * STEP).sort("host", "ts")
    s = (synth.select("cpu", "latency_ms", "rps").to_numpy() - lo) / (hi - lo)
    s = s.reshape(300, 12, 3).astype(np.float32)
    real = [(g.select("cpu", "latency_ms", "rps").to_numpy() - lo) / (hi - lo)
            for _, g in frame.sort("host", "ts").group_by("host", maintain_order=True)]
    r = np.stack([w[i:i + 12] for w in real for i in range(0, len(w) - 12, 3)]).astype(np.float32)
    assert np.abs(s.mean((0, 1)) - r.mean((0, 1))).max() < 0.15
    assert discriminative_score(r, s, seed=0, iterations=300) < 0.45


# -- presets, progress and threads ---------------------------------------------------------------
def test_presets_fill_in_what_options_leave_out():
    fast, paper = TimeGANSynthesizer().config, TimeGANSynthesizer(preset="paper").config
    assert (fast.num_layers, fast.iterations) == (2, 200)
    assert (paper.seq_len, paper.hidden_dim, paper.num_layers, paper.batch_size, paper.iterations) == (
        24, 24, 3, 128, 2000)
    mixed = TimeGANSynthesizer(preset="paper", iterations=10, seq_len=12).config
    assert (mixed.num_layers, mixed.iterations, mixed.seq_len) == (3, 10, 12)
    with pytest.raises(StreamsynthError, match="unknown timegan preset 'huge'") as info:
        TimeGANSynthesizer(preset="huge")
    assert "fast, paper" in info.value.hint
    assert "``fast`` (default)" in TimeGANSynthesizer.__doc__ and "``paper``" in TimeGANSynthesizer.__doc__


def test_cli_fit_reports_every_phase_with_loss_and_eta_and_saves_the_preset(metrics_csv, tmp_path):
    """Progress lines on a stderr that is a file (CI, nohup), not only on a terminal."""
    import json
    import re
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": f"{root}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "STREAMSYNTH_PROGRESS_EVERY": "0.02"}
    env.pop("STREAMSYNTH_PROGRESS", None)
    args = ["fit", str(metrics_csv), "--model", "timegan", "--preset", "paper", "-o", str(tmp_path / "m"),
            "--option", "iterations=40", "--option", "hidden_dim=6", "--option", "seq_len=8",
            "--option", "batch_size=16", "--option", "num_layers=1"]
    with (tmp_path / "stderr.txt").open("w") as err:
        proc = subprocess.run([sys.executable, "-m", "streamsynth", *args], stderr=err, env=env, timeout=300)
    text = (tmp_path / "stderr.txt").read_text()
    assert proc.returncode == 0, text
    for number, phase in enumerate(["autoencoder", "supervised", "joint"], 1):
        label = f"timegan {number}/3 {phase}"
        assert re.search(rf"^{label}: 40/40 steps \(100%\) [\d.,]+/s done in [\d.]+s loss", text, re.M), text
    assert re.search(r"^timegan 3/3 joint: \d+/40 steps \(\d+%\) .* ETA [\d.]+s loss g/e/d [\d.]+/[\d.]+/[\d.]+$",
                     text, re.M), text
    config = json.loads((tmp_path / "m" / "config.json").read_text())["config"]
    assert config["preset"] == "paper"
    assert config["timegan"]["iterations"] == 40 and config["timegan"]["num_layers"] == 1
    assert config["timegan"]["batch_size"] == 16


def test_library_fit_shows_progress_unless_asked_not_to(frame, capfd, monkeypatch):
    monkeypatch.delenv("STREAMSYNTH_PROGRESS", raising=False)
    TimeGANSynthesizer(**TINY, progress=False).fit(frame)
    assert capfd.readouterr().err == ""
    TimeGANSynthesizer(**TINY).fit(frame)
    err = capfd.readouterr().err
    assert "timegan 1/3 autoencoder: 4/4 steps" in err and "timegan 3/3 joint: 4/4 steps" in err


def test_cpu_training_runs_on_one_thread(frame, monkeypatch):
    """The recurrent ops are a few thousand elements: with 2 threads on 2 busy cores a fit of
    20 iterations ran 117 s instead of 13 s (OpenMP threads spin-waiting for each other)."""
    seen = []
    forward = torch.nn.GRU.forward

    def spy(self, *args, **kwargs):
        seen.append(torch.get_num_threads())
        return forward(self, *args, **kwargs)

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    monkeypatch.setattr(torch.nn.GRU, "forward", spy)
    try:
        TimeGANSynthesizer(**TINY, progress=False).fit(frame)
        assert seen and set(seen) == {1}
        assert torch.get_num_threads() == 2  # the caller's setting is back
    finally:
        torch.set_num_threads(before)
