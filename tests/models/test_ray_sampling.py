"""Sampling on Ray (``sample --ray``, ``streamsynth.distributed.sample_ray``): N Ray tasks, each the
shard-exact generator of ``--shard K/N``, whose union is the unsharded sample (same event ids, same
rows), for a model, a rules schema and a fraud scenario; one manifest whose shard counts add up;
and the errors for what Ray cannot do (``-n``) or when Ray is not installed.

One local Ray runtime (2 CPUs, no dashboard) serves the module; the tests that need it skip when
Ray is not installed, the error tests run either way.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from test_sharding import LIBRARY, RULES, assert_shards_partition

from streamsynth.cli import main
from streamsynth.contract import EVENT_ID

END = "2024-01-04T00:00:00Z"


@pytest.fixture(scope="module")
def baseline_dir(tmp_path_factory, payments_small) -> Path:
    from streamsynth.models.baseline import BaselineSynthesizer

    path = tmp_path_factory.mktemp("baseline") / "model"
    BaselineSynthesizer(seed=5).fit(payments_small).save(path)
    return path


def _sample(source: str | Path, output: Path, *args: str) -> None:
    code = main(["sample", str(source), "-o", str(output), *args])
    assert code == 0, f"sample {source} {args}: exit code {code}"


def _parts_and_manifests(source: str | Path, tmp_path: Path, n: int, *args: str):
    """The unsharded sample, the N parts of ``sample --ray --shards N``, and both manifests."""
    _sample(source, tmp_path / "all.parquet", *args)
    _sample(source, tmp_path / "parts", *args, "--ray", "--shards", str(n))
    names = sorted(p.name for p in (tmp_path / "parts").iterdir())
    assert names == sorted(f"part-{k}-of-{n}.parquet" for k in range(n))
    whole = pl.read_parquet(tmp_path / "all.parquet")
    parts = [pl.read_parquet(tmp_path / "parts" / f"part-{k}-of-{n}.parquet") for k in range(n)]
    manifests = [json.loads(p.read_text()) for p in (tmp_path / "all.parquet.manifest.json",
                                                        tmp_path / "parts.manifest.json")]
    return whole, parts, *manifests


def _assert_counts_add_up(merged: dict, whole: dict, n: int) -> None:
    """The merged manifest states the unsharded counts, and its shards' counts sum to them."""
    assert merged["counts"]["events"] == whole["counts"]["events"]
    assert merged["counts"]["labels"] == whole["counts"]["labels"]
    assert [s["shard"] for s in merged["shards"]] == [f"{k}/{n}" for k in range(n)]
    assert sum(s["counts"]["events"] for s in merged["shards"]) == merged["counts"]["events"]
    labels = sum((Counter(s["counts"]["labels"]) for s in merged["shards"]), Counter())
    assert dict(labels) == merged["counts"]["labels"]
    assert merged["seed"] == whole["seed"] is not None
    # the merged source description is the unsharded one: per-shard counts summed, no shard
    assert merged["model"] == whole["model"]
    assert merged["versions"]["streamsynth"] and merged["ray"]["cpus_per_task"] == 1.0


def test_sample_ray_returns_the_unsharded_sample_as_a_dataset(ray_runtime, baseline_dir, tmp_path):
    import pyarrow as pa

    from streamsynth.distributed import sample_ray

    _sample(baseline_dir, tmp_path / "all.parquet", "--end", END)
    whole = pl.read_parquet(tmp_path / "all.parquet")
    dataset = sample_ray(baseline_dir, shards=3, end=END)
    assert dataset.count() == whole.height > 0
    union = pl.from_arrow(pa.concat_tables(ray_runtime.get(dataset.to_arrow_refs())))
    assert union[EVENT_ID].n_unique() == union.height
    assert_frame_equal(union.sort(EVENT_ID), whole.sort(EVENT_ID))


def test_cli_rules_schema_parts_are_the_unsharded_sample(ray_runtime, tmp_path):
    whole, parts, unsharded, merged = _parts_and_manifests(
        RULES / "payments.yaml", tmp_path, 3, "--entities", "400", "--end", "2024-05-01T06:00:00Z")
    assert_shards_partition(whole, parts, entity="customer_id")
    _assert_counts_add_up(merged, unsharded, 3)
    assert [s["counts"]["events"] for s in merged["shards"]] == [p.height for p in parts]


def test_cli_fraud_scenario_parts_are_the_unsharded_sample(ray_runtime, tmp_path):
    """The injected card-testing rows leave from the shard that owns their card, as with --shard."""
    whole, parts, unsharded, merged = _parts_and_manifests(
        LIBRARY / "card_testing_burst.yaml", tmp_path, 2, "--entities", "300")
    assert_shards_partition(whole, parts, entity="customer_id")
    assert (whole["label"] == "fraud.card_testing").sum() == 200
    _assert_counts_add_up(merged, unsharded, 2)
    [event] = merged["model"]["scenario"]["events"]
    assert event["rows_added"] == unsharded["model"]["scenario"]["events"][0]["rows_added"] == 200
    assert sum(s["rows_added"][0] for s in merged["shards"]) == 200


def test_shards_without_events_still_read_as_one_table(ray_runtime, tmp_path):
    """1 entity in 3 shards: two parts hold nothing, but have the columns of the third."""
    from streamsynth.distributed import sample_ray

    args = ("--entities", "1", "--end", "2024-05-01T12:00:00Z")
    whole, parts, unsharded, merged = _parts_and_manifests(RULES / "payments.yaml", tmp_path, 3, *args)
    assert sum(p.height == 0 for p in parts) == 2 and whole.height > 0
    assert all(p.columns == whole.columns for p in parts)
    assert_frame_equal(pl.read_parquet(tmp_path / "parts").sort(EVENT_ID), whole.sort(EVENT_ID))
    _assert_counts_add_up(merged, unsharded, 3)
    dataset = sample_ray(RULES / "payments.yaml", shards=3, n_entities=1, end="2024-05-01T12:00:00Z")
    assert sum(t.num_rows for t in ray_runtime.get(dataset.to_arrow_refs())) == whole.height


def test_a_failing_task_leaves_no_folder_and_says_why(ray_runtime, tmp_path, capsys):
    (tmp_path / "broken.yaml").write_text("not: [a schema\n")
    code = main(["sample", str(tmp_path / "broken.yaml"), "-o", str(tmp_path / "parts"), "--ray", "--shards", "2"])
    assert code != 0
    err = capsys.readouterr().err
    assert "broken.yaml" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.yaml"]


@pytest.mark.slow
def test_transformer_ray_parts_are_the_unsharded_sample(ray_runtime, tmp_path):
    """A tiny transformer: each Ray task loads the saved model and samples its shard on CPU; the
    union of the two parts is the unsharded sample, rows and event ids."""
    from streamsynth.datasets import payments
    from streamsynth.models import create

    model_dir = tmp_path / "transformer"
    create("transformer", seed=0, n_layer=1, n_head=2, n_embd=32, epochs=1, batch_size=8,
           progress=False).fit(payments(n_customers=40, n_days=3, seed=0)).save(model_dir)
    whole, parts, unsharded, merged = _parts_and_manifests(model_dir, tmp_path, 2, "--end", END)
    assert_shards_partition(whole, parts, entity="customer_id")
    _assert_counts_add_up(merged, unsharded, 2)


@pytest.mark.parametrize(("args", "message"), [
    (["--ray", "--shards", "2", "-n", "100"], "-n/--events"),
    (["--ray"], "--ray needs --shards"),
    (["--ray", "--shards", "0"], "--shards 0"),
    (["--shards", "2"], "--shards only applies with --ray"),
    (["--ray-gpus", "1"], "--ray-gpus only applies with --ray"),
    (["--ray", "--shards", "2", "--shard", "0/2"], "--shard K/N does not apply"),
    (["--ray", "--shards", "2", "--ray-cpus", "-1"], "--ray-cpus -1.0 is negative"),
])
def test_what_ray_cannot_do_is_refused_before_it_starts(args, message, tmp_path, capsys):
    code = main(["sample", str(RULES / "payments.yaml"), "-o", str(tmp_path / "parts"), *args])
    assert code != 0
    assert message in capsys.readouterr().err
    assert not (tmp_path / "parts").exists()


def test_an_output_file_or_a_folder_of_other_files_is_refused(tmp_path, capsys):
    assert main(["sample", "demo", "-o", str(tmp_path / "out.parquet"), "--ray", "--shards", "2"]) != 0
    assert "names a file" in capsys.readouterr().err
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    assert main(["sample", "demo", "-o", str(tmp_path / "mine"), "--ray", "--shards", "2"]) != 0
    assert "holds files other than Parquet parts (notes.txt)" in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_without_ray_the_error_names_the_extra(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if it were not installed
    code = main(["sample", str(RULES / "payments.yaml"), "-o", str(tmp_path / "parts"), "--ray", "--shards", "2"])
    assert code != 0
    err = capsys.readouterr().err
    assert 'pip install -e ".[ray]"' in err and "Traceback" not in err
    from streamsynth.distributed import sample_ray
    from streamsynth.errors import StreamsynthError

    with pytest.raises(StreamsynthError, match=r"\[ray\]"):
        sample_ray(RULES / "payments.yaml", shards=2)


def test_importing_the_distributed_module_does_not_import_ray():
    code = "import sys, streamsynth.distributed as d; assert 'ray' not in sys.modules; print(d.sample_ray.__name__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "sample_ray"
