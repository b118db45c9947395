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

import time
from pathlib import Path

from _peer_cli import run


def fit(workspace: Path, train: Path, entity: str, time_column: str | None, minutes: float) -> dict:
    """Train for at most ``minutes``; ``time_column`` is unused (the engine finds the time column)."""
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
    run(__doc__, fit, sample, ("minutes", float, 3.0, "training time limit in minutes"))


if __name__ == "__main__":
    main()
