"""File and stdout sinks: every format, rotation by size and time, atomic finalisation, stdout."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import polars as pl
import pytest
from sink_errors import assert_refused
from streamsynth.connectors import open_sink, read_back
from streamsynth.connectors.pacing import Pacing
from streamsynth.connectors.replay import replay

from streamsynth.contract import rebatch
from streamsynth.errors import StreamsynthError


@pytest.mark.parametrize("suffix", ["parquet", "jsonl", "csv"])
def test_each_format_holds_every_event_once(tmp_path, suffix, make_events):
    frame = make_events(5_000)
    url = f"file://{tmp_path}/out.{suffix}"
    result = replay(rebatch(iter([frame]), 700), open_sink(url), time_column="ts")
    assert result.sent == 5_000
    back = pl.concat(list(read_back(url)))
    assert sorted(back["event_id"].to_list()) == sorted(frame["event_id"].to_list())
    assert back["label"].to_list() == frame["label"].to_list()
    assert [p.name for p in tmp_path.iterdir()] == [f"out.{suffix}"]  # no temporary left behind


def test_rotation_by_size_writes_complete_parts(tmp_path, make_events):
    frame = make_events(20_000)
    sink = open_sink(f"file://{tmp_path}/out.jsonl?rotate_size=200KB")
    replay(rebatch(iter([frame]), 500), sink, time_column="ts")
    parts = sorted(tmp_path.iterdir())
    assert len(parts) >= 10
    assert [p.name for p in parts[:2]] == ["out-00000.jsonl", "out-00001.jsonl"]
    assert all(p.stat().st_size >= 200_000 for p in parts[:-1])
    ids = [json.loads(line)["event_id"] for p in parts for line in p.read_text().splitlines()]
    assert ids == frame["event_id"].to_list()


def test_rotation_by_time(tmp_path, make_events):
    frame = make_events(6_000)
    sink = open_sink(f"file://{tmp_path}/out.parquet?rotate_every=300ms")
    result = replay(rebatch(iter([frame]), 1_000), sink, time_column="ts", pacing=Pacing(rate=4_000))
    parts = sorted(tmp_path.glob("out-*.parquet"))
    assert 4 <= len(parts) <= 7 and result.seconds >= 1.4
    assert pl.concat([pl.read_parquet(p) for p in parts])["event_id"].to_list() == \
        frame["event_id"].to_list()


def test_a_reader_never_sees_half_a_file(tmp_path, make_events):
    """While a rotating Parquet replay runs, every visible file reads whole, with all its rows."""
    frame = make_events(40_000)
    seen: dict[str, int] = {}
    errors: list[str] = []
    done = threading.Event()

    def scan() -> None:
        for path in tmp_path.glob("out*.parquet"):
            try:
                rows = pl.read_parquet(path).height
            except Exception as exc:  # noqa: BLE001 - any failure to read is the bug
                errors.append(f"{path.name}: {exc}")
                continue
            if seen.setdefault(path.name, rows) != rows:
                errors.append(f"{path.name} changed from {seen[path.name]} to {rows} rows")

    def watch() -> None:
        while not done.is_set():
            scan()

    reader = threading.Thread(target=watch)
    reader.start()
    sink = open_sink(f"file://{tmp_path}/out.parquet?rotate_size=64KB")
    replay(rebatch(iter([frame]), 500), sink, time_column="ts", pacing=Pacing(rate=40_000))
    done.set()
    reader.join()
    scan()
    assert not errors
    assert len(seen) >= 3 and sum(seen.values()) == 40_000


def test_a_failing_parquet_writer_is_a_clear_error_and_acknowledges_nothing(tmp_path, make_events):
    """The Parquet writer works on its own thread: its failure (here a batch whose types break
    the contract) still stops the replay with a clear error, leaves no temporary file behind and
    acknowledges nothing of the unfinished part."""
    good = make_events(1_000)
    bad = good.with_columns(pl.col("amount").cast(pl.String))
    sink = open_sink(f"file://{tmp_path}/out.parquet")
    with pytest.raises(StreamsynthError, match="cannot write .*out.parquet"):
        replay(iter([good, bad, good, good, good]), sink, time_column="ts")
    assert sink.acked == 0 and list(tmp_path.iterdir()) == []


def test_rotating_into_old_parts_is_refused(tmp_path, make_events):
    url = f"file://{tmp_path}/out.jsonl?rotate_size=10KB"
    replay(rebatch(iter([make_events(500)]), 100), open_sink(url), time_column="ts")
    with pytest.raises(StreamsynthError, match="holds parts of an earlier output"):
        open_sink(url)
    appended = open_sink(url, append=True)  # what a resumed replay does: new parts after the old
    replay(rebatch(iter([make_events(50)]), 100), appended, time_column="ts")
    assert appended.files[0].name == f"out-{len(list(tmp_path.iterdir())) - 1:05d}.jsonl"


def test_unwritable_path_is_a_clear_error(tmp_path):
    (tmp_path / "plain-file").write_text("x")
    assert_refused(
        (f"file://{tmp_path}/plain-file/out.jsonl", "cannot write to .*plain-file/out.jsonl"),
        (f"file://{tmp_path}/out.txt", "unknown file type '.txt'"),
        (f"file://{tmp_path}/out.csv?rotate_size=lots", "option rotate_size='lots' is not valid"),
    )


def test_stdout_sink_prints_json_lines(tmp_path, make_events):
    source = tmp_path / "events.parquet"
    make_events(1_500).write_parquet(source)
    out = subprocess.run(
        [sys.executable, "-m", "streamsynth", "replay", str(source), "--to", "-",
         "--manifest", str(tmp_path / "m.json")],
        capture_output=True, timeout=60, text=True,
    )
    assert out.returncode == 0, out.stderr
    lines = [json.loads(line) for line in out.stdout.splitlines()]
    assert [e["event_id"] for e in lines] == [f"ev-{i}" for i in range(1_500)]
    assert "1,500 events acknowledged" in out.stderr


def test_bare_paths_are_file_sinks(tmp_path, make_events):
    path = tmp_path / "plain.csv"
    replay(rebatch(iter([make_events(100)]), 100), open_sink(str(path)), time_column="ts")
    assert pl.read_csv(path).height == 100
