"""Functional dependencies: found at fit (one column or a pair, through noise below the
threshold), kept exactly in samples of every model, stated or switched off in a schema file,
counted in the manifest when a determinant value is new."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from streamsynth.cli import main
from streamsynth.dependencies import apply_all, discover
from streamsynth.errors import StreamsynthError
from streamsynth.models import create, load_model
from streamsynth.schema import Schema


def _held(frame: pl.DataFrame, determinants: list[str], determined: str) -> float:
    """The share of rows agreeing with their determinant values' most frequent value."""
    counts = frame.group_by([*determinants, determined]).len()
    return float(counts.group_by(determinants).agg(pl.col("len").max())["len"].sum()) / frame.height


def _table(n: int = 4000, noise: float = 0.0, seed: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    terminal = rng.integers(0, 200, n)
    origin, dest = rng.integers(0, 12, n), rng.integers(0, 12, n)
    category = np.array([f"cat{t % 7}" for t in terminal])
    flip = rng.random(n) < noise
    category[flip] = "cat_noise"
    return pl.DataFrame({
        "ts": [datetime(2024, 1, 1, tzinfo=UTC) + timedelta(minutes=i) for i in range(n)],
        "user": [f"u{i % 300}" for i in range(n)],
        "terminal": [f"T{t:04d}" for t in terminal],
        "category": category,
        "origin": [f"A{o}" for o in origin],
        "dest": [f"B{d}" for d in dest],
        "distance": (np.abs(origin - dest) * 100 + origin + 50).astype(np.int64),
        "amount": rng.gamma(2.0, 20.0, n).round(2),
    })


def test_one_column_and_a_pair_are_found_through_noise_below_the_threshold():
    found = {d.determines: d for d in discover(_table(noise=0.003), Schema.infer(_table()))}
    assert found["category"].determinants == ("terminal",) and found["category"].support >= 0.995
    assert found["distance"].determinants == ("origin", "dest") and found["distance"].support == 1.0
    assert "amount" not in found and "terminal" not in found


def test_noise_above_the_threshold_hides_a_dependency():
    found = {d.determines for d in discover(_table(noise=0.03), Schema.infer(_table()))}
    assert "category" not in found and "distance" in found


def test_a_schema_can_switch_dependencies_off_drop_one_or_state_one():
    frame = _table()
    schema = Schema.infer(frame)
    schema.dependencies = "off"
    assert discover(frame, schema) == []
    schema.dependencies = [{"determines": "distance", "off": True}]
    kept = {d.determines for d in discover(frame, schema)}
    assert "distance" not in kept and "category" in kept
    schema.dependencies = [{"determinants": ["origin"], "determines": "amount"}]
    stated = {d.determines: d for d in discover(frame, schema)}["amount"]
    assert stated.determinants == ("origin",) and stated.support < 0.5
    schema.dependencies = [{"determinants": ["nowhere"], "determines": "amount"}]
    with pytest.raises(StreamsynthError, match="names column 'nowhere'"):
        discover(frame, schema)


def test_new_determinant_values_draw_once_and_agree_everywhere():
    frame = _table()
    deps = discover(frame, Schema.infer(frame))
    fresh = frame.with_columns(pl.concat_str(pl.lit("NEW"), pl.col("terminal")).alias("terminal"))
    out, drawn = apply_all(fresh, deps, seed=3)
    assert drawn == frame.height
    assert _held(out, ["terminal"], "category") == 1.0
    again, _ = apply_all(fresh.reverse(), deps, seed=3)  # another order (batch, shard): the same values
    assert again.reverse()["category"].to_list() == out["category"].to_list()


def test_the_baseline_keeps_every_dependency_in_every_row(payments_small, tmp_path):
    model = create("baseline", seed=4).fit(payments_small)
    found = {d.determines: d.determinants for d in model.dependencies}
    assert found.get("merchant_category") == ("terminal_id",)
    model.save(tmp_path / "m")
    sample = load_model(tmp_path / "m").sample(n_events=20_000)
    for dep in model.dependencies:
        assert _held(sample, list(dep.determinants), dep.determines) == 1.0, dep.describe()
        real = payments_small.select(*dep.determinants, dep.determines).unique(list(dep.determinants))
        joined = sample.join(real, on=list(dep.determinants), how="inner", suffix="_real")
        assert (joined[dep.determines] == joined[dep.determines + "_real"]).all()


def test_fit_prints_them_and_the_manifest_counts_new_determinants(payments_small, tmp_path, capsys):
    data = tmp_path / "p.csv"
    payments_small.write_csv(data)
    assert main(["fit", str(data), "-o", str(tmp_path / "m")]) == 0
    assert "dependencies kept exactly: terminal_id -> merchant_category" in capsys.readouterr().err
    out = tmp_path / "s.parquet"
    assert main(["sample", str(tmp_path / "m"), "-n", "3000", "-o", str(out)]) == 0
    record = json.loads((tmp_path / "s.parquet.manifest.json").read_text())["model"]["dependencies"]
    assert "terminal_id -> merchant_category (100.00% of rows)" in record["kept"]
    assert record["rows_with_new_determinants"]["rows"] >= 0


def test_dependencies_off_in_a_schema_file(payments_small, tmp_path, capsys):
    data = tmp_path / "p.csv"
    payments_small.write_csv(data)
    (tmp_path / "s.yaml").write_text("dependencies: off\n")
    assert main(["fit", str(data), "-o", str(tmp_path / "m"), "--schema", str(tmp_path / "s.yaml")]) == 0
    assert "dependencies kept" not in capsys.readouterr().err
    assert load_model(tmp_path / "m").dependencies == []
    (tmp_path / "bad.yaml").write_text("dependencies: [{determinants: [a, b, c], determines: d}]\n")
    assert main(["fit", str(data), "-o", str(tmp_path / "m2"), "--schema", str(tmp_path / "bad.yaml")]) == 2
    assert "dependencies[0].determinants must name one or two columns" in capsys.readouterr().err


@pytest.mark.slow
def test_the_transformer_keeps_every_dependency_in_every_row(payments_small):
    model = create("transformer", seed=2, n_layer=1, n_head=2, n_embd=32, epochs=1, progress=False)
    model.fit(payments_small)
    sample = model.sample(n_events=5000)
    assert model.dependencies
    for dep in model.dependencies:
        assert _held(sample, list(dep.determinants), dep.determines) == 1.0, dep.describe()
