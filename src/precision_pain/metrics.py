"""Discrimination and calibration metrics for binary predictions."""

from __future__ import annotations

import numpy as np


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """AUC (NaN when only one class is present), Brier score, prevalence and mean prediction."""
    from sklearn.metrics import brier_score_loss, roc_auc_score

    y = np.asarray(y, dtype=float)
    p = np.asarray(p, dtype=float)
    auc = float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")
    return {
        "auc": auc,
        "brier": float(brier_score_loss(y, p)),
        "prevalence": float(y.mean()),
        "mean_prediction": float(p.mean()),
        "n": float(len(y)),
    }
