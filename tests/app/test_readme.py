"""The README's Use section, run as written, so the README and the tool cannot drift apart.

Its shell commands run in order in a scratch folder holding the files they name (``data.csv``,
``metrics.csv``, ``payments.parquet``: small simulated payments and host metrics); each must exit
0 without a traceback. The lines that train a deep model (transformer, TimeGAN, torchrun, and
``evaluate``, whose discriminative score trains a GRU) run in the slow pass, with the training
shortened by an appended ``--option``, so that pass stays minutes, not hours.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
USE = README[README.index("## Use"):README.index("\n## ", README.index("## Use") + 1)]

#: training shortened in the test; the command is otherwise the README's
SHORTER = {"--model transformer": " --option epochs=1", "--model timegan": " --option iterations=30",
           "evaluate ": " --iterations 100"}


def use_commands() -> list[str]:
    """The shell commands of the Use section: continuation lines joined, comments dropped."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", USE, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            command = line.split("  #")[0].split(" # ")[0].strip()
            if command:
                commands.append(command)
    return commands


def _is_deep(command: str) -> bool:
    return any(key in command for key in ("--model transformer", "--model timegan", "torchrun", "evaluate ",
                                          " --ray"))  # --ray: a Ray runtime's start-up, and the ray extra


def _shell(command: str) -> str:
    """The README's command with this interpreter's ``streamsynth`` (and ``torchrun``)."""
    python = f"{sys.executable} -m streamsynth"
    for key, extra in SHORTER.items():
        if key in command:
            command += extra
    command = command.replace("torchrun --nproc_per_node 4", "torchrun --standalone --nproc_per_node 2")
    return re.sub(r"(^|\| )streamsynth ", lambda m: f"{m.group(1)}{python} ", command)


def _run(command: str, cwd: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
           os.environ.get("PYTHONPATH")]))}
    done = subprocess.run(_shell(command), shell=True, cwd=cwd, capture_output=True, text=True, env=env,
                          timeout=900)
    assert done.returncode == 0, f"README: `{command}` exited {done.returncode}:\n{done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr, f"README: `{command}`:\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def folder(tmp_path_factory, payments_small) -> Path:
    """A scratch folder with the files the README names, after its fast commands ran there."""
    from streamsynth.datasets import payments

    out = tmp_path_factory.mktemp("readme")
    payments_small.write_csv(out / "data.csv")
    payments(n_customers=100, n_days=5, seed=2).write_parquet(out / "payments.parquet")
    _metrics().write_csv(out / "metrics.csv")
    (out / "scenarios").symlink_to(ROOT / "scenarios")
    for command in use_commands():
        if not _is_deep(command):
            _run(command, out)
    return out


def _metrics() -> pl.DataFrame:
    """Four hosts' CPU and latency every minute for six hours: TimeGAN's kind of data."""
    rng = np.random.default_rng(5)
    start = datetime(2024, 5, 1, tzinfo=UTC)
    rows = 360
    frames = []
    for host in range(4):
        load = 0.4 + 0.3 * np.sin(np.arange(rows) / rows * 2 * np.pi) + rng.normal(0, 0.05, rows)
        frames.append(pl.DataFrame({
            "ts": [start + timedelta(minutes=i) for i in range(rows)],
            "host": f"web-{host}",
            "cpu": np.clip(load, 0, 1),
            "latency_ms": 20 + 80 * np.clip(load, 0, 1) + rng.gamma(2.0, 3.0, rows),
        }))
    return pl.concat(frames)


def test_the_use_section_has_the_pipeline():
    commands = use_commands()
    assert any(c.startswith("streamsynth fit data.csv --model baseline") for c in commands)
    assert any(c.startswith("streamsynth evaluate ") for c in commands)
    assert sum(_is_deep(c) for c in commands) >= 4 and len(commands) >= 15


def test_the_fast_commands_run_as_written(folder):
    """(they ran when the fixture laid the folder out); what they wrote is there."""
    for name in ("model/config.json", "synthetic.parquet", "synthetic.parquet.manifest.json", "fraud.parquet",
                 "part-3.parquet", "schema.yaml", "rules.parquet", "burst.parquet", "balanced.parquet"):
        assert (folder / name).exists(), name
    real = pl.read_csv(folder / "data.csv")
    synthetic = pl.read_parquet(folder / "synthetic.parquet")
    # the pipeline's sample covers the training span: about as many events as the real data
    assert 0.8 < synthetic.height / real.height < 1.25
    assert pl.read_parquet(folder / "fraud.parquet").height == 5000


def test_the_python_example_runs(folder, monkeypatch):
    code = re.search(r"```python\n(.*?)```", USE, flags=re.S).group(1)
    code = code.replace("\n    ...", "\n    break")  # the README's loop bodies; the first stream is endless
    monkeypatch.chdir(folder)
    exec(compile(code, "README.md (Python)", "exec"), {})


@pytest.mark.slow
@pytest.mark.parametrize("command", [c for c in use_commands() if _is_deep(c)])
def test_the_deep_model_commands_run(command, folder):
    if command.startswith("torchrun") and shutil.which("torchrun") is None:
        pytest.skip("torchrun is not installed")
    if " --ray" in command:
        pytest.importorskip("ray.data", reason="the ray extra is not installed")
    _run(command, folder)
