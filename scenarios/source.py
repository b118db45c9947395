"""Opening a scenario file as a stream: resolve its base, open it, and apply its events.

The caller passes ``open_base`` (``streamsynth.pipeline.open_source``) so this layer never
imports model code: it only sees the base stream, its column names and, for models that take
conditions, a callable that returns condition-generated events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
from streamsynth.scenarios.engine import inject
from streamsynth.scenarios.injectors import Context
from streamsynth.scenarios.pool import POOL_ROWS, Pool
from streamsynth.scenarios.spec import Scenario, load_scenario

import streamsynth
from streamsynth.contract import take
from streamsynth.errors import StreamsynthError

EXAMPLE_PREFIX = "example:"


@dataclass
class ScenarioStream:
    stream: Iterator[pl.DataFrame]
    time: str
    entity: str | None
    description: dict[str, Any]
    model: Any
    scenario: Scenario
    report: dict[str, Any] = field(default_factory=dict)


def resolve_base(source: str, scenario_path: str | Path | None) -> str:
    """``demo`` stays; ``example:NAME`` is a shipped rules schema; paths are relative to the file."""
    if source == "demo":
        return source
    if source.startswith(EXAMPLE_PREFIX):
        name = source[len(EXAMPLE_PREFIX):]
        examples = Path(streamsynth.__file__).parent / "rules" / "examples"
        path = examples / f"{name}.yaml"
        if not path.exists():
            known = sorted(p.stem for p in examples.glob("*.yaml")) if examples.exists() else []
            raise StreamsynthError(
                f"{scenario_path}: base.source: no example schema {name!r}",
                hint=f"examples are: {', '.join(known) or '(none installed)'}",
            )
        return str(path)
    path = Path(source).expanduser()
    if not path.is_absolute() and scenario_path is not None:
        beside = Path(scenario_path).parent / path
        if beside.exists() or not path.exists():
            path = beside
    if not path.exists():
        raise StreamsynthError(
            f"{scenario_path}: base.source: {source!r} does not exist (looked for {path})",
            hint="give 'demo', 'example:weblogs', a model directory, a schema file or a data file",
        )
    return str(path)


def open_scenario(
    path: str | Path | Scenario,
    open_base: Callable[..., Any],
    *,
    seed: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    n_entities: int | None = None,
    n_events: int | None = None,
    batch_size: int | None = None,
    shard: tuple[int, int] | None = None,
) -> ScenarioStream:
    """The scenario's labelled stream. Keyword arguments override the file's base settings."""
    scenario = path if isinstance(path, Scenario) else load_scenario(path)
    base = scenario.base
    seed = scenario.seed if seed is None else seed
    if seed != scenario.seed:
        scenario = scenario.model_copy(update={"seed": seed})
    start = start or base.start
    if end is None and base.duration is not None and start is not None:
        end = start + base.duration
    source = resolve_base(base.source, scenario.path)
    args = dict(
        seed=base.seed if base.seed is not None else seed,
        n_entities=n_entities or base.entities,
        batch_size=batch_size or base.batch_size,
    )
    n_events = n_events or base.events
    src = open_base(source, start=start, end=end, n_events=n_events, shard=shard, **args)
    model, time = src.model, src.time
    anchor = start or _description_start(src.description)

    def window(lo: datetime, hi: datetime, part: tuple[int, int] | None) -> Iterator[pl.DataFrame]:
        """The base from ``lo``: the model sampled from there, or the data file read up to ``hi``."""
        if model is not None:  # batches of about a pool: a span costs little more than its rows
            return model.stream(start=lo, shard=part, **dict(args, batch_size=min(args["batch_size"], POOL_ROWS)))
        return open_base(source, end=hi, shard=part, **args).stream

    ctx = Context(
        time=time,
        entity=src.entity,
        schema=getattr(model, "schema", None),
        conditional=_conditional(model, n_entities or base.entities),
        pool=Pool(window, time, src.entity, shard),
        source=scenario.path or scenario.name,
    )
    if shard is not None and shard[1] > 1 and scenario.events:
        # Describe the base (and anchor a data file) from the unsharded stream's first batch, as
        # an unsharded run does, so that every shard binds its events the same way.
        if model is None:
            whole = open_base(source, start=start, end=end, n_events=n_events, shard=None, **args).stream
        else:
            whole = model.stream(start=start, **args)
            whole = _until(whole, time, end, timedelta(0)) if end is not None else whole
            whole = take(whole, n_events) if n_events is not None else whole
        ctx.first = _first(_bounded(whole, time, anchor, end, base.duration))
        if anchor is None and ctx.first is not None:
            anchor = ctx.first[time][0]
    base_stream = _bounded(src.stream, time, anchor, end, base.duration)
    if n_events is None:  # a base cut by an event count ends where it ends
        ctx.end, ctx.duration = end, base.duration
    report: dict[str, Any] = {
        "name": scenario.name,
        "file": scenario.path,
        "description": scenario.description,
        "seed": seed,
        "output": scenario.output.model_dump(mode="json", exclude_none=True) if scenario.output else None,
        "events": [],
    }
    stream = inject(scenario, base_stream, ctx, anchor=anchor, report=report)
    description = dict(src.description)
    description["scenario"] = report
    return ScenarioStream(stream, src.time, src.entity, description, model, scenario, report)


def _bounded(
    stream: Iterator[pl.DataFrame], time: str, anchor: datetime | None, end: datetime | None, duration: Any
) -> Iterator[pl.DataFrame]:
    """The base as the engine reads it: cut at the scenario's duration when no end was given."""
    return _until(stream, time, anchor, duration) if end is None and duration is not None else stream


def _first(stream: Iterator[pl.DataFrame]) -> pl.DataFrame | None:
    """The first non-empty batch of ``stream`` (which is then closed)."""
    try:
        return next((batch for batch in stream if batch.height), None)
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()


def _until(
    stream: Iterator[pl.DataFrame], time: str, anchor: datetime | None, duration: Any
) -> Iterator[pl.DataFrame]:
    """Events before ``anchor + duration``; the anchor defaults to the first event's time."""
    end = None if anchor is None else anchor + duration
    for batch in stream:
        if batch.height == 0:
            continue
        if end is None:
            end = batch[time][0] + duration
        if batch[time][-1] < end:
            yield batch
            continue
        head = batch.filter(pl.col(time) < end)
        if head.height:
            yield head
        close = getattr(stream, "close", None)
        if close is not None:
            close()
        return


def _description_start(description: dict[str, Any]) -> datetime | None:
    text = description.get("start")
    return datetime.fromisoformat(text) if isinstance(text, str) else None


def _conditional(model: Any, n_entities: int | None) -> Callable[..., pl.DataFrame] | None:
    """Condition-generated events from a model that takes conditions (``None`` otherwise)."""
    if model is None or not getattr(model, "supports_conditions", False):
        return None
    known = {c.name for c in model.schema.data_columns}

    def conditional(conditions: dict[str, Any], n_events: int, start: datetime, seed: int) -> pl.DataFrame:
        usable = {k: v for k, v in conditions.items() if k in known}
        if not usable:
            return pl.DataFrame()
        # A small population is enough: entity columns come from the victims, and per-entity
        # state costs time in proportion to the population.
        small = max(16, min(n_events, n_entities or n_events, 1024))
        return model.sample(
            n_events=n_events, start=start, seed=seed, conditions=usable, n_entities=small,
            batch_size=max(n_events, 16),
        )

    return conditional
