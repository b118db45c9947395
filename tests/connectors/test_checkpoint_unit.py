"""Unit tests of the replay checkpoint (:mod:`streamsynth.connectors.checkpoint`): the JSON round
trip, the atomic replace, and the one-holder lock."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest
from streamsynth.connectors import checkpoint as checkpoint_module
from streamsynth.connectors.checkpoint import VERSION, Checkpoint, CheckpointLock

from streamsynth.errors import StreamsynthError

SOURCE = {"path": "events.parquet", "rate": 100.0, "seed": 3}


def _checkpoint(**over) -> Checkpoint:
    values = dict(source=dict(SOURCE), sink="file:///tmp/out", position=1234, done=False,
                  counts={"sent": 1234, "by_label": {"normal": 1200, "fraud": 34}},
                  sink_state={"part": "part-00003.jsonl", "length": 98765})
    values.update(over)
    return Checkpoint(**values)


def test_save_load_round_trip(tmp_path):
    path = tmp_path / "sub" / "ckpt.json"  # the parent folder is made
    saved = _checkpoint()
    saved.save(path)
    assert saved.updated_at  # stamped on save
    loaded = Checkpoint.load(path)
    assert loaded == saved
    assert loaded.version == VERSION
    record = json.loads(path.read_text())
    assert record["position"] == 1234 and record["sink_state"]["length"] == 98765
    # only the checkpoint itself is left in the folder: no temporary file
    assert sorted(p.name for p in path.parent.iterdir()) == ["ckpt.json"]


def test_save_replaces_and_updates(tmp_path):
    path = tmp_path / "ckpt.json"
    first = _checkpoint(position=10)
    first.save(path)
    second = _checkpoint(position=20, done=True)
    second.save(path)
    loaded = Checkpoint.load(path)
    assert loaded.position == 20 and loaded.done is True
    assert loaded.updated_at >= first.updated_at


def test_load_missing_is_none(tmp_path):
    assert Checkpoint.load(tmp_path / "nope.json") is None


@pytest.mark.parametrize("text,what", [
    ("{not json", "not valid"),
    (json.dumps({"source": {}, "sink": "x", "version": VERSION + 1}), "version"),
    (json.dumps({"sink": "x", "version": VERSION}), "not valid"),  # no source
])
def test_load_invalid_is_a_clear_error(tmp_path, text, what):
    path = tmp_path / "ckpt.json"
    path.write_text(text)
    with pytest.raises(StreamsynthError) as err:
        Checkpoint.load(path)
    assert str(path) in err.value.message and what in err.value.message
    assert "remove it" in err.value.hint


@pytest.mark.parametrize("text", ["[1, 2]", "null", "3"])
def test_load_non_object_json_is_a_clear_error(tmp_path, text):
    path = tmp_path / "ckpt.json"
    path.write_text(text)
    with pytest.raises(StreamsynthError, match="is not valid"):
        Checkpoint.load(path)


def test_load_ignores_unknown_keys(tmp_path):
    path = tmp_path / "ckpt.json"
    path.write_text(json.dumps({"source": SOURCE, "sink": "s", "position": 5, "version": VERSION, "extra": 1}))
    loaded = Checkpoint.load(path)
    assert loaded.position == 5 and loaded.counts == {} and loaded.done is False


def test_failed_replace_leaves_the_previous_checkpoint_and_no_partial_file(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.json"
    _checkpoint(position=7).save(path)
    before = path.read_text()

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_module.os, "replace", broken_replace)
    with pytest.raises(StreamsynthError) as err:
        _checkpoint(position=99).save(path)
    assert "cannot write checkpoint" in err.value.message and "No space left" in err.value.message
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.json"]


def test_interrupted_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.json"
    _checkpoint(position=7).save(path)
    before = path.read_text()

    def interrupted_dump(obj, fh, **kwargs):
        fh.write('{"source": {"pa')  # a partial write, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint_module.json, "dump", interrupted_dump)
    with pytest.raises(KeyboardInterrupt):  # not turned into a user error
        _checkpoint(position=99).save(path)
    assert path.read_text() == before
    assert Checkpoint.load(path).position == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt.json"]


def test_unwritable_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StreamsynthError) as err:
        _checkpoint().save(blocker / "ckpt.json")  # parent is a file
    assert "--checkpoint" in err.value.hint


def test_check_matches(tmp_path):
    cp = _checkpoint()
    cp.check_matches(dict(SOURCE), "file:///tmp/out", tmp_path / "c")  # same: no error
    with pytest.raises(StreamsynthError, match="another source"):
        cp.check_matches({**SOURCE, "seed": 4}, "file:///tmp/out", tmp_path / "c")
    with pytest.raises(StreamsynthError, match="belongs to sink 'file:///tmp/out', not 'kafka://b/t'"):
        cp.check_matches(dict(SOURCE), "kafka://b/t", tmp_path / "c")


def test_lock_refuses_a_second_holder_naming_the_pid(tmp_path):
    path = tmp_path / "ckpt.json"
    with CheckpointLock(path) as lock:
        assert lock.path == tmp_path / "ckpt.json.lock"
        assert lock.path.read_text() == str(os.getpid())
        with pytest.raises(StreamsynthError) as err:
            CheckpointLock(path).acquire()
        assert "in use by another replay" in err.value.message
        assert f"(process {os.getpid()})" in err.value.message
        assert "own --checkpoint" in err.value.hint
        assert lock.path.read_text() == str(os.getpid())  # the refused one changed nothing
    # released: the lock file is gone and a new holder gets it
    assert not (tmp_path / "ckpt.json.lock").exists()
    with CheckpointLock(path) as again:
        assert again.path.exists()
    assert not again.path.exists()


def test_lock_held_by_another_process(tmp_path):
    path = tmp_path / "ckpt.json"
    code = textwrap.dedent(f"""
        import sys
        from streamsynth.connectors.checkpoint import CheckpointLock
        lock = CheckpointLock({str(path)!r}).acquire()
        print("held", flush=True)
        sys.stdin.readline()
        lock.release()
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(StreamsynthError, match=rf"\(process {proc.pid}\)"):
            CheckpointLock(path).acquire()
    finally:
        proc.stdin.write("\n")
        proc.stdin.flush()
        assert proc.wait(timeout=20) == 0
    with CheckpointLock(path):  # the other process let go
        pass


def test_stale_lock_file_does_not_block(tmp_path):
    path = tmp_path / "ckpt.json"
    (tmp_path / "ckpt.json.lock").write_text("999999999")  # left behind by a killed run
    lock = CheckpointLock(path).acquire()
    try:
        assert lock.path.read_text() == str(os.getpid())  # truncated and rewritten
    finally:
        lock.release()
    lock.release()  # a second release is harmless
    assert not lock.path.exists()


def test_lock_in_an_unwritable_place_is_a_clear_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StreamsynthError, match="cannot lock checkpoint"):
        CheckpointLock(blocker / "ckpt.json").acquire()
