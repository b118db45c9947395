"""The rule-based schema file: pydantic models, loading, and errors that name file and key path.

A schema declares entities (count, id, attributes), an arrival process, an optional state
machine for event types, and event fields. ``load_spec(path)`` reads and validates it;
every problem is a :class:`StreamsynthError` naming the file, the key path
(``events.fields.amount.distribution.sigma``) and what was expected.
"""

from __future__ import annotations

import difflib
import types
import typing
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from streamsynth.contract import as_utc, utc_field
from streamsynth.errors import StreamsynthError
from streamsynth.identifiers import KINDS, UNIQUE_KINDS

Scalar = str | int | float | bool


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ByParam(_Strict):
    """A parameter looked up from another column: ``{by: category, values: {...}, default: x}``."""

    by: str
    values: dict[Scalar, Any]
    default: Any = None


def _param(value: Any) -> Any:
    if isinstance(value, ByParam):
        return value
    if isinstance(value, bool):
        raise ValueError(f"expected a number or an expression, got {value!r}")
    if isinstance(value, int | float | str):
        return value
    if isinstance(value, dict):
        unknown = set(value) - {"by", "values", "default"}
        if unknown or "by" not in value or "values" not in value:
            raise ValueError(
                "expected a number, an expression string, or a lookup "
                "{by: COLUMN, values: {CATEGORY: VALUE, ...}, default: VALUE}"
                + (f" (unknown keys {sorted(unknown)})" if unknown else "")
            )
        if not isinstance(value["values"], dict) or not value["values"]:
            raise ValueError("a lookup's 'values' must be a non-empty mapping CATEGORY: VALUE")
        return ByParam(**value)
    raise ValueError(f"expected a number, an expression string or a lookup, got {value!r}")


Param = Annotated[Any, BeforeValidator(_param)]


def _positive(value: Any) -> Any:
    if isinstance(value, int | float) and not value > 0:
        raise ValueError(f"expected a number > 0, got {value}")
    return value


def _non_negative(value: Any) -> Any:
    if isinstance(value, int | float) and value < 0:
        raise ValueError(f"expected a number >= 0, got {value}")
    return value


def _probability(value: Any) -> Any:
    if isinstance(value, int | float) and not 0 <= value <= 1:
        raise ValueError(f"expected a probability between 0 and 1, got {value}")
    return value


class Normal(_Strict):
    kind: Literal["normal"]
    mean: Param = 0.0
    std: Annotated[Param, BeforeValidator(_positive)] = 1.0


class LogNormal(_Strict):
    """exp(N(mu, sigma)): ``mu`` and ``sigma`` are of the logarithm, as in numpy."""

    kind: Literal["lognormal"]
    mu: Param = 0.0
    sigma: Annotated[Param, BeforeValidator(_positive)] = 1.0


class Uniform(_Strict):
    kind: Literal["uniform"]
    low: Param = 0.0
    high: Param = 1.0

    @model_validator(mode="after")
    def _ordered(self) -> Uniform:
        if isinstance(self.low, int | float) and isinstance(self.high, int | float):
            if not self.high > self.low:
                raise ValueError(f"expected low < high, got low={self.low}, high={self.high}")
        return self


class Exponential(_Strict):
    """Exponential with mean ``scale``."""

    kind: Literal["exponential"]
    scale: Annotated[Param, BeforeValidator(_positive)] = 1.0


class Poisson(_Strict):
    kind: Literal["poisson"]
    lam: Annotated[Param, BeforeValidator(_non_negative)]


class Bernoulli(_Strict):
    kind: Literal["bernoulli"]
    p: Annotated[Param, BeforeValidator(_probability)]


class Zipf(_Strict):
    """Ranks 1..n (or the listed values, most frequent first) with P(k) ~ k**-s."""

    kind: Literal["zipf"]
    s: float = Field(gt=0)
    n: int | None = Field(default=None, ge=1, le=10_000_000)
    values: list[Scalar] | None = None

    @model_validator(mode="after")
    def _support(self) -> Zipf:
        if (self.n is None) == (self.values is None):
            raise ValueError("give exactly one of 'n' (ranks 1..n) or 'values' (a list)")
        if self.values is not None and not self.values:
            raise ValueError("'values' must not be empty")
        return self


class Choice(_Strict):
    """One of ``values``; ``weights`` (relative) may be a lookup by another column."""

    kind: Literal["choice"]
    values: list[Scalar] = Field(min_length=1)
    weights: ByParam | list[float] | None = None

    @field_validator("weights", mode="before")
    @classmethod
    def _weights(cls, value: Any) -> Any:
        if value is None or isinstance(value, list):
            if value is not None and any(
                isinstance(w, bool) or not isinstance(w, int | float) or w < 0 for w in value
            ):
                raise ValueError("weights must be numbers >= 0")
            return value
        if isinstance(value, dict):
            return _param(value)
        raise ValueError("expected a list of weights or a lookup {by: COLUMN, values: {...}}")

    @model_validator(mode="after")
    def _lengths(self) -> Choice:
        n = len(self.values)
        lists = [self.weights] if isinstance(self.weights, list) else []
        if isinstance(self.weights, ByParam):
            lists = list(self.weights.values.values())
            if self.weights.default is not None:
                lists.append(self.weights.default)
        for weights in lists:
            if not isinstance(weights, list) or len(weights) != n:
                raise ValueError(f"weights must be a list of {n} numbers, one per value, got {weights!r}")
            if not sum(weights) > 0:
                raise ValueError("weights must not all be zero")
        return self


class Constant(_Strict):
    kind: Literal["constant"]
    value: Scalar


Distribution = Annotated[
    Union[Normal, LogNormal, Uniform, Exponential, Poisson, Bernoulli, Zipf, Choice, Constant],  # noqa: UP007
    Field(discriminator="kind"),
]
DISTRIBUTION_KINDS = (
    "normal", "lognormal", "uniform", "exponential", "poisson", "bernoulli", "zipf", "choice",
    "constant",
)


class FieldSpec(_Strict):
    """One column: exactly one of ``distribution``, ``faker`` or ``expr``, plus finishing."""

    description: str | None = None
    distribution: Distribution | None = None
    faker: str | None = None
    #: faker values are consistent per event (default), per session or per entity.
    per: Literal["event", "session", "entity"] = "event"
    locale: str = "en_US"
    expr: str | None = None
    round: int | None = Field(default=None, ge=0, le=12)
    clip: tuple[float | None, float | None] | None = None
    dtype: Literal["int", "float", "str", "bool"] | None = None
    role: Literal["categorical", "numeric", "boolean", "identifier", "text"] | None = None
    output: bool = True

    @model_validator(mode="after")
    def _one_source(self) -> FieldSpec:
        given = [k for k in ("distribution", "faker", "expr") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(
                "a field needs exactly one of 'distribution', 'faker' or 'expr'"
                + (f", got {' and '.join(given)}" if given else "")
            )
        return self

    @field_validator("faker")
    @classmethod
    def _kind(cls, value: str | None) -> str | None:

        if value is not None and value not in KINDS:
            close = difflib.get_close_matches(value, KINDS, n=1)
            raise ValueError(
                f"unknown faker kind {value!r}"
                + (f" (did you mean {close[0]!r}?)" if close else "")
                + f"; kinds are: {', '.join(KINDS)}"
            )
        return value


class IdSpec(_Strict):
    """How entity id strings look: a faker kind (``code``, ``uuid``, ...) or prefix + number."""

    faker: str | None = None
    prefix: str | None = None
    digits: int = Field(default=6, ge=1, le=18)

    @model_validator(mode="after")
    def _one(self) -> IdSpec:
        if (self.faker is None) == (self.prefix is None):
            raise ValueError("give exactly one of 'faker' (an identifier kind) or 'prefix'")

        if self.faker is not None and self.faker not in UNIQUE_KINDS:
            raise ValueError(
                f"entity ids must be unique, and faker kind {self.faker!r} repeats values; "
                f"use one of: {', '.join(UNIQUE_KINDS)}"
            )
        return self


class EntitySpec(_Strict):
    name: str = Field(min_length=1)
    count: int = Field(ge=1, le=100_000_000)
    id: IdSpec = IdSpec(prefix="e")
    attributes: dict[str, FieldSpec] = {}


class SessionSpec(_Strict):
    """Events per session (at least 1; ignored with a state machine) and gaps between them."""

    events: Distribution | None = None
    gap: Distribution | None = None


class BurstSpec(_Strict):
    """A fraction of sessions are bursts: many events of one type in quick succession."""

    probability: float = Field(ge=0, le=1)
    events: Distribution
    gap: Distribution
    state: str | None = None


class ArrivalSpec(_Strict):
    process: Literal["poisson", "regular"] = "poisson"
    #: poisson: mean sessions per entity per day, before profiles and ``rate_by``.
    sessions_per_day: float | None = Field(default=None, gt=0)
    #: a numeric entity attribute that multiplies the entity's rate.
    rate_by: str | None = None
    #: regular: seconds between events of an entity, plus uniform +/- jitter.
    interval: float | None = Field(default=None, gt=0)
    jitter: float = Field(default=0.0, ge=0)
    #: relative weights per UTC hour (24) and weekday Monday..Sunday (7); normalised to mean 1.
    hour_of_day: list[float] | None = None
    day_of_week: list[float] | None = None
    session: SessionSpec = SessionSpec()
    bursts: BurstSpec | None = None

    @field_validator("hour_of_day", "day_of_week")
    @classmethod
    def _profile(cls, value: list[float] | None, info: Any) -> list[float] | None:
        if value is None:
            return value
        want = 24 if info.field_name == "hour_of_day" else 7
        if len(value) != want:
            raise ValueError(f"expected a list of {want} weights, got {len(value)}")
        if any(w < 0 for w in value) or not sum(value) > 0:
            raise ValueError("weights must be >= 0 and not all zero")
        return value

    @model_validator(mode="after")
    def _process(self) -> ArrivalSpec:
        if self.process == "poisson" and self.sessions_per_day is None:
            raise ValueError("a poisson process needs 'sessions_per_day' (a number > 0)")
        if self.process == "regular" and self.interval is None:
            raise ValueError("a regular process needs 'interval' (seconds between events)")
        if self.process == "regular" and self.jitter * 2 >= self.interval:
            raise ValueError("'jitter' must be less than half the 'interval'")
        return self


class StateSpec(_Strict):
    """Transitions (relative weights; ``end`` ends the session) and the dwell until the next event."""

    next: dict[str, float] = {}
    dwell: Distribution | None = None

    @field_validator("next")
    @classmethod
    def _weights(cls, value: dict[str, float]) -> dict[str, float]:
        if any(w < 0 for w in value.values()):
            raise ValueError("transition weights must be >= 0")
        if value and not sum(value.values()) > 0:
            raise ValueError("transition weights must not all be zero")
        return value


class MachineSpec(_Strict):
    column: str = "event_type"
    start: str | dict[str, float]
    states: dict[str, StateSpec] = Field(min_length=1)
    max_events: int = Field(default=100, ge=1, le=10_000)


class EventsSpec(_Strict):
    type: MachineSpec | None = None
    fields: dict[str, FieldSpec] = {}


class DependencySpec(_Strict):
    """``determines`` is fixed by ``determinants``: the same values of them, the same value."""

    determinants: list[str] = Field(min_length=1, max_length=4)
    determines: str


class RuleSpec(_Strict):
    """A whole rule-based schema file."""

    name: str = Field(default="rules", pattern=r"^[A-Za-z0-9_.]+(-[A-Za-z0-9_.]+)*$")
    description: str | None = None
    seed: int = 0
    start: Annotated[datetime, BeforeValidator(utc_field)] = datetime(2024, 1, 1, tzinfo=UTC)
    duration_hours: float = Field(default=24.0, gt=0)
    time: str = "ts"
    label: str | None = None
    entity: EntitySpec
    arrival: ArrivalSpec
    events: EventsSpec = EventsSpec()
    dependencies: list[DependencySpec] = []

    @field_validator("start", mode="after")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        return as_utc(value)


# -- loading and error messages ------------------------------------------------------------------
def parse_spec(data: Any, source: str = "schema") -> RuleSpec:
    """Validate a parsed mapping; the first problem becomes a :class:`StreamsynthError`."""
    if not isinstance(data, dict):
        raise StreamsynthError(
            f"{source}: expected a mapping at the top level (entity:, arrival:, events:), "
            f"got {type(data).__name__}",
            hint="write an example with `streamsynth schema init payments`",
        )
    try:
        return RuleSpec.model_validate(data)
    except ValidationError as exc:
        raise _as_error(exc, data, source) from None


def _as_error(exc: ValidationError, data: Any, source: str) -> StreamsynthError:
    errors = exc.errors(include_url=False)
    # A misspelt key usually also makes a required one "missing": report the misspelling.
    error = min(errors, key=lambda e: e["type"] != "extra_forbidden")
    loc = _clean_loc(error["loc"], data)
    path = ".".join(str(p) for p in loc) or "(top level)"
    kind = error["type"]
    hint = None
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1], data)
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        message = f"{source}: {path}: unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")
        hint = f"allowed keys here: {', '.join(allowed)}" if allowed else None
    elif kind == "missing":
        message = f"{source}: {path}: required key is missing"
    elif kind in ("union_tag_invalid", "union_tag_not_found"):
        message = f"{source}: {path}: expected 'kind' to be one of {', '.join(DISTRIBUTION_KINDS)}"
        got = error.get("ctx", {}).get("tag")
        if got is not None:
            message += f", got {got!r}"
        path_kind = f"{path}.kind" if kind == "union_tag_not_found" else path
        message = message.replace(f"{source}: {path}:", f"{source}: {path_kind}:")
    else:
        msg = error["msg"].removeprefix("Value error, ")
        got = error.get("input")
        message = f"{source}: {path}: {msg}"
        if kind not in ("value_error", "assertion_error") and not isinstance(got, dict | list):
            message += f" (got {got!r})"
    return StreamsynthError(
        message, hint=hint or "see a commented example: `streamsynth schema init payments`"
    )


def _clean_loc(loc: tuple[Any, ...], data: Any) -> list[Any]:
    """Drop the union tags pydantic puts in paths, keeping the keys as written in the file."""
    out: list[Any] = []
    node = data
    for part in loc:
        if isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            out.append(part)
            node = node[part]
        elif part in DISTRIBUTION_KINDS or part in ("function-before[_param(), any]",):
            continue
        elif isinstance(part, str) and ("[" in part or part.startswith("function-")):
            continue
        else:
            out.append(part)
            node = None
    return out


def _allowed_keys(loc: list[Any], data: Any) -> list[str]:
    """The keys the model at ``loc`` accepts (for 'unknown key' hints)."""
    model: Any = RuleSpec
    node: Any = data
    for part in loc:
        node = node.get(part) if isinstance(node, dict) else None
        model = _step(model, part, node)
        if model is None:
            return []
    if isinstance(model, type) and issubclass(model, BaseModel):
        return list(model.model_fields)
    return []


def _step(model: Any, part: Any, node: Any) -> Any:
    if isinstance(model, type) and issubclass(model, BaseModel):
        field = model.model_fields.get(part)
        return _unwrap(field.annotation, node) if field else None
    origin = typing.get_origin(model)
    if origin is dict:
        return _unwrap(typing.get_args(model)[1], node)
    return None


def _unwrap(annotation: Any, node: Any) -> Any:
    """Strip Optional/Annotated; pick the union member matching a node's ``kind`` tag."""
    while typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    origin = typing.get_origin(annotation)
    if origin in (Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        models = [m for m in (_unwrap(a, node) for a in members) if m is not None]
        tag = node.get("kind") if isinstance(node, dict) else None
        for m in models:
            if isinstance(m, type) and issubclass(m, BaseModel) and "kind" in m.model_fields:
                if tag in typing.get_args(m.model_fields["kind"].annotation):
                    return m
        return models[0] if len(models) == 1 else None
    return annotation
