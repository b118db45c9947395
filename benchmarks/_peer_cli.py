"""The command line every peer adapter (``peer_mostlyai.py``, ``peer_sdv.py``) speaks to
``bench_fidelity.py``: ``fit WORKSPACE train.parquet ENTITY [TIME] [budget]`` and ``sample
WORKSPACE out.parquet N_ENTITIES``, each printing one JSON line. It imports nothing but the
standard library: the adapters run in the peers' own virtual environments, without streamsynth."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any


def run(doc: str, fit: Callable[..., dict], sample: Callable[[Path, Path, int], dict],
        budget: tuple[str, type, Any, str]) -> None:
    """Parse the command line and run ``fit(workspace, train, entity, time, budget)`` or
    ``sample(workspace, out, n_entities)``; ``budget`` is the training budget's option (name,
    type, default, help)."""
    name, kind, default, text = budget
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("step", choices=("fit", "sample"))
    parser.add_argument("workspace", type=Path)
    parser.add_argument("path", type=Path, help="fit: the training events; sample: where to write")
    parser.add_argument("value", help="fit: the entity column; sample: how many entities")
    parser.add_argument("time", nargs="?", help="fit: the time column")
    parser.add_argument(f"--{name}", dest="budget", type=kind, default=default, help=f"fit: {text}")
    args = parser.parse_args()
    if args.step == "fit":
        result = fit(args.workspace, args.path, args.value, args.time, args.budget)
    else:
        result = sample(args.workspace, args.path, int(args.value))
    print(json.dumps(result))
