"""Conditions checked against what a model learned, before anything is sampled or written.

At fit, every data column's domain is recorded in the model's metadata (saved with it): the
values of a categorical or boolean column (up to :data:`MAX_VALUES`), the range of a numeric
one. A condition (``-c is_fraud=true``) is then checked and normalised up front: a boolean
spelled other than true/false/1/0/yes/no, a category the model never saw, or a number outside
the training range is an error naming the column and what it allows. A model saved before
domains were recorded gets the type checks only; the model's own checks still apply.
"""

from __future__ import annotations

import math
from typing import Any

import polars as pl

from streamsynth.errors import StreamsynthError
from streamsynth.schema import Role, Schema

#: categorical columns with more distinct values than this record none (only the model checks)
MAX_VALUES = 1000
TRUE = ("true", "1", "yes")
FALSE = ("false", "0", "no")


def learn_domains(frame: pl.DataFrame, schema: Schema) -> dict[str, dict[str, Any]]:
    """Column name -> its domain: ``{"kind": "boolean"}``, ``{"kind": "categorical", "values":
    [...] or None}`` or ``{"kind": "numeric", "min": x, "max": y}``."""
    out: dict[str, dict[str, Any]] = {}
    for column in schema.data_columns:
        if column.name not in frame.columns:
            continue
        series = frame[column.name].drop_nulls()
        if column.role is Role.BOOLEAN or series.dtype == pl.Boolean:
            out[column.name] = {"kind": "boolean"}
        elif column.role is Role.NUMERIC and series.dtype.is_numeric():
            finite = series.cast(pl.Float64).filter(series.cast(pl.Float64).is_finite())
            if finite.len():
                out[column.name] = {"kind": "numeric", "min": float(finite.min()), "max": float(finite.max())}
        elif column.role is Role.CATEGORICAL:
            unique = series.unique()
            values = sorted(unique.to_list(), key=str) if unique.len() <= MAX_VALUES else None
            out[column.name] = {"kind": "categorical", "values": values}
    return out


def check_conditions(
    conditions: dict[str, Any], domains: dict[str, dict[str, Any]], model: str
) -> dict[str, Any]:
    """``conditions`` checked against ``domains`` and normalised (booleans as bool, numbers as
    float); raises :class:`StreamsynthError` naming the column and the allowed values."""
    out = dict(conditions)
    for name, value in conditions.items():
        domain = domains.get(name)
        if domain is None:
            continue
        kind = domain["kind"]
        if kind == "boolean":
            out[name] = _boolean(name, value)
        elif kind == "numeric":
            out[name] = _number(name, value, domain, model)
        elif domain.get("values") is not None:
            out[name] = _category(name, value, domain["values"])
    return out


def _boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if text in TRUE or text in FALSE:
        return text in TRUE
    raise StreamsynthError(
        f"condition {name}={value!r}: {name} is a true/false column",
        hint=f"write {name}=true or {name}=false (1/0 and yes/no work too)",
    )


def _number(name: str, value: Any, domain: dict[str, Any], model: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not math.isfinite(number):
        raise StreamsynthError(
            f"condition {name}={value!r}: {name} is a numeric column",
            hint=f"give a number between {domain['min']:g} and {domain['max']:g}",
        )
    if not domain["min"] <= number <= domain["max"]:
        raise StreamsynthError(
            f"condition {name}={value!r}: outside the range the {model} model learned "
            f"({domain['min']:g} to {domain['max']:g})",
            hint=f"give a value between {domain['min']:g} and {domain['max']:g}",
        )
    return number


def _category(name: str, value: Any, values: list[Any]) -> Any:
    if value in values:
        return value
    # the command line reads 7 as a number; a column of text holds "7"
    text = {str(v): v for v in values}
    if str(value) in text:
        return text[str(value)]
    shown = ", ".join(str(v) for v in values[:20]) + (", ..." if len(values) > 20 else "")
    raise StreamsynthError(
        f"condition {name}={value!r}: the model never saw that value of {name}",
        hint=f"values of {name}: {shown}",
    )
