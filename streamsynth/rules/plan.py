"""Turn a validated :class:`RuleSpec` into an executable plan, checking names, types and cycles.

The plan resolves the order fields are computed in (expressions may read other fields and
entity attributes), each column's dtype and schema role, the state machine's transition
tables and the arrival profiles. Everything a user can get wrong past the file's shape is
caught here, with the file and key path in the message.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from streamsynth.contract import CONTRACT_COLUMNS
from streamsynth.errors import StreamsynthError
from streamsynth.rules import distributions as D
from streamsynth.rules.expressions import Compiled, compile_expr
from streamsynth.rules.spec import (
    ByParam,
    Choice,
    Constant,
    FieldSpec,
    RuleSpec,
    Zipf,
    parse_spec,
)
from streamsynth.schema import IDENTIFIER_KINDS, Column, Role, Schema
from streamsynth.yamlfile import read_yaml

#: Names every event field may read besides attributes and other fields.
EVENT_CONTEXT: dict[str, pl.DataType] = {
    "hour": pl.Int64(),  # UTC hour of the event, 0..23
    "weekday": pl.Int64(),  # 0 = Monday
    "load": pl.Float64(),  # the arrival profile's weight at the event time (mean 1)
    "in_burst": pl.Boolean(),  # the event belongs to a burst session
    "position": pl.Int64(),  # index of the event in its session, from 0
    "session": pl.Int64(),  # a number identifying the session
}
_FLOAT_KINDS = ("normal", "lognormal", "uniform", "exponential")
_CAST = {"int": pl.Int64(), "float": pl.Float64(), "str": pl.String(), "bool": pl.Boolean()}
# Pool-backed faker kinds that behave like categories rather than identifiers.
_CATEGORICAL_FAKER = (
    "first_name", "last_name", "company", "merchant", "city", "country", "country_code",
    "street_address", "job", "domain", "uri_path", "currency_code", "word", "user_agent",
)


@dataclass
class ParamPlan:
    """A distribution parameter: a constant, an expression, or a lookup by another column."""

    constant: Any = None
    compiled: Compiled | None = None
    lookup: ByParam | None = None
    prefix: str = ""


@dataclass
class FieldPlan:
    name: str
    path: str  # key path in the file, for messages
    spec: FieldSpec
    dtype: pl.DataType
    role: Role
    kind: str | None = None  # identifier kind for the schema
    compiled: Compiled | None = None
    params: dict[str, ParamPlan] = field(default_factory=dict)
    deps: set[str] = field(default_factory=set)
    values: list[Any] | None = None  # categories of choice / zipf values / constant
    values_dtype: pl.DataType | None = None
    cum: np.ndarray | None = None  # cumulative weights (choice, zipf)
    lookup_rows: np.ndarray | None = None  # per-category cumulative weights (choice by column)
    #: a stated dependency: the field's draw is keyed by these columns' values, not the event
    keyed_by: tuple[str, ...] = ()


@dataclass
class MachinePlan:
    column: str
    states: list[str]
    start_cum: np.ndarray
    trans_cum: np.ndarray  # (S, S + 1): the last column is "end"
    dwell: list[Any]  # a distribution spec (or None) per state
    max_events: int


@dataclass
class Plan:
    spec: RuleSpec
    source: str
    attributes: list[FieldPlan]
    fields: list[FieldPlan]
    machine: MachinePlan | None
    hour_profile: np.ndarray
    day_profile: np.ndarray
    burst_state: int | None
    schema: Schema

    @property
    def output_columns(self) -> list[str]:
        spec = self.spec
        cols = [spec.time, spec.entity.name]
        cols += [a.name for a in self.attributes if a.spec.output]
        if self.machine:
            cols.append(self.machine.column)
        cols += [f.name for f in self.fields if f.spec.output]
        return cols


def load_spec(path: str | Path) -> RuleSpec:
    """Read and validate a schema file; semantic checks (names, cycles) come with it."""
    data = read_yaml(
        path,
        what="schema file",
        missing_hint="write an example with `streamsynth schema init payments -o schema.yaml`",
        syntax_hint="check indentation and quoting (expressions with ':' or '#' need quotes)",
    )
    spec = parse_spec(data, source=str(path))
    build_plan(spec, source=str(path))
    return spec


def build_plan(spec: RuleSpec, source: str = "schema") -> Plan:
    """Resolve and check a spec; raises :class:`StreamsynthError` naming file and key path."""
    _check_names(spec, source)
    attr_types: dict[str, pl.DataType] = {spec.entity.name: pl.String()}
    attr_values: dict[str, list[Any]] = {}
    attributes = _resolve(
        spec.entity.attributes, "entity.attributes", source, attr_types, attr_values, event=False
    )
    machine = _machine(spec, source)
    scope = dict(attr_types)
    scope.update(EVENT_CONTEXT)
    values = dict(attr_values)
    if machine:
        scope[machine.column] = pl.String()
        values[machine.column] = list(machine.states)
    fields = _resolve(spec.events.fields, "events.fields", source, scope, values, event=True,
                      keyed=_stated_dependencies(spec, source, scope))
    arrival = spec.arrival
    if arrival.rate_by is not None:
        dtype = attr_types.get(arrival.rate_by)
        if dtype is None or not dtype.is_numeric():
            raise StreamsynthError(
                f"{source}: arrival.rate_by: {arrival.rate_by!r} is not a numeric entity attribute",
                hint=f"numeric attributes: {', '.join(n for n, t in attr_types.items() if t.is_numeric()) or 'none'}",
            )
    _check_constant_dists(spec, source)
    burst_state = None
    if arrival.bursts and arrival.bursts.state is not None:
        if machine is None or arrival.bursts.state not in machine.states:
            raise StreamsynthError(
                f"{source}: arrival.bursts.state: {arrival.bursts.state!r} is not a state of "
                "events.type.states",
                hint="declare the state machine under events.type, or drop bursts.state",
            )
        burst_state = machine.states.index(arrival.bursts.state)
    elif arrival.bursts and machine is not None:
        raise StreamsynthError(
            f"{source}: arrival.bursts.state: required key is missing",
            hint="with a state machine, bursts need the state their events have, e.g. payment",
        )
    if machine is not None and arrival.session.events is not None:
        raise StreamsynthError(
            f"{source}: arrival.session.events: not allowed with a state machine",
            hint="the state machine decides when a session ends (transitions to 'end')",
        )
    plan = Plan(
        spec=spec,
        source=source,
        attributes=attributes,
        fields=fields,
        machine=machine,
        hour_profile=_profile(arrival.hour_of_day, 24),
        day_profile=_profile(arrival.day_of_week, 7),
        burst_state=burst_state,
        schema=Schema(columns=[], entity=spec.entity.name, time=spec.time, label=spec.label),
    )
    plan.schema = _schema(plan, source)
    return plan


def _stated_dependencies(spec: RuleSpec, source: str, scope: dict[str, pl.DataType]) -> dict[str, tuple[str, ...]]:
    """``dependencies:`` as event field -> its determinants, checked: an event field drawn from
    a distribution or faker (an ``expr`` is a function of what it reads already), fixed by
    columns an event can read."""
    fields = spec.events.fields
    known = sorted(set(scope) | set(fields))
    out: dict[str, tuple[str, ...]] = {}
    for i, item in enumerate(spec.dependencies):
        where = f"{source}: dependencies[{i}]"
        if item.determines not in fields:
            raise StreamsynthError(f"{where}.determines: {item.determines!r} is not an event field",
                                   hint=f"event fields: {', '.join(fields) or 'none'}")
        if fields[item.determines].expr is not None:
            raise StreamsynthError(
                f"{where}.determines: {item.determines!r} is an expr, a function of what it reads already",
                hint="state dependencies for fields drawn from a distribution or faker")
        if item.determines in out:
            raise StreamsynthError(f"{where}.determines: {item.determines!r} is stated twice",
                                   hint="give each field one dependency")
        for name in item.determinants:
            if name not in known or name == item.determines:
                raise StreamsynthError(f"{where}.determinants: {name!r} is not a column an event field can read",
                                       hint=f"names available: {', '.join(known)}")
        out[item.determines] = tuple(item.determinants)
    return out


# -- names -----------------------------------------------------------------------------------------
def _check_names(spec: RuleSpec, source: str) -> None:
    seen: dict[str, str] = {}
    reserved = set(CONTRACT_COLUMNS) | set(EVENT_CONTEXT)

    def claim(name: str, path: str) -> None:
        if name in reserved:
            raise StreamsynthError(
                f"{source}: {path}: the name {name!r} is reserved",
                hint=f"reserved names: {', '.join(sorted(reserved))}; rename the column",
            )
        if name in seen:
            raise StreamsynthError(
                f"{source}: {path}: column {name!r} is already defined at {seen[name]}",
                hint="every column (time, entity, attributes, state column, fields) needs its own name",
            )
        if not name.isidentifier():
            raise StreamsynthError(
                f"{source}: {path}: {name!r} is not a valid column name",
                hint="use letters, digits and underscores, starting with a letter (expressions refer to it)",
            )
        seen[name] = path

    claim(spec.time, "time")
    claim(spec.entity.name, "entity.name")
    for name in spec.entity.attributes:
        claim(name, f"entity.attributes.{name}")
    if spec.events.type is not None:
        claim(spec.events.type.column, "events.type.column")
    for name in spec.events.fields:
        claim(name, f"events.fields.{name}")
    if spec.label is not None:
        label_owner = spec.events.fields.get(spec.label) or spec.entity.attributes.get(spec.label)
        if label_owner is None:
            raise StreamsynthError(
                f"{source}: label: {spec.label!r} is not an event field or entity attribute",
                hint="name the boolean (or text) column that marks anomalies, e.g. is_fraud",
            )
        if not label_owner.output:
            raise StreamsynthError(f"{source}: label: the column {spec.label!r} has output: false")


# -- fields ----------------------------------------------------------------------------------------
def _resolve(
    specs: dict[str, FieldSpec],
    base: str,
    source: str,
    scope: dict[str, pl.DataType],
    values: dict[str, list[Any]],
    *,
    event: bool,
    keyed: dict[str, tuple[str, ...]] | None = None,
) -> list[FieldPlan]:
    """Plans in dependency order; adds each field's dtype to ``scope`` as it resolves. A field
    in ``keyed`` is drawn once per combination of those columns' values (a stated dependency)."""
    drafts = {name: _draft(name, f"{base}.{name}", spec, source, event) for name, spec in specs.items()}
    for name, determinants in (keyed or {}).items():
        varying = sorted(drafts[name].deps - set(determinants))
        if varying:
            raise StreamsynthError(
                f"{source}: {drafts[name].path}: is stated as fixed by {', '.join(determinants)} but reads "
                f"{', '.join(map(repr, varying))}, so it would vary for the same values of them",
                hint="add those columns to the dependency's determinants, or drop the dependency",
            )
        drafts[name].deps |= set(determinants)
        drafts[name].keyed_by = determinants
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, chain: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = chain[chain.index(name):] + [name]
            raise StreamsynthError(
                f"{source}: {drafts[name].path}: fields depend on each other in a cycle: "
                f"{' -> '.join(cycle)}",
                hint="break the cycle: one of these fields must not read the others",
            )
        state[name] = 1
        for dep in sorted(drafts[name].deps):
            if dep in drafts:
                visit(dep, chain + [name])
            elif dep not in scope:
                known = sorted(set(scope) | set(drafts))
                raise StreamsynthError(
                    f"{source}: {drafts[name].path}: refers to {dep!r}, which is not defined here",
                    hint=f"names available here: {', '.join(known)}"
                    + ("" if event else " (entity attributes cannot read event fields)"),
                )
        state[name] = 2
        order.append(name)

    for name in drafts:
        visit(name, [])
    plans = []
    for name in order:
        plan = drafts[name]
        _finish_types(plan, source, scope, values)
        scope[name] = plan.dtype
        if plan.values is not None and plan.values_dtype is not None and plan.dtype == plan.values_dtype:
            values[name] = plan.values
        plans.append(plan)
    return plans


def _draft(name: str, path: str, spec: FieldSpec, source: str, event: bool) -> FieldPlan:
    plan = FieldPlan(name=name, path=path, spec=spec, dtype=pl.Null(), role=Role.CATEGORICAL)
    if spec.expr is not None:
        plan.compiled = compile_expr(spec.expr, f"{source}: {path}.expr", prefix=f"__{name}_r")
        plan.deps |= plan.compiled.names
        _check_randoms(plan.compiled, f"{source}: {path}.expr", event)
    elif spec.faker is not None:
        if not event and spec.per != "event":
            raise StreamsynthError(
                f"{source}: {path}.per: entity attributes are per entity already",
                hint="drop 'per' from entity attributes",
            )
    else:
        dist = spec.distribution
        if isinstance(dist, Choice) and isinstance(dist.weights, ByParam):
            plan.deps.add(dist.weights.by)
        for pname, value in dist.__dict__.items():
            if pname == "kind" or value is None or isinstance(dist, Choice | Zipf | Constant):
                continue
            where = f"{source}: {path}.distribution.{pname}"
            param = ParamPlan(prefix=f"__{name}_{pname}_r")
            if isinstance(value, ByParam):
                param.lookup = value
                plan.deps.add(value.by)
            elif isinstance(value, str):
                param.compiled = compile_expr(value, where, prefix=param.prefix)
                _check_randoms(param.compiled, where, event)
                plan.deps |= param.compiled.names
            else:
                param.constant = value
            plan.params[pname] = param
    return plan


def _check_randoms(compiled: Compiled, where: str, event: bool) -> None:
    if not event and any(fn == "noise" for fn, _ in compiled.randoms):
        raise StreamsynthError(
            f"{where}: noise() needs an event time and works only in events.fields",
            hint="use uniform() or normal() for entity attributes",
        )


def _values_dtype(values: list[Any], where: str) -> pl.DataType:
    if all(isinstance(v, bool) for v in values):
        return pl.Boolean()
    if all(isinstance(v, str) for v in values):
        return pl.String()
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return pl.Int64()
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        return pl.Float64()
    raise StreamsynthError(
        f"{where}: values mix types ({', '.join(sorted({type(v).__name__ for v in values}))})",
        hint="make the values all strings, all numbers or all true/false; quote numbers to make them text",
    )


def _finish_types(
    plan: FieldPlan, source: str, scope: dict[str, pl.DataType], values: dict[str, list[Any]]
) -> None:
    spec = plan.spec
    where = f"{source}: {plan.path}"
    if spec.faker is not None:
        dtype: pl.DataType = pl.String()
        if spec.faker in IDENTIFIER_KINDS:
            plan.role, plan.kind = Role.IDENTIFIER, spec.faker
        elif spec.faker in _CATEGORICAL_FAKER:
            plan.role = Role.CATEGORICAL
        else:
            plan.role = Role.IDENTIFIER
    elif spec.expr is not None:
        dtype = _expr_dtype(plan.compiled, where + ".expr", scope)
        plan.role = _role_of(dtype)
    else:
        dist = spec.distribution
        kind = dist.kind
        for pname, param in plan.params.items():
            _check_param(plan, pname, param, source, scope, values)
        if kind in _FLOAT_KINDS:
            dtype = pl.Float64()
        elif kind == "poisson" or (kind == "zipf" and dist.values is None):
            dtype = pl.Int64()
            if kind == "zipf":
                plan.cum = D.zipf_cdf(dist.s, dist.n)
        elif kind == "bernoulli":
            dtype = pl.Boolean()
        else:
            plan.values = [dist.value] if kind == "constant" else list(dist.values)
            dtype = plan.values_dtype = _values_dtype(plan.values, f"{where}.distribution.values")
            if kind == "zipf":
                plan.cum = D.zipf_cdf(dist.s, len(plan.values))
            elif kind == "choice":
                _choice_weights(plan, dist, source, values)
        if kind in ("choice", "zipf", "constant") and dtype.is_integer():
            plan.role = Role.CATEGORICAL  # codes such as HTTP status or MCC
        else:
            plan.role = _role_of(dtype)
    if spec.round is not None or spec.clip is not None:
        if not dtype.is_numeric():
            raise StreamsynthError(
                f"{where}: round and clip apply to numbers, and this field is {dtype}",
                hint="drop round/clip, or make the field numeric",
            )
    if spec.dtype is not None:
        dtype = _CAST[spec.dtype]
        if spec.role is None and not (plan.role is Role.CATEGORICAL and dtype.is_integer()):
            plan.role = _role_of(dtype)
    if spec.role is not None:
        plan.role = Role(spec.role)
    plan.dtype = dtype


def _role_of(dtype: pl.DataType) -> Role:
    if dtype == pl.Boolean:
        return Role.BOOLEAN
    if dtype.is_numeric():
        return Role.NUMERIC
    return Role.CATEGORICAL


def _expr_dtype(compiled: Compiled, where: str, scope: dict[str, pl.DataType]) -> pl.DataType:
    schema = dict(scope)
    for i in range(len(compiled.randoms)):
        schema[f"{compiled.prefix}{i}"] = pl.Float64()
    try:
        out = pl.LazyFrame(schema=schema).select(compiled.expr.alias("x")).collect_schema()
    except pl.exceptions.PolarsError as exc:
        first = str(exc).strip().splitlines()[0]
        raise StreamsynthError(
            f"{where}: the expression does not type-check: {first}",
            hint="check that the columns it combines have compatible types (numbers vs text)",
        ) from None
    dtype = out["x"]
    if dtype == pl.Null:
        raise StreamsynthError(f"{where}: the expression is always null")
    return dtype


def _check_param(
    plan: FieldPlan,
    pname: str,
    param: ParamPlan,
    source: str,
    scope: dict[str, pl.DataType],
    values: dict[str, list[Any]],
) -> None:
    where = f"{source}: {plan.path}.distribution.{pname}"
    if param.compiled is not None:
        dtype = _expr_dtype(param.compiled, where, scope)
        if not dtype.is_numeric():
            raise StreamsynthError(f"{where}: the expression gives {dtype}, expected a number")
    elif param.lookup is not None:
        lookup = param.lookup
        for key, value in [*lookup.values.items(), ("default", lookup.default)]:
            if key == "default" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise StreamsynthError(
                    f"{where}.values.{key}: expected a number, got {value!r}"
                    if key != "default" else f"{where}.default: expected a number, got {value!r}"
                )
        _check_lookup_cover(lookup, where, values)


def _check_lookup_cover(lookup: ByParam, where: str, values: dict[str, list[Any]]) -> None:
    known = values.get(lookup.by)
    if lookup.default is None:
        if known is None:
            raise StreamsynthError(
                f"{where}: a lookup by {lookup.by!r} needs a 'default'",
                hint=f"{lookup.by!r} is not a column with a fixed list of values, so add default: VALUE",
            )
        missing = [v for v in known if v not in lookup.values and str(v) not in lookup.values]
        if missing:
            raise StreamsynthError(
                f"{where}.values: no entry for {lookup.by} = {missing[0]!r}",
                hint=f"give a value for each of {', '.join(map(str, known))}, or add default: VALUE",
            )
    if known is not None:
        extra = [k for k in lookup.values if k not in known and k not in [str(v) for v in known]]
        if extra:
            raise StreamsynthError(
                f"{where}.values.{extra[0]}: {lookup.by!r} never takes the value {extra[0]!r}",
                hint=f"its values are: {', '.join(map(str, known))}",
            )


def _choice_weights(plan: FieldPlan, dist: Choice, source: str, values: dict[str, list[Any]]) -> None:
    n = len(dist.values)
    weights = dist.weights
    if weights is None:
        plan.cum = D.cumulative(np.ones(n))
    elif isinstance(weights, list):
        plan.cum = D.cumulative(np.array(weights, dtype=np.float64))
    else:
        where = f"{source}: {plan.path}.distribution.weights"
        _check_lookup_cover(weights, where, values)
        rows = [weights.values[k] for k in weights.values]
        default = weights.default if weights.default is not None else [1.0] * n
        plan.lookup_rows = D.cumulative(np.array([*rows, default], dtype=np.float64))


def _profile(weights: list[float] | None, n: int) -> np.ndarray:
    if weights is None:
        return np.ones(n)
    arr = np.asarray(weights, dtype=np.float64)
    return arr / arr.mean()


# -- state machine and arrival distributions ----------------------------------------------------
def _machine(spec: RuleSpec, source: str) -> MachinePlan | None:
    m = spec.events.type
    if m is None:
        return None
    states = list(m.states)
    index = {s: i for i, s in enumerate(states)}
    start = {m.start: 1.0} if isinstance(m.start, str) else m.start
    declared = f"declared states: {', '.join(states)}"
    for s in start:
        if s not in index:
            raise StreamsynthError(f"{source}: events.type.start: {s!r} is not a declared state", hint=declared)
    for name, state in m.states.items():
        for target in state.next:
            if target != "end" and target not in index:
                raise StreamsynthError(
                    f"{source}: events.type.states.{name}.next.{target}: moves to a state that is not declared",
                    hint=f"{declared}; 'end' ends the session",
                )
    if not sum(start.values()) > 0 or any(w < 0 for w in start.values()):
        raise StreamsynthError(f"{source}: events.type.start: weights must be >= 0, not all zero")
    start_w = np.zeros(len(states))
    for s, w in start.items():
        start_w[index[s]] = w
    trans = np.zeros((len(states), len(states) + 1))
    for i, s in enumerate(states):
        nxt = m.states[s].next
        if not nxt:
            trans[i, -1] = 1.0  # a state with no transitions ends the session
        for target, w in nxt.items():
            trans[i, len(states) if target == "end" else index[target]] += w
    return MachinePlan(
        column=m.column,
        states=states,
        start_cum=D.cumulative(start_w),
        trans_cum=D.cumulative(trans),
        dwell=[m.states[s].dwell for s in states],
        max_events=m.max_events,
    )


def _check_constant_dists(spec: RuleSpec, source: str) -> None:
    """Arrival distributions (gaps, dwell, counts) take constant numeric parameters only."""
    places: list[tuple[str, Any]] = [
        ("arrival.session.events", spec.arrival.session.events),
        ("arrival.session.gap", spec.arrival.session.gap),
    ]
    if spec.arrival.bursts:
        places += [
            ("arrival.bursts.events", spec.arrival.bursts.events),
            ("arrival.bursts.gap", spec.arrival.bursts.gap),
        ]
    if spec.events.type:
        places += [
            (f"events.type.states.{s}.dwell", st.dwell) for s, st in spec.events.type.states.items()
        ]
    for path, dist in places:
        if dist is None:
            continue
        if isinstance(dist, Choice | Zipf | Constant):
            vals = [dist.value] if isinstance(dist, Constant) else (dist.values or [1])
            if any(isinstance(v, bool) or not isinstance(v, int | float) for v in vals):
                raise StreamsynthError(f"{source}: {path}: values must be numbers (seconds or counts)")
            if isinstance(dist, Choice) and not (dist.weights is None or isinstance(dist.weights, list)):
                raise StreamsynthError(f"{source}: {path}.weights: expected a list of numbers")
            continue
        if dist.kind == "bernoulli":
            raise StreamsynthError(f"{source}: {path}: expected a numeric distribution, got bernoulli")
        for pname, value in dist.__dict__.items():
            if pname != "kind" and not (isinstance(value, int | float) and not isinstance(value, bool)):
                raise StreamsynthError(
                    f"{source}: {path}.{pname}: expected a number, got {value!r}",
                    hint="gaps, dwell times and event counts take constant parameters",
                )


# -- the output schema -----------------------------------------------------------------------------
def _schema(plan: Plan, source: str) -> Schema:
    spec = plan.spec
    id_kind = spec.entity.id.faker if spec.entity.id.faker in IDENTIFIER_KINDS else "code"
    columns = [
        Column(name=spec.time, role=Role.TIME, dtype=str(pl.Datetime("us", "UTC"))),
        Column(name=spec.entity.name, role=Role.ENTITY, dtype="String", kind=id_kind),
    ]
    for p in plan.attributes:
        if p.spec.output:
            columns.append(Column(name=p.name, role=p.role, dtype=str(p.dtype), kind=p.kind))
    if plan.machine:
        columns.append(Column(name=plan.machine.column, role=Role.CATEGORICAL, dtype="String"))
    for p in plan.fields:
        if p.spec.output:
            columns.append(Column(name=p.name, role=p.role, dtype=str(p.dtype), kind=p.kind))
    if spec.label is not None:
        dtype = next(c.dtype for c in columns if c.name == spec.label)
        if dtype not in ("Boolean", "String") and not dtype.startswith(("Int", "UInt")):
            raise StreamsynthError(
                f"{source}: label: the column {spec.label!r} is {dtype}",
                hint="a label column is boolean (true = anomaly), 0/1, or text ('normal' or a label)",
            )
    return Schema(
        columns=columns,
        entity=spec.entity.name,
        time=spec.time,
        label=spec.label,
        extra={"source": "rules", "spec": spec.name},
    )
