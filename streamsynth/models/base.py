"""The one shape of every synthesizer: fit, sample, stream, save, load.

The base class does once what every model needs: schema inference and validation on fit,
turning ``sample`` limits into a finite stream, the contract's label columns, sharding
arguments, and the on-disk format (``config.json`` + ``weights.safetensors`` +
``encoders.json``; never pickle, so loading someone else's model runs no code).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar, Self

import numpy as np
import polars as pl
from safetensors import SafetensorError
from safetensors.numpy import load_file, save_file

from streamsynth import __version__, continuity, relations
from streamsynth.constraints import ConstraintKeeper, columns_named
from streamsynth.continuity import Continuity, ContinuityKeeper
from streamsynth.contract import (
    IS_ANOMALY,
    LABEL,
    NORMAL,
    SCENARIO_ID,
    TIME_DTYPE,
    as_utc,
    check_count,
    label_expressions,
    order_columns,
    rebatch,
    take,
    until,
)
from streamsynth.dependencies import Dependency, apply_all, discover
from streamsynth.errors import StreamsynthError
from streamsynth.io import DataWarning
from streamsynth.models.conditions import check_conditions, learn_domains
from streamsynth.outputs import Staged, errno_in
from streamsynth.relations import Relation
from streamsynth.request import Shard, StreamRequest
from streamsynth.schema import Role, Schema, as_numbers, with_stored_types

FORMAT_VERSION = 1
#: the fewest events, and distinct event times, a model learns from
MIN_EVENTS = 20
#: the event times a stream may hold: what Python's datetime and nanosecond readers (pandas,
#: Arrow ns) represent; an endless stream ends at the last one
EARLIEST, LATEST = datetime(1678, 1, 1, tzinfo=UTC), datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
ENCODERS_FILE = "encoders.json"
#: sha256 of every other file of a saved model, in ``sha256sum`` format (``sha256sum -c`` checks it)
CHECKSUMS_FILE = "checksums.sha256"
#: what a model folder may hold; saving replaces such a folder whole, and refuses one holding more
MODEL_FILES = (CONFIG_FILE, WEIGHTS_FILE, ENCODERS_FILE, CHECKSUMS_FILE, "schema.yaml")



class Synthesizer(ABC):
    """Base of every model. Subclasses implement ``_fit``, ``_stream``, ``_state``, ``_restore``.

    ``_stream`` yields contract-ordered batches in nondecreasing time order, forever; it
    fills ``event_id``, the time column, the entity column and data columns, and may leave the
    label columns to :meth:`_finish` (which derives them from the schema's label column).
    """

    name: ClassVar[str]
    #: Whether ``conditions`` (e.g. ``{"is_fraud": True}``) are honoured by this model.
    supports_conditions: ClassVar[bool] = False
    #: every float weight is a finite number (network parameters): checked at load, so damaged
    #: weights are an error rather than a sampler waiting forever on NaN times
    finite_weights: ClassVar[bool] = False

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.schema: Schema | None = None
        self.fitted_span: timedelta | None = None
        self.fitted_start: datetime | None = None
        self.fitted_entities: int = 0
        self.metadata: dict[str, Any] = {}
        #: each data column's learned values or range, for checking conditions (see conditions.py)
        self.domains: dict[str, dict[str, Any]] = {}
        #: columns fixed by others in the training data, kept exactly in samples
        self.dependencies: list[Dependency] = []
        #: columns that repeat another column of the entity's previous event (origin = last dest)
        self.continuities: list[Continuity] = []
        #: numeric columns that follow others (air time with distance), moved with their parents
        #: when a dependency changes those
        self.relations: list[Relation] = []
        #: the latest stream's count of rows whose determinant value was new (its value drawn once)
        self.dependency_draws: dict[str, int] = {"rows": 0}

    # -- public interface ------------------------------------------------------------------
    def fit(self, frame: pl.DataFrame, schema: Schema | None = None) -> Self:
        """Learn from ``frame`` (an event table read by :func:`streamsynth.io.read`)."""
        if frame.height == 0:
            raise StreamsynthError("cannot fit on an empty table", hint="give data with rows")
        schema = schema or Schema.infer(frame)
        schema.validate(frame)
        if schema.time is None:
            raise StreamsynthError(
                f"the {self.name} model needs an event-time column and none was found",
                hint="name it with --time COLUMN (or Date+Time), or mark it in a schema file",
            )
        frame = _without_null_keys(frame, schema)
        distinct = frame[schema.time].n_unique()
        if frame.height < MIN_EVENTS or distinct < 2:
            raise StreamsynthError(
                f"too little data to learn from: {frame.height} events at {distinct} distinct times",
                hint=f"give at least {MIN_EVENTS} events at 2 or more distinct times",
            )
        missing = sorted(columns_named(schema.constraints) - set(frame.columns))
        if missing:
            raise StreamsynthError(f"schema constraints name {', '.join(map(repr, missing))}, not in the data",
                                   hint=f"columns are: {', '.join(frame.columns)}")
        self.schema = schema
        sort_by = [c for c in (schema.entity, schema.time) if c]
        frame = frame.sort(sort_by, maintain_order=True)
        times = frame[schema.time]
        self.fitted_start = times.min()
        self.fitted_span = times.max() - times.min()
        self.fitted_entities = frame[schema.entity].n_unique() if schema.entity else 1
        frame = as_numbers(frame)  # Decimal and Duration columns as numbers; _finish casts them back
        self.domains = learn_domains(frame, schema)
        self._learn_dependencies(frame, schema)
        self._fit(frame)
        return self

    def stream(
        self,
        *,
        start: datetime | None = None,
        n_entities: int | None = None,
        seed: int | None = None,
        batch_size: int = 10_000,
        conditions: dict[str, Any] | None = None,
        shard: Shard | None = None,
        n_events: int | None = None,
        end: datetime | None = None,
    ) -> Iterator[pl.DataFrame]:
        """An endless, time-ordered stream of contract batches, in flat memory; with ``n_events``
        or ``end``, its first ``n_events`` events or those before ``end``, and then it ends
        (the model may stop generating early: the events are those of the endless stream).

        Every batch has exactly ``batch_size`` events except the last one of a finite stream.
        """
        self._require_fitted()
        n_events = check_count(n_events, "the number of events (n_events)")
        n_entities = check_count(n_entities, "the number of entities (n_entities)")
        batch_size = check_count(batch_size, "the batch size (batch_size)")
        shard = _check_shard(shard)
        conditions = self._check_conditions(conditions)
        start = _in_range(as_utc(start), "start") if start is not None else self.default_start()
        end = _in_range(as_utc(end), "end") if end is not None else None
        if end is not None and end <= start:
            raise StreamsynthError(
                f"the end {end.isoformat()} is not after the start {start.isoformat()}",
                hint="give an end (--end) later than the start (--start, default: the training start)",
            )
        batches = self._stream(StreamRequest(
            start=start,
            n_entities=n_entities or self.fitted_entities,
            seed=self.seed if seed is None else seed,
            events_per_batch=batch_size,
            conditions=conditions or {},
            shard=shard,
            n_events=n_events,
            end=end,
        ))
        # models cut batches by time windows; the contract's batches are exact in size
        kept = self._kept_dependencies(seed if seed is not None else self.seed, set(conditions or {}))
        batches = rebatch((self._finish(kept(batch)) for batch in batches if batch.height), batch_size)
        # an endless stream ends where timestamps end
        batches = until(batches, self.schema.time, end if end is not None else LATEST)
        if n_events is not None:
            batches = take(batches, n_events)
        return batches

    def sample(
        self,
        *,
        n_entities: int | None = None,
        n_events: int | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        seed: int | None = None,
        conditions: dict[str, Any] | None = None,
        shard: Shard | None = None,
        batch_size: int = 10_000,
    ) -> pl.DataFrame:
        """A finite sample: up to ``n_events`` events, or all events before ``end``.

        With neither limit the sample covers as long a span as the training data did.
        """
        self._require_fitted()
        n_events = check_count(n_events, "the number of events (n_events)")
        start = as_utc(start) if start is not None else self.default_start()
        if end is None and n_events is None:
            end = self.default_end(start)
        parts = list(self.stream(
            start=start, n_entities=n_entities, seed=seed, batch_size=batch_size,
            conditions=conditions, shard=shard, n_events=n_events, end=end,
        ))
        if not parts:
            return self._empty()
        return pl.concat(parts, how="vertical")

    def default_end(self, start: datetime | None = None) -> datetime:
        """Where a finite sample without limits ends: as long after ``start`` (default: the
        default start) as training covered."""
        start = as_utc(start) if start is not None else self.default_start()
        try:
            return min(start + (self.fitted_span or timedelta(days=1)), LATEST)
        except OverflowError:
            return LATEST

    def default_start(self) -> datetime:
        """Where streams start by default: the start of the training data."""
        return self.fitted_start or datetime(2024, 1, 1, tzinfo=UTC)

    # -- persistence -----------------------------------------------------------------------
    def save(self, directory: str | Path) -> Path:
        """Write ``config.json``, ``weights.safetensors``, ``encoders.json`` and their checksums
        to ``directory``: into a temporary folder beside it, put in place of the old folder only
        when complete (a failed or killed save leaves the previous model as it was).

        Under ``torchrun`` only rank 0 writes; the other ranks hold the same weights and return
        the path untouched, so a training script may call ``save`` on every rank.
        """
        self._require_fitted()
        if int(os.environ.get("RANK", "0")) != 0:
            return Path(directory)
        directory = Path(directory)
        if directory.is_dir():
            foreign = sorted(p.name for p in directory.iterdir() if p.name not in MODEL_FILES)
            if foreign:
                raise StreamsynthError(
                    f"cannot save the model to {directory}: it holds files that are not a model's "
                    f"({', '.join(foreign[:5])}{', ...' if len(foreign) > 5 else ''})",
                    hint="give a new or empty folder (a model folder is replaced whole when saved again)",
                )
        with Staged() as stage:
            folder = stage.folder(directory)
            self._write_files(folder)
            write_checksums(folder)
        return directory

    def _write_files(self, folder: Path) -> None:
        """The model's files; a subclass with more files adds them after these."""
        config, tensors, encoders = self._state()
        header = {
            "format_version": FORMAT_VERSION,
            "model": self.name,
            "streamsynth_version": __version__,
            "python": platform.python_version(),
            "seed": self.seed,
            "schema": self.schema.to_dict(),
            "fitted_start": self.fitted_start.isoformat() if self.fitted_start else None,
            "fitted_span_s": self.fitted_span.total_seconds() if self.fitted_span else None,
            "fitted_entities": self.fitted_entities,
            "metadata": self.metadata,
            "domains": self.domains,
            "dependencies": [d.to_json() for d in self.dependencies],
            "relations": [r.to_json() for r in self.relations],
            "continuities": [c.to_json() for c in self.continuities],
            "config": config,
        }
        (folder / CONFIG_FILE).write_text(json.dumps(header, indent=2, default=_json_default))
        arrays = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
        try:
            save_file(arrays, str(folder / WEIGHTS_FILE), metadata={"model": self.name})
        except SafetensorError as exc:  # its IO errors are not OSErrors; the stage names the cause
            raise OSError(errno_in(str(exc)), str(exc)) from None
        (folder / WEIGHTS_FILE).chmod(0o644)  # safetensors writes 0600; the other files are 0644
        (folder / ENCODERS_FILE).write_text(json.dumps(encoders, default=_json_default))

    @classmethod
    def load(cls, directory: str | Path) -> Self:
        """Load a model saved by :meth:`save`; checks model kind and format version."""
        header = read_config(directory)
        if header["model"] != cls.name:
            raise StreamsynthError(
                f"{directory} holds a {header['model']!r} model, not {cls.name!r}",
                hint="use streamsynth.models.load_model, which picks the right class",
            )
        return cls._from_header(Path(directory), header)

    @classmethod
    def _from_header(cls, directory: Path, header: dict[str, Any]) -> Self:
        model = cls(seed=header.get("seed", 0))
        model.schema = Schema.from_dict(header["schema"], source=str(directory / CONFIG_FILE))
        if header.get("fitted_start"):
            model.fitted_start = datetime.fromisoformat(header["fitted_start"])
        if header.get("fitted_span_s") is not None:
            model.fitted_span = timedelta(seconds=header["fitted_span_s"])
        model.fitted_entities = header.get("fitted_entities", 1)
        model.metadata = header.get("metadata", {})
        model.domains = header.get("domains", {})
        model.dependencies = [Dependency.from_json(d) for d in header.get("dependencies", [])]
        model.relations = [Relation.from_json(r) for r in header.get("relations", [])]
        model.continuities = [Continuity.from_json(c) for c in header.get("continuities", [])]
        weights = directory / WEIGHTS_FILE
        try:
            tensors = load_file(str(weights))
        except FileNotFoundError:
            raise StreamsynthError(f"{weights} is missing", hint="save the model again") from None
        except (SafetensorError, OSError, ValueError) as exc:
            raise StreamsynthError(
                f"{weights} is corrupt or not a safetensors file ({exc})",
                hint="re-create it with `streamsynth fit`",
            ) from None
        if cls.finite_weights:
            bad = sorted(k for k, v in tensors.items() if v.dtype.kind == "f" and not np.isfinite(v).all())
            if bad:
                raise StreamsynthError(
                    f"{weights} is damaged: {', '.join(bad[:3])} hold values that are not numbers",
                    hint="copy the model folder again, or re-create it with `streamsynth fit`",
                )
        try:
            encoders = json.loads((directory / ENCODERS_FILE).read_text())
        except FileNotFoundError:
            raise StreamsynthError(f"{directory / ENCODERS_FILE} is missing", hint="save the model again") from None
        except json.JSONDecodeError as exc:
            raise StreamsynthError(f"{directory / ENCODERS_FILE} is not valid JSON ({exc})") from None
        try:
            model._restore(header["config"], tensors, encoders)
        except (KeyError, ValueError, TypeError) as exc:
            raise StreamsynthError(
                f"{directory} does not match the {cls.name} model's layout ({exc!r})",
                hint="the files were changed or come from another version; re-create the model",
            ) from None
        return model

    # -- what subclasses provide -------------------------------------------------------------
    @abstractmethod
    def _fit(self, frame: pl.DataFrame) -> None:
        """Learn from ``frame``, sorted by (entity, time); ``self.schema`` is set."""

    @abstractmethod
    def _stream(self, request: StreamRequest) -> Iterator[pl.DataFrame]:
        """Endless time-ordered batches for entities ``0..n_entities-1`` (those of the shard);
        for a finite request they may end once nothing more could be among the events asked for."""

    @abstractmethod
    def _state(self) -> tuple[dict[str, Any], dict[str, np.ndarray], dict[str, Any]]:
        """(JSON config, named arrays for safetensors, JSON encoders) that ``_restore`` reads."""

    @abstractmethod
    def _restore(self, config: dict[str, Any], tensors: dict[str, np.ndarray], encoders: dict[str, Any]) -> None:
        """Rebuild the fitted state from what ``_state`` returned."""

    def learned(self) -> list[str]:
        """Lines saying what this model learned beyond what every model keeps (dependencies,
        continuities, relations), for ``fit`` to print; none by default."""
        return []

    # -- shared helpers ------------------------------------------------------------------------
    def _learn_dependencies(self, frame: pl.DataFrame, schema: Schema) -> None:
        """What ties columns together, kept in every model's samples: dependencies, then the
        continuities that key them (an origin continued, its route's destination), then the
        numeric relations (a child that no dependency sets or reads)."""
        on = schema.dependencies != "off"
        self.dependencies = discover(frame, schema) if on else []
        self.continuities = continuity.discover(frame, schema, self.dependencies) if on else []
        fixed = {n for d in self.dependencies for n in (*d.determinants, d.determines)}
        self.relations = relations.discover(frame, schema, fixed=fixed, seed=self.seed)

    def _kept_dependencies(self, seed: int, conditioned: set[str]) -> Callable[[pl.DataFrame], pl.DataFrame]:
        """A batch with every learned dependency applied (but those fixing a conditioned column:
        the condition wins), then the schema's constraints; counts new determinant values in
        :attr:`dependency_draws`."""
        self.dependency_draws = counts = {"rows": 0}
        constraints = ConstraintKeeper(self.schema.constraints, self.schema.entity, seed)

        continued = ContinuityKeeper([c for c in self.continuities if c.column not in conditioned],
                                     self.schema.entity, seed)

        def lookups(batch: pl.DataFrame) -> pl.DataFrame:
            batch, drawn = apply_all(continued(batch), self.dependencies, seed, skip=conditioned)
            counts["rows"] += drawn
            return batch

        moved = [r for r in self.relations if r.child not in conditioned]

        def keep(batch: pl.DataFrame) -> pl.DataFrame:
            return constraints(relations.keep_after(moved, lookups, batch) if moved else lookups(batch))

        return keep

    def _finish(self, batch: pl.DataFrame) -> pl.DataFrame:
        """Fill label columns from the schema's label column where the model did not."""
        schema = self.schema
        if LABEL not in batch.columns and schema.label and schema.label in batch.columns:
            batch = batch.with_columns(label_expressions(batch.schema[schema.label], schema.label))
        if LABEL not in batch.columns:
            batch = batch.with_columns(
                pl.lit(NORMAL, dtype=pl.String).alias(LABEL),
                pl.lit(False).alias(IS_ANOMALY),
            )
        if SCENARIO_ID not in batch.columns:
            batch = batch.with_columns(pl.lit(None, dtype=pl.String).alias(SCENARIO_ID))
        return order_columns(with_stored_types(batch, schema), schema.time, schema.entity)

    def _empty(self) -> pl.DataFrame:
        return self._finish(
            pl.DataFrame(schema={"event_id": pl.String, self.schema.time: TIME_DTYPE})
        ).clear()

    def _require_fitted(self) -> None:
        if self.schema is None:
            raise StreamsynthError(f"the {self.name} model is not fitted", hint="call fit() or load() first")

    def _check_conditions(self, conditions: dict[str, Any] | None) -> dict[str, Any]:
        """The conditions checked against the schema and the learned domains, normalised."""
        if not conditions:
            return {}
        if not self.supports_conditions:
            raise StreamsynthError(
                f"the {self.name} model does not take conditions ({', '.join(conditions)})",
                hint="use a model that supports conditional sampling, e.g. the transformer",
            )
        names = {c.name for c in self.schema.data_columns}
        for key in conditions:
            if key not in names:
                raise StreamsynthError(
                    f"condition on unknown column {key!r}",
                    hint=f"condition on one of: {', '.join(sorted(names))}",
                )
        return check_conditions(conditions, self.domains, self.name)


def _in_range(moment: datetime, what: str) -> datetime:
    if not EARLIEST <= moment <= LATEST:
        raise StreamsynthError(
            f"the {what} {moment.isoformat()} is outside the times a stream can hold",
            hint=f"give a time between {EARLIEST.date()} and {LATEST.date()}",
        )
    return moment


def _without_null_keys(frame: pl.DataFrame, schema: Schema) -> pl.DataFrame:
    """Rows without an entity or an event time are left out of learning, with a warning saying
    how many (they belong to no sequence and no moment)."""
    keys = [c for c in (schema.entity, schema.time) if c]
    missing = frame.select(pl.any_horizontal(pl.col(k).is_null() for k in keys).sum()).item()
    if missing:
        if missing == frame.height:
            raise StreamsynthError(f"every row has no {' or '.join(keys)}",
                                   hint="check the --entity and --time columns")
        warnings.warn(
            f"{missing:,} of {frame.height:,} rows ({missing / frame.height:.1%}) have no "
            f"{' or '.join(keys)} and were left out of learning",
            DataWarning, stacklevel=3,
        )
        frame = frame.filter(pl.all_horizontal(pl.col(k).is_not_null() for k in keys))
    return frame


def read_config(directory: str | Path) -> dict[str, Any]:
    """Read and check a model directory's ``config.json``."""
    directory = Path(directory)
    path = directory / CONFIG_FILE
    if not directory.is_dir():
        raise StreamsynthError(f"model directory {directory} does not exist", hint="train one with `streamsynth fit`")
    try:
        header = json.loads(path.read_text())
    except FileNotFoundError:
        raise StreamsynthError(
            f"{directory} is not a model directory (no {CONFIG_FILE})",
            hint="train one with `streamsynth fit DATA -o DIR`",
        ) from None
    except json.JSONDecodeError as exc:
        raise StreamsynthError(f"{path} is not valid JSON ({exc})", hint="re-create the model") from None
    version = header.get("format_version") if isinstance(header, dict) else None
    if version != FORMAT_VERSION:
        raise StreamsynthError(
            f"{directory} was saved in model format {version!r} "
            f"(by streamsynth {header.get('streamsynth_version', '?') if isinstance(header, dict) else '?'}); "
            f"this is streamsynth {__version__}, which reads format {FORMAT_VERSION}",
            hint="re-train the model with this version, or use the version that saved it",
        )
    for key in ("model", "schema", "config"):
        if key not in header:
            raise StreamsynthError(f"{path} has no {key!r} entry", hint="re-create the model")
    verify_checksums(directory)
    return header


def write_checksums(folder: Path) -> None:
    """``checksums.sha256``: the sha256 of every file in ``folder``, as ``sha256sum`` writes it."""
    lines = [f"{_sha256(p)}  {p.name}\n" for p in sorted(folder.iterdir()) if p.name != CHECKSUMS_FILE]
    (folder / CHECKSUMS_FILE).write_text("".join(lines))


def verify_checksums(directory: Path) -> None:
    """Check every file ``checksums.sha256`` lists; a model saved before checksums has none."""
    listing = directory / CHECKSUMS_FILE
    if not listing.exists():
        return
    for number, line in enumerate(listing.read_text().splitlines(), 1):
        digest, _, name = line.partition("  ")
        if not name or len(digest) != 64:
            raise StreamsynthError(f"{listing}: line {number} is not 'SHA256  FILE'",
                                   hint="the model folder is damaged; re-create the model")
        path = directory / name
        if not path.is_file():
            raise StreamsynthError(f"{path} is missing", hint="copy the whole model folder, or re-create the model")
        if _sha256(path) != digest:
            raise StreamsynthError(
                f"{path} is damaged: its checksum does not match {CHECKSUMS_FILE}",
                hint="copy the model folder again (a truncated or altered file), or re-create the model",
            )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def data_roles(schema: Schema) -> dict[Role, list[str]]:
    """Data column names grouped by role (a convenience for models)."""
    out: dict[Role, list[str]] = {}
    for col in schema.data_columns:
        out.setdefault(col.role, []).append(col.name)
    return out


def shard_entities(n_entities: int, shard: Shard | None) -> np.ndarray:
    """The entity numbers a stream generates: all of ``0..n-1``, or those of shard K/N."""
    numbers = np.arange(n_entities, dtype=np.int64)
    if shard is not None:
        numbers = numbers[numbers % shard[1] == shard[0]]
    return numbers


def _check_shard(shard: Shard | None) -> Shard | None:
    if shard is None:
        return None
    k, n = shard
    if not (isinstance(k, int) and isinstance(n, int) and n >= 1 and 0 <= k < n):
        raise StreamsynthError(f"bad shard {k}/{n}", hint="a shard is K/N with 0 <= K < N, e.g. 3/16")
    return (k, n)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
