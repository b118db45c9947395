"""The scenario file: a pydantic spec (base, timed events, output) and loading with clear errors.

Errors name the file, the key path (``events[2].params.multiplier``) and what was expected;
unknown keys are errors. Each event's ``params`` are checked against its injector's own model.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from streamsynth.scenarios.fields import Duration, Scalar, Time
from streamsynth.scenarios.injectors import INJECTORS

from streamsynth.errors import StreamsynthError
from streamsynth.yamlfile import read_yaml


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Base(Strict):
    """What the scenario injects into: a model directory, schema file, data file or ``demo``."""

    source: str = Field(description="'demo', 'example:NAME' (a shipped rules schema), or a path")
    entities: int | None = Field(None, gt=0, description="population size")
    start: Time | None = None
    duration: Duration | None = None
    events: int | None = Field(None, gt=0, description="stop after this many base events")
    seed: int | None = Field(None, description="seed of the base stream (default: the scenario's)")
    batch_size: int = Field(10_000, gt=0)

    @model_validator(mode="after")
    def _bounded(self) -> Base:
        if self.duration is None and self.events is None:
            raise ValueError("give the base a 'duration' (e.g. 2h) or an 'events' count")
        return self


class Targets(Strict):
    """Which rows an event acts on: equality filters and a share of the matching rows."""

    where: dict[str, Scalar | list[Scalar]] = Field(default_factory=dict)
    share: float | None = Field(None, gt=0, le=1)


class Event(Strict):
    kind: str
    at: Duration = Field(description="offset from the base start")
    duration: Duration
    label: str | None = None
    anomaly: bool = True
    targets: Targets = Field(default_factory=Targets)
    params: dict[str, Any] = Field(default_factory=dict)


class Output(Strict):
    """Where the delivery layer sends the result, and how fast (used by ``replay``)."""

    sink: str | None = None
    speed: float | None = Field(None, gt=0)
    rate: float | None = Field(None, gt=0)


class Scenario(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    seed: int = 0
    base: Base
    events: list[Event] = Field(min_length=1)
    output: Output | None = None

    #: Checked injector params, one per event (filled by :func:`parse_scenario`).
    checked: list[Any] = Field(default_factory=list, exclude=True)
    #: The file the scenario came from, for error messages and relative paths.
    path: str | None = Field(None, exclude=True)


def is_scenario_file(path: str | Path) -> bool:
    """Whether a YAML file is a scenario (a mapping with ``base`` and ``events``), not a schema."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and "base" in data and "events" in data


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario file; every problem is a :class:`StreamsynthError`."""
    data = read_yaml(path, what="scenario file")
    return parse_scenario(data, source=str(path))


def parse_scenario(data: Any, source: str = "scenario") -> Scenario:
    """Validate a mapping (as a YAML file gives) into a :class:`Scenario`."""
    if not isinstance(data, dict):
        raise StreamsynthError(
            f"{source}: expected a mapping with name, base and events, got {type(data).__name__}",
            hint="see `streamsynth scenario show card_testing_burst` for an example",
        )
    try:
        scenario = Scenario.model_validate(data)
    except ValidationError as exc:
        raise _error(source, exc, Scenario) from None
    checked = []
    for i, event in enumerate(scenario.events):
        injector = INJECTORS.get(event.kind)
        if injector is None:
            raise StreamsynthError(
                f"{source}: events[{i}].kind: unknown injector {event.kind!r}",
                hint=f"kinds are: {', '.join(sorted(INJECTORS))}",
            )
        try:
            checked.append(injector.Params.model_validate(event.params))
        except ValidationError as exc:
            raise _error(source, exc, injector.Params, prefix=f"events[{i}].params") from None
        duration = scenario.base.duration
        if duration is not None and event.at >= duration:
            raise StreamsynthError(
                f"{source}: events[{i}].at: starts at {event.at} after the base start, but the base "
                f"lasts only {duration}",
                hint="move the event earlier or lengthen base.duration",
            )
        if event.duration <= timedelta(0):
            raise StreamsynthError(f"{source}: events[{i}].duration: expected a positive duration")
    scenario.checked = checked
    scenario.path = source
    return scenario


def _error(source: str, exc: ValidationError, model: type[BaseModel], prefix: str = "") -> StreamsynthError:
    errors = exc.errors()
    first = errors[0]
    loc = _key_path(first["loc"], prefix)
    if first["type"] == "extra_forbidden":  # name the mapping that has the stray key
        loc = _key_path(first["loc"][:-1], prefix)
        allowed = _allowed(model, first["loc"][:-1])
        what = f"unknown key {first['loc'][-1]!r}" + (f" (allowed: {', '.join(allowed)})" if allowed else "")
    elif first["type"] == "missing":
        what = "required key is missing"
    else:
        msg = first["msg"].removeprefix("Value error, ")
        got = first.get("input")
        shown = "" if isinstance(got, dict | list) or got is None or repr(got) in msg else f", got {got!r}"
        what = f"{msg}{shown}"
    more = f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return StreamsynthError(
        f"{source}: {loc}: {what}{more}", hint="fix the key, then check with `streamsynth scenario validate FILE`"
    )


def _key_path(loc: tuple[Any, ...], prefix: str) -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def _allowed(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys allowed where an unknown key was found, by walking the models along ``loc``."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = _model_in(field.annotation)
        if current is None:
            return []
    fields = getattr(current, "model_fields", {})
    return [name for name, f in fields.items() if not f.exclude]


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        found = _model_in(arg)
        if found is not None:
            return found
    return None
