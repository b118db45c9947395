"""Unit tests of rule-spec planning (:func:`streamsynth.rules.build_plan`) on small specs written
here: resolution order, dtypes and roles, the state machine's tables, profiles, the output schema,
and the semantic errors the plan catches (file and key path in the message)."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import polars as pl
import pytest

from streamsynth.errors import StreamsynthError
from streamsynth.rules import EXAMPLES, build_plan, parse_spec
from streamsynth.schema import Role

SOURCE = "spec.yaml"


def small_spec() -> dict[str, Any]:
    return {
        "name": "shop",
        "time": "ts",
        "label": "is_fraud",
        "entity": {
            "name": "customer",
            "count": 10,
            "attributes": {
                "tier": {"distribution": {"kind": "choice", "values": ["gold", "basic"], "weights": [1, 3]}},
                "spend": {"distribution": {"kind": "lognormal", "mu": 3.0, "sigma": 0.5}},
                "secret": {"distribution": {"kind": "uniform"}, "output": False},
            },
        },
        "arrival": {"sessions_per_day": 2.0, "hour_of_day": [2.0] * 12 + [1.0] * 12},
        "events": {
            "type": {
                "column": "step",
                "start": {"browse": 3, "buy": 1},
                "states": {
                    "browse": {"next": {"browse": 1, "buy": 1, "end": 2}},
                    "buy": {},  # no transitions: ends the session
                },
            },
            "fields": {
                # declared before what it reads: the plan orders them
                "total": {"expr": "amount * 1.2 if tier == 'gold' else amount"},
                "amount": {"distribution": {"kind": "normal", "mean": "spend", "std": 2.0}, "round": 2},
                "status": {"distribution": {"kind": "choice", "values": [200, 402],
                                            "weights": {"by": "step", "values": {"browse": [1, 0], "buy": [9, 1]}}}},
                "is_fraud": {"distribution": {"kind": "bernoulli", "p": 0.01}},
                "tx": {"faker": "uuid"},
            },
        },
    }


def plan_of(data: dict[str, Any]):
    return build_plan(parse_spec(data, source=SOURCE), source=SOURCE)


def test_fields_resolve_in_dependency_order_with_types_and_roles():
    plan = plan_of(small_spec())
    names = [f.name for f in plan.fields]
    assert names.index("amount") < names.index("total")
    by = {f.name: f for f in plan.fields}
    assert by["total"].deps == {"amount", "tier"}
    assert by["amount"].deps == {"spend"}
    assert (by["amount"].dtype, by["amount"].role) == (pl.Float64(), Role.NUMERIC)
    assert (by["total"].dtype, by["total"].role) == (pl.Float64(), Role.NUMERIC)
    # integer codes from a choice are categories (HTTP status), not numbers
    assert (by["status"].dtype, by["status"].role) == (pl.Int64(), Role.CATEGORICAL)
    assert by["status"].values == [200, 402]
    assert (by["is_fraud"].dtype, by["is_fraud"].role) == (pl.Boolean(), Role.BOOLEAN)
    assert (by["tx"].dtype, by["tx"].role, by["tx"].kind) == (pl.String(), Role.IDENTIFIER, "uuid")
    attrs = {a.name: a for a in plan.attributes}
    assert (attrs["tier"].dtype, attrs["tier"].role) == (pl.String(), Role.CATEGORICAL)
    np.testing.assert_allclose(attrs["tier"].cum[-1], 1.0)
    np.testing.assert_allclose(np.diff(np.concatenate([[0.0], attrs["tier"].cum])), [0.25, 0.75])


def test_choice_weights_by_column_rows():
    by = {f.name: f for f in plan_of(small_spec()).fields}
    rows = by["status"].lookup_rows
    # one cumulative row per listed state, plus the default (even weights)
    np.testing.assert_allclose(rows, [[1.0, 1.0], [0.9, 1.0], [0.5, 1.0]])


def test_state_machine_tables():
    machine = plan_of(small_spec()).machine
    assert machine.column == "step" and machine.states == ["browse", "buy"]
    np.testing.assert_allclose(machine.start_cum, [0.75, 1.0])
    # columns: browse, buy, end
    np.testing.assert_allclose(machine.trans_cum, [[0.25, 0.5, 1.0], [0.0, 0.0, 1.0]])
    assert machine.max_events == 100


def test_profiles_have_mean_one():
    plan = plan_of(small_spec())
    np.testing.assert_allclose(plan.hour_profile, [4 / 3] * 12 + [2 / 3] * 12)
    np.testing.assert_array_equal(plan.day_profile, np.ones(7))


def test_output_columns_and_schema():
    plan = plan_of(small_spec())
    # time, entity, attributes, state column, then fields in resolution order; no output: false
    assert plan.output_columns == ["ts", "customer", "tier", "spend", "step", "amount", "total", "status",
                                   "is_fraud", "tx"]
    schema = plan.schema
    assert (schema.time, schema.entity, schema.label) == ("ts", "customer", "is_fraud")
    assert [c.name for c in schema.columns] == plan.output_columns
    roles = {c.name: c.role for c in schema.columns}
    assert roles["ts"] is Role.TIME and roles["customer"] is Role.ENTITY and roles["step"] is Role.CATEGORICAL
    assert schema.extra == {"source": "rules", "spec": "shop"}


@pytest.mark.parametrize("name", EXAMPLES)
def test_shipped_examples_plan(name):
    from importlib.resources import files

    import yaml

    data = yaml.safe_load(files("streamsynth.rules").joinpath(f"examples/{name}.yaml").read_text())
    plan = plan_of(data)
    assert plan.schema.time == data["time"] and plan.schema.entity == data["entity"]["name"]
    assert plan.output_columns[:2] == [data["time"], data["entity"]["name"]]
    names = [f.name for f in plan.fields]
    for f in plan.fields:  # every field after the fields it reads
        assert all(names.index(d) < names.index(f.name) for d in f.deps if d in names)


def edit(path: str, value: Any, data: dict[str, Any] | None = None) -> dict[str, Any]:
    """``small_spec`` with the key at dotted ``path`` set to ``value`` (``...`` deletes it)."""
    data = copy.deepcopy(data if data is not None else small_spec())
    *parents, last = path.split(".")
    node = data
    for part in parents:
        node = node.setdefault(part, {})
    if value is ...:
        node.pop(last, None)
    else:
        node[last] = value
    return data


BAD = {
    "reserved name": (edit("events.fields.label", {"expr": "1"}), "events.fields.label", "is reserved"),
    "duplicate name": (edit("events.fields.tier", {"expr": "1"}), "events.fields.tier",
                       "already defined at entity.attributes.tier"),
    "attribute reads an event field": (
        edit("entity.attributes.x", {"expr": "amount + 1"}), "entity.attributes.x",
        "refers to 'amount', which is not defined here"),
    "cycle": (edit("events.fields.amount", {"expr": "total + 1"}), "events.fields.total",
              "cycle: total -> amount -> total"),
    "rate_by not numeric": (edit("arrival.rate_by", "tier"), "arrival.rate_by", "not a numeric entity attribute"),
    "bursts state unknown": (
        edit("arrival.bursts", {"probability": 0.1, "events": {"kind": "poisson", "lam": 3},
                                "gap": {"kind": "exponential", "scale": 1.0}, "state": "pay"}),
        "arrival.bursts.state", "'pay' is not a state"),
    "bursts without state": (
        edit("arrival.bursts", {"probability": 0.1, "events": {"kind": "poisson", "lam": 3},
                                "gap": {"kind": "exponential", "scale": 1.0}}),
        "arrival.bursts.state", "required key is missing"),
    "session events with a machine": (
        edit("arrival.session", {"events": {"kind": "poisson", "lam": 3}}),
        "arrival.session.events", "not allowed with a state machine"),
    "round on text": (edit("events.fields.tx", {"faker": "uuid", "round": 2}), "events.fields.tx",
                      "round and clip apply to numbers"),
    "label not boolean": (edit("label", "amount"), "label", "is Float64"),
    "label not output": (edit("events.fields.is_fraud", {"distribution": {"kind": "bernoulli", "p": 0.1},
                                                          "output": False}), "label", "has output: false"),
    "noise in an attribute": (edit("entity.attributes.x", {"expr": "noise(60)"}), "entity.attributes.x.expr",
                              "noise() needs an event time"),
    "lookup names a value never taken": (
        edit("events.fields.status", {"distribution": {"kind": "choice", "values": [200, 402], "weights": {
            "by": "step", "values": {"browse": [1, 0], "buy": [9, 1], "refund": [1, 1]}}}}),
        "events.fields.status.distribution.weights.values.refund", "never takes the value 'refund'"),
    "values mix types": (edit("events.fields.status", {"distribution": {"kind": "choice", "values": [200, "x"]}}),
                         "events.fields.status.distribution.values", "values mix types (int, str)"),
    "parameter expression not a number": (
        edit("events.fields.amount", {"distribution": {"kind": "normal", "mean": "tier", "std": 1.0}}),
        "events.fields.amount.distribution.mean", "expected a number"),
    "expression does not type-check": (edit("events.fields.total", {"expr": "tier * 2 + amount"}),
                                       "events.fields.total.expr", "does not type-check"),
    "start state unknown": (edit("events.type.start", "checkout"), "events.type.start",
                            "'checkout' is not a declared state"),
    "arrival gap not constant": (edit("arrival.session", {"gap": {"kind": "exponential", "scale": "spend"}}),
                                 "arrival.session.gap.scale", "expected a number"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_semantic_errors_name_the_file_and_key_path(case):
    data, key, what = BAD[case]
    with pytest.raises(StreamsynthError) as err:
        plan_of(data)
    message = err.value.message
    assert message.startswith(f"{SOURCE}: "), message
    assert key in message, message
    assert what in message, message


def test_the_unedited_spec_is_valid_for_every_error_case():
    # the error cases differ from a valid spec by the one edit each makes
    plan_of(small_spec())
    assert plan_of(edit("arrival.session", {"gap": {"kind": "exponential", "scale": 5.0}})).machine is not None
