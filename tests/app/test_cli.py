"""The command line as a user runs it: demo, fit, sample, stream, inspect, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from streamsynth.cli import main


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.run(
        [sys.executable, "-m", "streamsynth", *args], capture_output=True, text=True, cwd=cwd, env=env,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def payments_csv(tmp_path_factory, payments_small) -> Path:
    path = tmp_path_factory.mktemp("data") / "payments.csv"
    payments_small.write_csv(path)
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, payments_csv) -> Path:
    out = tmp_path_factory.mktemp("model") / "m"
    assert main(["fit", str(payments_csv), "--model", "baseline", "-o", str(out), "--seed", "4"]) == 0
    return out


def test_demo_writes_a_labelled_stream_and_manifest(tmp_path):
    done = run_cli("demo", "-o", str(tmp_path / "demo"), "--events", "50000")
    assert done.returncode == 0, done.stderr
    synth = pl.read_parquet(tmp_path / "demo" / "payments_synthetic.parquet")
    manifest = json.loads((tmp_path / "demo" / "payments_synthetic.parquet.manifest.json").read_text())
    assert synth.height == manifest["counts"]["events"] == 50_000
    labels = synth["label"].value_counts()
    assert manifest["counts"]["labels"] == dict(zip(labels["label"], labels["count"], strict=True))
    assert manifest["model"]["model"] == "baseline" and manifest["seed"] == 0
    assert {"streamsynth", "polars", "numpy"} <= set(manifest["versions"])
    assert "real vs synthetic" in done.stdout and "fraud rate" in done.stdout


def test_fit_then_sample_is_deterministic(tmp_path, model_dir):
    for name in ("a", "b"):
        assert main(["sample", str(model_dir), "-n", "3000", "-o", str(tmp_path / f"{name}.parquet")]) == 0
    a, b = pl.read_parquet(tmp_path / "a.parquet"), pl.read_parquet(tmp_path / "b.parquet")
    assert a.height == 3000 and a.equals(b)
    manifest = json.loads((tmp_path / "a.parquet.manifest.json").read_text())
    assert manifest["model"]["kind"] == "model" and manifest["counts"]["events"] == 3000


def test_sample_with_shard_condition_and_csv(tmp_path, model_dir):
    out = tmp_path / "fraud.csv"
    code = main(["sample", str(model_dir), "-n", "500", "-o", str(out), "-c", "is_fraud=true", "--shard", "1/2"])
    assert code == 0
    frame = pl.read_csv(out)
    assert frame.height == 500 and frame["is_fraud"].all()


def test_sample_without_limit_covers_the_training_span(tmp_path, model_dir, payments_small):
    out = tmp_path / "span.parquet"
    assert main(["sample", str(model_dir), "-o", str(out)]) == 0
    frame = pl.read_parquet(out)
    assert frame.height == pytest.approx(payments_small.height, rel=0.3)


def test_stream_to_stdout_as_json_lines(model_dir):
    done = run_cli("stream", str(model_dir), "-n", "250", "--batch-size", "100")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 250
    first = json.loads(lines[0])
    assert {"event_id", "ts", "customer_id", "amount", "label"} <= set(first)


def test_stream_without_limits_runs_past_the_training_span(model_dir, payments_small):
    # `streamsynth stream model/ | head`: endless, unlike `sample`, which stops after the span.
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen([sys.executable, "-m", "streamsynth", "stream", str(model_dir)],
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env) as process:
        try:
            wanted = 3 * payments_small.height
            lines = [process.stdout.readline() for _ in range(wanted)]
        finally:
            process.kill()
    assert all(lines) and len(lines) == wanted
    times = [json.loads(line)["ts"] for line in lines]
    assert times == sorted(times)


def test_inspect_prints_roles_and_sequences(payments_csv, tmp_path):
    done = run_cli("inspect", str(payments_csv), "--write-schema", str(tmp_path / "s.yaml"))
    assert done.returncode == 0, done.stderr
    for text in ("customer_id", "entity", "credit_card", "events per entity median", "median inter arrival"):
        assert text in done.stdout
    assert "entity: customer_id" in (tmp_path / "s.yaml").read_text()


@pytest.mark.parametrize("command", ["fit", "sample", "stream", "inspect", "demo"])
def test_every_command_has_help(command, capsys):
    assert main([command, "--help"]) == 0
    assert "Usage" in capsys.readouterr().out


SOURCE_OPTIONS = ["--events", "-n", "--end", "--entities", "--start", "--seed", "--shard", "--condition", "-c"]


def test_sample_stream_and_replay_take_the_same_source_options(capsys):
    import typer

    from streamsynth.cli import app

    main(["--help"])  # registers every command
    capsys.readouterr()
    group = typer.main.get_command(app)
    declared = {}
    for name in ("sample", "stream", "replay"):
        params = group.commands[name].params
        shared = [p for p in params if p.name == "source" or set(p.opts) & {*SOURCE_OPTIONS, "--batch-size"}]
        declared[name] = {tuple(p.opts): (p.help, p.default) for p in shared}
        assert main([name, "--help"]) == 0
        out = capsys.readouterr().out
        assert all(option in out for option in SOURCE_OPTIONS), (name, out)
        assert ("--batch-size" in out) == (name != "sample"), name
    assert declared["stream"] == declared["replay"]
    assert declared["sample"] == {k: v for k, v in declared["stream"].items() if k != ("--batch-size",)}
    assert len(declared["sample"]) == 8 and all(help_text for help_text, _ in declared["sample"].values())


def test_replay_manifest_records_the_seed_sample_records(tmp_path, model_dir):
    assert main(["sample", str(model_dir), "-n", "200", "-o", str(tmp_path / "s.parquet")]) == 0
    out = tmp_path / "r.jsonl"
    assert main(["replay", str(model_dir), "-n", "200", "--to", f"file://{out}"]) == 0
    sampled = json.loads((tmp_path / "s.parquet.manifest.json").read_text())
    replayed = json.loads((tmp_path / "r.jsonl.manifest.json").read_text())
    assert sampled["seed"] == replayed["seed"] == 4  # the model's own seed: --seed was not given
    assert replayed["source_args"]["seed"] is None  # what was asked, so verify reopens the same source
    assert main(["replay", str(model_dir), "-n", "200", "--seed", "9", "--to", f"file://{tmp_path / 'q.jsonl'}"]) == 0
    assert json.loads((tmp_path / "q.jsonl.manifest.json").read_text())["seed"] == 9


def test_source_options_round_trip_through_a_replay_record():
    from streamsynth.cli.source_options import SourceOptions

    options = SourceOptions("demo", n_events=5, seed=3, shard="1/2", conditions=("is_fraud=true",), events_per_batch=7)
    assert SourceOptions.from_args(json.loads(json.dumps(options.as_args()))) == options
    assert SourceOptions.from_args({"source": "demo"}) == SourceOptions("demo")  # an older record's missing keys


# -- bad input: one clear message, exit code 2, no traceback --------------------------------------
def _bad_inputs(tmp: Path, model: Path) -> dict[str, tuple[list[str], str]]:
    (tmp / "empty.csv").write_text("")
    (tmp / "nodata").mkdir()
    (tmp / "nodata" / "readme.txt").write_text("x")
    (tmp / "ts.csv").write_text("timestamp,v\n2024-01-01T00:00:00,1\nyesterday,2\n")
    rows = "\n".join(f"2024-01-01T00:00:{i:02d},{i}.5" for i in range(40))
    (tmp / "mixed.csv").write_text(f"ts,amount\n{rows}\n2024-01-01T00:01:00,n/a\n")
    old = tmp / "old_model"
    old.mkdir()
    for f in model.iterdir():
        (old / f.name).write_bytes(f.read_bytes())
    config = json.loads((old / "config.json").read_text())
    config["format_version"] = 0
    (old / "config.json").write_text(json.dumps(config))
    corrupt = tmp / "corrupt_model"
    corrupt.mkdir()
    for f in model.iterdir():
        (corrupt / f.name).write_bytes(f.read_bytes())
    (corrupt / "weights.safetensors").write_bytes(b"not safetensors")
    return {
        "empty file": (["inspect", str(tmp / "empty.csv")], "empty.csv is empty"),
        "misnamed column": (["fit", str(tmp / "ts.csv"), "-o", str(tmp / "x"), "--time", "timestmp"],
                            "no column 'timestmp' (did you mean 'timestamp'?)"),
        "unparseable timestamps": (["inspect", str(tmp / "ts.csv")], "'yesterday'"),
        "no data files": (["inspect", str(tmp / "nodata")], "holds no data files"),
        "other version": (["sample", str(old), "-n", "5", "-o", str(tmp / "o.parquet")], "model format 0"),
        "corrupt weights": (["sample", str(corrupt), "-n", "5", "-o", str(tmp / "o.parquet")], "corrupt"),
        "unknown model": (["fit", str(tmp / "mixed.csv"), "-o", str(tmp / "y"), "--model", "gpt"], "unknown model"),
        "bad shard": (["sample", str(model), "-n", "5", "-o", str(tmp / "o.parquet"), "--shard", "3/2"],
                      "--shard '3/2' is not K/N"),
    }


def test_bad_input_gives_one_clear_message(tmp_path, model_dir):
    for case, (args, expected) in _bad_inputs(tmp_path, model_dir).items():
        done = run_cli(*args)
        assert done.returncode == 2, (case, done.stderr)
        assert expected in done.stderr, (case, done.stderr)
        assert "Traceback" not in done.stderr, case
        assert done.stderr.startswith("error: "), case
        assert "hint: " in done.stderr or case == "unknown model", case


# -- counts and batch sizes ------------------------------------------------------------------------
def test_model_batches_are_exactly_the_size_asked(baseline_model):
    heights = [b.height for b in baseline_model.stream(batch_size=1_000, n_events=4_500)]
    assert heights == [1_000] * 4 + [500]
    sample = baseline_model.sample(batch_size=333)  # the training span, however many events that is
    assert sample.height > 333


def test_file_and_shard_batches_are_exactly_the_size_asked(payments_csv):
    from streamsynth.pipeline import open_source

    for shard in (None, (1, 3)):
        heights = [b.height for b in open_source(payments_csv, batch_size=500, shard=shard).stream]
        assert heights[:-1] == [500] * (len(heights) - 1) and 0 < heights[-1] <= 500, (shard, heights)


@pytest.mark.parametrize(
    "options", [{"n_events": -5}, {"n_events": 0}, {"batch_size": 0}, {"n_entities": 0}, {"n_events": 2.5}]
)
def test_the_python_api_rejects_bad_counts(baseline_model, options):
    from streamsynth.errors import StreamsynthError

    with pytest.raises(StreamsynthError, match="must be a whole number of at least 1"):
        next(baseline_model.stream(**options))
    with pytest.raises(StreamsynthError, match="must be a whole number of at least 1"):
        baseline_model.sample(**{"n_events": 10, **options})


# -- model options ---------------------------------------------------------------------------------
def test_every_model_parameter_has_a_meaning():
    """Every option a model takes (its Options dataclass's fields, or its __init__ parameters)."""
    from streamsynth.models import MODELS
    from streamsynth.models.options import MEANINGS, model_options

    for kind in MODELS:
        assert sorted(MEANINGS[kind]) == sorted(o.name for o in model_options(kind)), kind


def test_fit_help_lists_the_model_options_with_defaults(capsys):
    assert main(["fit", "--model", "transformer", "--help"]) == 0
    out = capsys.readouterr().out
    assert "Model kind: baseline" in out and "rules" in out and "timegan" in out  # --model lists the kinds
    for option, default in [("epochs", "null"), ("preset", "auto"), ("top_k", "null"), ("use_cache", "true")]:
        assert any(option in line and f" {default} " in line for line in out.splitlines()), option


def test_option_values_are_numbers_as_written():
    from streamsynth.cli.core import parse_options

    assert parse_options(["lr=3e-3", "epochs=5", "device=cpu", "top_k=", "use_cache=false"]) == {
        "lr": 0.003, "epochs": 5, "device": "cpu", "top_k": None, "use_cache": False}


def test_models_lists_every_kind(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "timegan: fit --model timegan" in out and "iterations" in out
    assert "baseline: fit --model baseline" in out and "lifecycle" in out


@pytest.mark.parametrize(
    ("args", "message", "hint"),
    [
        (["--option", "epoch=3"], "has no option 'epoch'", "epochs, batch_size"),
        (["--option", "epochs=many"], "epochs='many' of the transformer model is not a whole number", "the preset's"),
        (["--option", "seed=3"], "--option seed=... is not a model option", "use --seed"),
    ],
)
def test_fit_rejects_bad_model_options(args, message, hint, payments_csv, tmp_path, capsys):
    code = main(["fit", str(payments_csv), "-m", "transformer", "-o", str(tmp_path / "m"), *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and hint in err, err
