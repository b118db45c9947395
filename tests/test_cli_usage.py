"""The command line's edges as a shell sees them, through a real subprocess: usage errors exit 2
with a usage line and no traceback, a closed stdout (``| head``) ends quietly, and every
``streamsynth ...`` command that a help text, hint or generated file prints really parses."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from streamsynth.cli import main


def run_cli(*args: str, cwd: Path | None = None, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streamsynth", *args], capture_output=True, text=True, cwd=cwd, timeout=timeout,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["sample", "demo"], "Missing option '--output'"),
        (["sample", "demo", "-n", "ten", "-o", "x.parquet"], "'-n'"),
        (["smaple", "demo"], "No such command 'smaple'"),
        (["stream", "demo", "--to", "-"], "No such option: --to"),
    ],
    ids=["missing -o", "-n ten", "mistyped command", "--to on stream"],
)
def test_usage_errors_exit_2_with_usage_and_no_traceback(args, message, tmp_path):
    done = run_cli(*args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert message in done.stderr
    assert "Usage:" in done.stderr and "--help" in done.stderr
    assert len(done.stderr.splitlines()) <= 6, done.stderr


@pytest.mark.parametrize("batch_size", ["1", "20000"], ids=["small batches", "batches over the pipe buffer"])
def test_a_closed_stdout_ends_the_stream_quietly(batch_size, tmp_path):
    """``streamsynth stream demo | head -c 10``: the reader leaves after a few bytes."""
    with subprocess.Popen(
        [sys.executable, "-m", "streamsynth", "stream", "demo", "--batch-size", batch_size],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
    ) as process:
        assert process.stdout.read(10).startswith(b'{"event_id')
        process.stdout.close()
        err = process.stderr.read().decode()
        code = process.wait(timeout=120)
    assert "Traceback" not in err and "Exception ignored" not in err, err
    assert code == 0, err
