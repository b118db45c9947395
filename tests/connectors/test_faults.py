"""Hard edges of delivery: a rate that falls short is warned about with where the time went, a
file replay killed with ``kill -9`` resumes without loss or repeats, and verify names the
missing stretches as id ranges."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from replay_process import start, wait_for_position
from streamsynth.connectors import open_sink
from streamsynth.connectors.file import output_files
from streamsynth.connectors.pacing import Pacing
from streamsynth.connectors.replay import replay

from streamsynth.cli import main
from streamsynth.contract import rebatch


def read_ids(target: Path) -> list[str]:
    frames = [pl.read_parquet(p) if p.suffix == ".parquet" else pl.read_ndjson(p)
              for p in output_files(target)]
    return [i for f in frames for i in f["event_id"].to_list()]


# -- the achieved rate -------------------------------------------------------------------------------
def test_a_slow_source_is_warned_about_once_naming_generation(tmp_path, make_events):
    frame = make_events(3_000)

    def slow() -> Iterator[pl.DataFrame]:
        for batch in rebatch(iter([frame]), 100):
            time.sleep(0.05)  # at most 2,000 events/s from "generation"
            yield batch

    said: list[str] = []
    result = replay(slow(), open_sink(f"file://{tmp_path}/out.jsonl"), time_column="ts",
                    pacing=Pacing(rate=5_000), rate_window=0.5, on_warning=said.append)
    assert result.sent == 3_000
    assert len(said) == 1 and result.warnings == said
    assert "of the 5,000 asked for" in said[0]
    assert said[0].endswith("the source (generation) is the bottleneck")
    assert result.achieved_rate < 2_500 and result.target_rate == 5_000
    assert result.timings["source"] > result.timings["sink"] + result.timings["acks"]


def test_a_slow_endpoint_is_named_as_the_bottleneck(receiver, make_events):
    receiver.faults = [("sleep", 0.05)] * 1_000  # 100 events per 50 ms: 2,000 events/s
    said: list[str] = []
    result = replay(rebatch(iter([make_events(3_000)]), 500),
                    open_sink(receiver.url(batch=100, concurrency=1)), time_column="ts",
                    pacing=Pacing(rate=5_000), rate_window=0.5, on_warning=said.append)
    assert result.sent == 3_000 and len(said) == 1
    # The sink's write blocked on the endpoint (backpressure): that time is the endpoint's.
    assert said[0].endswith("the endpoint (waiting for acknowledgements) is the bottleneck"), said[0]


def test_a_rate_kept_gives_no_warning_and_the_achieved_rate_is_reported(tmp_path, make_events, capsys):
    source = tmp_path / "events.parquet"
    make_events(1_000).write_parquet(source)
    out = tmp_path / "out.jsonl"
    assert main(["replay", str(source), "--to", str(out), "--rate", "2000"]) == 0
    err = capsys.readouterr().err
    assert "warning" not in err and "events/s of 2,000 asked for" in err
    replayed = json.loads((tmp_path / "out.jsonl.manifest.json").read_text())["replay"]
    assert replayed["rate"] == 2000 and 1_900 <= replayed["achieved_rate"] <= 2_100
    assert set(replayed["timings_s"]) == {"source", "sink", "acks"} and replayed["warnings"] == []


# -- kill -9 and resume ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("suffix", "live"), [("jsonl", False), ("csv", False), ("parquet", False),
                                             ("jsonl", True), ("csv", True)])
def test_kill_9_without_rotation_resumes_from_what_is_on_disk(tmp_path, make_events, suffix, live):
    """Without rotation the checkpoint used to stay at 0 until the end, so a crash resent all.
    live=true: the open file is under its own name (tail -f follows it); a crash leaves events
    past the checkpoint in it, and the resumed replay cuts them off before going on."""
    source = tmp_path / "events.parquet"
    frame = make_events(16_000)
    frame.write_parquet(source)
    target = tmp_path / "out" / f"events.{suffix}"
    checkpoint = tmp_path / "ckpt.json"
    args = (source, f"file://{target}" + ("?live=true" if live else ""), "--rate", "8000",
            "--checkpoint", str(checkpoint), "--flush-every", "0.1")
    first = start(*args)
    wait_for_position(checkpoint, above=2_000)
    if live:  # visible under its own name mid-run
        assert target.read_text().count("\n") >= 2_000
    first.kill()
    first.communicate(timeout=30)
    state = json.loads(checkpoint.read_text())
    assert 2_000 < state["position"] < 16_000
    second = start(*args)
    _, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    assert f"resuming after {state['position']:,}" in err and "duplicates" not in err
    if suffix == "csv":
        got = [i for p in output_files(target) for i in pl.read_csv(p)["event_id"].to_list()]
    else:
        got = read_ids(target)
    # Nothing lost and nothing twice: the part open at the crash was cut back to the checkpoint.
    assert got == frame["event_id"].to_list()
    assert not [p.name for p in target.parent.iterdir() if p.name.startswith(".")]
    assert main(["verify", "--from", str(target), "--manifest", f"{target}.manifest.json"]) == 0


def test_live_parquet_is_refused_with_the_formats_that_can(tmp_path, make_events, capsys):
    source = tmp_path / "events.parquet"
    make_events(100).write_parquet(source)
    assert main(["replay", str(source), "--to", f"file://{tmp_path}/o.parquet?live=true"]) == 2
    err = capsys.readouterr().err
    assert "live=true is for JSON Lines and CSV" in err and "Traceback" not in err


# -- verify's missing ranges -----------------------------------------------------------------------------
def test_verify_names_the_missing_ranges(tmp_path, make_events, capsys):
    source = tmp_path / "events.parquet"
    make_events(1_000).write_parquet(source)
    out = tmp_path / "out.jsonl"
    assert main(["replay", str(source), "--to", str(out)]) == 0
    lines = out.read_text().splitlines(keepends=True)
    out.write_text("".join(lines[:100] + lines[200:500] + lines[501:]))
    manifest = str(tmp_path / "out.jsonl.manifest.json")
    capsys.readouterr()
    assert main(["verify", "--from", str(out), "--manifest", manifest]) == 1
    assert "  missing: ev-[100..199], ev-500\n" in capsys.readouterr().out
    assert main(["verify", "--from", str(out), "--manifest", manifest, "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report["missing"] == 101 and report["missing_ranges"] == ["ev-[100..199]", "ev-500"]
    assert report["missing_ranges_total"] == 2


def test_a_sink_that_cannot_be_opened_leaves_an_earlier_manifest_alone(tmp_path, make_events, free_port):
    source = tmp_path / "events.parquet"
    make_events(100).write_parquet(source)
    manifest = tmp_path / "m.json"
    assert main(["replay", str(source), "--to", str(tmp_path / "a.jsonl"), "--manifest", str(manifest)]) == 0
    before = manifest.read_text()
    assert main(["replay", str(source), "--to", f"http://127.0.0.1:{free_port()}/x",
                 "--manifest", str(manifest)]) == 2
    assert manifest.read_text() == before


def test_a_part_finished_after_the_last_checkpoint_is_counted_as_repeated(tmp_path, make_events):
    """A crash between a rotation's rename and the next checkpoint: the resumed sink cannot cut
    a finished part back, so it says how many events it will write a second time."""
    frame = make_events(150)
    url = f"file://{tmp_path}/e.jsonl?rotate_size=1GB"
    first = open_sink(url, time="ts", durable=True)
    first.write(frame.head(100))
    first.flush()
    state = first.state()  # what the checkpoint holds
    assert state["part"]["rows"] == 100 and first.acked == 100
    first.write(frame.slice(100))
    first.close()  # the rename happens; the crash comes before the checkpoint records it
    resumed = open_sink(url, time="ts", append=True, state=state, durable=True)
    assert resumed.repeated == 50
    resumed.write(frame.slice(100))
    resumed.close()
    got = read_ids(tmp_path / "e.jsonl")
    assert sorted(set(got)) == sorted(frame["event_id"]) and len(got) == 200


def test_a_failing_file_replay_keeps_what_it_acknowledged(tmp_path, make_events):
    """The loop aborts the sink on an error: the acknowledged head of the open part is kept in the
    output (cut back to the flush point), the rest dropped."""
    frame = make_events(3_000)

    def failing() -> Iterator[pl.DataFrame]:
        yield from rebatch(iter([frame.head(2_000)]), 500)
        time.sleep(0.15)  # the next batch meets a flush point
        yield frame.slice(2_000, 500)
        yield frame.slice(2_500, 500)  # written, never flushed
        raise RuntimeError("the source broke")

    target = tmp_path / "out.jsonl"
    positions: list[int] = []
    with pytest.raises(RuntimeError, match="the source broke"):
        replay(failing(), open_sink(f"file://{target}", time="ts", durable=True), time_column="ts",
               flush_every=0.1, on_checkpoint=lambda position, _counter: positions.append(position))
    assert positions[-1] == 2_500
    assert read_ids(target) == frame["event_id"].head(2_500).to_list()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_an_http_outage_is_logged_with_its_retries(receiver, make_events):
    from prometheus_client import generate_latest
    from streamsynth.connectors.metrics import ReplayMetrics

    receiver.faults = [503] * 6  # the first requests fail, then the endpoint is back
    metrics = ReplayMetrics()
    told: list[tuple[bool, float]] = []
    metrics.on_outage = lambda outage, over: told.append((over, outage.seconds))
    result = replay(rebatch(iter([make_events(1_000)]), 250),
                    open_sink(receiver.url(batch=250, concurrency=1, backoff="20ms"), metrics=metrics),
                    time_column="ts", metrics=metrics)
    assert result.sent == 1_000 and len(set(receiver.ids())) == 1_000
    report = metrics.outage_report()
    assert report["count"] == 1 and report["retries"] == 6 and report["log"][0]["first_error"] == "503"
    assert [over for over, _ in told] == [False, True] and told[1][1] > 0
    text = generate_latest(metrics.registry).decode()
    assert 'streamsynth_outages_total{sink="http"} 1.0' in text
