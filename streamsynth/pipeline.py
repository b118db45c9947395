"""Turning a SOURCE into a contract stream: a scenario, the demo, a model directory, a rules
schema or a recorded file.

This is the one place where command-line sources are resolved, so ``sample``, ``stream`` and
``replay`` accept the same things: each kind of source is one entry of :data:`SOURCES` (how to
recognise it, how to open it), read in order. Sources are deterministic: the same arguments
give the same events, which is what lets a replay resume and ``verify`` regenerate what was sent.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from streamsynth.contract import check_count, rebatch, until
from streamsynth.datasets import payments
from streamsynth.errors import StreamsynthError
from streamsynth.models import load_model
from streamsynth.models.base import CONFIG_FILE, MODEL_FILES, Synthesizer
from streamsynth.models.baseline import BaselineSynthesizer
from streamsynth.models.rules import RuleSynthesizer
from streamsynth.scenarios.source import ScenarioStream, open_scenario, plan_base
from streamsynth.scenarios.spec import Scenario, is_scenario_file
from streamsynth.sources import Source, open_recorded

DEMO = "demo"
YAML = (".yaml", ".yml")


@dataclass(frozen=True)
class Request:
    """What a command asks of its source, with counts checked; each opener takes what applies."""

    seed: int | None = None
    start: datetime | None = None
    end: datetime | None = None
    n_entities: int | None = None
    n_events: int | None = None
    batch_size: int = 10_000
    shard: tuple[int, int] | None = None
    conditions: dict[str, Any] | None = None
    span_default: bool = False

    def __post_init__(self) -> None:
        for name, flag in (("n_entities", "--entities"), ("n_events", "--events (-n)"),
                           ("batch_size", "--batch-size")):
            object.__setattr__(self, name, check_count(getattr(self, name), flag))  # frozen: set once, here

    @property
    def to_span(self) -> bool:
        """With neither an event count nor an end, a model's stream ends after its training span."""
        return self.span_default and self.n_events is None and self.end is None


@dataclass(frozen=True)
class SourceKind:
    """One kind of source: ``matches(text, path)`` recognises it, ``open(text, path, request)``
    opens it."""

    name: str
    matches: Callable[[str, Path], bool]
    open: Callable[[str, Path, Request], Source]


def open_source(source: str | Path, request: Request | None = None, **values: Any) -> Source:
    """Resolve ``source`` (scenario file, ``"demo"``, model dir, rules schema YAML, data file or
    dir) through :data:`SOURCES`, with a :class:`Request` (or its fields by name:
    ``open_source("model/", n_events=1000, seed=3)``).

    ``span_default``: with neither ``n_events`` nor ``end``, a model's stream ends after its
    training span (as ``Synthesizer.sample``) instead of running forever.
    Every source's batches have exactly ``batch_size`` events, except the last of a finite one.
    """
    request = replace(request or Request(), **values)
    text = str(source)
    path = Path(text)
    kind = next(k for k in SOURCES if k.matches(text, path))
    return kind.open(text, path, request)


def open_scenario_run(scenario: str | Path | Scenario, **overrides: Any) -> ScenarioStream:
    """A scenario's labelled stream: its base opened through :data:`SOURCES`, then its events.
    ``overrides`` (seed, start, end, n_entities, n_events, batch_size, shard) override the
    file's base settings, as :func:`streamsynth.scenarios.source.plan_base` takes them."""
    scenario, base = plan_base(scenario, **overrides)
    if _is_scenario(Path(base.source)):
        raise StreamsynthError(
            f"{scenario.path}: base.source: {base.source!r} is a scenario file",
            hint="a scenario's base is 'demo', 'example:NAME', a model directory, a schema or a data file",
        )
    return open_scenario(scenario, open_source(base.source, **base.open_args()), base)


def _open_scenario(text: str, path: Path, request: Request) -> Source:
    run = open_scenario_run(path, seed=request.seed, start=request.start, end=request.end,
                            n_entities=request.n_entities, n_events=request.n_events,
                            batch_size=request.batch_size, shard=request.shard)
    # injectors drop, add and duplicate rows, so the batches are re-cut to size
    src = Source(rebatch(run.stream, request.batch_size), run.time, run.entity, run.description, run.model)
    if request.to_span and src.model is not None:
        end = src.model.default_end(request.start)
        src.stream = until(src.stream, src.time, end)
        src.description["end"] = end.isoformat()
    return src


def _open_model(model: Synthesizer, description: dict[str, Any], request: Request) -> Source:
    """A model's stream, as the request bounds it, with what the manifest says about it."""
    end = request.end
    if request.to_span:
        end = model.default_end(request.start)
        description["end"] = end.isoformat()
    stream = model.stream(
        start=request.start, n_entities=request.n_entities, seed=request.seed, batch_size=request.batch_size,
        conditions=request.conditions, shard=request.shard, n_events=request.n_events, end=end,
    )
    shard = request.shard
    description.update(
        seed=model.seed if request.seed is None else request.seed,
        n_entities=request.n_entities or model.fitted_entities,
        start=(request.start or model.default_start()).isoformat(),
        n_events=request.n_events,
        shard=f"{shard[0]}/{shard[1]}" if shard else None,
        conditions=request.conditions or None,
    )
    if model.dependencies:  # the live count: the manifest is written once the stream is done
        description["dependencies"] = {"kept": [d.describe() for d in model.dependencies],
                                       "rows_with_new_determinants": model.dependency_draws}
    if model.metadata.get("privacy"):  # the DP budget the model spent travels into every manifest
        description["privacy"] = model.metadata["privacy"]
    return Source(stream, model.schema.time, model.schema.entity, description, model)


def _open_demo(text: str, path: Path, request: Request) -> Source:
    model = demo_model(seed=0 if request.seed is None else request.seed)
    return _open_model(model, {"kind": "demo", "model": model.name}, request)


def _open_saved_model(text: str, path: Path, request: Request) -> Source:
    model = load_model(path)
    return _open_model(model, {"kind": "model", "path": str(path), "model": model.name}, request)


def _refuse_partial_model(text: str, path: Path, request: Request) -> Source:
    held = sorted(p.name for p in path.iterdir())
    raise StreamsynthError(
        f"{path} is not a model directory: it has no {CONFIG_FILE} "
        + (f"(it holds {', '.join(held)})" if held else "(it is empty)"),
        hint="a saved model is config.json + weights.safetensors + encoders.json; "
        "copy the whole directory, or train again with `streamsynth fit DATA -o DIR`",
    )


def _open_rules(text: str, path: Path, request: Request) -> Source:
    model = RuleSynthesizer.from_file(path)
    return _open_model(model, {"kind": "rules", "path": str(path), "model": model.name}, request)


def _open_file(text: str, path: Path, request: Request) -> Source:
    if request.conditions:
        raise StreamsynthError("conditions apply to models, not to recorded data", hint="drop --condition")
    return open_recorded(path, batch_size=request.batch_size, shard=request.shard, end=request.end,
                         n_events=request.n_events)


def _looks_like_model(path: Path) -> bool:
    """A directory with a model's other files (or nothing at all) but no config.json."""
    names = {p.name for p in path.iterdir()}
    return not names or bool(names & set(MODEL_FILES))


def _is_scenario(path: Path) -> bool:
    """A scenario file (``base`` + ``events``), as opposed to a rule-based schema file."""
    return path.suffix.lower() in YAML and path.is_file() and is_scenario_file(path)


#: The kinds of source, in the order they are tried; a new kind is one opener plus one line here.
SOURCES: tuple[SourceKind, ...] = (
    SourceKind("scenario", lambda text, path: _is_scenario(path), _open_scenario),
    SourceKind("demo", lambda text, path: text == DEMO, _open_demo),
    SourceKind("model", lambda text, path: path.is_dir() and (path / CONFIG_FILE).exists(), _open_saved_model),
    SourceKind("partial model", lambda text, path: path.is_dir() and _looks_like_model(path), _refuse_partial_model),
    SourceKind("rules", lambda text, path: path.suffix.lower() in YAML, _open_rules),
    SourceKind("file", lambda text, path: True, _open_file),
)


def demo_model(seed: int = 0, n_customers: int = 1000, n_days: int = 14) -> Synthesizer:
    """The embedded default: the baseline fitted on the simulated payments sample."""
    frame = payments(n_customers=n_customers, n_days=n_days, seed=seed)
    return BaselineSynthesizer(seed=seed).fit(frame)
