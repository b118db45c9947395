"""Evaluation of synthetic event data against real data: fidelity, utility, privacy, balance.

``evaluate(real, synth, schema)`` returns an :class:`EvaluationResult`; ``write_report`` and
``EvaluationResult.write_json`` write the HTML report and the JSON file of every number.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, TypeVar

from streamsynth.devices import default_device
from streamsynth.evaluate.attacks import attribute_inference, membership_inference, prepare_train
from streamsynth.evaluate.balance import balance
from streamsynth.evaluate.data import Prepared, Table, prepare
from streamsynth.evaluate.dependencies import dependency_check
from streamsynth.evaluate.discriminator import row_discriminator
from streamsynth.evaluate.fidelity import fidelity
from streamsynth.evaluate.figures import figure_data
from streamsynth.evaluate.fraud import fraud_utility
from streamsynth.evaluate.privacy import privacy
from streamsynth.evaluate.report import render, write_report
from streamsynth.evaluate.result import EvaluationResult, Utility
from streamsynth.evaluate.scorecard import METRICS, build, check_columns, parse_gates
from streamsynth.evaluate.sequences import SequenceOptions, sequence_scores
from streamsynth.evaluate.utility import discriminative_fit, discriminative_score, predictive_score
from streamsynth.schema import Schema

__all__ = [
    "METRICS",
    "EvaluateOptions",
    "EvaluationResult",
    "SequenceOptions",
    "discriminative_fit",
    "discriminative_score",
    "evaluate",
    "parse_gates",
    "predictive_score",
    "render",
    "row_discriminator",
    "write_report",
]

T = TypeVar("T")


@dataclass
class EvaluateOptions:
    """What :func:`evaluate` computes beyond the default checks, and how.

    ``fail_under`` maps scorecard keys to thresholds that become gates (see
    ``streamsynth.evaluate.scorecard``). ``gru=False`` skips the GRU-based discriminative and
    predictive scores (the slow part). ``train``, the table the model was trained on (``real``
    then being held-out data), adds the membership inference attack; ``sensitive`` names a
    column for the attribute inference attack.
    """

    seed: int = 0
    fail_under: dict[str, float] | None = None
    sequences: SequenceOptions | None = None
    gru: bool = True
    privacy_rows: int = 2000
    device: str | None = None
    train: Table | None = None
    sensitive: str | None = None


class _Timings(dict):
    """Seconds per step of an evaluation, recorded as each step runs."""

    def __call__(self, name: str, fn: Callable[[], T]) -> T:
        start = time.perf_counter()
        out = fn()
        self[name] = round(time.perf_counter() - start, 3)
        return out


def evaluate(real: Table, synth: Table, schema: Schema | None = None, options: EvaluateOptions | None = None,
             **values: Any) -> EvaluationResult:
    """Compare a synthetic event table with the real one it imitates.

    ``real``/``synth`` are polars frames or paths (CSV, Parquet, JSONL, directories); the
    schema is inferred from the real table when not given. ``options`` (or its fields by name:
    ``evaluate(real, synth, seed=1, gru=False)``) are an :class:`EvaluateOptions`.
    """
    opts = replace(options or EvaluateOptions(), **values)
    timed = _Timings()
    default_device(opts.device)  # a bad device fails here, not after minutes of work
    prep = timed("prepare", lambda: prepare(real, synth, schema))
    check_columns(opts.fail_under or {}, prep.numeric, prep.categorical)
    # the attacks first: their inputs (training table, sensitive column) fail fast when wrong
    membership, attribute = _attacks(prep, opts, timed)
    fid = timed("fidelity", lambda: fidelity(prep, opts.seed))
    fid.discriminator = timed("discriminator", lambda: row_discriminator(prep, opts.seed))
    fid.dependencies = timed("dependencies", lambda: dependency_check(prep))
    util = _utility(prep, opts, timed)
    priv = timed("privacy", lambda: privacy(prep, opts.seed, query_rows=opts.privacy_rows, device=opts.device))
    bal = timed("balance", lambda: balance(prep))
    figures = timed("figures", lambda: figure_data(prep, opts.seed))
    result = EvaluationResult(
        real_rows=prep.real.height,
        synth_rows=prep.synth.height,
        schema=prep.schema.to_dict(),
        fidelity=fid,
        utility=util,
        privacy=priv,
        balance=bal,
        scorecard=[],
        timings=dict(timed),
        figures=figures,
        membership=membership,
        attribute=attribute,
    )
    result.scorecard = build(result, opts.fail_under)
    return result


def _attacks(prep: Prepared, opts: EvaluateOptions, timed: _Timings) -> tuple[Any, Any]:
    """The membership attack (with a training table) and the attribute attack (with a column)."""
    train_rows = timed("prepare_train", lambda: prepare_train(prep, opts.train)) if opts.train is not None else None
    membership = attribute = None
    if train_rows is not None:
        membership = timed("membership", lambda: membership_inference(prep, train_rows, opts.seed, device=opts.device))
    if opts.sensitive:
        attribute = timed("attribute", lambda: attribute_inference(prep, opts.sensitive, opts.seed, train_rows,
                                                                   device=opts.device))
    return membership, attribute


def _utility(prep: Prepared, opts: EvaluateOptions, timed: _Timings) -> Utility:
    """The GRU scores (unless skipped) and the fraud train-synthetic-test-real score, with notes."""
    if opts.gru:
        sequences = opts.sequences or SequenceOptions(device=opts.device)
        util = timed("sequences", lambda: sequence_scores(prep, sequences, opts.seed))
    else:
        util = Utility(notes=["GRU scores skipped (gru=False)"])
    util.fraud = timed("fraud", lambda: fraud_utility(prep, opts.seed, opts.device))
    if util.fraud:
        util.notes += [leak.describe(prep.label) for leak in util.fraud.dropped]
    if prep.label and util.fraud is None:
        util.notes.append(
            f"fraud utility skipped: label {prep.label!r} needs positive and negative rows "
            "on both sides (and in both halves of the real entities)"
        )
    return util
