"""Column roles of an event table: inferred from a polars frame, overridable from Python or YAML.

A :class:`Schema` says which column is the entity key, which is event time, which columns
are categorical, numeric, boolean, identifier-like or free text, and which column (if any)
is the ground-truth label. Models, scenarios and evaluation all read it.

The entity is found by name (``customer_id``, ``host``, ``*_id``) and, when no name says so
(``客户``), by its values: a text column of repeating keys, with a warning naming it. Decimal
and Duration columns are numeric; list and binary columns are left out with a warning.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import asdict, dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import yaml

from streamsynth.constraints import check_constraints
from streamsynth.contract import CONTRACT_COLUMNS, EVENT_ID, IS_ANOMALY, LABEL
from streamsynth.errors import StreamsynthError, closest
from streamsynth.io import DataWarning, is_epoch, is_time_name
from streamsynth.yamlfile import read_yaml


class Role(StrEnum):
    ENTITY = "entity"
    TIME = "time"
    CATEGORICAL = "categorical"
    NUMERIC = "numeric"
    BOOLEAN = "boolean"
    IDENTIFIER = "identifier"
    TEXT = "text"
    CONTRACT = "contract"  # event_id, label, is_anomaly, scenario_id: owned by the contract
    IGNORE = "ignore"  # kept out of learning (a second time column, a row counter)


#: Kinds of identifier the generators know how to fake (see streamsynth.identifiers).
IDENTIFIER_KINDS = (
    "credit_card", "ipv4", "ipv6", "email", "uuid", "iban", "mac", "url", "hostname",
    "phone", "user_agent", "name", "code",
)

_ENTITY_NAMES = (
    "card_id", "customer_id", "account_id", "user_id", "client_id", "device_id", "card_number",
    "account", "customer", "user", "card", "host", "hostname", "node", "server", "instance",
    "pod", "service", "block_id", "session_id", "entity", "entity_id", "id",
)
_LABEL_NAMES = ("is_fraud", "fraud", "is_anomaly", "anomaly", "is_attack", "label", "class")
_CODE_HINTS = ("status", "code", "type", "level", "category", "kind", "mcc", "method", "channel")
_ENTITY_MIN_KEYS = 5  # an entity column found by its values has at least this many keys
_KEY_NEIGHBOURS = 8  # consecutive integers needed to tell keys from a quantity by their counts
# Names of quantities, never taken for an entity by their values (the name-based search is apart).
_QUANTITY_HINTS = ("amount", "price", "count", "qty", "quantity", "size", "bytes", "hour", "minute",
                   "second", "year", "month", "day", "age", "duration", "latency", "port", "total", "time",
                   "delay", "distance", "elapsed", "ms", "weight", "length", "score", "rate", "temp",
                   "temperature", "value", "volume", "balance", "level")
_ROWNUM_NAMES = ("lineid", "line_id", "row", "row_id", "index", "idx", "rownum", "")

_UNLEARNABLE = (pl.List, pl.Array, pl.Binary, pl.Object, pl.Struct)  # left out, with a warning
_PERSONAL_KINDS = ("credit_card", "email", "iban", "uuid", "ipv4", "ipv6", "mac", "phone")

_PATTERNS: dict[str, re.Pattern[str]] = {
    "email": re.compile(r"^[\w.+-]+@[\w-]+(\.[\w-]+)+$"),
    "ipv4": re.compile(r"^(\d{1,3}\.){3}\d{1,3}$"),
    "uuid": re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$"),
    "mac": re.compile(r"^([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}$"),
    "ipv6": re.compile(r"^[0-9a-fA-F]{0,4}(:[0-9a-fA-F]{0,4}){2,7}$"),
    "url": re.compile(r"^https?://\S+$"),
    "iban": re.compile(r"^[A-Z]{2}\d{2}[A-Z0-9]{10,30}$"),
    "credit_card": re.compile(r"^\d{13,19}$"),
    "phone": re.compile(r"^\+?[\d\s().-]{7,20}$"),
    "hostname": re.compile(r"^(?=.*[a-zA-Z])[a-zA-Z0-9-]+(\.[a-zA-Z0-9-]+)+$"),
    "user_agent": re.compile(r"^Mozilla/\d"),
}


@dataclass
class Column:
    """One column: its role, its polars dtype (as a string) and, for identifiers, its kind."""

    name: str
    role: Role
    dtype: str
    kind: str | None = None
    cardinality: int | None = None
    nulls: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["role"] = str(self.role)
        return {k: v for k, v in out.items() if v is not None}


@dataclass
class Schema:
    """The roles of a table's columns, plus the entity, time and label column names."""

    columns: list[Column]
    entity: str | None = None
    time: str | None = None
    label: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    #: "auto" (found at fit), "off", or a list of stated changes to what is found:
    #: ``{determinants: [a, b], determines: c}`` adds one, ``{determines: c, off: true}`` drops one
    dependencies: str | list[dict[str, Any]] = "auto"
    #: rules every sample keeps (see streamsynth.constraints): min/max, one_of, monotone, ...
    constraints: list[dict[str, Any]] = field(default_factory=list)

    # -- lookups -------------------------------------------------------------------------
    def __getitem__(self, name: str) -> Column:
        for col in self.columns:
            if col.name == name:
                return col
        raise StreamsynthError(
            f"schema has no column {name!r}",
            hint=f"columns are: {', '.join(c.name for c in self.columns)}",
        )

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def by_role(self, *roles: Role) -> list[Column]:
        return [c for c in self.columns if c.role in roles]

    @property
    def data_columns(self) -> list[Column]:
        """Columns a model learns: everything but entity, time, contract and ignored ones."""
        skip = (Role.ENTITY, Role.TIME, Role.CONTRACT, Role.IGNORE)
        return [c for c in self.columns if c.role not in skip]

    # -- inference -----------------------------------------------------------------------
    @classmethod
    def infer(
        cls,
        frame: pl.DataFrame,
        *,
        entity: str | None = None,
        time: str | None = None,
        label: str | None = None,
        overrides: dict[str, str | dict[str, Any]] | None = None,
    ) -> Schema:
        """Infer roles from ``frame``; ``entity``/``time``/``label``/``overrides`` win."""
        if frame.height == 0:
            raise StreamsynthError("cannot infer a schema from an empty table", hint="give data with rows")
        for name in [entity, time, label, *(overrides or {})]:
            if name is not None and name not in frame.columns:
                raise StreamsynthError(
                    f"column {name!r} is not in the data",
                    hint=f"columns are: {', '.join(frame.columns)}",
                )
        time = time or _infer_time(frame)
        label = label or _infer_label(frame)
        entity = entity or _infer_entity(frame, exclude={time, label})
        columns = []
        for name in frame.columns:
            series = frame[name]
            role, kind = _infer_role(series, frame.height)
            if name == time:
                role, kind = Role.TIME, None
            elif name == entity:
                role, kind = Role.ENTITY, _identifier_kind(series)
            elif name in CONTRACT_COLUMNS:
                role, kind = Role.CONTRACT, None
            elif time and _is_second_time(series):
                role, kind = Role.IGNORE, "second time column"
            elif isinstance(series.dtype, _UNLEARNABLE):
                role, kind = Role.IGNORE, "unsupported type"
            columns.append(
                Column(
                    name=name,
                    role=role,
                    dtype=str(series.dtype),
                    kind=kind,
                    cardinality=series.n_unique(),
                    nulls=series.null_count(),
                )
            )
        schema = cls(columns=columns, entity=entity, time=time, label=label).with_overrides(overrides or {})
        dropped = [c.name for c in schema.columns if c.kind == "second time column" and c.role is Role.IGNORE]
        if dropped:
            warnings.warn(
                f"{', '.join(map(repr, dropped))} {'hold' if len(dropped) > 1 else 'holds'} timestamps besides "
                f"the event time {time!r}; models leave {'them' if len(dropped) > 1 else 'it'} out. To use one "
                "as the event time, give --time NAME (or `time:` in a schema file)",
                DataWarning, stacklevel=2,
            )
        unlearnable = [f"{c.name!r} ({c.dtype})" for c in schema.columns
                       if c.kind == "unsupported type" and c.role is Role.IGNORE]
        if unlearnable:
            warnings.warn(
                f"models leave out {', '.join(unlearnable)}: lists and binary values cannot be learned. To learn "
                "one, store its values in columns of their own (nested objects are flattened to parent.field)",
                DataWarning, stacklevel=2,
            )
        return schema

    def with_overrides(self, overrides: dict[str, str | dict[str, Any]]) -> Schema:
        """A copy with columns' roles (or ``{role, kind}``) set explicitly."""
        columns = []
        by_name = {c.name: c for c in self.columns}
        for name in overrides:
            if name not in by_name:
                raise StreamsynthError(
                    f"override names column {name!r}, which is not in the data",
                    hint=f"columns are: {', '.join(by_name)}",
                )
        entity, time = self.entity, self.time
        for col in self.columns:
            spec = overrides.get(col.name)
            if spec is not None:
                spec = {"role": spec} if isinstance(spec, str) else dict(spec)
                role = _parse_role(spec.pop("role", col.role), f"columns.{col.name}.role")
                kind = spec.pop("kind", col.kind if role is Role.IDENTIFIER else None)
                if spec:
                    raise StreamsynthError(
                        f"override for column {col.name!r} has unknown keys {sorted(spec)}",
                        hint="an override is a role name or a mapping with 'role' and 'kind'",
                    )
                if role is Role.IDENTIFIER and kind is not None and kind not in IDENTIFIER_KINDS:
                    raise StreamsynthError(
                        f"columns.{col.name}.kind is {kind!r}",
                        hint=f"identifier kinds are: {', '.join(IDENTIFIER_KINDS)}",
                    )
                col = replace(col, role=role, kind=kind)
                if role is Role.ENTITY:
                    entity = col.name
                if role is Role.TIME:
                    time = col.name
            columns.append(col)
        # An explicit entity or time demotes the previous one to an ordinary column.
        columns = [
            replace(c, role=Role.IDENTIFIER, kind=c.kind or "code")
            if c.role is Role.ENTITY and c.name != entity
            else replace(c, role=Role.IGNORE) if c.role is Role.TIME and c.name != time else c
            for c in columns
        ]
        return Schema(columns=columns, entity=entity, time=time, label=self.label, extra=self.extra,
                      dependencies=self.dependencies, constraints=self.constraints)

    # -- validation against data ---------------------------------------------------------
    def validate(self, frame: pl.DataFrame, source: str = "data") -> None:
        """Check that ``frame`` has this schema's columns, naming the first missing one."""
        missing = [c.name for c in self.columns if c.role is not Role.CONTRACT and c.name not in frame.columns]
        if missing:
            close = closest(missing[0], frame.columns)
            raise StreamsynthError(
                f"{source} has no column {missing[0]!r}"
                + (f" (did you mean {close!r}?)" if close else ""),
                hint=f"columns in {source}: {', '.join(frame.columns)}",
            )
        if self.time and frame.schema[self.time] != pl.Datetime("us", "UTC"):
            raise StreamsynthError(
                f"{source}: time column {self.time!r} is {frame.schema[self.time]}, not a timestamp",
                hint="read the data with streamsynth.io.read, which parses timestamps",
            )

    # -- (de)serialisation ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "entity": self.entity,
            "time": self.time,
            "label": self.label,
            "columns": {c.name: {k: v for k, v in c.to_dict().items() if k != "name"} for c in self.columns},
        }
        if self.extra:
            out["extra"] = self.extra
        if self.dependencies != "auto":
            out["dependencies"] = self.dependencies
        if self.constraints:
            out["constraints"] = self.constraints
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "schema") -> Schema:
        if isinstance(data, dict):
            unknown = set(data) - {"entity", "time", "label", "columns", "extra", "dependencies", "constraints"}
            if unknown:
                raise StreamsynthError(
                    f"{source}: unknown keys {sorted(unknown)}",
                    hint="a schema has the keys entity, time, label, columns, dependencies, constraints",
                )
        if not isinstance(data, dict) or "columns" not in data:
            raise StreamsynthError(
                f"{source}: expected a mapping with a 'columns' key",
                hint="see `streamsynth inspect DATA --write-schema FILE` for an example",
            )
        columns = []
        for name, spec in (data["columns"] or {}).items():
            spec = {"role": spec} if isinstance(spec, str) else dict(spec or {})
            unknown = set(spec) - {"role", "dtype", "kind", "cardinality", "nulls"}
            if unknown:
                raise StreamsynthError(
                    f"{source}: columns.{name} has unknown keys {sorted(unknown)}",
                    hint="allowed keys: role, dtype, kind, cardinality, nulls",
                )
            role = _parse_role(spec.get("role"), f"{source}: columns.{name}.role")
            columns.append(
                Column(
                    name=name,
                    role=role,
                    dtype=spec.get("dtype", ""),
                    kind=spec.get("kind"),
                    cardinality=spec.get("cardinality"),
                    nulls=spec.get("nulls"),
                )
            )
        return cls(
            columns=columns,
            entity=data.get("entity"),
            time=data.get("time"),
            label=data.get("label"),
            extra=data.get("extra") or {},
            dependencies=check_dependencies(data.get("dependencies", "auto"), source),
            constraints=check_constraints(data.get("constraints"), source),
        )

    def to_yaml(self, path: str | Path) -> None:
        Path(path).write_text(yaml.safe_dump(self.to_dict(), sort_keys=False))

    @classmethod
    def from_yaml(cls, path: str | Path) -> Schema:
        return cls.from_dict(read_yaml(path, what="schema file"), source=str(path))


def overrides_from_yaml(path: str | Path) -> dict[str, Any]:
    """Read an overrides file: ``{entity:, time:, time_format:, label:, columns: {name: role | {role, kind}}}``.

    ``time_format`` (strftime) says how the time column's text is laid out (``"%y/%m/%d %H:%M:%S"``).
    """
    data = read_yaml(path, what="schema file") or {}
    if not isinstance(data, dict):
        raise StreamsynthError(f"schema file {path}: expected a mapping at the top level")
    unknown = set(data) - {"entity", "time", "time_format", "label", "columns", "extra", "dependencies",
                           "constraints"}
    if unknown:
        raise StreamsynthError(
            f"schema file {path}: unknown keys {sorted(unknown)}",
            hint="a schema file has the keys entity, time, time_format, label, columns, dependencies, "
            "constraints",
        )
    if "dependencies" in data:
        data["dependencies"] = check_dependencies(data["dependencies"], f"schema file {path}")
    if "constraints" in data:
        data["constraints"] = check_constraints(data["constraints"], f"schema file {path}")
    if data.get("time_format") is not None and not isinstance(data["time_format"], str):
        raise StreamsynthError(
            f"schema file {path}: time_format is {data['time_format']!r}",
            hint="give a strftime layout in quotes, e.g. time_format: '%y/%m/%d %H:%M:%S'",
        )
    return data


def check_dependencies(value: Any, source: str) -> str | list[dict[str, Any]]:
    """A schema's ``dependencies``: ``auto``, ``off`` (YAML reads it as false), or a list of
    ``{determinants: [...], determines: NAME}`` and ``{determines: NAME, off: true}``."""
    if value is False or value == "off":
        return "off"
    if value is None or value == "auto":
        return "auto"
    hint = ("write dependencies: off, or a list such as "
            "[{determinants: [origin, dest], determines: distance}, {determines: level, off: true}]")
    if not isinstance(value, list):
        raise StreamsynthError(f"{source}: dependencies is {value!r}", hint=hint)
    out = []
    for i, item in enumerate(value):
        where = f"{source}: dependencies[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("determines"), str):
            raise StreamsynthError(f"{where} names no column to determine ('determines: NAME')", hint=hint)
        unknown = set(item) - {"determinants", "determines", "off"}
        if unknown:
            raise StreamsynthError(f"{where} has unknown keys {sorted(unknown)}", hint=hint)
        if item.get("off"):
            out.append({"determines": item["determines"], "off": True})
            continue
        determinants = item.get("determinants")
        if isinstance(determinants, str):
            determinants = [determinants]
        if not isinstance(determinants, list) or not 1 <= len(determinants) <= 2 or not all(
                isinstance(d, str) for d in determinants):
            raise StreamsynthError(f"{where}.determinants must name one or two columns", hint=hint)
        out.append({"determinants": determinants, "determines": item["determines"]})
    return out


def text_overrides(spec: dict[str, Any]) -> list[str]:
    """Columns a schema file declares as something other than numbers: read them as text."""
    out = []
    for name, value in (spec.get("columns") or {}).items():
        role = value.get("role") if isinstance(value, dict) else value
        if role is not None and str(role) not in (Role.NUMERIC, Role.TIME, Role.BOOLEAN, Role.IGNORE):
            out.append(name)
    return out


# -- types models learn as numbers -----------------------------------------------------------
_DECIMAL = re.compile(r"^Decimal\(precision=(\d+|None), scale=(\d+)\)$")
_DURATION = re.compile(r"^Duration\(time_unit='(ns|us|ms)'\)$")


def stored_type(dtype: str) -> pl.DataType | None:
    """The Decimal or Duration type a column's dtype names (``"Decimal(precision=12, scale=2)"``),
    or None: models learn such columns as plain numbers, and samples carry the type back."""
    if found := _DECIMAL.match(dtype):
        precision = None if found[1] == "None" else int(found[1])
        return pl.Decimal(precision, int(found[2]))
    if found := _DURATION.match(dtype):
        return pl.Duration(found[1])  # type: ignore[arg-type]
    return None


def as_numbers(frame: pl.DataFrame) -> pl.DataFrame:
    """Decimal columns as Float64 and Duration columns as Int64 counts of their unit."""
    exprs = [
        pl.col(name).cast(pl.Float64) if isinstance(dtype, pl.Decimal) else pl.col(name).to_physical()
        for name, dtype in frame.schema.items()
        if isinstance(dtype, pl.Decimal | pl.Duration)
    ]
    return frame.with_columns(exprs) if exprs else frame


def with_stored_types(frame: pl.DataFrame, schema: Schema) -> pl.DataFrame:
    """The columns ``schema`` says were Decimal or Duration, cast back from a model's numbers."""
    exprs = []
    for col in schema.columns:
        wanted = stored_type(col.dtype) if col.name in frame.columns else None
        if wanted is None or frame.schema[col.name] == wanted:
            continue
        number = pl.col(col.name).cast(pl.Float64, strict=False)
        if isinstance(wanted, pl.Duration):
            number = number.round(0).cast(pl.Int64)
        exprs.append(number.cast(wanted, strict=False))
    return frame.with_columns(exprs) if exprs else frame


# -- inference helpers ---------------------------------------------------------------------
def _parse_role(value: Any, where: str) -> Role:
    try:
        return Role(str(value))
    except ValueError:
        raise StreamsynthError(
            f"{where} is {value!r}",
            hint=f"roles are: {', '.join(r.value for r in Role)}",
        ) from None


def _is_second_time(series: pl.Series) -> bool:
    """Timestamps, epoch numbers or unparsed text in a time-named column; a duration such as
    ``air_time`` (minutes in the air) is a number, not a second time."""
    if isinstance(series.dtype, pl.Duration):
        return False
    if series.dtype.is_temporal():
        return True
    if not is_time_name(series.name):
        return False
    return is_epoch(series) if series.dtype.is_numeric() else series.dtype == pl.String


def _infer_time(frame: pl.DataFrame) -> str | None:
    temporal = [c for c in frame.columns if frame.schema[c] == pl.Datetime("us", "UTC")]
    if not temporal:
        return None
    return max(temporal, key=lambda c: frame[c].n_unique())


def _infer_entity(frame: pl.DataFrame, exclude: set[str | None]) -> str | None:
    n = frame.height
    best: tuple[int, str] | None = None
    for name in frame.columns:
        if name in exclude or name in CONTRACT_COLUMNS:
            continue
        dtype = frame.schema[name]
        if not (dtype == pl.String or dtype.is_integer() or dtype == pl.Categorical):
            continue
        lname = name.lower()
        rank = _ENTITY_NAMES.index(lname) if lname in _ENTITY_NAMES else None
        if rank is None and not lname.endswith("_id"):
            continue
        if lname in _ROWNUM_NAMES:
            continue
        uniques = frame[name].n_unique()
        # An entity key repeats: several events per entity, more than a handful of entities.
        if not (2 <= uniques <= n / 2):
            continue
        score = rank if rank is not None else len(_ENTITY_NAMES)
        if best is None or score < best[0]:
            best = (score, name)
    return best[1] if best else _entity_by_values(frame, exclude)


def _entity_by_values(frame: pl.DataFrame, exclude: set[str | None]) -> str | None:
    """The entity key when no column's name says so (``客户``, ``Kunde``): a text column present
    on every event whose values look like keys (hold a digit and no space, or are emails,
    addresses, hosts...) and repeat, with at least a handful of them, and whose name is not that
    of a code or an event type; the one with most keys wins, and a warning names it. An integer
    column is taken only when no text column qualifies and its values behave as keys rather than
    as a quantity (:func:`_integers_look_like_keys`)."""
    n = frame.height
    best: tuple[int, str] | None = None
    best_integer: tuple[int, str] | None = None
    for name, dtype in frame.schema.items():
        if name in exclude or name in CONTRACT_COLUMNS or name.lower() in _ROWNUM_NAMES:
            continue
        if any(h in name.lower() for h in (*_CODE_HINTS, "event", "template")):
            continue  # event types and codes (a log's EventId E1..E14) are categories
        if frame[name].null_count() or not (dtype in (pl.String, pl.Categorical) or dtype.is_integer()):
            continue
        uniques = frame[name].n_unique()
        if not (_ENTITY_MIN_KEYS <= uniques <= n / 2):
            continue
        if dtype.is_integer():
            words = {w.removesuffix("s") for w in re.split(r"[^a-z0-9]+", name.lower())}
            if words & set(_QUANTITY_HINTS):
                continue
            if (best_integer is None or uniques > best_integer[0]) and _integers_look_like_keys(frame[name]):
                best_integer = (uniques, name)
            continue
        keys = frame[name].cast(pl.String).unique().head(200)
        if (keys.str.contains(r"^\S*\d\S*$").mean() or 0) < 0.9 and _identifier_kind(keys) is None:
            continue
        if best is None or uniques > best[0]:
            best = (uniques, name)
    best = best or best_integer
    if best is None:
        return None
    warnings.warn(
        f"taking {best[1]!r} as the entity column, for its values: {best[0]:,} keys repeating over {n:,} events. "
        "To choose another, give --entity NAME (or `entity:` in a schema file)",
        DataWarning, stacklevel=3,
    )
    return best[1]


def _integers_look_like_keys(series: pl.Series) -> bool:
    """Whether integers are keys (account numbers, user ids) rather than a quantity (an hour, a
    count, an amount in cents): keys are non-negative and most of them repeat (an amount's values
    are mostly seen once), and how often a key is seen says nothing about how often the next
    integer is (a quantity's counts change smoothly from one value to the next: hours of the day,
    ages, temperatures). Sparse keys, most without a neighbour, pass on the first two tests; a
    handful of consecutive integers (a rating, a small count) is never taken."""
    if series.min() < 0:
        return False
    counts = series.value_counts(name="n").sort(series.name)
    if (counts["n"] == 1).mean() > 0.5:
        return False
    values = counts[series.name].to_numpy().astype(np.int64)
    seen = np.log(counts["n"].to_numpy().astype(np.float64))
    neighbours = np.flatnonzero(np.diff(values) == 1)
    if len(neighbours) < (len(values) - 1) / 2:
        return True  # sparse: most keys have no neighbour, as account numbers
    if len(neighbours) < _KEY_NEIGHBOURS:
        return False  # a handful of consecutive integers: a scale or a small count
    if np.std(seen) == 0:
        return True
    correlation = np.corrcoef(seen[neighbours], seen[neighbours + 1])[0, 1]
    return bool(np.isnan(correlation) or correlation < 0.3)


def _infer_label(frame: pl.DataFrame) -> str | None:
    for wanted in _LABEL_NAMES:
        for name in frame.columns:
            if name.lower() == wanted and name not in (LABEL, IS_ANOMALY, EVENT_ID):
                if frame[name].n_unique() <= 20:
                    return name
    return None


def _infer_role(series: pl.Series, n_rows: int) -> tuple[Role, str | None]:
    dtype = series.dtype
    name = series.name.lower()
    uniques = series.n_unique()
    if dtype == pl.Boolean:
        return Role.BOOLEAN, None
    if isinstance(dtype, pl.Duration | pl.Decimal):
        return Role.NUMERIC, None  # learned as numbers (see as_numbers)
    if dtype.is_temporal():
        return Role.IGNORE, None
    if dtype.is_numeric():
        if dtype.is_integer():
            if name in _ROWNUM_NAMES and uniques == n_rows:
                return Role.IGNORE, None
            values = set(series.drop_nulls().unique().head(3).to_list())
            if uniques <= 2 and values <= {0, 1}:
                return Role.BOOLEAN, None
            if uniques <= 32 and any(h in name for h in _CODE_HINTS):
                return Role.CATEGORICAL, None
            if name.endswith("_id") or name == "pid":
                return (Role.CATEGORICAL, None) if uniques <= 256 else (Role.IDENTIFIER, "code")
            # Long digit strings read from CSV as integers: card, account and phone numbers.
            kind = _identifier_kind(series.drop_nulls().cast(pl.String))
            if kind == "credit_card" or (
                uniques > 0.05 * n_rows and any(h in name for h in ("number", "account", "phone", "card"))
            ):
                return Role.IDENTIFIER, kind or "code"
        return Role.NUMERIC, None
    if dtype in (pl.String, pl.Categorical, pl.Enum):
        strings = series.cast(pl.String).drop_nulls()
        if strings.len() == 0:
            return Role.CATEGORICAL, None
        kind = _identifier_kind(strings)
        high_card = uniques > max(50, 0.2 * n_rows)
        # Values that identify a person or a machine stay identifiers however few there are: a model
        # that learned them as categories would replay real IPs and addresses.
        if kind is not None and (high_card or kind in _PERSONAL_KINDS):
            return Role.IDENTIFIER, kind
        if high_card:
            mean_len = strings.str.len_chars().mean() or 0
            has_spaces = strings.head(1000).str.contains(" ").mean() or 0
            if mean_len > 20 and has_spaces > 0.5:
                return Role.TEXT, None
            return Role.IDENTIFIER, kind or "code"
        return Role.CATEGORICAL, None
    return Role.IGNORE, None


def _identifier_kind(series: pl.Series) -> str | None:
    """The identifier kind most of a sample of values matches, if any."""
    if series.dtype != pl.String:
        return None
    sample = series.drop_nulls().unique(maintain_order=True).head(200).to_list()
    if not sample:
        return None
    for kind, pattern in _PATTERNS.items():
        hits = sum(1 for v in sample if pattern.match(v))
        if hits >= 0.9 * len(sample):
            if kind == "credit_card" and sum(luhn_ok(v) for v in sample) < 0.9 * len(sample):
                continue
            if kind == "phone" and all(v.isdigit() for v in sample):
                continue
            return kind
    return None


def luhn_ok(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def sequence_stats(frame: pl.DataFrame, schema: Schema) -> dict[str, Any]:
    """Entities, events per entity, time span and median inter-arrival of a table."""
    stats: dict[str, Any] = {"events": frame.height}
    time, entity = schema.time, schema.entity
    if entity:
        counts = frame.group_by(entity).len()["len"]
        stats.update(
            entities=counts.len(),
            events_per_entity_min=int(counts.min()),
            events_per_entity_median=float(counts.median()),
            events_per_entity_max=int(counts.max()),
        )
    if time:
        ts = frame[time].drop_nulls()
        if ts.len():
            stats.update(start=str(ts.min()), end=str(ts.max()), span=str(ts.max() - ts.min()))
        gaps_expr = pl.col(time).sort().diff()
        if entity:
            gaps_expr = gaps_expr.over(entity)
        gaps = frame.select(gaps_expr.dt.total_microseconds().alias("g"))["g"].drop_nulls()
        if gaps.len():
            stats["median_inter_arrival_s"] = float(gaps.median()) / 1e6
    return stats
