"""Opening a scenario file as a stream: resolve its base, open it, and apply its events.

The caller passes ``open_base`` (``streamsynth.pipeline.open_source``) so this layer never
imports model code: it only sees the base stream, its column names and, for models that take
conditions, a callable that returns condition-generated events.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import polars as pl

import streamsynth
from scenarios.engine import inject
from scenarios.injectors import Context
from scenarios.spec import Scenario, load_scenario
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
    src = open_base(
        resolve_base(base.source, scenario.path),
        seed=base.seed if base.seed is not None else seed,
        start=start,
        end=end,
        n_entities=n_entities or base.entities,
        n_events=n_events or base.events,
        batch_size=batch_size or base.batch_size,
        shard=shard,
    )
    model = src.model
    anchor = start or _description_start(src.description)
    base_stream = src.stream
    if end is None and base.duration is not None:
        base_stream = _until(base_stream, src.time, anchor, base.duration)
    ctx = Context(
        time=src.time,
        entity=src.entity,
        schema=getattr(model, "schema", None),
        conditional=_conditional(model, n_entities or base.entities),
        generate=shard is None or shard[0] == 0,
        source=scenario.path or scenario.name,
    )
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
