"""Turning a SOURCE into a contract stream: a model directory, a data file, or the demo.

This is the one place where command-line sources are resolved, so ``sample``, ``stream`` and
``replay`` accept the same things. Sources are deterministic: the same arguments give the
same events, which is what lets a replay resume and ``verify`` regenerate what was sent.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

from streamsynth import io
from streamsynth.contract import (
    EVENT_ID,
    LABEL,
    check_count,
    order_columns,
    rebatch,
    row_event_ids,
    take,
    with_label_columns,
)
from streamsynth.errors import StreamsynthError
from streamsynth.models import load_model
from streamsynth.models.base import (
    CONFIG_FILE,
    ENCODERS_FILE,
    WEIGHTS_FILE,
    Synthesizer,
    label_expressions,
    until,
)
from streamsynth.schema import Schema

DEMO = "demo"
MODEL_FILES = (CONFIG_FILE, WEIGHTS_FILE, ENCODERS_FILE)


@dataclass
class Source:
    """A resolved source: its stream and what the manifest should say about it."""

    stream: Iterator[pl.DataFrame]
    time: str
    entity: str | None
    description: dict[str, Any] = field(default_factory=dict)
    model: Synthesizer | None = None


def open_source(
    source: str | Path,
    *,
    seed: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    n_entities: int | None = None,
    n_events: int | None = None,
    batch_size: int = 10_000,
    shard: tuple[int, int] | None = None,
    conditions: dict[str, Any] | None = None,
    span_default: bool = False,
) -> Source:
    """Resolve ``source`` (model dir, rules/schema YAML, data file or dir, or ``"demo"``).

    ``span_default``: with neither ``n_events`` nor ``end``, a model's stream ends after its
    training span (as ``Synthesizer.sample``) instead of running forever.

    Every source's batches have exactly ``batch_size`` events, except the last of a finite one.
    """
    n_events = check_count(n_events, "--events (-n)")
    n_entities = check_count(n_entities, "--entities")
    batch_size = check_count(batch_size, "--batch-size")
    text = str(source)
    path = Path(text)
    to_span = span_default and n_events is None and end is None
    if path.suffix.lower() in (".yaml", ".yml") and _is_scenario(path):
        from streamsynth.scenarios.source import open_scenario

        run = open_scenario(path, open_source, seed=seed, start=start, end=end, n_entities=n_entities,
                            n_events=n_events, batch_size=batch_size, shard=shard)
        # injectors drop, add and duplicate rows, so the batches are re-cut to size
        src = Source(rebatch(run.stream, batch_size), run.time, run.entity, run.description, run.model)
        if to_span and src.model is not None:
            end = src.model.default_end(start)
            src.stream = until(src.stream, src.time, end)
            src.description["end"] = end.isoformat()
        return src
    if text == DEMO:
        model = demo_model(seed=0 if seed is None else seed)
        description = {"kind": "demo", "model": model.name}
    elif path.is_dir() and (path / CONFIG_FILE).exists():
        model = load_model(path)
        description = {"kind": "model", "path": str(path), "model": model.name}
    elif path.is_dir() and _looks_like_model(path):
        held = sorted(p.name for p in path.iterdir())
        raise StreamsynthError(
            f"{path} is not a model directory: it has no {CONFIG_FILE} "
            + (f"(it holds {', '.join(held)})" if held else "(it is empty)"),
            hint="a saved model is config.json + weights.safetensors + encoders.json; "
            "copy the whole directory, or train again with `streamsynth fit DATA -o DIR`",
        )
    elif path.suffix.lower() in (".yaml", ".yml"):
        model = _model_from_yaml(path)
        description = {"kind": "rules", "path": str(path), "model": model.name}
    else:
        if conditions:
            raise StreamsynthError("conditions apply to models, not to recorded data", hint="drop --condition")
        stream, time, entity = _file_stream(path, batch_size=batch_size, shard=shard)
        if end is not None:
            stream = until(stream, time, end)
        if n_events is not None:
            stream = take(stream, n_events)
        return Source(stream, time, entity, {"kind": "file", "path": str(path)})

    if to_span:
        end = model.default_end(start)
        description["end"] = end.isoformat()
    stream = model.stream(
        start=start, n_entities=n_entities, seed=seed, batch_size=batch_size,
        conditions=conditions, shard=shard, n_events=n_events, end=end,
    )
    description.update(
        seed=model.seed if seed is None else seed,
        n_entities=n_entities or model.fitted_entities,
        start=(start or model.default_start()).isoformat(),
        n_events=n_events,
        shard=f"{shard[0]}/{shard[1]}" if shard else None,
        conditions=conditions or None,
    )
    if model.metadata.get("privacy"):  # the DP budget the model spent travels into every manifest
        description["privacy"] = model.metadata["privacy"]
    return Source(stream, model.schema.time, model.schema.entity, description, model)


def _looks_like_model(path: Path) -> bool:
    """A directory with a model's other files (or nothing at all) but no config.json."""
    names = {p.name for p in path.iterdir()}
    return not names or bool(names & set(MODEL_FILES))


def demo_model(seed: int = 0, n_customers: int = 1000, n_days: int = 14) -> Synthesizer:
    """The embedded default: the baseline fitted on the simulated payments sample."""
    from streamsynth.datasets import payments
    from streamsynth.models.baseline import BaselineSynthesizer

    frame = payments(n_customers=n_customers, n_days=n_days, seed=seed)
    return BaselineSynthesizer(seed=seed).fit(frame)


def _is_scenario(path: Path) -> bool:
    """A scenario file (``base`` + ``events``), as opposed to a rule-based schema file."""
    from streamsynth.scenarios.spec import is_scenario_file

    return path.is_file() and is_scenario_file(path)


def _model_from_yaml(path: Path) -> Synthesizer:
    try:
        from streamsynth.models.rules import RuleSynthesizer
    except ImportError:  # pragma: no cover - rules mode ships with the package
        raise StreamsynthError(f"{path}: rule-based schema files are not supported by this build") from None
    return RuleSynthesizer.from_file(path)


def _file_stream(
    path: Path, *, batch_size: int, shard: tuple[int, int] | None
) -> tuple[Iterator[pl.DataFrame], str, str | None]:
    """A recorded file as a contract stream, sorted by time, with ids and labels filled in."""
    head = io.read(path) if path.is_file() and path.stat().st_size < 64 * 2**20 else None
    frame = head if head is not None else next(io.iter_batches(path, batch_size=50_000))
    schema = Schema.infer(frame)
    if schema.time is None:
        raise StreamsynthError(
            f"{path} has no event-time column to replay by",
            hint="name one with --time, or add a timestamp column",
        )
    namespace = path.stem

    def batches() -> Iterator[pl.DataFrame]:
        source = [frame] if head is not None else io.iter_batches(path, batch_size=batch_size)
        position = 0
        last = None
        for batch in source:
            batch = batch.sort(schema.time, maintain_order=True)
            if last is not None and batch.height and batch[schema.time][0] < last:
                raise StreamsynthError(
                    f"{path} is not sorted by {schema.time!r} (at row {position}); large files "
                    "are replayed in file order",
                    hint="sort the file by its time column first",
                )
            if batch.height:
                last = batch[schema.time][-1]
            if EVENT_ID not in batch.columns:
                batch = batch.with_columns(row_event_ids(namespace, position, batch.height))
            position += batch.height
            if LABEL not in batch.columns and schema.label:
                batch = batch.with_columns(label_expressions(batch.schema[schema.label], schema.label))
            batch = order_columns(with_label_columns(batch), schema.time, schema.entity)
            if shard is not None and schema.entity:
                members = _shard_members(batch[schema.entity], shard).to_list()  # a list: is_in is unambiguous
                batch = batch.filter(pl.col(schema.entity).is_in(members))
            yield batch

    # file batches and shard filtering leave batches of any size; the contract's are exact
    return rebatch(batches(), batch_size), schema.time, schema.entity


def _shard_members(entities: pl.Series, shard: tuple[int, int]) -> pl.Series:
    """The entity ids of shard K/N, by a hash of the id that is stable across runs and hosts."""
    from streamsynth.rng import _stable_int

    k, n = shard
    unique = entities.unique()
    return unique.filter(pl.Series([_stable_int(str(v)) % n == k for v in unique.to_list()]))
