"""The options that say which stream a command reads: SOURCE, where it starts and stops, its seed,
shard and conditions, and how many events a batch holds.

``sample``, ``stream`` and ``replay`` take them all. They are declared once, in :func:`_declared`,
and :func:`source_options` adds them to a command, which receives them as one
:class:`SourceOptions` in its ``source`` parameter. Nothing here imports the models: a source is
opened (and its times, shard and conditions parsed) only when a command calls
:meth:`SourceOptions.open`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

import typer

from streamsynth.cli.options import parse_conditions, parse_shard, parse_time

DEFAULT_EVENTS_PER_BATCH = 10_000


def _declared(
    source: Annotated[str, typer.Argument(help="A model directory, a rules schema (.yaml), a data file, or 'demo'.")],
    n_events: Annotated[int | None, typer.Option("--events", "-n", help="Stop after this many events.")] = None,
    end: Annotated[str | None, typer.Option("--end", help="Stop at this event time (ISO 8601).")] = None,
    entities: Annotated[
        int | None, typer.Option("--entities", help="Number of entities (default: as trained).")
    ] = None,
    start: Annotated[str | None, typer.Option("--start", help="Event time of the start (ISO 8601).")] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Random seed (default: the model's).")] = None,
    shard: Annotated[
        str | None, typer.Option("--shard", help="Generate only shard K/N of the entities, e.g. 3/16.")
    ] = None,
    condition: Annotated[
        list[str] | None, typer.Option("--condition", "-c", help="COLUMN=VALUE; e.g. is_fraud=true. Repeatable.")
    ] = None,
    events_per_batch: Annotated[
        int, typer.Option("--batch-size", help="Events per batch of the source.")
    ] = DEFAULT_EVENTS_PER_BATCH,
) -> None:
    """The source options as typer reads them: names, flags, help texts and defaults (never called)."""


_PARAMETERS = tuple(inspect.signature(_declared, eval_str=True).parameters.values())
_BATCH = "events_per_batch"


@dataclass(frozen=True)
class SourceOptions:
    """One stream request as the command line states it, its values as typed (parsed by :meth:`open`).

    ``events_per_batch`` is ``--batch-size``: how many events each batch of the source holds.
    """

    source: str
    n_events: int | None = None
    end: str | None = None
    entities: int | None = None
    start: str | None = None
    seed: int | None = None
    shard: str | None = None
    conditions: tuple[str, ...] = ()
    events_per_batch: int = DEFAULT_EVENTS_PER_BATCH

    def open(self, *, endless: bool = False) -> Any:
        """Open the source; a model's stream without --events or --end covers the training span,
        unless ``endless`` (``streamsynth stream``)."""
        from streamsynth.pipeline import open_source

        return open_source(self.source, self.request(endless=endless))

    def request(self, *, endless: bool = False) -> Any:
        """The options parsed into a :class:`streamsynth.pipeline.Request` (what :meth:`open`
        opens; ``sample --ray`` hands it to each shard's task)."""
        from streamsynth.pipeline import Request

        return Request(
            seed=self.seed,
            start=parse_time(self.start, "--start") if self.start else None,
            end=parse_time(self.end, "--end") if self.end else None,
            n_entities=self.entities,
            n_events=self.n_events,
            batch_size=self.events_per_batch,
            shard=parse_shard(self.shard) if self.shard else None,
            conditions=parse_conditions(list(self.conditions)),
            span_default=not endless,
        )

    def resolved_seed(self, description: dict[str, Any] | None) -> int | None:
        """The seed the stream was drawn with, for a manifest: the opened source's (a model's own
        seed when --seed is not given; none for recorded data), or --seed when the source never
        opened (``description`` None)."""
        if description is None:
            return self.seed
        return description.get("seed")

    def as_args(self) -> dict[str, Any]:
        """The options as a replay records them in its checkpoint and manifest (``source_args``)."""
        return {"source": self.source, "seed": self.seed, "start": self.start, "end": self.end,
                "entities": self.entities, "n_events": self.n_events, "shard": self.shard,
                "condition": list(self.conditions) or None, "batch_size": self.events_per_batch}

    @classmethod
    def from_args(cls, args: dict[str, Any]) -> SourceOptions:
        """The options a replay recorded (:meth:`as_args`): the same options, the same events."""
        batch = args.get("batch_size")
        return cls(source=args["source"], n_events=args.get("n_events"), end=args.get("end"),
                   entities=args.get("entities"), start=args.get("start"), seed=args.get("seed"),
                   shard=args.get("shard"), conditions=tuple(args.get("condition") or ()),
                   events_per_batch=DEFAULT_EVENTS_PER_BATCH if batch is None else batch)  # 0 is checked


def source_options(*, batch_size: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add the source options to a command; its parameter ``source`` receives a :class:`SourceOptions`.

    The shared parameters take the place of ``source`` in the signature typer reads, so their
    help texts are listed as if the command declared them. ``batch_size``: the command also takes
    ``--batch-size`` (a finite sample's batches are an internal matter, so ``sample`` does not).
    """
    shared = [p for p in _PARAMETERS if batch_size or p.name != _BATCH]

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        own = inspect.signature(command, eval_str=True)
        if "source" not in own.parameters:
            raise TypeError(f"{command.__name__} has no `source` parameter for its SourceOptions")
        params: list[inspect.Parameter] = []
        for p in own.parameters.values():
            params.extend(shared if p.name == "source" else [p])
        clash = {p.name for p in shared} & (set(own.parameters) - {"source"})
        if clash:
            raise TypeError(f"{command.__name__} declares source options itself: {', '.join(sorted(clash))}")
        # keyword-only: typer passes every value by name, and the order of defaults is then free
        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in params]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            values = {p.name: kwargs.pop(p.name) for p in shared}
            kwargs["source"] = SourceOptions(
                source=values["source"], n_events=values["n_events"], end=values["end"],
                entities=values["entities"], start=values["start"], seed=values["seed"], shard=values["shard"],
                conditions=tuple(values["condition"] or ()),
                events_per_batch=values.get(_BATCH, DEFAULT_EVENTS_PER_BATCH),
            )
            return command(**kwargs)

        wrapper.__signature__ = own.replace(parameters=params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params} | {"return": own.return_annotation}
        return wrapper

    return decorate
