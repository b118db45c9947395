"""Nothing lost, nothing silently wrong: a failed command leaves the earlier output and its
manifest byte for byte, write failures are one line naming the path, damaged models are clear
errors, conditions are checked against what the model learned, and bad bounds are refused."""

from __future__ import annotations

import json
import os
import resource
import stat
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from streamsynth.cli import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, baseline_model) -> Path:
    return baseline_model.save(tmp_path_factory.mktemp("outputs") / "model")


@pytest.fixture
def kept(tmp_path, model_dir) -> tuple[Path, dict[str, bytes]]:
    """A good sample and its manifest, and their bytes."""
    out = tmp_path / "keep.parquet"
    assert main(["sample", str(model_dir), "-n", "500", "-o", str(out)]) == 0
    files = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert set(files) == {"keep.parquet", "keep.parquet.manifest.json"}
    return out, files


def _unchanged(out: Path, files: dict[str, bytes]) -> None:
    assert {p.name: p.read_bytes() for p in out.parent.iterdir()} == files, "the earlier output changed"


@pytest.mark.parametrize(
    ("condition", "expected"),
    [
        ("merchant_category=spaceship", "never saw that value of merchant_category"),
        ("is_fraud=maybe", "is_fraud is a true/false column"),
        ("is_fraud=t", "is_fraud is a true/false column"),
        ("amount=1e9", "outside the range the baseline model learned"),
        ("amount=lots", "amount is a numeric column"),
    ],
)
def test_a_bad_condition_leaves_the_earlier_sample_and_manifest(kept, model_dir, capsys, condition, expected):
    out, files = kept
    capsys.readouterr()
    assert main(["sample", str(model_dir), "-n", "100", "-c", condition, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert expected in err and "hint:" in err and "Traceback" not in err
    _unchanged(out, files)


@pytest.mark.parametrize("spelling", ["true", "TRUE", "1", "yes"])
def test_a_boolean_condition_spelled_any_accepted_way_is_applied(tmp_path, model_dir, spelling):
    out = tmp_path / "fraud.parquet"
    assert main(["sample", str(model_dir), "-n", "200", "-c", f"is_fraud={spelling}", "-o", str(out)]) == 0
    assert pl.read_parquet(out)["is_fraud"].all()


def test_a_full_disk_leaves_the_earlier_output_and_no_partial_file(kept, model_dir):
    """A file size limit (RLIMIT_FSIZE) fails the write as a full disk does (EFBIG vs ENOSPC)."""
    out, files = kept

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    proc = subprocess.run(
        [sys.executable, "-m", "streamsynth", "sample", str(model_dir), "-n", "50000", "-o", str(out)],
        capture_output=True, text=True, timeout=300, preexec_fn=limit,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"cannot write {out}" in proc.stderr and "file size limit" in proc.stderr
    assert "Traceback" not in proc.stderr
    _unchanged(out, files)


def test_an_unwritable_folder_is_one_line_naming_the_path(model_dir, capsys):
    target = Path("/sys/streamsynth-test/s.parquet")  # refused even to root
    assert main(["sample", str(model_dir), "-n", "10", "-o", str(target)]) == 2
    err = capsys.readouterr().err
    assert f"cannot write {target}" in err and "Traceback" not in err


def test_a_failed_model_save_leaves_the_previous_model(tmp_path, baseline_model, payments_small):
    folder = baseline_model.save(tmp_path / "model")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    payments_small.write_csv(tmp_path / "data.csv")

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (2_000, 2_000))

    proc = subprocess.run(
        [sys.executable, "-m", "streamsynth", "fit", str(tmp_path / "data.csv"), "-o", str(folder)],
        capture_output=True, text=True, timeout=300, preexec_fn=limit,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert f"cannot write {folder}" in proc.stderr and "Traceback" not in proc.stderr
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.csv", "model"]  # no partial folder


def test_a_model_folder_holding_other_files_is_not_replaced(tmp_path, baseline_model):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(Exception, match="holds files that are not a model's"):
        baseline_model.save(tmp_path)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_saved_model_files_are_checksummed_and_readable_by_all(model_dir):
    listed = {line.split("  ")[1] for line in (model_dir / "checksums.sha256").read_text().splitlines()}
    assert {"config.json", "weights.safetensors", "encoders.json"} <= listed
    assert stat.S_IMODE((model_dir / "weights.safetensors").stat().st_mode) == 0o644
    proc = subprocess.run(["sha256sum", "-c", "checksums.sha256"], cwd=model_dir, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_model_is_a_clear_error_within_seconds(tmp_path, baseline_model, capsys, damage):
    folder = baseline_model.save(tmp_path / "model")
    weights = folder / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0x10
    weights.write_bytes(bytes(data))
    started = time.monotonic()
    assert main(["sample", str(folder), "-n", "100", "-o", str(tmp_path / "s.parquet")]) == 2
    assert time.monotonic() - started < 5
    err = capsys.readouterr().err
    assert f"{weights} is damaged" in err and "Traceback" not in err
    assert not (tmp_path / "s.parquet").exists()


def test_an_end_before_the_start_is_refused(tmp_path, model_dir, capsys):
    out = tmp_path / "s.parquet"
    code = main(["sample", str(model_dir), "--start", "2024-03-02", "--end", "2024-03-01", "-o", str(out)])
    assert code == 2
    assert "is not after the start" in capsys.readouterr().err
    assert not out.exists()


def test_times_outside_what_a_stream_holds_are_refused_and_streams_stop_at_year_9999(tmp_path, model_dir, capsys):
    assert main(["sample", str(model_dir), "--start", "1500-01-01", "-o", str(tmp_path / "a.parquet")]) == 2
    assert "outside the times a stream can hold" in capsys.readouterr().err
    out = tmp_path / "late.parquet"
    assert main(["sample", str(model_dir), "--start", "9999-12-30", "-o", str(out)]) == 0
    ts = pl.read_parquet(out)["ts"]
    assert ts.len() > 0 and ts.max().year == 9999


def test_fit_leaves_out_rows_without_an_entity_and_says_how_many(tmp_path, payments_small, capsys):
    frame = payments_small.with_columns(
        pl.when(pl.int_range(pl.len()) % 3 == 0).then(None).otherwise(pl.col("customer_id")).alias("customer_id")
    )
    frame.write_csv(tmp_path / "holes.csv")
    assert main(["fit", str(tmp_path / "holes.csv"), "-o", str(tmp_path / "m")]) == 0
    err = capsys.readouterr().err
    missing = frame["customer_id"].null_count()
    assert f"{missing:,} of {frame.height:,} rows" in err and "have no customer_id" in err
    assert "roles: time ts, entity customer_id, label is_fraud" in err


def test_too_little_data_is_refused_with_the_reason(tmp_path, payments_small, capsys):
    payments_small.head(1).write_csv(tmp_path / "one.csv")
    assert main(["fit", str(tmp_path / "one.csv"), "-o", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert "too little data to learn from: 1 events" in err
    assert not (tmp_path / "m").exists()


def test_a_report_that_cannot_be_written_leaves_the_earlier_one(tmp_path, payments_small):
    real = tmp_path / "real.parquet"
    payments_small.head(400).write_parquet(real)
    report = tmp_path / "metrics.json"
    report.write_text('{"earlier": true}')

    def limit() -> None:  # the numbers' JSON is larger than this; the earlier file is smaller
        resource.setrlimit(resource.RLIMIT_FSIZE, (2_000, 2_000))

    proc = subprocess.run(
        [sys.executable, "-m", "streamsynth", "evaluate", str(real), str(real), "--no-gru", "--json", str(report)],
        capture_output=True, text=True, timeout=600, preexec_fn=limit,
        env=dict(os.environ, STREAMSYNTH_PROGRESS="off"),
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"cannot write {report}" in proc.stderr
    assert json.loads(report.read_text()) == {"earlier": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json", "real.parquet"]


def test_a_replay_manifest_that_cannot_be_written_leaves_the_earlier_one(tmp_path, payments_small):
    source = tmp_path / "events.parquet"
    payments_small.head(300).write_parquet(source)
    manifest = tmp_path / "run.manifest.json"
    manifest.write_text('{"earlier": true}')

    def limit() -> None:  # a replay's manifest is larger than this; the earlier file is smaller
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_000, 1_000))

    proc = subprocess.run(
        [sys.executable, "-m", "streamsynth", "replay", str(source), "--to", "-", "--manifest", str(manifest)],
        capture_output=True, text=True, timeout=300, preexec_fn=limit,
        env=dict(os.environ, STREAMSYNTH_PROGRESS="off"),
    )
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert f"cannot write {manifest}" in proc.stderr and "--manifest" in proc.stderr
    assert json.loads(manifest.read_text()) == {"earlier": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["events.parquet", "run.manifest.json"]
