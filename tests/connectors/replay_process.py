"""A ``streamsynth replay`` in a real subprocess, and waiting on its checkpoint: shared by the
signal and fault tests (imported as a sibling module: pytest puts this folder on sys.path)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path


def start(source: Path, to: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "streamsynth", "replay", str(source), "--to", to,
                             *extra], stderr=subprocess.PIPE, text=True)


def wait_for_position(checkpoint: Path, above: int = 0, timeout: float = 30.0) -> int:
    """The checkpoint's position once it passes ``above``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            position = json.loads(checkpoint.read_text())["position"]
        except (OSError, ValueError):
            position = -1
        if position > above:
            return position
        time.sleep(0.02)
    raise AssertionError(f"{checkpoint} never passed position {above}")
