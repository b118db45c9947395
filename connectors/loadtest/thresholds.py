"""``--threshold``: pass/fail criteria on the run's figures, k6-style (``p99<250ms``, ``errors<0.1%``).

A threshold is ``METRIC OP VALUE``; the run fails (exit 1) when a threshold does not hold at the
end, or, with ``--abort-on-fail``, as soon as one does not hold on the figures so far.

Metrics: ``p50 p90 p95 p99 p99.9 max`` (latency from the scheduled send time, the honest one) and
the same with a ``sent_`` prefix (from the actual send time), with a unit ``us ms s`` (ms when
bare); ``errors`` as a share of the requests sent and ``dropped`` of those scheduled (``%`` or a
fraction); ``rps`` (requests answered per second); ``precision`` and ``recall`` (of ``--expect``).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
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
_SYNTAX = re.compile(r"\s*([a-z_]+(?:\d+(?:\.\d+)?)?)\s*(<=|>=|==|<|>)\s*(\d+(?:\.\d+)?)\s*(us|ms|s|%)?\s*")
_LATENCY_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, None: 1.0}
_HINT = "write --threshold METRIC<VALUE, e.g. 'p99<250ms', 'errors<0.1%', 'recall>0.9'"


@dataclass(frozen=True)
class Threshold:
    """One criterion; ``value`` in the metric's own unit (ms for latency, a fraction for shares)."""

    text: str
    metric: str
    op: str
    value: float

    @classmethod
    def parse(cls, text: str) -> Threshold:
        match = _SYNTAX.fullmatch(text)
        if not match:
            raise StreamsynthError(f"--threshold {text!r} is not METRIC OP VALUE", hint=_HINT)
        metric, op, number, unit = match.groups()
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
        return cls(text=text.strip(), metric=metric, op=op, value=value)

    def holds(self, figures: Mapping[str, float | None]) -> bool | None:
        """Whether it holds on ``figures`` (metric -> value); None while the metric has no value yet."""
        actual = figures.get(self.metric)
        if actual is None:
            return None
        return _OPS[self.op](actual, self.value)


def crossed(thresholds: list[Threshold], figures: Mapping[str, float | None]) -> list[Threshold]:
    """The thresholds that do not hold (one without a value yet -- no samples -- is not crossed)."""
    return [t for t in thresholds if t.holds(figures) is False]
