"""Rebalancing a training set: all real rows plus marked synthetic rows, to an asked class ratio.

Synthetic rows of the short class come from a model that takes conditions (a saved one, or the
baseline fitted on the data in seconds), sampled conditioned on that class. Real rows are never
dropped, so no real minority row is lost; each synthetic row has ``is_synthetic`` true.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from streamsynth.errors import StreamsynthError
from streamsynth.manifest import ManifestCounter, build_manifest, write_manifest
from streamsynth.models import load_model
from streamsynth.models.baseline import BaselineSynthesizer
from streamsynth.outputs import Staged

SYNTHETIC = "is_synthetic"
_MAX_ROUNDS = 8


@dataclass
class Rebalanced:
    frame: pl.DataFrame
    summary: dict[str, Any]
    model: dict[str, Any]

    def write_manifest(self, output: str | Path, stage: Staged | None = None) -> Path:

        counter = ManifestCounter(time=None)
        counter.add(self.frame)
        record = build_manifest(
            counter=counter, output=output, model=self.model, seed=self.summary["seed"],
            extra={"rebalance": self.summary},
        )
        return write_manifest(record, output, stage)


def rebalance(
    frame: pl.DataFrame,
    *,
    label: str,
    ratio: float,
    model: Any = None,
    minority: Any = None,
    seed: int = 0,
    source: str = "data",
) -> Rebalanced:
    """Real rows of ``frame`` plus synthetic rows so that ``minority`` makes up ``ratio`` of the
    result (to the nearest row). ``model`` is a model directory, a fitted synthesizer, or None
    (fit the baseline on ``frame``)."""
    if label not in frame.columns:
        raise StreamsynthError(
            f"{source} has no column {label!r}", hint=f"columns are: {', '.join(frame.columns)}"
        )
    if not 0 < ratio < 1:
        raise StreamsynthError(f"--ratio {ratio} is not a share", hint="give a number between 0 and 1, e.g. 0.2")
    if SYNTHETIC in frame.columns:
        raise StreamsynthError(f"{source} already has a {SYNTHETIC!r} column", hint="rebalance the real rows only")
    if frame[label].null_count():
        raise StreamsynthError(f"{source}: column {label!r} has {frame[label].null_count()} empty values",
                               hint="drop or fill the rows without a class first")
    counts = dict(frame[label].value_counts().iter_rows())
    if minority is not None:
        value = _parse(minority, frame[label].dtype)
    else:  # the rarest class; ties broken by name so the choice is stable
        value = min(counts, key=lambda k: (counts[k], str(k)))
    if value not in counts:
        raise StreamsynthError(
            f"{source}: no row has {label}={value!r}, so there is nothing to learn that class from",
            hint=f"values are: {', '.join(map(str, counts))}",
        )
    n_total, n_min = frame.height, counts[value]
    if n_min / n_total <= ratio:
        target, wanted = value, round((ratio * n_total - n_min) / (1 - ratio))
    else:  # already above the ratio: add rows of the most common other class instead
        target = max((k for k in counts if k != value), key=lambda k: (counts[k], str(k)), default=None)
        if target is None:
            raise StreamsynthError(f"{source}: {label} has one class only", hint="rebalancing needs two classes")
        wanted = round(n_min / ratio - n_total)
    synth_model = _model(model, frame, seed)
    if not getattr(synth_model, "supports_conditions", False):
        raise StreamsynthError(
            f"the {synth_model.name} model does not take conditions, so it cannot make rows of one class",
            hint="use the baseline (leave out --model) or a conditional model",
        )
    synthetic = _sample_class(synth_model, label, target, wanted, seed)
    real = frame.with_columns(pl.lit(False).alias(SYNTHETIC))
    synthetic = _align(synthetic, frame).with_columns(pl.lit(True).alias(SYNTHETIC))
    out = pl.concat([real, synthetic], how="vertical")
    achieved = float((out[label] == value).sum()) / out.height
    summary = {
        "source": source,
        "label": label,
        "minority": value,
        "asked_ratio": ratio,
        "achieved_ratio": achieved,
        "real_rows": n_total,
        "real_minority_rows": n_min,
        "synthetic_rows": synthetic.height,
        "synthetic_class": target,
        "seed": seed,
        "counts": {str(k): int(v) for k, v in out[label].value_counts().iter_rows()},
    }
    described = {"model": synth_model.name, "path": str(model) if isinstance(model, str | Path) else None,
                 "fitted_on": source if model is None else None}
    return Rebalanced(out, summary, described)


def _model(model: Any, frame: pl.DataFrame, seed: int) -> Any:
    if model is None:

        return BaselineSynthesizer(seed=seed).fit(frame)
    if isinstance(model, str | Path):

        return load_model(Path(model))
    return model


def _sample_class(model: Any, label: str, value: Any, wanted: int, seed: int) -> pl.DataFrame:
    """Exactly ``wanted`` synthetic rows with ``label == value``."""
    if wanted <= 0:
        return model.sample(n_events=1, seed=seed).clear()
    parts, have = [], 0
    for round_no in range(_MAX_ROUNDS):
        batch = model.sample(
            n_events=max(wanted - have, 64) + (wanted - have) // 10, seed=seed + round_no * 7919,
            conditions={label: value},
        )
        batch = batch.filter(pl.col(label) == value)
        parts.append(batch)
        have += batch.height
        if have >= wanted:
            break
    if have < wanted:
        raise StreamsynthError(
            f"the model made only {have} of {wanted} rows with {label}={value!r}",
            hint="the model does not honour this condition; try another model",
        )
    return pl.concat(parts, how="vertical").head(wanted)


def _align(synthetic: pl.DataFrame, real: pl.DataFrame) -> pl.DataFrame:
    """The real table's columns and types (missing ones null), dropping generator-only columns."""
    exprs = []
    for name, dtype in real.schema.items():
        if name in synthetic.columns:
            exprs.append(pl.col(name).cast(dtype, strict=False))
        else:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
    return synthetic.select(exprs)


def _parse(text: Any, dtype: pl.DataType) -> Any:
    if not isinstance(text, str):
        return text
    if dtype == pl.Boolean:
        lowered = text.strip().lower()
        if lowered in ("true", "1", "yes"):
            return True
        if lowered in ("false", "0", "no"):
            return False
        raise StreamsynthError(f"--minority {text!r} is not a boolean", hint="use true or false")
    try:
        if dtype.is_integer():
            return int(text)
        if dtype.is_float():
            return float(text)
    except ValueError:
        raise StreamsynthError(f"--minority {text!r} is not a {dtype}") from None
    return text
