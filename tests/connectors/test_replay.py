"""The replay loop and the replay/verify commands: SIGTERM and resume, pacing accuracy, speed,
backpressure, verify's findings, and clear errors for bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from streamsynth.connectors import open_sink
from streamsynth.connectors.file import output_files
from streamsynth.connectors.pacing import Pacing
from streamsynth.connectors.replay import replay

from streamsynth.cli import main
from streamsynth.contract import rebatch


def replay_cli(source: Path, out: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "streamsynth", "replay", str(source), "--to", out, *extra],
        stderr=subprocess.PIPE, text=True,
    )


def ids_in(target: Path) -> list[str]:
    return [json.loads(line)["event_id"] for p in output_files(target)
            for line in p.read_text().splitlines()]


def wait_for_file(path: Path, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def start_checkpointed(tmp_path: Path, frame: pl.DataFrame, target: Path, *, rotate_size: str, rate: str,
                       flush_every: str) -> tuple[tuple, subprocess.Popen, Path]:
    """A replay of ``frame`` to the files at ``target`` with a checkpoint, started once the
    checkpoint exists: the arguments (to start it again), the process and the checkpoint."""
    source = tmp_path / "events.parquet"
    frame.write_parquet(source)
    checkpoint = tmp_path / "replay.ckpt"
    args = (source, f"file://{target}?rotate_size={rotate_size}", "--rate", rate,
            "--checkpoint", str(checkpoint), "--flush-every", flush_every)
    first = replay_cli(*args)
    wait_for_file(checkpoint)
    return args, first, checkpoint


def test_sigterm_then_resume_from_the_checkpoint_delivers_every_event(tmp_path, make_events):
    frame = make_events(20_000)
    target = tmp_path / "out" / "events.jsonl"
    args, first, checkpoint = start_checkpointed(tmp_path, frame, target, rotate_size="300KB", rate="5000",
                                                 flush_every="0.2")
    time.sleep(0.5)
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert "stopped" in err and "resume with the same command" in err
    state = json.loads(checkpoint.read_text())
    assert 0 < state["position"] < 20_000 and not state["done"]
    # The checkpoint's counts describe exactly the acknowledged events.
    head = frame.head(state["position"])
    assert state["counts"]["events"] == state["position"]
    assert state["counts"]["labels"] == dict(head["label"].value_counts().iter_rows())
    # A clean stop flushes: the files hold exactly the acknowledged prefix, nothing half-written.
    assert ids_in(target) == [f"ev-{i}" for i in range(state["position"])]
    assert not list(target.parent.glob(".*"))

    second = replay_cli(*args)
    _, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert f"resuming after {state['position']:,}" in err
    assert sorted(ids_in(target), key=lambda s: int(s[3:])) == [f"ev-{i}" for i in range(20_000)]
    assert json.loads(checkpoint.read_text())["done"]
    manifest = json.loads((target.parent / "events.jsonl.manifest.json").read_text())
    assert manifest["counts"]["events"] == 20_000 and manifest["sent"] == {"from": 0, "to": 20_000}
    assert manifest["counts"]["labels"] == dict(frame["label"].value_counts().iter_rows())
    assert main(["verify", "--from", str(target), "--manifest",
                 str(target.parent / "events.jsonl.manifest.json")]) == 0


def test_sigkill_then_resume_loses_nothing(tmp_path, make_events):
    """A crash leaves no half files; the resumed replay sends the unacknowledged part again."""
    target = tmp_path / "events.jsonl"
    args, first, checkpoint = start_checkpointed(tmp_path, make_events(12_000), target, rotate_size="100KB",
                                                 rate="6000", flush_every="0.1")
    time.sleep(0.4)
    first.kill()
    first.communicate(timeout=30)
    assert json.loads(checkpoint.read_text())["position"] < 12_000
    second = replay_cli(*args)
    _, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    got = ids_in(target)
    assert set(got) == {f"ev-{i}" for i in range(12_000)}
    assert len(got) - len(set(got)) < 1_000  # at most the last unfinished part repeats


def test_pacing_2000_events_per_second_over_10_seconds(receiver, make_events):
    frame = make_events(20_000)
    sink = open_sink(receiver.url(batch=50, linger="20ms"))
    started = time.monotonic()
    result = replay(rebatch(iter([frame]), 2_000), sink, time_column="ts",
                    pacing=Pacing(rate=2_000))
    elapsed = time.monotonic() - started
    assert result.sent == 20_000 and len(receiver.ids()) == 20_000
    # The schedule puts event k at k / 2000 s after the first: 9.9995 s for the last one.
    assert abs(result.send_seconds - 9.9995) <= 0.2  # +-2% of the target time
    assert elapsed <= 10.0 * 1.02 + 1.0  # and little start-up or close-down on top
    halfway = result.first_send_at + 5.0
    by_half = sum(n for t, n in receiver.arrivals if t <= halfway)
    assert abs(by_half - 10_000) <= 200  # +-2% of the target count half-way through


def test_speed_maps_event_time_to_wall_clock(tmp_path, make_events):
    frame = make_events(3_000, step_ms=10)  # 30 s of event time
    sink = open_sink(f"file://{tmp_path}/out.jsonl")
    result = replay(rebatch(iter([frame]), 500), sink, time_column="ts", pacing=Pacing(speed=10))
    assert result.sent == 3_000
    assert abs(result.send_seconds - 2.999) <= 0.06  # 29.99 s of event time at 10x, +-2%


def test_backpressure_keeps_the_source_from_running_ahead(receiver, make_events):
    """With a slow endpoint, the source is read only a few batches ahead of delivery."""
    frame = make_events(4_000)
    receiver.faults = [("sleep", 0.05)] * 1_000
    produced = []
    sink = open_sink(receiver.url(batch=100, concurrency=1))

    def source() -> Iterator[pl.DataFrame]:
        for i, batch in enumerate(rebatch(iter([frame]), 100)):
            produced.append(i)
            ahead = len(produced) * 100 - sink.written
            assert ahead <= 100 * 8, f"source ran {ahead} events ahead of the sink"
            yield batch

    result = replay(source(), sink, time_column="ts", queue_size=2)
    assert result.sent == 4_000 and len(produced) == 40


def test_verify_reports_loss_duplicates_and_mislabels(tmp_path, make_events, capsys):
    source = tmp_path / "events.parquet"
    make_events(1_000).write_parquet(source)
    out = tmp_path / "out.jsonl"
    assert main(["replay", str(source), "--to", str(out)]) == 0
    manifest = tmp_path / "out.jsonl.manifest.json"
    assert main(["verify", "--from", str(out), "--manifest", str(manifest)]) == 0
    lines = out.read_text().splitlines()
    tampered = [json.loads(line) for line in lines[10:]] + [json.loads(lines[20])]
    tampered[0]["label"] = "fraud.card_testing" if tampered[0]["label"] == "normal" else "normal"
    out.write_text("".join(json.dumps(e) + "\n" for e in tampered))
    capsys.readouterr()
    assert main(["verify", "--from", str(out), "--manifest", str(manifest), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert (report["missing"], report["duplicated"], report["mislabelled"]) == (10, 1, 1)
    assert report["examples"]["missing"][0] == "ev-0"


@pytest.mark.parametrize(("args", "message"), [
    (["--to", "ftp://127.0.0.1/x"], "unknown scheme 'ftp://'"),
    (["--to", "nowhere"], "has no scheme"),
    (["--to", "file:///tmp/x.jsonl?rotate_size=abc"], "option rotate_size='abc' is not valid"),
    (["--to", "file:///tmp/x.jsonl?rotate_size=1MB&rotate_size=2MB"], "given twice"),
    (["--to", "file:///tmp/x.jsonl?bogus=1"], "unknown option 'bogus'"),
    (["--to", "http://127.0.0.1:8080/x?concurrency=-1"], "option concurrency='-1' is not valid"),
    (["--to", "kafka://127.0.0.1:9092/no$such"], "not a valid Kafka topic name"),
    (["--to", "-", "--speed", "2", "--rate", "10"], "either --speed or --rate"),
    (["--to", "-", "--rate", "0"], "--rate must be above 0"),
])
def test_bad_input_is_one_clear_error(tmp_path, make_events, capsys, args, message):
    source = tmp_path / "events.parquet"
    make_events(10).write_parquet(source)
    assert main(["replay", str(source), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "hint:" in err and "Traceback" not in err


def test_unreachable_and_unwritable_sinks_fail_clearly(tmp_path, make_events, capsys, free_port):
    source = tmp_path / "events.parquet"
    make_events(10).write_parquet(source)
    port = free_port()
    assert main(["replay", str(source), "--to", f"http://127.0.0.1:{port}/in"]) == 2
    assert f"cannot reach http://127.0.0.1:{port}/in" in capsys.readouterr().err
    assert main(["replay", str(source), "--to",
                 f"kafka://127.0.0.1:{port}/events?connect_timeout=1s"]) == 2
    assert "cannot reach the Kafka broker" in capsys.readouterr().err
    (tmp_path / "f").write_text("")
    assert main(["replay", str(source), "--to", f"file://{tmp_path}/f/out.jsonl"]) == 2
    assert "cannot write to" in capsys.readouterr().err


def test_a_checkpoint_of_another_replay_is_refused(tmp_path, make_events, capsys):
    source = tmp_path / "events.parquet"
    make_events(100).write_parquet(source)
    checkpoint = tmp_path / "c.json"
    assert main(["replay", str(source), "--to", str(tmp_path / "a.jsonl"),
                 "--checkpoint", str(checkpoint)]) == 0
    assert main(["replay", str(source), "--to", str(tmp_path / "a.jsonl"),
                 "--checkpoint", str(checkpoint)]) == 0
    assert "already complete" in capsys.readouterr().err
    assert main(["replay", str(source), "--to", str(tmp_path / "b.jsonl"),
                 "--checkpoint", str(checkpoint)]) == 2
    assert "belongs to sink" in capsys.readouterr().err
