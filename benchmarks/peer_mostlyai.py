"""Fit and sample mostlyai-engine's TabularARGN (sequential mode) for ``bench_fidelity.py --peers``.

Runs inside a throwaway virtual environment that has ``mostlyai-engine`` (not streamsynth):

    python -m venv /tmp/peer-venv && /tmp/peer-venv/bin/pip install torch==2.13.0 mostlyai-engine
    /tmp/peer-venv/bin/pip uninstall -y torchvision torchaudio  # PyPI's builds break `transformers`
    /tmp/peer-venv/bin/python benchmarks/peer_mostlyai.py fit WORKSPACE train.parquet ENTITY [TIME] [--minutes M]
    /tmp/peer-venv/bin/python benchmarks/peer_mostlyai.py sample WORKSPACE out.parquet N_ENTITIES

``fit`` trains on the events of ``train.parquet`` (sequences keyed by ENTITY; a one-column context
table of the entity ids) for at most M minutes; ``sample`` generates N_ENTITIES sequences into
``out.parquet``. Each prints one JSON line with its wall time.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def fit(workspace: Path, train: Path, entity: str, minutes: float) -> dict:
    import pandas as pd
    from mostlyai import engine

    started = time.perf_counter()
    events = pd.read_parquet(train)
    context = pd.DataFrame({entity: events[entity].unique()})
    engine.init_logging()
    engine.split(workspace_dir=workspace, tgt_data=events, ctx_data=context, tgt_context_key=entity,
                 ctx_primary_key=entity, model_type="TABULAR")
    engine.analyze(workspace_dir=workspace)
    engine.encode(workspace_dir=workspace)
    engine.train(workspace_dir=workspace, max_training_time=minutes)
    return {"fit_s": time.perf_counter() - started}


def sample(workspace: Path, out: Path, n_entities: int) -> dict:
    import pandas as pd
    from mostlyai import engine

    started = time.perf_counter()
    engine.generate(workspace_dir=workspace, sample_size=n_entities)
    frame = pd.read_parquet(workspace / "SyntheticData")
    frame.to_parquet(out)
    return {"sample_s": time.perf_counter() - started, "rows": len(frame)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("fit", "sample"))
    parser.add_argument("workspace", type=Path)
    parser.add_argument("path", type=Path, help="fit: the training events; sample: where to write")
    parser.add_argument("value", help="fit: the entity column; sample: how many entities")
    parser.add_argument("time", nargs="?", help="fit: the time column (unused: the engine orders by it itself)")
    parser.add_argument("--minutes", type=float, default=3.0, help="fit: training time limit")
    args = parser.parse_args()
    if args.step == "fit":
        result = fit(args.workspace, args.path, args.value, args.minutes)
    else:
        result = sample(args.workspace, args.path, int(args.value))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
