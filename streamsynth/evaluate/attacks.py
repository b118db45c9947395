"""Privacy attacks on synthetic data: membership inference and attribute inference.

Membership: is an entity's data in the training set? Each training entity (member) and each real
entity the model never saw (non-member) is scored by minus its distance to the closest synthetic
record; the attack's ROC AUC is 0.5 when synthetic data reveals nothing. Attribute: guess a
sensitive column of a real row from its other columns via the nearest synthetic row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import polars as pl
import torch
from scipy.stats import rankdata

from streamsynth.devices import default_device
from streamsynth.errors import StreamsynthError
from streamsynth.evaluate.data import Prepared, Table, prepare
from streamsynth.evaluate.features import FeatureEncoder
from streamsynth.evaluate.privacy import two_nearest
from streamsynth.evaluate.result import AttributeInference, MembershipInference

MAX_ENTITIES = 500  # per side
ROWS_PER_ENTITY = 20
REFERENCE_ROWS = 20_000  # synthetic rows searched for the nearest one
TARGET_ROWS = 2000
MIN_SIDE = 5
NULL = "<null>"


def membership_inference(
    prep: Prepared,
    train: pl.DataFrame,
    seed: int = 0,
    *,
    max_entities: int = MAX_ENTITIES,
    rows_per_entity: int = ROWS_PER_ENTITY,
    reference_rows: int = REFERENCE_ROWS,
    device: str | None = None,
) -> MembershipInference | None:
    """``train``: the training rows, tidied like ``prep.real`` (see :func:`prepare_train`)."""
    if not prep.numeric + prep.categorical:
        return None
    rng = np.random.default_rng([seed, 11])
    members, non_members = _split(prep, train)
    if prep.entity:
        members = _sample_entities(members, prep.entity, max_entities, rows_per_entity, rng)
        non_members = _sample_entities(non_members, prep.entity, max_entities, rows_per_entity, rng)
    else:
        members = _sample_rows(members, max_entities * rows_per_entity, rng)
        non_members = _sample_rows(non_members, max_entities * rows_per_entity, rng)
    encoder, weights = _encoder(prep, seed, pl.concat([members, non_members], how="vertical_relaxed"))
    ref = encoder.encode(_sample_rows(prep.synth, reference_rows, rng)) * weights
    dev = default_device(device)
    d_in = two_nearest(encoder.encode(members) * weights, ref, dev)[:, 0]
    d_out = two_nearest(encoder.encode(non_members) * weights, ref, dev)[:, 0]
    row_auc = _auc(-d_in, -d_out)
    if prep.entity:
        s_in = -_mean_by(members[prep.entity], d_in)
        s_out = -_mean_by(non_members[prep.entity], d_out)
        unit = "entity"
    else:
        s_in, s_out, unit = -d_in, -d_out, "row"
    threshold = np.quantile(s_out, 0.9)
    return MembershipInference(
        auc=_auc(s_in, s_out),
        unit=unit,
        row_auc=row_auc,
        members=len(s_in),
        non_members=len(s_out),
        tpr_at_fpr_10=float(np.mean(s_in > threshold)),
        member_dcr_median=float(np.median(d_in)),
        non_member_dcr_median=float(np.median(d_out)),
    )


def attribute_inference(
    prep: Prepared,
    sensitive: str,
    seed: int = 0,
    train: pl.DataFrame | None = None,
    *,
    target_rows: int = TARGET_ROWS,
    reference_rows: int = REFERENCE_ROWS,
    device: str | None = None,
) -> AttributeInference:
    """Guess ``sensitive`` for real rows (the training rows when ``train`` is given) as the value
    of the nearest synthetic row over the other columns; the baseline guesses the real mode."""
    kind, values = _sensitive_values(prep, sensitive)
    others = replace(
        prep,
        numeric=[c for c in prep.numeric if c != sensitive],
        categorical=[c for c in prep.categorical if c != sensitive],
    )
    if not others.numeric + others.categorical:
        raise StreamsynthError(
            f"no columns besides the sensitive column {sensitive!r} to infer it from",
            hint="the attack needs numeric or categorical columns other than the sensitive one",
        )
    rng = np.random.default_rng([seed, 13])
    encoder, weights = _encoder(others, seed, prep.real if train is None else pl.concat(_split(prep, train)))
    synth = _sample_rows(prep.synth, reference_rows, rng)
    ref = encoder.encode(synth) * weights
    ref_values = values(synth)
    mode = pl.Series(values(prep.real)).mode().sort()[0]
    dev = default_device(device)

    def attack(rows: pl.DataFrame) -> tuple[float, float, int]:
        rows = _sample_rows(rows, target_rows, rng)
        truth = values(rows)
        guess = ref_values[_nearest(encoder.encode(rows) * weights, ref, dev)]
        return float(np.mean(guess == truth)), float(np.mean(truth == mode)), len(truth)

    if train is None:
        accuracy, baseline, n = attack(prep.real)
        return AttributeInference(sensitive, kind, n, accuracy, baseline, accuracy - baseline)
    members, non_members = _split(prep, train)
    accuracy, baseline, n = attack(members)
    outside, _, _ = attack(non_members)
    return AttributeInference(
        sensitive, kind, n, accuracy, baseline, accuracy - baseline, outside, accuracy - outside
    )


def prepare_train(prep: Prepared, train: Table) -> pl.DataFrame:
    """The training table (frame or path) lined up like ``prep.real``: same columns and types."""

    return prepare(train, prep.synth, prep.schema).real


# -- helpers ---------------------------------------------------------------------------------
def _split(prep: Prepared, train: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(members, non-members): training rows, and real rows of entities (or rows) not trained on."""
    columns = prep.numeric + prep.categorical
    if prep.entity:
        seen = train[prep.entity].unique().implode()
        outside = prep.real.filter(~pl.col(prep.entity).is_in(seen))
        what = "entities"
    else:
        seen = train.select(columns).hash_rows(seed=0).implode()
        outside = prep.real.filter(~prep.real.select(columns).hash_rows(seed=0).is_in(seen))
        what = "rows"
    if outside.height < MIN_SIDE or train.height < MIN_SIDE:
        raise StreamsynthError(
            f"membership needs real {what} the model was not trained on: the real table has "
            f"{outside.height} rows outside the training table, which has {train.height}",
            hint="pass held-out real data as REAL and the training data with --train",
        )
    return train, outside


def _encoder(prep: Prepared, seed: int, fit_on: pl.DataFrame) -> tuple[FeatureEncoder, np.ndarray]:
    """The feature encoding, fitted on members and non-members alike: an empirical CDF fitted on
    one side only puts that side's values on its grid and the other side's between grid steps,
    a distance gap that an attack would read as membership."""
    encoder = FeatureEncoder(replace(prep, real=fit_on), time_features=False, seed=seed)
    # as in the DCR measure: a one-hot mismatch weighs as much as a full numeric swing
    weights = np.where(encoder.one_hot_mask(), np.sqrt(0.5), 1.0).astype(np.float32)
    return encoder, weights


def _sensitive_values(prep: Prepared, column: str) -> tuple[str, Callable[[pl.DataFrame], np.ndarray]]:
    if column in prep.numeric:
        real = prep.real[column].drop_nulls().to_numpy()
        edges = np.unique(np.quantile(real, [0.2, 0.4, 0.6, 0.8])) if len(real) else np.zeros(0)

        def bins(frame: pl.DataFrame) -> np.ndarray:
            raw = frame[column].to_numpy()
            return np.where(np.isnan(raw), -1, np.searchsorted(edges, np.nan_to_num(raw), side="right"))

        return "numeric", bins
    if column in prep.categorical or column == prep.label:

        def labels(frame: pl.DataFrame) -> np.ndarray:
            return frame[column].cast(pl.String).fill_null(NULL).to_numpy().astype(str)

        return "categorical", labels
    raise StreamsynthError(
        f"sensitive column {column!r} is not a numeric, categorical or label column of the real data",
        hint=f"choose one of: {', '.join([*prep.categorical, *prep.numeric, *([prep.label] if prep.label else [])])}",
    )


def _sample_rows(frame: pl.DataFrame, n: int, rng: np.random.Generator) -> pl.DataFrame:
    if frame.height <= n:
        return frame
    return frame[np.sort(rng.choice(frame.height, n, replace=False))]


def _sample_entities(
    frame: pl.DataFrame, entity: str, n: int, rows: int, rng: np.random.Generator
) -> pl.DataFrame:
    ids = frame[entity].unique().sort()
    if ids.len() > n:
        ids = ids.gather(np.sort(rng.choice(ids.len(), n, replace=False)))
    picked = frame.filter(pl.col(entity).is_in(ids.implode()))
    return picked.filter(pl.int_range(pl.len()).over(entity) < rows)


def _mean_by(keys: pl.Series, values: np.ndarray) -> np.ndarray:
    frame = pl.DataFrame({"k": keys, "v": values})
    return frame.group_by("k").agg(pl.col("v").mean())["v"].to_numpy()


def _nearest(query: np.ndarray, ref: np.ndarray, dev: torch.device) -> np.ndarray:
    refs = torch.from_numpy(ref).to(dev)
    out = []
    for start in range(0, len(query), 1024):
        q = torch.from_numpy(query[start : start + 1024]).to(dev)
        out.append(torch.cdist(q, refs).argmin(dim=1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def _auc(positive: np.ndarray, negative: np.ndarray) -> float:
    """ROC AUC of scores (higher: more likely a member), ties counted half (Mann-Whitney)."""
    if len(positive) == 0 or len(negative) == 0:
        return float("nan")
    ranks = rankdata(np.concatenate([positive, negative]))
    n_pos = len(positive)
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * len(negative)))
