"""The training profile: what predict needs to say how far to trust each P(response).

Learned at train time and stored in the bundle manifest's metadata; read at predict time
by :mod:`precision_pain.predict.confidence`, whose docstring teaches the method:

- per treatment, an inductive Venn-Abers table over held-out response scores (every
  position a new score can take, on a 0.001 grid): the validation patients' scores by
  models that never saw them, or for the default learner, whose models are refitted on
  train + validation, the out-of-fold scores of every train and validation patient
  (``response_calibration_source`` says which);
- for a regressor of the change in pain (``prepare.outcome: nrs_change``) instead, per
  treatment, the split-conformal half-widths of a prediction interval for the patient's
  change in pain, from the absolute residuals of the validation patients who received it,
  over all of them and per band of baseline pain severity (Mondrian);
- per treatment, the range of every model feature over the patients its models were fitted
  on (train, or train + validation for models refitted on both; every split for the
  deployed bundle) and whether the feature was ever missing;
- over those patients, each feature's median and whether it was ever missing
  (``feature_imputation``): a value missing at predict time where training never had one
  missing is scored at the training median (:func:`impute_unseen_missing`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from precision_pain.data.features import build_features
from precision_pain.outcome import pain_reduction_points

PROFILE_VERSION = 1
GRID = 1e-3  # Venn-Abers score grid (probability units)
# Coverage levels of the split-conformal table: 0.50, 0.51, ..., 0.99.
CONFORMAL_LEVELS = tuple(round(0.5 + 0.01 * i, 2) for i in range(50))
# Baseline pain severity bands of the 0-10 NRS (Serlin et al., Pain 1995;61:277-84: 1-4
# mild, 5-6 moderate, 7-10 severe), as the lower edges of the moderate and severe bands. The
# change in pain is bounded by the baseline (at most baseline points of relief), so its
# spread grows with it: one interval width for every patient is too wide for mild pain and
# too narrow for severe pain. A table per band keeps the coverage within each band.
SEVERITY_EDGES = (5.0, 7.0)
SEVERITY_BANDS = ("mild (below 5)", "moderate (5 to below 7)", "severe (7 or more)")


def severity_band(baseline: np.ndarray, edges: Sequence[float] = SEVERITY_EDGES) -> np.ndarray:
    """Index into SEVERITY_BANDS of each baseline NRS pain score (``edges``: a bundle's own,
    as its manifest stores them)."""
    return np.searchsorted(edges, np.asarray(baseline, dtype=float), side="right")


def training_profile(train: pd.DataFrame, valid: pd.DataFrame,
                     models: Mapping[str, Mapping[str, Any]], continuous: bool = False,
                     fitted_on: pd.DataFrame | None = None,
                     held_out: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None
                     ) -> dict[str, Any]:
    """Metadata for the bundle: feature ranges and Venn-Abers tables, per treatment.

    ``models`` maps treatment -> outcome -> fitted model (``ModelBundle.models``), models
    that never saw ``valid``. Venn-Abers intervals are for probabilities: with
    ``continuous`` (a regressor of the change in pain) there are none, and each treatment
    gets a split-conformal table (:func:`conformal_table`, key ``nrs_change_conformal``)
    instead. A treatment in ``held_out`` (treatment -> (P(response), observed response) of
    episodes scored by models that did not see them: the refitted pooled learner's
    out-of-fold predictions over train + validation) gets its Venn-Abers table from those
    instead of from the validation split; ``response_calibration_source`` records which.
    The feature ranges are those of ``fitted_on``, the episodes the bundle's models were
    fitted on (default: ``train``; train + validation for models refitted on both).
    """
    episodes = train if fitted_on is None else fitted_on
    held_out = {} if continuous or held_out is None else held_out
    calibration, conformal = {}, {}
    for name, by_outcome in models.items():
        if name in held_out:
            calibration[name] = venn_abers_table(*held_out[name])
            continue
        va = valid[valid["treatment"] == name]
        predicted = by_outcome["response"].predict_proba(build_features(va))
        if continuous:
            conformal[name] = conformal_table(predicted, pain_reduction_points(va),
                                              va["pain_baseline"].to_numpy(dtype=float))
        else:
            calibration[name] = venn_abers_table(predicted, va["response"].to_numpy())
    source = ({} if continuous else {"response_calibration_source": (
        "out_of_fold" if held_out and set(held_out) >= set(models) else "validation")})
    return {"confidence_profile_version": PROFILE_VERSION,
            **fitted_profile(episodes, models), "response_calibration": calibration, **source,
            **({"nrs_change_conformal": conformal} if continuous else {})}


def conformal_table(predicted: np.ndarray, observed: np.ndarray,
                    baseline: np.ndarray | None = None) -> dict[str, Any]:
    """Split-conformal half-widths of a prediction interval for a continuous outcome; with
    ``baseline`` (NRS pain), also one table per severity band under ``by_baseline``.

    The banded tables are Mondrian conformal prediction (Vovk et al. 2005, ch. 4; Vovk,
    Lindsay, Nouretdinov & Gammerman 2003, "Mondrian confidence machine"): the guarantee
    below holds within each band, not only on average over patients.
    """
    table = _order_statistics(predicted, observed)
    if baseline is not None:
        band = severity_band(baseline)
        predicted, observed = np.asarray(predicted, float), np.asarray(observed, float)
        table["by_baseline"] = {"edges": list(SEVERITY_EDGES), "tables": [
            _order_statistics(predicted[band == k], observed[band == k])
            for k in range(len(SEVERITY_BANDS))]}
    return table


def _order_statistics(predicted: np.ndarray, observed: np.ndarray) -> dict[str, Any]:
    """Split-conformal half-widths of a prediction interval for a continuous outcome.

    For coverage level 1 - a and n calibration residuals, the half-width is the
    ceil((n + 1)(1 - a))-th smallest absolute residual: a new patient exchangeable with the
    calibration patients falls within prediction +/- that half-width with probability at
    least 1 - a (Vovk, Gammerman & Shafer 2005, "Algorithmic learning in a random world";
    Lei et al. 2018, "Distribution-free predictive inference for regression", JASA
    113:1094-1111). None where n is too small for the level (the interval is then
    unbounded). Only these 50 order statistics are stored, not the residuals of every
    calibration patient.
    """
    residuals = np.sort(np.abs(np.asarray(observed, float) - np.asarray(predicted, float)))
    n = len(residuals)
    ranks = np.ceil((n + 1) * np.asarray(CONFORMAL_LEVELS) - 1e-9).astype(int)
    return {"n": n, "levels": list(CONFORMAL_LEVELS),
            "halfwidth": [float(residuals[k - 1]) if 1 <= k <= n else None for k in ranks]}


def fitted_profile(episodes: pd.DataFrame, treatments: Iterable[str]) -> dict[str, Any]:
    """What the bundle keeps of the episodes its models were fitted on: the per-treatment
    ``feature_ranges`` and the ``feature_imputation`` over every modeled treatment's episodes
    (both derived here, once, for the evaluated and the deployed bundle)."""
    treatments = list(treatments)
    modeled = episodes[episodes["treatment"].isin(treatments)]
    return {"feature_ranges": treatment_ranges(modeled, treatments),
            "feature_imputation": imputation_values(build_features(modeled))}


def imputation_values(X: pd.DataFrame) -> dict[str, list[Any]]:
    """Per feature: the median over the fitted-on episodes (None if never observed) and
    whether it was ever missing there."""
    values = X.to_numpy(np.float64)
    seen = ~np.isnan(values)
    medians = [float(np.median(values[seen[:, j], j])) if seen[:, j].any() else None
               for j in range(values.shape[1])]
    return {"median": medians, "missing": (~seen).any(axis=0).tolist()}


def impute_unseen_missing(X: pd.DataFrame, imputation: Mapping[str, list[Any]] | None
                          ) -> pd.DataFrame:
    """X with each missing value of a feature that was never missing in training replaced
    by the training median; X itself (not a copy) when there is nothing to fill.

    A tree model that never saw a feature missing sends a missing value down an arbitrary
    branch at each split (xgboost's default direction is only learned from missing values),
    and a model without missing-value handling cannot score it at all. Measured by
    benchmarks/missing_measurements.py (docs/predictions.md): with one measurement emptied
    for every new patient, P(response) moved from its value at the true measurement 1.6-5x
    less at the training median than left missing, on both generators. predict
    flags these patients ``low_confidence`` ("missing (never missing in training)") and its
    explanations still say the value was not recorded. Features missing in training are
    left missing: the trees learned where those go.
    """
    if not imputation:
        return X
    fill = {name: median for name, median, was_missing in
            zip(X.columns, imputation["median"], imputation["missing"])
            if not was_missing and median is not None}
    gaps = [name for name in fill if X[name].isna().any()]
    if not gaps:
        return X
    return X.fillna({name: np.float32(fill[name]) for name in gaps})


def treatment_ranges(episodes: pd.DataFrame, treatments: Iterable[str]
                     ) -> dict[str, dict[str, list[Any]]]:
    """Per treatment, :func:`feature_ranges` of the episodes that received it."""
    return {name: feature_ranges(build_features(episodes[episodes["treatment"] == name]))
            for name in treatments}


def feature_ranges(X: pd.DataFrame) -> dict[str, list[Any]]:
    """Per feature: min, max (None if never observed) and whether it was ever missing."""
    values = X.to_numpy(np.float64)
    seen = ~np.isnan(values)
    has = seen.any(axis=0)
    low = np.where(has, np.nanmin(np.where(seen, values, np.inf), axis=0), np.nan)
    high = np.where(has, np.nanmax(np.where(seen, values, -np.inf), axis=0), np.nan)
    return {"min": _none_for_nan(low), "max": _none_for_nan(high),
            "missing": (~seen).any(axis=0).tolist()}


def _none_for_nan(values: np.ndarray) -> list[float | None]:
    return [None if np.isnan(v) else float(v) for v in values]


def venn_abers_table(scores: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Inductive Venn-Abers bounds for every position a new score can take."""
    from scipy.optimize import isotonic_regression

    grid = np.rint(np.asarray(scores, dtype=float) / GRID).astype(np.int64)
    y = np.asarray(labels, dtype=float)
    cells, inverse = np.unique(grid, return_inverse=True)
    weight = np.bincount(inverse).astype(float)
    total = np.bincount(inverse, weights=y)

    def fit_at(mean: np.ndarray, w: np.ndarray, at: int) -> float:
        # scipy's solver, clipped to [0, 1]: what sklearn.isotonic.isotonic_regression(y_min=0,
        # y_max=1) computes, without its input checks (most of the train stage's profile time)
        fitted = isotonic_regression(mean, weights=w, increasing=True).x
        return float(np.clip(fitted[at], 0.0, 1.0))

    tie = {label: [] for label in (0, 1)}
    gap = {label: [] for label in (0, 1)}
    for label in (0, 1):
        for j in range(len(cells)):  # the new score equals calibration cell j
            w = weight.copy()
            w[j] += 1
            tie[label].append(fit_at(np.r_[total[:j], total[j] + label, total[j + 1:]] / w, w, j))
        for g in range(len(cells) + 1):  # the new score falls before cell g
            mean = np.insert(total / weight, g, label)
            gap[label].append(fit_at(mean, np.insert(weight, g, 1.0), g))
    return {"grid": GRID, "cells": cells.tolist(), "n": int(len(y)),
            "tie_low": tie[0], "tie_high": tie[1], "gap_low": gap[0], "gap_high": gap[1]}



def has_profile(metadata: Mapping[str, Any]) -> bool:
    """Whether a bundle carries the training profile this module needs."""
    return "feature_ranges" in metadata and "response_calibration" in metadata
