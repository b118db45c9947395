"""Typed results of an evaluation: fidelity, utility, privacy, balance and the scorecard.

Every number lands in one of these dataclasses; ``EvaluationResult.to_dict`` is the JSON file.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from streamsynth.outputs import write_text


@dataclass
class NumericColumn:
    """A numeric column: KS statistic, Wasserstein distance (raw and over the real std)."""

    name: str
    ks: float
    wasserstein: float
    wasserstein_norm: float
    real_mean: float
    synth_mean: float
    real_std: float
    synth_std: float
    real_nulls: float
    synth_nulls: float


@dataclass
class CategoricalColumn:
    """A categorical or boolean column: total variation distance of the value shares."""

    name: str
    tv: float
    real_categories: int
    synth_categories: int
    unseen_in_synth: int  # real values the synthetic data never produces
    new_in_synth: int  # synthetic values absent from the real data


@dataclass
class MatrixComparison:
    """Two square matrices over the same columns (correlations, Cramer's V) and their gap."""

    columns: list[str]
    real: list[list[float]]
    synth: list[list[float]]
    mean_abs_diff: float
    max_abs_diff: float


@dataclass
class Autocorrelation:
    """Autocorrelation at lags 1..L of a numeric column within entities."""

    column: str
    lags: list[int]
    real: list[float]
    synth: list[float]
    mean_abs_diff: float


@dataclass
class DistributionComparison:
    """Two samples of one quantity (inter-arrival seconds, events per entity)."""

    ks: float
    wasserstein_log: float  # Wasserstein distance of log10(1 + x)
    real_mean: float
    synth_mean: float
    real_quantiles: dict[str, float]
    synth_quantiles: dict[str, float]


@dataclass
class Profile:
    """Shares per bin of a calendar profile (hour of day, day of week)."""

    real: list[float]
    synth: list[float]
    tv: float


@dataclass
class FeatureImportance:
    """One feature of the row-and-lag discriminator: a column, a column of the previous event, the gap."""

    feature: str
    importance: float  # mean drop of the held-out AUC when the feature is shuffled


@dataclass
class RowDiscriminator:
    """Gradient boosting on each event, its previous event and the gap, real against synthetic,
    cross-validated over held-out entities (``discriminator.py``)."""

    auc: float  # mean held-out ROC AUC over the folds; 0.5: indistinguishable
    auc_std: float  # its spread over the folds
    folds: int
    rows_per_side: int
    features: list[str]
    importance: list[FeatureImportance]  # the most telling first
    columns: list[FeatureImportance]  # by column: its own and its previous event's importance
    excluded: list[str] = field(default_factory=list)  # label columns and columns that give it away


@dataclass
class DependencyResult:
    """One dependency of the real data and how the synthetic rows keep it."""

    rule: str
    determinants: list[str]
    determines: str
    real_support: float  # share of real rows it holds in
    broken_share: float  # share of synthetic rows breaking it
    example: dict[str, str] | None = None  # a breaking synthetic row, with the expected value


@dataclass
class DependencyCheck:
    broken_share: float  # share of synthetic rows breaking at least one dependency
    dependencies: list[DependencyResult] = field(default_factory=list)


@dataclass
class Fidelity:
    numeric: list[NumericColumn] = field(default_factory=list)
    categorical: list[CategoricalColumn] = field(default_factory=list)
    correlation: MatrixComparison | None = None
    association: MatrixComparison | None = None
    autocorrelation: list[Autocorrelation] = field(default_factory=list)
    inter_arrival: DistributionComparison | None = None
    events_per_entity: DistributionComparison | None = None
    hour_of_day: Profile | None = None
    day_of_week: Profile | None = None
    discriminator: RowDiscriminator | None = None
    dependencies: DependencyCheck | None = None


@dataclass
class LeakingColumn:
    """A feature column dropped from the fraud task because it alone predicts the label."""

    column: str
    auc: float  # ROC AUC on real rows of the one-column model
    how: str  # "value map": its values map to label values; "threshold": its raw values rank

    def describe(self, label: str) -> str:
        how = (
            "its values map to label values almost one to one"
            if self.how == "value map"
            else "a threshold on it almost separates the classes"
        )
        return (
            f"fraud utility: column {self.column!r} dropped from the features: on real data it alone "
            f"predicts {label!r} (AUC {self.auc:.3f}; {how}), so the task would be trivial"
        )


@dataclass
class FraudUtility:
    """ROC AUC on held-out real rows of a classifier trained on synthetic vs on real rows."""

    auc_synth: float
    auc_real: float
    ratio: float
    train_rows_real: int
    train_rows_synth: int
    test_rows: int
    test_positives: int
    dropped: list[LeakingColumn] = field(default_factory=list)  # columns that gave the label away


@dataclass
class Utility:
    discriminative: float | None = None
    discriminative_steps: int | None = None  # GRU steps taken: early stopping, capped by --iterations
    discriminative_converged: bool | None = None  # False: the cap ended training, the score may be low
    predictive: float | None = None  # train on synthetic, test on real (MAE)
    predictive_real: float | None = None  # train on real, test on (other) real: the reference
    predictive_ratio: float | None = None
    window_length: int | None = None
    windows_real: int = 0
    windows_synth: int = 0
    features: list[str] = field(default_factory=list)
    fraud: FraudUtility | None = None
    notes: list[str] = field(default_factory=list)


@dataclass
class Privacy:
    """Distances to closest record and copies; 'holdout' is real rows left out, the baseline."""

    rows_compared: int
    reference_rows: int
    dcr_synth_median: float
    dcr_synth_p5: float
    dcr_holdout_median: float
    dcr_holdout_p5: float
    dcr_ratio: float  # median synth DCR / median holdout DCR (means when that median is 0): < 1 is closer
    closer_than_holdout_p5: float  # share of synthetic rows nearer than the holdout's 5th pct
    nndr_synth_median: float
    nndr_holdout_median: float
    row_copies: float  # share of synthetic rows identical to some real row
    row_copies_baseline: float  # the same share for holdout real rows against the other rows
    row_copies_excess: float  # copies beyond the holdout's share: row_copies - baseline, 0 when below
    sequence_copies: float | None = None  # share of synthetic sequences equal to a real one
    sequence_copies_baseline: float | None = None
    sequence_copies_excess: float | None = None  # as for rows; the scorecard's keys are these names


@dataclass
class MembershipInference:
    """A distance-based membership attack: training entities (members) against real entities
    the model never saw, each scored by minus its distance to the closest synthetic record."""

    auc: float  # ROC AUC of the attack on the privacy unit (entities, or rows without one); 0.5: none
    unit: str  # "entity" (mean distance of its rows) or "row"
    row_auc: float  # the same attack on single rows
    members: int
    non_members: int
    tpr_at_fpr_10: float  # members caught when 10% of non-members are wrongly accused
    member_dcr_median: float
    non_member_dcr_median: float


@dataclass
class AttributeInference:
    """Guess a sensitive column of real rows from their other columns via the nearest synthetic
    row, against a guess that knows only the column's marginal (its most common value)."""

    column: str
    kind: str  # "categorical", or "numeric" (scored on the real data's quintile bins)
    targets: int  # rows attacked: training rows when the training table is given, else real rows
    accuracy: float
    baseline: float  # accuracy of always guessing the most common value
    advantage: float  # accuracy - baseline
    non_member_accuracy: float | None = None  # the same attack on rows the model never saw
    leakage: float | None = None  # accuracy on members - on non-members: what is not population-level


@dataclass
class CategoryRate:
    value: str
    real_rows: int
    synth_rows: int
    real_rate: float | None
    synth_rate: float | None


@dataclass
class Balance:
    label: str
    real_rate: float
    synth_rate: float
    rate_diff: float
    real_classes: dict[str, float] = field(default_factory=dict)
    synth_classes: dict[str, float] = field(default_factory=dict)
    per_category: dict[str, list[CategoryRate]] = field(default_factory=dict)


@dataclass
class Check:
    """One scorecard line: a metric against its threshold; ``gate`` when set by --fail-under."""

    key: str
    value: float | None
    threshold: float | None
    higher_is_better: bool
    description: str
    gate: bool = False

    @property
    def passed(self) -> bool | None:
        if self.threshold is None:
            return None
        if self.value is None or math.isnan(self.value):
            return False if self.gate else None
        if self.higher_is_better:
            return self.value >= self.threshold
        return self.value <= self.threshold


@dataclass
class EvaluationResult:
    real_rows: int
    synth_rows: int
    schema: dict[str, Any]
    fidelity: Fidelity
    utility: Utility
    privacy: Privacy | None
    balance: Balance | None
    scorecard: list[Check]
    timings: dict[str, float]
    figures: dict[str, Any] = field(default_factory=dict)  # plot data for the HTML report
    membership: MembershipInference | None = None  # with a training table (evaluate(train=...))
    attribute: AttributeInference | None = None  # with a sensitive column (evaluate(sensitive=...))

    @property
    def failed_gates(self) -> list[Check]:
        """The --fail-under checks that failed: a non-empty list means exit code 1."""
        return [c for c in self.scorecard if c.gate and not c.passed]

    def metric(self, key: str) -> float | None:
        for check in self.scorecard:
            if check.key == key:
                return check.value
        return None

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["scorecard"] = [dict(asdict(c), passed=c.passed) for c in self.scorecard]
        return _finite(out)

    def write_json(self, path: str | Path) -> Path:
        return write_text(path, json.dumps(self.to_dict(), indent=1))


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as null."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value
