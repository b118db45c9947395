"""Unit tests of the model base (:mod:`streamsynth.models.base`): entity sharding, and the saved
model folder (save/load round trip of a tiny baseline, checksums, damaged files as clear errors)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import numpy as np
import polars as pl
import pytest

from streamsynth.errors import StreamsynthError
from streamsynth.models import load_model
from streamsynth.models.base import (
    CHECKSUMS_FILE,
    CONFIG_FILE,
    ENCODERS_FILE,
    FORMAT_VERSION,
    WEIGHTS_FILE,
    read_config,
    shard_entities,
    verify_checksums,
    write_checksums,
)
from streamsynth.models.baseline import BaselineSynthesizer

START = datetime(2024, 3, 4, tzinfo=UTC)


# -- sharding -------------------------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 7, 100, 1001])
@pytest.mark.parametrize("shards", [1, 2, 3, 16])
def test_shard_entities_partitions_exactly(n, shards):
    parts = [shard_entities(n, (k, shards)) for k in range(shards)]
    together = np.concatenate(parts)
    assert together.dtype == np.int64
    assert np.array_equal(np.sort(together), np.arange(n))  # every entity once: no gap, no overlap
    for k, part in enumerate(parts):
        assert np.all(np.diff(part) > 0) and np.all(part % shards == k)
    sizes = [p.size for p in parts]
    assert max(sizes, default=0) - min(sizes, default=0) <= 1  # balanced
    np.testing.assert_array_equal(shard_entities(n, None), np.arange(n))


def test_shard_entities_by_hand():
    assert shard_entities(10, (1, 3)).tolist() == [1, 4, 7]
    assert shard_entities(10, (0, 4)).tolist() == [0, 4, 8]
    assert shard_entities(2, (5, 8)).tolist() == []


# -- the saved model ------------------------------------------------------------------------------

def tiny_events() -> pl.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for e in range(30):
        t = START + timedelta(hours=float(rng.uniform(0, 24)))
        for _ in range(5):
            t += timedelta(minutes=float(rng.exponential(60)))
            rows.append({"user": f"u{e:02d}", "ts": t, "amount": float(np.round(rng.lognormal(3, 0.5), 2)),
                         "channel": str(rng.choice(["pos", "web"]))})
    return pl.DataFrame(rows).with_columns(pl.col("ts").cast(pl.Datetime("us", "UTC")))


@pytest.fixture(scope="module")
def model() -> BaselineSynthesizer:
    return BaselineSynthesizer(seed=3).fit(tiny_events())


@pytest.fixture
def saved(model, tmp_path):
    return model.save(tmp_path / "model")


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_save_writes_the_files_and_their_checksums(saved):
    assert sorted(p.name for p in saved.iterdir()) == sorted([CONFIG_FILE, WEIGHTS_FILE, ENCODERS_FILE,
                                                              CHECKSUMS_FILE])
    lines = (saved / CHECKSUMS_FILE).read_text().splitlines()
    assert lines == [f"{sha256(saved / name)}  {name}" for name in sorted([CONFIG_FILE, ENCODERS_FILE, WEIGHTS_FILE])]
    header = json.loads((saved / CONFIG_FILE).read_text())
    assert header["format_version"] == FORMAT_VERSION and header["model"] == "baseline" and header["seed"] == 3
    assert header["fitted_start"].startswith("2024-03-04")
    assert read_config(saved)["schema"] == header["schema"]
    # no temporary folder left beside it
    assert sorted(p.name for p in saved.parent.iterdir()) == ["model"]


def test_load_round_trip_samples_the_same(model, saved):
    for loaded in (BaselineSynthesizer.load(saved), load_model(saved)):
        assert type(loaded) is BaselineSynthesizer
        assert loaded.seed == model.seed and loaded.schema.to_dict() == model.schema.to_dict()
        assert loaded.fitted_start == model.fitted_start and loaded.fitted_span == model.fitted_span
        a = model.sample(n_events=60, seed=5)
        b = loaded.sample(n_events=60, seed=5)
        assert a.height == 60 and a.equals(b)


def test_saving_again_replaces_the_folder(model, saved):
    (saved / "schema.yaml").write_text("x")  # a model folder's file: replaced with the rest
    model.save(saved)
    assert not (saved / "schema.yaml").exists()
    BaselineSynthesizer.load(saved)


def test_save_refuses_a_folder_holding_other_files(model, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(StreamsynthError, match=r"holds files that are not a model's \(notes.txt\)"):
        model.save(folder)
    assert (folder / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("name", [WEIGHTS_FILE, ENCODERS_FILE, CONFIG_FILE])
def test_a_damaged_file_is_a_clear_error(saved, name):
    path = saved / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit flipped in the middle
    path.write_bytes(bytes(data))
    with pytest.raises(StreamsynthError) as err:
        load_model(saved)
    message = err.value.message
    assert str(path) in message
    # config.json may no longer parse; otherwise the checksum names the file
    assert "is damaged: its checksum does not match" in message or "is not valid JSON" in message
    assert err.value.hint


def test_a_truncated_weights_file_is_a_clear_error(saved):
    path = saved / WEIGHTS_FILE
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(StreamsynthError, match="is damaged: its checksum does not match"):
        BaselineSynthesizer.load(saved)


def test_a_missing_file_is_named(saved):
    (saved / ENCODERS_FILE).unlink()
    with pytest.raises(StreamsynthError, match=f"{ENCODERS_FILE} is missing"):
        load_model(saved)


def test_a_bad_checksum_listing_is_named(saved):
    (saved / CHECKSUMS_FILE).write_text("not a checksum line\n")
    with pytest.raises(StreamsynthError, match="line 1 is not 'SHA256  FILE'"):
        load_model(saved)


def test_damage_without_checksums_still_fails_cleanly(saved):
    # a model without checksums (saved before them) relies on the readers' own checks
    (saved / CHECKSUMS_FILE).unlink()
    (saved / WEIGHTS_FILE).write_bytes(b"\x00" * 16)
    with pytest.raises(StreamsynthError, match="is corrupt or not a safetensors file"):
        load_model(saved)


def test_format_version_and_folder_errors(saved, tmp_path):
    header = json.loads((saved / CONFIG_FILE).read_text())
    header["format_version"] = FORMAT_VERSION + 1
    (saved / CONFIG_FILE).write_text(json.dumps(header))
    write_checksums_again(saved)
    with pytest.raises(StreamsynthError, match=f"saved in model format {FORMAT_VERSION + 1}"):
        load_model(saved)
    with pytest.raises(StreamsynthError, match="does not exist"):
        load_model(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StreamsynthError, match="is not a model directory"):
        load_model(tmp_path / "empty")


def write_checksums_again(folder):
    (folder / CHECKSUMS_FILE).unlink()
    write_checksums(folder)
    verify_checksums(folder)  # consistent again


def test_verify_checksums_by_hand(tmp_path):
    (tmp_path / "a.txt").write_text("hello\n")
    (tmp_path / "b.bin").write_bytes(b"\x00\x01")
    write_checksums(tmp_path)
    b_digest = hashlib.sha256(bytes([0, 1])).hexdigest()
    assert (tmp_path / CHECKSUMS_FILE).read_text() == (
        "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03  a.txt\n"  # sha256sum of "hello\n"
        f"{b_digest}  b.bin\n"
    )
    verify_checksums(tmp_path)
    (tmp_path / "a.txt").write_text("hellO\n")
    with pytest.raises(StreamsynthError, match="a.txt is damaged"):
        verify_checksums(tmp_path)


def test_bad_shard_is_a_clear_error(model):
    with pytest.raises(StreamsynthError, match="bad shard 3/2"):
        model.sample(n_events=5, shard=(3, 2))
