"""The progress reporter: plain lines (count, rate, ETA, fields) at an interval and a final line
when stderr is not a terminal, a rich bar on one, silence when asked; and the commands that
use it (sample, replay, evaluate) through a real subprocess with stderr to a file."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from streamsynth.progress import Progress

ROOT = Path(__file__).resolve().parents[2]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_at_the_interval_with_rate_eta_and_fields_then_a_final_line():
    out = io.StringIO()
    with Progress(label="work", total=40, unit="steps", every=0.05, stream=out) as bar:
        for i in range(40):
            time.sleep(0.005)
            bar.advance(loss=1.0 / (i + 1))
    lines = out.getvalue().splitlines()
    assert len(lines) >= 3  # at least one line while running, and the final one
    running = lines[0]
    assert re.match(r"work: \d+/40 steps \(\d+%\) [\d.,]+/s ETA [\d.]+s loss [\d.]+$", running), running
    assert re.match(r"work: 40/40 steps \(100%\) [\d.,]+/s done in [\d.]+s loss 0\.025$", lines[-1]), lines[-1]


def test_a_slow_step_still_gets_a_line_every_interval():
    out = io.StringIO()
    with Progress(label="slow", total=2, every=0.05, stream=out) as bar:
        bar.advance()
        time.sleep(0.4)  # one step far longer than the interval
        bar.advance()
    lines = out.getvalue().splitlines()
    assert sum(line.startswith("slow: 1/2 ") for line in lines) >= 3
    assert lines[-1].startswith("slow: 2/2 (100%)")


def test_callable_fields_are_read_only_when_a_line_is_drawn():
    calls = []

    def loss() -> float:
        calls.append(1)
        return 0.5

    out = io.StringIO()
    with Progress(label="fast", total=20_000, every=60, stream=out) as bar:
        for _ in range(20_000):
            bar.advance(loss=loss)
    assert len(calls) <= 3  # not once a step (a GPU loss would sync the device every step)
    assert out.getvalue().splitlines()[-1].endswith("loss 0.5")


def test_unknown_total_resumed_count_and_an_interrupted_job():
    out = io.StringIO()
    with pytest.raises(RuntimeError):
        with Progress(label="replay", done=100, unit="events", every=60, stream=out) as bar:
            bar.update(150)
            raise RuntimeError("sink down")
    assert re.match(r"replay: 150 events [\d.,]+/s stopped after [\d.]+s$", out.getvalue().strip())


def test_quiet_when_disabled_or_switched_off(monkeypatch):
    out = io.StringIO()
    with Progress(label="a", total=3, every=0.01, stream=out, enabled=False) as bar:
        bar.advance(3)
    monkeypatch.setenv("STREAMSYNTH_PROGRESS", "off")
    with Progress(label="b", total=3, every=0.01, stream=out) as bar:
        bar.advance(3)
    assert out.getvalue() == ""


def test_a_terminal_gets_a_rich_bar_not_plain_lines():
    out = _Terminal()
    with Progress(label="bar", total=10, every=0.01, stream=out) as bar:
        for _ in range(10):
            bar.advance(loss=0.1)
        time.sleep(0.05)
    text = out.getvalue()
    assert "\x1b[" in text  # drawn with terminal control codes
    assert "done in" not in text and "ETA" not in text


def test_advance_counts_a_batch_and_passes_it_through():
    out = io.StringIO()
    frame = pl.DataFrame({"x": range(7)})
    with Progress(label="sampling", total=14, every=60, stream=out) as bar:
        batches = [bar.advance(frame) for _ in range(2)]
    assert batches[0] is frame
    assert out.getvalue().startswith("sampling: 14/14 (100%)")


# -- the commands, in a real process whose stderr is a file ----------------------------------------
def _run(args: list[str], tmp_path: Path, every: str = "0.05") -> str:
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
           "STREAMSYNTH_PROGRESS_EVERY": every}
    env.pop("STREAMSYNTH_PROGRESS", None)
    err = tmp_path / "stderr.txt"
    with err.open("w") as handle:
        proc = subprocess.run([sys.executable, "-m", "streamsynth", *args], stdout=subprocess.DEVNULL,
                              stderr=handle, env=env, timeout=300, cwd=tmp_path)
    text = err.read_text()
    assert proc.returncode == 0, text
    return text


def test_sample_prints_plain_progress_lines(tmp_path):
    text = _run(["sample", "demo", "-o", str(tmp_path / "s.parquet"), "-n", "30000"], tmp_path)
    assert re.search(r"^sampling: 30,000/30,000 \(100%\) [\d.,]+/s done in", text, re.M), text


def test_a_paced_replay_prints_lines_while_it_runs(tmp_path):
    text = _run(["replay", "demo", "--to", f"file://{tmp_path}/out.jsonl", "-n", "200", "--rate", "400"], tmp_path)
    running = re.findall(r"^replay: (\d+)/200 events \(\d+%\) [\d.,]+/s ETA", text, re.M)
    assert len(running) >= 3, text  # half a second of pacing at a 0.05 s interval
    assert re.search(r"^replay: 200/200 events \(100%\) [\d.,]+/s done in", text, re.M), text


def test_evaluate_reports_the_sequence_scoring(tmp_path):
    rng = np.random.default_rng(0)
    n = 400
    frame = pl.DataFrame({
        "host": np.repeat(["a", "b"], n // 2),
        "ts": pl.datetime_range(pl.datetime(2024, 1, 1), pl.datetime(2024, 1, 1) + pl.duration(minutes=n - 1),
                                "1m", eager=True),
        "cpu": rng.normal(50, 5, n),
    })
    frame.write_parquet(tmp_path / "real.parquet")
    frame.with_columns(pl.col("cpu") + 1).write_parquet(tmp_path / "synth.parquet")
    text = _run(["evaluate", "real.parquet", "synth.parquet", "--window", "8", "--iterations", "40",
                 "--report", "r.html"], tmp_path)
    assert re.search(r"^evaluate sequences: 120/120 steps \(100%\) [\d.,]+/s done in .* score predictive$",
                     text, re.M), text
