"""The manifest written beside every output: what made it, with which seed, and what it holds.

A :class:`ManifestCounter` watches batches go by (counts per label, anomalies, time range);
:func:`write_manifest` puts the record as JSON next to the output file.
"""

from __future__ import annotations

import json
import platform
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl

from streamsynth import __version__
from streamsynth.contract import IS_ANOMALY, LABEL
from streamsynth.outputs import Staged, write_text


@dataclass
class ManifestCounter:
    """Counts per label, anomalies and the time range of the batches it has seen."""

    time: str | None
    events: int = 0
    anomalies: int = 0
    labels: Counter = field(default_factory=Counter)
    first_time: datetime | None = None
    last_time: datetime | None = None

    def add(self, batch: pl.DataFrame) -> pl.DataFrame:
        if batch.height == 0:
            return batch
        self.events += batch.height
        if LABEL in batch.columns:
            for label, count in batch[LABEL].value_counts().iter_rows():
                self.labels[label] += count
        if IS_ANOMALY in batch.columns:
            self.anomalies += int(batch[IS_ANOMALY].sum())
        if self.time and self.time in batch.columns:
            lo, hi = batch[self.time].min(), batch[self.time].max()
            self.first_time = lo if self.first_time is None else min(self.first_time, lo)
            self.last_time = hi if self.last_time is None else max(self.last_time, hi)
        return batch

    def absorb(self, other: ManifestCounter) -> ManifestCounter:
        """Add another counter's counts (a shard's, counted in its own process) to these."""
        self.events += other.events
        self.anomalies += other.anomalies
        self.labels.update(other.labels)
        firsts = [t for t in (self.first_time, other.first_time) if t is not None]
        lasts = [t for t in (self.last_time, other.last_time) if t is not None]
        self.first_time = min(firsts) if firsts else None
        self.last_time = max(lasts) if lasts else None
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "events": self.events,
            "anomalies": self.anomalies,
            "labels": dict(sorted(self.labels.items())),
            "first_time": self.first_time.isoformat() if self.first_time else None,
            "last_time": self.last_time.isoformat() if self.last_time else None,
        }


def versions() -> dict[str, str]:
    """Versions of streamsynth and the libraries that shape its output."""
    import numpy
    import scipy

    out = {
        "streamsynth": __version__,
        "python": platform.python_version(),
        "polars": pl.__version__,
        "numpy": numpy.__version__,
        "scipy": scipy.__version__,
    }
    try:
        import faker

        out["faker"] = faker.VERSION
    except ImportError:  # pragma: no cover - faker is a dependency
        pass
    import sys

    if "torch" in sys.modules:
        out["torch"] = sys.modules["torch"].__version__
    return out


def manifest_path(output: str | Path) -> Path:
    """Where the manifest of ``output`` lives: ``out.parquet`` -> ``out.parquet.manifest.json``."""
    output = Path(output)
    return output.with_name(output.name + ".manifest.json")


def build_manifest(
    *,
    counter: ManifestCounter,
    output: str | Path | None,
    model: dict[str, Any] | None = None,
    seed: int | None = None,
    scenario: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    record: dict[str, Any] = {
        "created_at": datetime.now(UTC).isoformat(),
        "output": str(output) if output is not None else None,
        "seed": seed,
        "model": model,
        # the spent DP budget of the model that made the output (None: trained without DP)
        "privacy": (model or {}).get("privacy"),
        "scenario": scenario,
        "versions": versions(),
        "counts": counter.to_dict(),
    }
    if extra:
        record.update(extra)
    return record


def write_manifest(record: dict[str, Any], output: str | Path, stage: Staged | None = None) -> Path:
    """Write ``record`` beside ``output`` and return the manifest's path. With ``stage``, it is
    written under a temporary name and put in place with the output when the stage commits."""
    path = manifest_path(output)
    text = json.dumps(record, indent=2, default=str) + "\n"
    if stage is None:
        return write_text(path, text)
    stage.file(path).write_text(text)
    return path
