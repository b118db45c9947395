"""A scenario over its base: which base to open (:func:`plan_base`), and the labelled stream once
the app layer has opened it (:func:`open_scenario`).

This layer never imports model code and never calls back into the app layer: it sees the opened
base (its stream, column names and, for a model, the model object to sample windows from) and
reads a recorded base again through :func:`streamsynth.sources.open_recorded`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl
from streamsynth.scenarios.engine import inject
from streamsynth.scenarios.injectors import Context
from streamsynth.scenarios.pool import POOL_ROWS, Pool
from streamsynth.scenarios.spec import Scenario, load_scenario

import streamsynth
from streamsynth.contract import take, until
from streamsynth.errors import StreamsynthError
from streamsynth.sources import Source, open_recorded

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


@dataclass
class BaseRequest:
    """What a scenario asks of its base: the resolved source and the settings to open it with
    (the scenario file's, overridden by the caller's)."""

    source: str
    seed: int
    start: datetime | None
    end: datetime | None
    n_entities: int | None
    n_events: int | None
    batch_size: int
    shard: tuple[int, int] | None

    def open_args(self) -> dict[str, Any]:
        """Keyword arguments for the app layer's source opener."""
        return dict(seed=self.seed, start=self.start, end=self.end, n_entities=self.n_entities,
                    n_events=self.n_events, batch_size=self.batch_size, shard=self.shard)


def plan_base(
    path: str | Path | Scenario,
    *,
    seed: int | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    n_entities: int | None = None,
    n_events: int | None = None,
    batch_size: int | None = None,
    shard: tuple[int, int] | None = None,
) -> tuple[Scenario, BaseRequest]:
    """The scenario (with the caller's seed) and what to open as its base. Keyword arguments
    override the file's base settings."""
    scenario = path if isinstance(path, Scenario) else load_scenario(path)
    base = scenario.base
    seed = scenario.seed if seed is None else seed
    if seed != scenario.seed:
        scenario = scenario.model_copy(update={"seed": seed})
    start = start or base.start
    if end is None and base.duration is not None and start is not None:
        end = start + base.duration
    request = BaseRequest(
        source=resolve_base(base.source, scenario.path),
        seed=base.seed if base.seed is not None else seed,
        start=start,
        end=end,
        n_entities=n_entities or base.entities,
        n_events=n_events or base.events,
        batch_size=batch_size or base.batch_size,
        shard=shard,
    )
    return scenario, request


def open_scenario(scenario: Scenario, src: Source, request: BaseRequest) -> ScenarioStream:
    """The scenario's labelled stream over ``src``, its base opened as ``request`` says (see
    :func:`plan_base`; ``streamsynth.pipeline.open_scenario_run`` does both)."""
    base = scenario.base
    model, time = src.model, src.time
    start, end, n_events, shard = request.start, request.end, request.n_events, request.shard
    args = dict(seed=request.seed, n_entities=request.n_entities, batch_size=request.batch_size)
    anchor = start or _description_start(src.description)
    if model is None and src.path is None:
        raise StreamsynthError(
            f"{scenario.path}: base.source: {request.source!r} is not a model, schema or data file",
            hint="a scenario's base is 'demo', 'example:NAME', a model directory, a schema or a data file",
        )

    def window(lo: datetime, hi: datetime, part: tuple[int, int] | None) -> Iterator[pl.DataFrame]:
        """The base from ``lo``: the model sampled from there, or the data file read up to ``hi``."""
        if model is not None:  # batches of about a pool: a span costs little more than its rows
            return model.stream(start=lo, shard=part, **dict(args, batch_size=min(args["batch_size"], POOL_ROWS)))
        return open_recorded(src.path, end=hi, shard=part, batch_size=request.batch_size).stream

    ctx = Context(
        time=time,
        entity=src.entity,
        schema=getattr(model, "schema", None),
        conditional=_conditional(model, request.n_entities),
        pool=Pool(window, time, src.entity, shard),
        source=scenario.path or scenario.name,
    )
    if shard is not None and shard[1] > 1 and scenario.events:
        # Describe the base (and anchor a data file) from the unsharded stream's first batch, as
        # an unsharded run does, so that every shard binds its events the same way.
        if model is None:
            whole = open_recorded(src.path, end=end, n_events=n_events, batch_size=request.batch_size).stream
        else:
            whole = model.stream(start=start, **args)
            whole = until(whole, time, end) if end is not None else whole
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
        "seed": scenario.seed,
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
    if end is not None or duration is None:
        return stream
    return until(stream, time, None if anchor is None else anchor + duration, after=duration)


def _first(stream: Iterator[pl.DataFrame]) -> pl.DataFrame | None:
    """The first non-empty batch of ``stream`` (which is then closed)."""
    try:
        return next((batch for batch in stream if batch.height), None)
    finally:
        close = getattr(stream, "close", None)
        if close is not None:
            close()


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
