"""Fit and sample SDV's PARSynthesizer (sequential) for ``bench_fidelity.py --peers``.

Runs inside a throwaway virtual environment that has ``sdv`` (not streamsynth); torch first, so
pip takes the CPU wheel:

    python -m venv /tmp/streamsynth-peer-sdv && /tmp/streamsynth-peer-sdv/bin/pip install torch==2.13.0
    /tmp/streamsynth-peer-sdv/bin/pip install sdv pyarrow
    .../python benchmarks/peer_sdv.py fit WORKSPACE train.parquet ENTITY TIME [--epochs E]
    .../python benchmarks/peer_sdv.py sample WORKSPACE out.parquet N_ENTITIES

``fit`` trains PAR on the events of ``train.parquet`` (sequences keyed by ENTITY, ordered by TIME)
for E epochs and saves it in WORKSPACE; ``sample`` generates N_ENTITIES sequences into
``out.parquet``. Each prints one JSON line with its wall time. Timestamps go in without their
time zone (SDV reads naive datetimes) and come back as UTC.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from _peer_cli import run

TABLE = "events"


def fit(workspace: Path, train: Path, entity: str, time_column: str, epochs: int) -> dict:
    import pandas as pd
    from sdv.metadata import Metadata
    from sdv.sequential import PARSynthesizer

    started = time.perf_counter()
    events = pd.read_parquet(train)
    # Nanoseconds: SDV 2 turns datetimes into numbers and back as nanoseconds, so microsecond
    # columns (what Parquet from polars holds) came back in January 1970.
    events[time_column] = pd.to_datetime(events[time_column], utc=True).dt.tz_localize(None).astype("datetime64[ns]")
    metadata = Metadata.detect_from_dataframes({TABLE: events})
    metadata.update_column(entity, sdtype="id", table_name=TABLE)
    metadata.set_sequence_key(entity, table_name=TABLE)
    metadata.set_sequence_index(time_column, table_name=TABLE)
    par = PARSynthesizer(metadata, epochs=epochs, verbose=False)
    par.fit({TABLE: events})
    workspace.mkdir(parents=True, exist_ok=True)
    par.save(str(workspace / "par.pkl"))
    (workspace / "time.json").write_text(json.dumps({"time": time_column}))
    return {"fit_s": time.perf_counter() - started}


def sample(workspace: Path, out: Path, n_entities: int) -> dict:
    import pandas as pd
    from sdv.utils import load_synthesizer

    started = time.perf_counter()
    par = load_synthesizer(str(workspace / "par.pkl"))
    frame = par.sample_sequences(n_entities)  # SDV 2: multi-table shaped, {table: frame}
    frame = next(iter(frame.values())) if isinstance(frame, dict) else frame
    time_column = json.loads((workspace / "time.json").read_text())["time"]
    frame[time_column] = pd.to_datetime(frame[time_column]).dt.tz_localize("UTC")
    frame.to_parquet(out)
    return {"sample_s": time.perf_counter() - started, "rows": len(frame)}


def main() -> None:
    run(__doc__, fit, sample, ("epochs", int, 3, "training epochs"))


if __name__ == "__main__":
    main()
