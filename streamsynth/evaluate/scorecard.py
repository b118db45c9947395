"""The scorecard: named metrics, which way is better, default thresholds, --fail-under gates.

Each key names one number of the evaluation. A check passes when the value is no worse than
its threshold: at most the threshold for "lower is better" keys, at least it for "higher is
better" keys. ``--fail-under KEY=VALUE`` sets a key's threshold and makes it a gate: a failed
gate makes ``streamsynth evaluate`` exit with code 1. ``ks.COLUMN``, ``wasserstein.COLUMN``
and ``tv.COLUMN`` name one column.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streamsynth.errors import StreamsynthError
from streamsynth.evaluate.result import Check, EvaluationResult, Fidelity


@dataclass(frozen=True)
class Metric:
    description: str
    higher_is_better: bool
    default: float | None
    value: Callable[[EvaluationResult], float | None]


def _max(values: list[float]) -> float | None:
    values = [v for v in values if v is not None and not math.isnan(v)]
    return max(values) if values else None


def _fid(fn: Callable[[Fidelity], float | None]) -> Callable[[EvaluationResult], float | None]:
    return lambda r: fn(r.fidelity)


def _at(path: str) -> Callable[[EvaluationResult], float | None]:
    """The value at a dotted path into the result (``"fidelity.inter_arrival.ks"``); ``None``
    where a part on the way was not computed."""

    def value(result: EvaluationResult) -> float | None:
        found: Any = result
        for name in path.split("."):
            found = getattr(found, name)
            if found is None:
                return None
        return found

    return value


def _mean_autocorr(f: Fidelity) -> float | None:
    values = [a.mean_abs_diff for a in f.autocorrelation if not math.isnan(a.mean_abs_diff)]
    return sum(values) / len(values) if values else None


METRICS: dict[str, Metric] = {
    "ks": Metric(
        "worst KS statistic over numeric columns",
        False,
        0.1,
        _fid(lambda f: _max([c.ks for c in f.numeric])),
    ),
    "wasserstein": Metric(
        "worst Wasserstein distance over numeric columns, in real standard deviations",
        False,
        0.1,
        _fid(lambda f: _max([c.wasserstein_norm for c in f.numeric])),
    ),
    "tv": Metric(
        "worst total variation distance over categorical and boolean columns",
        False,
        0.1,
        _fid(lambda f: _max([c.tv for c in f.categorical])),
    ),
    "correlation": Metric(
        "largest difference between real and synthetic Spearman correlations",
        False,
        0.15,
        _at("fidelity.correlation.max_abs_diff"),
    ),
    "dependencies": Metric(
        "share of synthetic rows breaking a dependency of the real data (a column fixed by others)",
        False,
        0.01,
        _at("fidelity.dependencies.broken_share"),
    ),
    "association": Metric(
        "largest difference between real and synthetic Cramer's V",
        False,
        0.15,
        _at("fidelity.association.max_abs_diff"),
    ),
    "autocorrelation": Metric(
        "mean |difference| of within-entity autocorrelation, lags 1-10",
        False,
        0.1,
        _fid(_mean_autocorr),
    ),
    "inter_arrival": Metric(
        "KS statistic of the within-entity inter-arrival times",
        False,
        0.1,
        _at("fidelity.inter_arrival.ks"),
    ),
    "events_per_entity": Metric(
        "KS statistic of the number of events per entity",
        False,
        0.1,
        _at("fidelity.events_per_entity.ks"),
    ),
    "hour_of_day": Metric(
        "total variation distance of the hour-of-day profile",
        False,
        0.05,
        _at("fidelity.hour_of_day.tv"),
    ),
    "day_of_week": Metric(
        "total variation distance of the day-of-week profile",
        False,
        0.05,
        _at("fidelity.day_of_week.tv"),
    ),
    # 0.65: real against real (two halves of the entities) scores 0.50 +- 0.01 on the payments
    # demo, and a discriminator of this kind measured up to 0.66 real against real on a real
    # purchases table (issue 18), so a lower default would fail real data. Defects score far
    # above it on the demo: amount shuffled across rows 0.79, timestamps jittered by hours 0.71,
    # cents no longer whole 1.0 (the baseline's sample: 0.68 on the values alone, 1.0 with
    # their decimals, as its amounts are not rounded to cents).
    "discriminator_auc": Metric(
        "held-out ROC AUC of gradient boosting telling real from synthetic events by their fields, "
        "the previous event's and the gap (0.5: indistinguishable)",
        False,
        0.65,
        _at("fidelity.discriminator.auc"),
    ),
    "discriminative": Metric(
        "|accuracy - 0.5| of a GRU telling real from synthetic sequences (0 is best)",
        False,
        0.2,
        _at("utility.discriminative"),
    ),
    "predictive": Metric(
        "MAE of next-step prediction trained on synthetic, tested on real",
        False,
        None,
        _at("utility.predictive"),
    ),
    "predictive_ratio": Metric(
        "predictive MAE over the MAE of the same model trained on real data (1 is ideal)",
        False,
        1.25,
        _at("utility.predictive_ratio"),
    ),
    "fraud_auc_ratio": Metric(
        "ROC AUC on real test rows of a fraud classifier trained on synthetic / on real rows",
        True,
        0.9,
        _at("utility.fraud.ratio"),
    ),
    "dcr_ratio": Metric(
        "median distance to closest real record: synthetic over real holdout (below 1: closer)",
        True,
        0.5,
        _at("privacy.dcr_ratio"),
    ),
    "row_copies_excess": Metric(
        "share of synthetic rows identical to a real row, beyond the real holdout's share "
        "(the synthetic share minus the holdout's, 0 when below)",
        False,
        0.02,
        _at("privacy.row_copies_excess"),
    ),
    "sequence_copies_excess": Metric(
        "share of synthetic sequences identical to a real one, beyond the real holdout's share",
        False,
        0.01,
        _at("privacy.sequence_copies_excess"),
    ),
    "nndr": Metric(
        "median nearest-neighbour distance ratio of synthetic rows (low: near one record)",
        True,
        None,
        _at("privacy.nndr_synth_median"),
    ),
    "mia_auc": Metric(
        "ROC AUC of a distance-based membership attack on training entities (0.5: no leak)",
        False,
        0.6,
        _at("membership.auc"),
    ),
    "attribute_advantage": Metric(
        "accuracy gain guessing the sensitive column from the nearest synthetic row, over the mode",
        False,
        None,
        _at("attribute.advantage"),
    ),
    "attribute_leakage": Metric(
        "attribute attack accuracy on training rows minus on rows never trained on",
        False,
        0.05,
        _at("attribute.leakage"),
    ),
    "label_rate": Metric(
        "|difference| of the positive label rate (ungated by default: rebalancing is a use)",
        False,
        None,
        _at("balance.rate_diff"),
    ),
}

#: Keys renamed so that one name means one number in the scorecard, the JSON and the report.
_RENAMED = {"row_copies": "row_copies_excess", "sequence_copies": "sequence_copies_excess"}

_COLUMN_METRICS = {
    "ks": ("numeric", "ks", "KS statistic of column {}"),
    "wasserstein": ("numeric", "wasserstein_norm", "Wasserstein distance of column {} (real stds)"),
    "tv": ("categorical", "tv", "total variation distance of column {}"),
}


def describe_keys() -> str:
    """One line per key: name, direction, default threshold (for --help and the docs)."""
    lines = []
    for key, m in METRICS.items():
        direction = "higher is better" if m.higher_is_better else "lower is better"
        default = "" if m.default is None else f", default {m.default}"
        lines.append(f"{key} ({direction}{default}): {m.description}")
    lines.append("ks.COLUMN, wasserstein.COLUMN, tv.COLUMN (lower is better): one column")
    return "\n".join(lines)


def parse_gates(specs: list[str]) -> dict[str, float]:
    """``["discriminative=0.2", ...]`` -> ``{"discriminative": 0.2}``; unknown keys are errors."""
    gates: dict[str, float] = {}
    for spec in specs:
        key, sep, raw = spec.partition("=")
        key = key.strip()
        if not sep or not key:
            raise StreamsynthError(
                f"--fail-under {spec!r} is not KEY=VALUE",
                hint="e.g. --fail-under discriminative=0.2",
            )
        if key in _RENAMED:
            raise StreamsynthError(
                f"--fail-under {key!r} is now {_RENAMED[key]!r}",
                hint=f"write --fail-under {_RENAMED[key]}={raw}: it gates the copies beyond the real "
                f"holdout's share, while privacy.{key} in the JSON is the raw share",
            )
        base = key.split(".", 1)[0]
        if key not in METRICS and not (base in _COLUMN_METRICS and "." in key):
            raise StreamsynthError(
                f"--fail-under names unknown metric {key!r}",
                hint=f"keys are: {', '.join(METRICS)}, "
                "or ks.COLUMN / wasserstein.COLUMN / tv.COLUMN",
            )
        try:
            gates[key] = float(raw)
        except ValueError:
            gates[key] = math.nan
        if not math.isfinite(gates[key]):
            raise StreamsynthError(
                f"--fail-under {spec!r}: {raw!r} is not a finite number",
                hint="e.g. discriminative=0.2",
            )
    return gates


def check_columns(gates: dict[str, float], numeric: list[str], categorical: list[str]) -> None:
    """Column gates (``ks.COLUMN`` ...) must name a column of the right kind in both tables."""
    for key in gates:
        base, _, column = key.partition(".")
        if key in METRICS or base not in _COLUMN_METRICS:
            continue
        group = _COLUMN_METRICS[base][0]
        names = numeric if group == "numeric" else categorical
        if column not in names:
            kind = "numeric" if group == "numeric" else "categorical or boolean"
            hint = f"{kind} columns: {', '.join(names) or 'none'}"
            if column in numeric + categorical:
                other = "ks" if group != "numeric" else "tv"
                hint = f"{column!r} is not {kind}: gate it with {other}.{column}"
            raise StreamsynthError(
                f"--fail-under {key!r}: {column!r} is not a {kind} column of the data", hint=hint
            )


def build(result: EvaluationResult, gates: dict[str, float] | None = None) -> list[Check]:
    """Every metric with a value or a threshold, then per-column gates."""
    gates = gates or {}
    checks = []
    for key, m in METRICS.items():
        value = m.value(result)
        if value is None and key not in gates:
            continue
        threshold = gates.get(key, m.default)
        checks.append(
            Check(key, value, threshold, m.higher_is_better, m.description, gate=key in gates)
        )
    for key, threshold in gates.items():
        if key in METRICS:
            continue
        base, column = key.split(".", 1)
        group, attr, text = _COLUMN_METRICS[base]
        found = [c for c in getattr(result.fidelity, group) if c.name == column]
        value = getattr(found[0], attr) if found else None
        checks.append(Check(key, value, threshold, False, text.format(repr(column)), gate=True))
    return checks
