"""``--threshold``: pass/fail criteria on the run's figures, k6-style (``p99<250ms``, ``errors<0.1%``).

A threshold is ``METRIC OP VALUE``; the run fails (exit 1) when a threshold does not hold at the
end, or, with ``--abort-on-fail``, as soon as one does not hold on the figures so far.

Metrics: ``p50 p90 p95 p99 p99.9 max`` (latency from the scheduled send time, the honest one) and
the same with a ``sent_`` prefix (from the actual send time), with a unit ``us ms s`` (ms when
bare); ``errors`` as a share of the requests sent and ``dropped`` of those scheduled (``%`` or a
fraction); ``rps`` (requests answered per second); ``precision`` and ``recall`` (of ``--expect``).

A metric may name a label in braces, k6's tag filter: ``p99{label=fraud.card_testing}<250ms`` holds
the criterion to the figures of that label's requests only. Labels are only known as events arrive,
so a label never seen is a crossed threshold at the end of the run (not before: it may yet come).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from streamsynth.errors import StreamsynthError

_LATENCY = ("p50", "p90", "p95", "p99", "p99.9", "max")
LATENCY_METRICS = _LATENCY + tuple(f"sent_{m}" for m in _LATENCY)
SHARE_METRICS = ("errors", "dropped")
PLAIN_METRICS = ("rps", "precision", "recall")
METRICS = LATENCY_METRICS + SHARE_METRICS + PLAIN_METRICS
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<=": operator.le, ">=": operator.ge, "==": operator.eq, "<": operator.lt, ">": operator.gt,
}
_SYNTAX = re.compile(r"\s*([a-z_]+(?:\d+(?:\.\d+)?)?)\s*(\{[^{}]*\})?"  # metric, {label=NAME}
                     r"\s*(<=|>=|==|<|>)\s*(\d+(?:\.\d+)?)\s*(us|ms|s|%)?\s*")
# k6 writes a tag filter {name:value}; = reads better here and both are accepted
_FILTER = re.compile(r"\{\s*label\s*[=:]\s*(['\"]?)([^'\"{}]+?)\1\s*\}")
_LATENCY_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, None: 1.0}
_HINT = ("write --threshold METRIC<VALUE, e.g. 'p99<250ms', 'errors<0.1%', 'recall>0.9', "
         "'p99{label=fraud.card_testing}<250ms'")


@dataclass(frozen=True)
class Threshold:
    """One criterion; ``value`` in the metric's own unit (ms for latency, a fraction for shares)."""

    text: str
    metric: str
    op: str
    value: float
    label: str | None = None  # only the requests of this label count

    @property
    def key(self) -> str:
        """The figure it reads: the metric, or ``metric{label=NAME}`` for a label's own figure."""
        return self.metric if self.label is None else label_key(self.metric, self.label)

    @classmethod
    def parse(cls, text: str) -> Threshold:
        match = _SYNTAX.fullmatch(text)
        if not match:
            raise StreamsynthError(f"--threshold {text!r} is not METRIC OP VALUE", hint=_HINT)
        metric, tag, op, number, unit = match.groups()
        label = None
        if tag is not None:
            where = _FILTER.fullmatch(tag)
            if where is None:
                raise StreamsynthError(f"--threshold {text!r}: {tag} is not a label filter",
                                       hint="filter by label only, e.g. 'p99{label=fraud.card_testing}<250ms'")
            label = where.group(2)
        if metric not in METRICS:
            raise StreamsynthError(f"--threshold {text!r}: no metric {metric!r}",
                                   hint=f"the metrics: {', '.join(METRICS)}")
        value = float(number)
        if metric in LATENCY_METRICS:
            if unit == "%":
                raise StreamsynthError(f"--threshold {text!r}: a latency is not a percentage",
                                       hint="give a latency in us, ms or s, e.g. p99<250ms")
            value *= _LATENCY_UNITS[unit]
        elif metric in SHARE_METRICS:
            if unit not in ("%", None):
                raise StreamsynthError(f"--threshold {text!r}: {metric} is a share, not a time",
                                       hint=f"write e.g. {metric}<0.1% or {metric}<0.001")
            value = value / 100 if unit == "%" else value
        elif unit is not None:
            raise StreamsynthError(f"--threshold {text!r}: {metric} takes a plain number",
                                   hint=f"write e.g. {metric}>0.9")
        return cls(text=text.strip(), metric=metric, op=op, value=value, label=label)

    def holds(self, figures: Mapping[str, float | None]) -> bool | None:
        """Whether it holds on ``figures`` (metric -> value); None while the metric has no value yet."""
        actual = figures.get(self.key)
        if actual is None:
            return None
        return _OPS[self.op](actual, self.value)


def label_key(metric: str, label: str) -> str:
    """The name of a label's own figure among the figures (as a threshold on it is written)."""
    return f"{metric}{{label={label}}}"


def crossed(thresholds: list[Threshold], figures: Mapping[str, float | None],
            seen: Collection[str] | None = None) -> list[Threshold]:
    """The thresholds that do not hold (one without a value yet -- no samples -- is not crossed).

    ``seen``: the labels of the whole run, given at its end, when a threshold on a label not among
    them is crossed (during the run the label may yet come, so it is not).
    """
    return [t for t in thresholds
            if t.holds(figures) is False or (seen is not None and t.label is not None and t.label not in seen)]
