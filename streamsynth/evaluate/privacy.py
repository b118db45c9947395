"""Privacy: how close synthetic records sit to real ones, against a real holdout baseline.

Distance to closest record (DCR) and nearest-neighbour distance ratio (NNDR) for a sample of
synthetic rows and of real rows held out from the reference set; exact copies of rows and of
whole entity sequences, each with the rate real data shows against itself as the baseline: real
rows repeat (the same purchase on two days), so some copying happens by chance; only copies
beyond the holdout's share (the synthetic share minus the holdout's) count against the model.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import torch

from streamsynth.devices import default_device
from streamsynth.evaluate.data import SEQ, Prepared
from streamsynth.evaluate.features import FeatureEncoder
from streamsynth.evaluate.result import Privacy

HOLDOUT_SHARE = 0.1  # of real rows, held out as the baseline of distances and row copies
SEQUENCE_HOLDOUT_SHARE = 0.2  # of real sequences, the baseline of sequence copies
QUERY_ROWS = 2000
REFERENCE_ROWS = 20_000
EPS = 1e-9


def privacy(
    prep: Prepared,
    seed: int = 0,
    *,
    query_rows: int = QUERY_ROWS,
    reference_rows: int = REFERENCE_ROWS,
    device: str | None = None,
) -> Privacy | None:
    columns = prep.numeric + prep.categorical
    if not columns or prep.real.height < 20:
        return None
    rng = np.random.default_rng(seed)
    real, synth = prep.real, prep.synth
    copies, baseline = _row_copies(real, synth, columns, rng)
    seq_copies = _sequence_copies(prep, columns, rng)

    # Reference rows R and holdout rows H are disjoint samples of the real table.
    n_hold = max(1, min(query_rows, int(real.height * HOLDOUT_SHARE)))
    perm = rng.permutation(real.height)
    hold_idx = perm[:n_hold]
    ref_idx = perm[n_hold : n_hold + reference_rows]
    synth_idx = rng.choice(synth.height, min(query_rows, synth.height), replace=False)
    encoder = FeatureEncoder(prep, time_features=False, seed=seed, fit_both=True)
    # A one-hot mismatch gives squared distance 2; weight it to 1, like a full numeric swing.
    weights = np.where(encoder.one_hot_mask(), np.sqrt(0.5), 1.0).astype(np.float32)
    ref = encoder.encode(real[ref_idx]) * weights
    dev = default_device(device)
    d_hold = two_nearest(encoder.encode(real[hold_idx]) * weights, ref, dev)
    d_synth = two_nearest(encoder.encode(synth[synth_idx]) * weights, ref, dev)
    hold_med, synth_med = float(np.median(d_hold[:, 0])), float(np.median(d_synth[:, 0]))
    hold_p5 = float(np.quantile(d_hold[:, 0], 0.05))
    out = Privacy(
        rows_compared=len(synth_idx),
        reference_rows=len(ref_idx),
        dcr_synth_median=synth_med,
        dcr_synth_p5=float(np.quantile(d_synth[:, 0], 0.05)),
        dcr_holdout_median=hold_med,
        dcr_holdout_p5=hold_p5,
        dcr_ratio=_dcr_ratio(d_synth[:, 0], d_hold[:, 0]),
        closer_than_holdout_p5=float(np.mean(d_synth[:, 0] <= hold_p5)),
        nndr_synth_median=float(np.median(_nndr(d_synth))),
        nndr_holdout_median=float(np.median(_nndr(d_hold))),
        row_copies=copies,
        row_copies_baseline=baseline,
        row_copies_excess=max(0.0, copies - baseline),
    )
    if seq_copies is not None:
        out.sequence_copies, out.sequence_copies_baseline = seq_copies
        out.sequence_copies_excess = max(0.0, seq_copies[0] - seq_copies[1])
    return out


def _row_copies(
    real: pl.DataFrame, synth: pl.DataFrame, columns: list[str], rng: np.random.Generator
) -> tuple[float, float]:
    """Share of synthetic rows equal to a real row; the same share for a real holdout."""
    real_h = real.select(columns).hash_rows(seed=0)
    synth_h = synth.select(columns).hash_rows(seed=0)
    copies = float(synth_h.is_in(real_h.implode()).mean())
    hold = rng.random(real.height) < HOLDOUT_SHARE
    if hold.sum() == 0 or hold.all():
        return copies, float("nan")
    baseline = float(
        real_h.filter(pl.Series(hold)).is_in(real_h.filter(pl.Series(~hold)).implode()).mean()
    )
    return copies, baseline


def _sequence_hashes(frame: pl.DataFrame, columns: list[str]) -> pl.DataFrame:
    """One hash per entity of its ordered data values (times left out); entities of 2+ events."""
    rows = frame.select(SEQ).with_columns(h=frame.select(columns).hash_rows(seed=0))
    grouped = rows.group_by(SEQ, maintain_order=True).agg(pl.col("h"), pl.len().alias("n"))
    grouped = grouped.filter(pl.col("n") >= 2)
    return grouped.select(pl.col(SEQ), pl.col("h").hash(seed=0).alias("h"))


def _sequence_copies(
    prep: Prepared, columns: list[str], rng: np.random.Generator
) -> tuple[float, float] | None:
    if not prep.entity:
        return None
    real = _sequence_hashes(prep.real, columns)
    synth = _sequence_hashes(prep.synth, columns)
    if real.height < 2 or synth.height == 0:
        return None
    copies = float(synth["h"].is_in(real["h"].implode()).mean())
    hold = rng.random(real.height) < SEQUENCE_HOLDOUT_SHARE
    if hold.sum() == 0 or hold.all():
        return copies, float("nan")
    held, rest = real["h"].filter(pl.Series(hold)), real["h"].filter(pl.Series(~hold))
    return copies, float(held.is_in(rest.implode()).mean())


def two_nearest(query: np.ndarray, ref: np.ndarray, dev: torch.device) -> np.ndarray:
    """Distances from each query row to its nearest and second-nearest reference rows."""
    refs = torch.from_numpy(ref).to(dev)
    k = min(2, len(ref))
    out = []
    for start in range(0, len(query), 1024):
        q = torch.from_numpy(query[start : start + 1024]).to(dev)
        d = torch.cdist(q, refs, compute_mode="use_mm_for_euclid_dist")
        out.append(torch.topk(d, k, dim=1, largest=False).values.clamp_min(0).cpu().numpy())
    dist = np.concatenate(out) if out else np.zeros((0, k), np.float32)
    if k == 1:
        dist = np.hstack([dist, dist])
    # The matmul form of the distance leaves tiny rounding noise where rows are identical.
    return np.where(dist < 1e-4, 0.0, dist)


def _dcr_ratio(synth: np.ndarray, holdout: np.ndarray) -> float:
    """Median synthetic DCR over median holdout DCR; when the holdout median is 0 (tables with few
    numeric columns, where most real rows have an exact twin) a ratio of medians says nothing,
    so means stand in. Both 0 (every row has a twin on both sides) counts as 1, like for like."""
    s_med, h_med = float(np.median(synth)), float(np.median(holdout))
    if h_med > 0:
        return s_med / h_med
    s, h = float(np.mean(synth)), float(np.mean(holdout))
    if h > 0:
        return s / h
    return 1.0 if s == 0 else float("inf")


def _nndr(dist: np.ndarray) -> np.ndarray:
    return np.where(dist[:, 1] > 0, dist[:, 0] / np.maximum(dist[:, 1], EPS), 0.0)
