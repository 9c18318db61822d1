"""Discrimination and calibration metrics for binary predictions (and, for prepare.outcome
nrs_change, error and calibration metrics for continuous ones), with bootstrap CIs.

Every estimator here takes case weights ``w`` of shape ``(B, n)`` and returns
``B`` values, so a whole bootstrap (``w`` = multinomial resampling counts) is one
vectorized call and the point estimate is the same call with ``w`` = ones.

- AUC: the weighted Mann-Whitney statistic (ties count one half).
- Brier score: weighted mean of ``(p - y)^2``.
- Calibration slope: ``b`` in ``logit P(y=1) = a + b * logit(p)`` (1 = ideal;
  below 1 = predictions too extreme, above 1 = too timid).
- Calibration intercept (calibration-in-the-large): ``a`` in
  ``logit P(y=1) = a + logit(p)`` with ``logit(p)`` as an offset (0 = ideal;
  above 0 = the model under-predicts on average).

Logistic fits use batched Newton-Raphson; a replicate whose fit does not
converge (e.g. no events in the resample) gives NaN and is left out of the CI.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.special import expit

EPS = 1e-6  # predictions are clipped to [EPS, 1 - EPS] before taking the logit
MIN_CLASS = 5  # fewer events (or non-events) than this: calibration is NaN
CI_LEVEL = 0.95
MAX_FAILED_SHARE = 0.05  # a CI needs a value from at least 95 % of the bootstrap replicates
_MAX_STEP = 5.0  # Newton steps are capped; a fit still moving after max_iter is NaN

Metric = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def clipped_logit(p: np.ndarray) -> np.ndarray:
    """logit(p) with p clipped to [EPS, 1 - EPS]."""
    p = np.clip(np.asarray(p, dtype=float), EPS, 1 - EPS)
    return np.log(p / (1 - p))


def bootstrap_weights(n: int, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """(n_boot, n) resampling counts: row b says how often each unit is drawn in replicate b."""
    return rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(float)


def weighted_auc(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """AUC per weight row (ties count 1/2); NaN where a row has only one class."""
    y, p, w = _as_arrays(y, p, w)
    order = np.argsort(p, kind="mergesort")
    ps, ys, ws = p[order], y[order], w[:, order]
    starts = np.flatnonzero(np.r_[True, ps[1:] != ps[:-1]])
    pos = np.add.reduceat(ws * ys, starts, axis=1)
    neg = np.add.reduceat(ws * (1 - ys), starts, axis=1)
    neg_below = np.cumsum(neg, axis=1) - neg
    denom = pos.sum(axis=1) * neg.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (pos * (neg_below + 0.5 * neg)).sum(axis=1) / denom, np.nan)


def weighted_brier(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Brier score per weight row."""
    y, p, w = _as_arrays(y, p, w)
    with np.errstate(invalid="ignore", divide="ignore"):  # a draw without these rows: NaN
        return (w @ (p - y) ** 2) / w.sum(axis=1)


def calibration_slope(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Slope of the logistic recalibration of logit(p), per weight row."""
    y, p, w = _as_arrays(y, p, w)
    x = clipped_logit(p)
    design = np.column_stack([np.ones_like(x), x])
    start = np.array([0.0, 1.0])
    return _logistic_fit(design, y, w, np.zeros_like(x), start)[:, 1]


def calibration_intercept(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Calibration-in-the-large: intercept with logit(p) as offset, per weight row."""
    y, p, w = _as_arrays(y, p, w)
    x = clipped_logit(p)
    design = np.ones((len(x), 1))
    return _logistic_fit(design, y, w, x, np.zeros(1))[:, 0]


def _as_arrays(y: np.ndarray, p: np.ndarray, w: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    w = np.atleast_2d(np.asarray(w, dtype=float))
    if y.shape != p.shape or w.shape[1] != len(y):
        raise ValueError(f"shapes differ: y {y.shape}, p {p.shape}, weights {w.shape}")
    return y, p, w


def _logistic_fit(design: np.ndarray, y: np.ndarray, w: np.ndarray, offset: np.ndarray,
                  start: np.ndarray, max_iter: int = 50, tol: float = 1e-8) -> np.ndarray:
    """Weighted logistic coefficients (B, k) by batched Newton-Raphson; NaN rows if unfit."""
    k = design.shape[1]
    pairs = (design[:, :, None] * design[:, None, :]).reshape(len(design), k * k)
    beta = np.tile(start, (w.shape[0], 1))
    active = np.ones(w.shape[0], dtype=bool)  # replicates still moving
    for _ in range(max_iter):
        wa, ba = w[active], beta[active]
        mu = expit(offset + ba @ design.T)
        grad = (wa * (y - mu)) @ design
        hess = ((wa * mu * (1 - mu)) @ pairs).reshape(-1, k, k) + 1e-10 * np.eye(k)
        step = np.clip(np.linalg.solve(hess, grad[..., None])[..., 0], -_MAX_STEP, _MAX_STEP)
        beta[active] = ba + step
        active[np.flatnonzero(active)[np.abs(step).max(axis=1) < tol]] = False
        if not active.any():
            break
    events, non_events = w @ y, w @ (1 - y)
    unfit = (np.minimum(events, non_events) < MIN_CLASS) | active
    return np.where(unfit[:, None], np.nan, beta)


def logistic_coefficients(design: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Unweighted logistic regression of ``y`` on the columns of ``design`` (include a column
    of ones for an intercept), by the same Newton-Raphson as the calibration fits; NaN if it
    cannot be fitted (too few events, or no convergence)."""
    y = np.asarray(y, dtype=float)
    design = np.asarray(design, dtype=float)
    return _logistic_fit(design, y, np.ones((1, len(y))), np.zeros(len(y)),
                         np.zeros(design.shape[1]))[0]


METRICS: dict[str, Metric] = {
    "auc": weighted_auc,
    "brier": weighted_brier,
    "calibration_slope": calibration_slope,
    "calibration_intercept": calibration_intercept,
}


def _points(metrics: dict[str, Metric], y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """Each metric's value on unweighted rows."""
    ones = np.ones((1, len(y)))
    return {name: float(metric(y, p, ones)[0]) for name, metric in metrics.items()}


def _with_cis(metrics: dict[str, Metric], y: np.ndarray, p: np.ndarray, weights: np.ndarray
              ) -> dict[str, dict[str, float]]:
    """Each metric's value with a percentile CI over the bootstrap ``weights`` rows."""
    both = np.vstack([np.ones((1, len(y))), weights])
    out = {}
    for name, metric in metrics.items():
        values = metric(y, p, both)
        out[name] = estimate_with_ci(values[0], values[1:])
    return out


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """AUC, Brier score, calibration slope/intercept, prevalence, mean prediction and n."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    return {**_points(METRICS, y, p), "prevalence": float(y.mean()),
            "mean_prediction": float(p.mean()), "n": float(len(y))}


def percentile_ci(replicates: np.ndarray, level: float = CI_LEVEL) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates; NaN if over MAX_FAILED_SHARE of them are NaN."""
    replicates = np.asarray(replicates, dtype=float)
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0 or finite.size < (1 - MAX_FAILED_SHARE) * replicates.size:
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


def estimate_with_ci(point: float, replicates: np.ndarray) -> dict[str, float]:
    """``{"estimate", "ci_low", "ci_high"}`` for a point estimate and its replicates."""
    low, high = percentile_ci(replicates)
    return {"estimate": float(point), "ci_low": low, "ci_high": high}


def binary_metrics_ci(y: np.ndarray, p: np.ndarray, weights: np.ndarray
                      ) -> dict[str, dict[str, float] | float]:
    """Every metric in METRICS with a percentile CI over the bootstrap ``weights`` rows."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    return {**_with_cis(METRICS, y, p, weights), "prevalence": float(y.mean()),
            "mean_prediction": float(p.mean()), "n": int(len(y))}


# --------------------------------------------------------------- continuous outcomes
# prepare.outcome nrs_change: the response models predict the reduction in NRS pain.


def weighted_rmse(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Root mean squared error per weight row."""
    y, p, w = _as_arrays(y, p, w)
    return np.sqrt((w @ (p - y) ** 2) / w.sum(axis=1))


def weighted_mae(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Mean absolute error per weight row."""
    y, p, w = _as_arrays(y, p, w)
    return (w @ np.abs(p - y)) / w.sum(axis=1)


def weighted_r2(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """1 - SSE / SST per weight row (SST about the row's weighted mean); NaN if SST is 0."""
    y, p, w = _as_arrays(y, p, w)
    total = w.sum(axis=1)
    mean = (w @ y) / total
    sst = (w * (y[None, :] - mean[:, None]) ** 2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sst > 0, 1.0 - (w @ (p - y) ** 2) / sst, np.nan)


def linear_calibration_slope(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``b`` in E[y] = a + b * p, weighted least squares per row (1 = ideal; below 1 =
    predicted differences too large); NaN if the predictions do not vary."""
    y, p, w = _as_arrays(y, p, w)
    total = w.sum(axis=1)
    mp, my = (w @ p) / total, (w @ y) / total
    dp = p[None, :] - mp[:, None]
    sxx = (w * dp ** 2).sum(axis=1)
    sxy = (w * dp * (y[None, :] - my[:, None])).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(sxx > 1e-12 * np.maximum(total, 1.0), sxy / sxx, np.nan)


def mean_error(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Calibration-in-the-large: weighted mean of y - p (0 = ideal; above 0 = the model
    under-predicts on average)."""
    y, p, w = _as_arrays(y, p, w)
    return (w @ (y - p)) / w.sum(axis=1)


CONTINUOUS_METRICS: dict[str, Metric] = {
    "rmse": weighted_rmse,
    "mae": weighted_mae,
    "r2": weighted_r2,
    "calibration_slope": linear_calibration_slope,
    "calibration_intercept": mean_error,
}


def continuous_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """RMSE, MAE, R^2, calibration slope and intercept, mean outcome, mean prediction and n."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    values = _points(CONTINUOUS_METRICS, y, p)
    return {**values, "mean_outcome": float(y.mean()), "mean_prediction": float(p.mean()),
            "mse": values["rmse"] ** 2, "n": float(len(y))}


def continuous_metrics_ci(y: np.ndarray, p: np.ndarray, weights: np.ndarray
                          ) -> dict[str, dict[str, float] | float]:
    """Every metric in CONTINUOUS_METRICS with a percentile CI over the ``weights`` rows."""
    y, p = np.asarray(y, dtype=float), np.asarray(p, dtype=float)
    return {**_with_cis(CONTINUOUS_METRICS, y, p, weights), "mean_outcome": float(y.mean()),
            "mean_prediction": float(p.mean()), "n": int(len(y))}


def outcome_metrics(y: np.ndarray, p: np.ndarray, continuous: bool) -> dict[str, float]:
    """:func:`continuous_metrics` or :func:`binary_metrics`."""
    return continuous_metrics(y, p) if continuous else binary_metrics(y, p)


def outcome_metrics_ci(y: np.ndarray, p: np.ndarray, weights: np.ndarray, continuous: bool
                       ) -> dict[str, dict[str, float] | float]:
    """:func:`continuous_metrics_ci` or :func:`binary_metrics_ci`."""
    return (continuous_metrics_ci(y, p, weights) if continuous
            else binary_metrics_ci(y, p, weights))
