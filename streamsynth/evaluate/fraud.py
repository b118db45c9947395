"""Fraud utility: a classifier trained on synthetic rows vs one trained on real rows.

Both are tested on the same held-out real entities; the score is the ratio of their ROC AUCs
(1.0: the synthetic data is as good for training a detector as the real data). The
classifier is a small torch MLP on the row features of ``features.py``, less the columns that
alone give the label away on real data (``leakage.py``): with them both AUCs are 1 and the ratio
says nothing.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import torch
from torch import nn

from streamsynth.devices import default_device
from streamsynth.evaluate.auc import roc_auc
from streamsynth.evaluate.data import POSITIVE, SEQ, Prepared
from streamsynth.evaluate.features import FeatureEncoder
from streamsynth.evaluate.leakage import leaking_columns
from streamsynth.evaluate.result import FraudUtility
from streamsynth.evaluate.utility import small_model_threads

MAX_TRAIN_ROWS = 200_000
MAX_TEST_ROWS = 200_000
TEST_ENTITY_SHARE = 0.3
STEPS = 300
BATCH = 4096


def fraud_utility(prep: Prepared, seed: int = 0, device: str | None = None) -> FraudUtility | None:
    """None when the data has no label column or one side has no positives or negatives."""
    if not prep.label:
        return None
    real, synth = prep.real, prep.synth
    if not _both_classes(real) or not _both_classes(synth):
        return None
    rng = np.random.default_rng(seed)
    # Split real data by entity so a test entity's other events never train the real model.
    n_seq = int(real[SEQ].max()) + 1
    test_seq = rng.random(n_seq) < TEST_ENTITY_SHARE
    is_test = test_seq[real[SEQ].to_numpy()]
    real_train, real_test = real.filter(pl.Series(~is_test)), real.filter(pl.Series(is_test))
    if not _both_classes(real_train) or not _both_classes(real_test):
        return None
    dropped = leaking_columns(prep, seed)
    encoder = FeatureEncoder(prep, seed=seed, exclude={leak.column for leak in dropped})
    real_train = _cap(real_train, MAX_TRAIN_ROWS, seed)
    synth_train = _cap(synth, MAX_TRAIN_ROWS, seed + 1)
    real_test = _cap(real_test, MAX_TEST_ROWS, seed + 2)
    x_test = encoder.encode(real_test)
    y_test = real_test[POSITIVE].to_numpy()
    dev = default_device(device)
    scores = {}
    for name, train in (("real", real_train), ("synth", synth_train)):
        with small_model_threads(dev):
            model = _train(encoder.encode(train), train[POSITIVE].to_numpy(), seed, dev)
            with torch.no_grad():
                scores[name] = model(torch.from_numpy(x_test).to(dev)).squeeze(-1).cpu().numpy()
    auc_real = roc_auc(y_test, scores["real"])
    auc_synth = roc_auc(y_test, scores["synth"])
    return FraudUtility(
        auc_synth=auc_synth,
        auc_real=auc_real,
        ratio=auc_synth / auc_real if auc_real > 0 else float("nan"),
        train_rows_real=real_train.height,
        train_rows_synth=synth_train.height,
        test_rows=real_test.height,
        test_positives=int(y_test.sum()),
        dropped=dropped,
    )


def _both_classes(frame: pl.DataFrame) -> bool:
    positives = int(frame[POSITIVE].sum())
    return 0 < positives < frame.height


def _cap(frame: pl.DataFrame, rows: int, seed: int) -> pl.DataFrame:
    return frame if frame.height <= rows else frame.sample(rows, seed=seed)


def _train(x: np.ndarray, y: np.ndarray, seed: int, dev: torch.device) -> nn.Module:
    """Mini-batch Adam on a one-hidden-layer MLP, positives weighted to balance the classes."""
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []):
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(x.shape[1], 32), nn.ReLU(), nn.Linear(32, 1)).to(dev)
    xt = torch.from_numpy(x).to(dev)
    yt = torch.from_numpy(y.astype(np.float32)).to(dev)
    pos = float(yt.sum())
    weight = torch.tensor((len(yt) - pos) / max(pos, 1.0), device=dev)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=weight)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    batches = np.random.default_rng(seed).integers(0, len(x), (STEPS, min(BATCH, len(x))))
    for idx in torch.from_numpy(batches).to(dev):
        loss = loss_fn(model(xt[idx]).squeeze(-1), yt[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    return model
