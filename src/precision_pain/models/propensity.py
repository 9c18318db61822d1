"""Propensity model: P(treatment | features) under the care that produced the cohort.

Off-policy estimates of a recommender's value (:mod:`precision_pain.evaluate.policy`)
reweight the patients whose observed treatment agrees with the recommendation by
``1 / P(that treatment | features)``. This module fits that multinomial model on
the train split, chooses between candidate model types by multinomial log-loss
on the validation split (never the test split), and saves it without pickle:

- ``xgboost``: ``multi:softprob`` trees, early-stopped on the validation split,
  saved in xgboost's UBJSON format with the class names as a booster attribute;
- ``logistic``: median imputation (with missing indicators) + scaling +
  multinomial logistic regression, saved with skops.

Treatments that are not a usual option for a patient's condition (registry
eligibility) get propensity 0 and the rest are renormalized: a structural zero,
not something to learn.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import pandas as pd

from precision_pain.data.features import build_features
from precision_pain.models.estimators import (artifact_path, fit_booster, load_booster,
                                              load_skops_state, logistic_pipeline,
                                              save_booster, save_skops)
from precision_pain.registry import TREATMENT_NAMES, eligibility, get_treatment

STEM = "propensity"
PROBABILITY_FLOOR = 1e-15  # for the log-loss only


class PropensityModel(Protocol):
    """What evaluation needs from a fitted propensity model."""

    kind: ClassVar[str]
    classes_: list[str]
    feature_names_: list[str]

    def fit(self, X: pd.DataFrame, treatment: np.ndarray, X_val: pd.DataFrame,
            treatment_val: np.ndarray) -> PropensityModel: ...
    def predict_proba(self, X: pd.DataFrame) -> np.ndarray: ...
    def save(self, stem: Path) -> Path: ...


def _codes(classes: list[str], treatment: np.ndarray) -> np.ndarray:
    lookup = {name: i for i, name in enumerate(classes)}
    return np.array([lookup.get(str(t), -1) for t in treatment], dtype=np.int64)


def _check(model: Any, X: pd.DataFrame) -> None:
    if not hasattr(model, "classes_"):
        raise RuntimeError(f"{type(model).__name__} is not fitted yet; call fit first")
    if list(X.columns) != model.feature_names_:
        raise ValueError("feature columns differ from those the propensity model was fitted on")


def _classes(treatment: np.ndarray) -> list[str]:
    """Observed treatments in registry order; an unknown name is an error listing the valid ones."""
    seen = {str(t) for t in treatment}
    for name in sorted(seen - set(TREATMENT_NAMES)):
        get_treatment(name)
    return [t for t in TREATMENT_NAMES if t in seen]


class XGBoostPropensity:
    """Multinomial gradient-boosted trees (``multi:softprob``), early-stopped on validation."""

    kind: ClassVar[str] = "xgboost"
    suffix: ClassVar[str] = ".ubj"

    def __init__(self, seed: int = 0, early_stopping_rounds: int = 30,
                 classes: list[str] | None = None, **hyperparameters: Any):
        self.seed = seed
        self.early_stopping_rounds = early_stopping_rounds
        # None: the registry's treatments seen in training; a list: any labels, in that order
        # (the treatment-effect learners of models/effects.py on tables outside the registry).
        self.classes = classes
        self.hyperparameters = hyperparameters

    def fit(self, X: pd.DataFrame, treatment: np.ndarray, X_val: pd.DataFrame,
            treatment_val: np.ndarray) -> XGBoostPropensity:
        """Fit on the train rows, stopping early on the validation multinomial log-loss."""
        classes = list(self.classes) if self.classes else _classes(treatment)
        y, y_val = _codes(classes, treatment), _codes(classes, treatment_val)
        keep = y_val >= 0
        # xgboost's classifier sets num_class itself only for more than two classes.
        two = {"num_class": 2} if len(classes) == 2 else {}
        self.booster_ = fit_booster("multi:softprob", "mlogloss", self.seed,
                                    self.early_stopping_rounds, {**self.hyperparameters, **two},
                                    X, y, X_val[keep], y_val[keep])
        self.booster_.set_attr(classes=json.dumps(classes))
        self.classes_, self.feature_names_ = classes, list(X.columns)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """(n, len(classes_)) probabilities."""
        _check(self, X)
        p = self.booster_.inplace_predict(X.to_numpy(np.float32), validate_features=False)
        return np.asarray(p, dtype=float).reshape(len(X), len(self.classes_))

    def save(self, stem: Path) -> Path:
        """Write the booster (with its class names) in UBJSON."""
        return save_booster(self.booster_, artifact_path(stem, self.kind, self.suffix))

    @classmethod
    def load(cls, path: Path) -> XGBoostPropensity:
        """Read a model written by :meth:`save`."""
        model = cls()
        model.booster_ = load_booster(path)
        model.classes_ = json.loads(model.booster_.attr("classes") or "[]")
        model.feature_names_ = list(model.booster_.feature_names or [])
        return model


class LogisticPropensity:
    """Imputation + scaling + multinomial logistic regression."""

    kind: ClassVar[str] = "logistic"
    suffix: ClassVar[str] = ".skops"

    def __init__(self, seed: int = 0, **hyperparameters: Any):
        self.seed = seed
        self.hyperparameters = hyperparameters

    def fit(self, X: pd.DataFrame, treatment: np.ndarray, X_val: pd.DataFrame | None = None,
            treatment_val: np.ndarray | None = None) -> LogisticPropensity:
        """Fit on the train rows (the validation split is used only to choose the model type)."""
        classes = _classes(treatment)
        self.estimator_ = logistic_pipeline(self.seed, self.hyperparameters).fit(
            X.to_numpy(np.float64), _codes(classes, treatment))
        self.classes_, self.feature_names_ = classes, list(X.columns)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """(n, len(classes_)) probabilities."""
        _check(self, X)
        return self.estimator_.predict_proba(X.to_numpy(np.float64))

    def save(self, stem: Path) -> Path:
        """Write estimator, class and feature names with skops (no pickle)."""
        return save_skops(artifact_path(stem, self.kind, self.suffix),
                          {"estimator": self.estimator_, "classes": self.classes_,
                           "feature_names": self.feature_names_})

    @classmethod
    def load(cls, path: Path) -> LogisticPropensity:
        """Read a model written by :meth:`save`, trusting exactly what :meth:`save` writes."""
        state = load_skops_state(path, "logistic_propensity", ("classes", "feature_names"))
        model = cls()
        model.estimator_ = state["estimator"]
        model.classes_, model.feature_names_ = state["classes"], state["feature_names"]
        return model


PROPENSITY_TYPES: Mapping[str, type] = {c.kind: c for c in (XGBoostPropensity, LogisticPropensity)}


def _propensity_class(kind: str) -> type:
    if kind not in PROPENSITY_TYPES:
        raise ValueError(f"unknown propensity model type {kind!r}; "
                         f"valid: {', '.join(PROPENSITY_TYPES)}")
    return PROPENSITY_TYPES[kind]


def multinomial_log_loss(model: PropensityModel, prepared: pd.DataFrame) -> float:
    """Mean -log P(observed treatment) (eligibility-masked) over rows of known treatments."""
    codes = _codes(model.classes_, prepared["treatment"].to_numpy())
    known = codes >= 0
    e = predict_propensity(model, prepared[known], model.classes_)
    p = e[np.arange(int(known.sum())), codes[known]]
    return float(-np.mean(np.log(np.maximum(p, PROBABILITY_FLOOR))))


def fit_propensity(train: pd.DataFrame, valid: pd.DataFrame,
                   candidates: Mapping[str, Mapping[str, Any]], seed: int
                   ) -> tuple[PropensityModel, dict[str, Any]]:
    """Fit every candidate type on train; keep the one with the lowest validation log-loss."""
    if not candidates:
        raise ValueError("model.hyperparameters.propensity lists no candidate model types")
    X_tr, X_va = build_features(train), build_features(valid)
    t_tr, t_va = train["treatment"].to_numpy(), valid["treatment"].to_numpy()
    fitted, losses = {}, {}
    for kind, hyper in candidates.items():
        model = _propensity_class(kind)(seed=seed, **dict(hyper)).fit(X_tr, t_tr, X_va, t_va)
        fitted[kind], losses[kind] = model, multinomial_log_loss(model, valid)
    chosen = min(losses, key=losses.__getitem__)
    report = {"chosen": chosen, "valid_log_loss": losses, "n_train": len(train),
              "classes": fitted[chosen].classes_}
    return fitted[chosen], report


def load_propensity(path: Path) -> PropensityModel:
    """Load a model saved as ``propensity.<kind>.<ext>``."""
    kind = Path(path).name.split(".")[-2]
    return _propensity_class(kind).load(Path(path))


def predict_propensity(model: PropensityModel, prepared: pd.DataFrame,
                       treatments: list[str]) -> np.ndarray:
    """(n, len(treatments)) P(treatment | features), zero where ineligible, rows renormalized."""
    raw = model.predict_proba(build_features(prepared))
    masked = raw * eligibility(prepared["condition"], model.classes_)
    total = masked.sum(axis=1, keepdims=True)
    normalized = np.divide(masked, total, out=np.zeros_like(masked), where=total > 0)
    frame = pd.DataFrame(normalized, columns=model.classes_)
    return frame.reindex(columns=treatments, fill_value=0.0).to_numpy(dtype=float)
