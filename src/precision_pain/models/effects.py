"""The pooled learner on any table: treatment effects for a binary or continuous outcome.

The pipeline's pooled learner (:mod:`precision_pain.models.pooled`) works on the
registry's patients, treatments and conditions. :class:`PooledEffectLearner` is the same
learner for any numeric feature matrix and any set of treatment labels (two, "control"
and "treated", on the public causal-inference benchmarks of
``benchmarks/causal_benchmarks.py``), with the same three parts, in the same code:

1. the design: features + treatment one-hot (:func:`pooled.treatment_design`; without
   the registry's conditions there are no (condition, treatment) indicators), and one
   xgboost booster over it (:func:`pooled.fit_pooled_booster`, ``reg:squarederror`` for a
   continuous outcome, ``binary:logistic`` for a binary one);
2. a propensity model fitted on the train split (:class:`propensity.XGBoostPropensity`,
   early-stopped on the validation split);
3. the choice of depth and number of trees on the validation split by the doubly robust
   value (:func:`precision_pain.evaluate.policy.ope_terms`) of the policy "the treatment
   with the best predicted outcome", keeping the ``default`` candidate unless another beats
   it by more than ``replace_z`` standard errors of the paired difference
   (:func:`pooled.choose`).

Settings have the shape of params.yaml's ``model.hyperparameters.pooled_xgboost.response``
(``max_depth`` and ``n_estimators`` lists are searched, ``default`` names the anchor, every
other key goes to xgboost) and ``model.hyperparameters.propensity.xgboost``.

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(600, 3)); t = rng.integers(0, 2, 600).astype(str)
>>> y = X[:, 0] + (t == "1") * (1 + X[:, 1]) + rng.normal(size=600)
>>> learner = PooledEffectLearner({"max_depth": [2], "n_estimators": [50, 100],
...                                "learning_rate": 0.1}, treatments=["0", "1"])
>>> learner = learner.fit(X[:400], t[:400], y[:400], X[400:], t[400:], y[400:])
>>> learner.effect(X[:2], "1", "0").shape
(2,)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from precision_pain.evaluate import policy as pol
from precision_pain.models.estimators import training_threads
from precision_pain.models.pooled import (OBJECTIVES, choose, fit_pooled_booster,
                                          fixed_settings, grid_values, treatment_design)
from precision_pain.models.propensity import XGBoostPropensity

log = logging.getLogger(__name__)


def _frame(X: Any) -> pd.DataFrame:
    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X))
    return frame.set_axis([str(c) for c in frame.columns], axis=1)


class PooledEffectLearner:
    """The pooled learner (one booster over features + treatment one-hot) for any table.

    Parameters
    ----------
    settings : the response settings (params.yaml ``pooled_xgboost.response`` shape).
    treatments : the treatment labels, in column order of :meth:`predict_matrix`.
    outcome_type : ``continuous`` (squared error) or ``binary`` (log-loss).
    propensity : xgboost settings of the propensity model (params.yaml
        ``propensity.xgboost``); only the hyperparameter choice uses it.
    higher_is_better : the direction of the outcome (False for the change in pain).
    replace_z, clip, seed : as in params.yaml (``replace_z``, ``evaluate.propensity_clip``,
        ``model.seed``).
    refit : after the choice, refit the chosen depth and number of trees on train +
        validation (the pipeline does not: False reproduces it).
    """

    def __init__(self, settings: Mapping[str, Any], treatments: Sequence[str],
                 outcome_type: str = "continuous", propensity: Mapping[str, Any] | None = None,
                 higher_is_better: bool = True, replace_z: float = 2.0, clip: float = 0.01,
                 refit: bool = False, seed: int = 0):
        self.settings = settings
        self.treatments = treatments
        self.outcome_type = outcome_type
        self.propensity = propensity
        self.higher_is_better = higher_is_better
        self.replace_z = replace_z
        self.clip = clip
        self.refit = refit
        self.seed = seed

    # ------------------------------------------------------------------------ fitting
    def fit(self, X: Any, treatment: Any, y: Any, X_val: Any, treatment_val: Any,
            y_val: Any) -> PooledEffectLearner:
        """Fit every candidate on (X, treatment, y); keep one by its validation DR value."""
        if self.outcome_type not in OBJECTIVES:
            raise ValueError(f"unknown outcome type {self.outcome_type!r}; valid: "
                             f"{', '.join(OBJECTIVES)}")
        X, X_val = _frame(X), _frame(X_val)
        t, t_val = np.asarray(treatment).astype(str), np.asarray(treatment_val).astype(str)
        self.treatments_ = [str(name) for name in self.treatments]
        self.feature_names_ = list(X.columns)
        with training_threads():
            propensity = self._propensity(X, t, X_val, t_val)
            self.booster_, self.table_ = self._select(X, t, np.asarray(y, float), X_val,
                                                      t_val, np.asarray(y_val, float),
                                                      propensity)
            if self.refit:
                self.booster_ = self._booster(pd.concat([X, X_val], ignore_index=True),
                                              np.concatenate([t, t_val]),
                                              np.concatenate([y, y_val]).astype(float),
                                              self.chosen_["max_depth"], self.chosen_["n_trees"])
        return self

    def _booster(self, X: pd.DataFrame, t: np.ndarray, y: np.ndarray, depth: int,
                 trees: int) -> Any:
        fixed = fixed_settings(self.settings, ("n_estimators", "max_depth"))
        return fit_pooled_booster(treatment_design(X.to_numpy(), t, self.treatments_),
                                  self._names(), y, trees, self.seed, self.outcome_type,
                                  max_depth=depth, **fixed)

    def _propensity(self, X: pd.DataFrame, t: np.ndarray, X_val: pd.DataFrame,
                    t_val: np.ndarray) -> np.ndarray:
        """(n_val, T) P(treatment | x) on the validation rows, fitted on the train rows."""
        settings = dict(self.propensity or {})
        model = XGBoostPropensity(seed=self.seed, classes=self.treatments_, **settings)
        return model.fit(X, t, X_val, t_val).predict_proba(X_val)

    def _select(self, X: pd.DataFrame, t: np.ndarray, y: np.ndarray, X_val: pd.DataFrame,
                t_val: np.ndarray, y_val: np.ndarray, propensity: np.ndarray
                ) -> tuple[Any, pd.DataFrame]:
        trees = sorted(int(k) for k in grid_values(self.settings["n_estimators"]))
        sign = 1.0 if self.higher_is_better else -1.0
        lookup = {name: j for j, name in enumerate(self.treatments_)}
        treated = np.array([lookup.get(name, -1) for name in t_val])
        rows, terms, boosters = [], [], {}
        for depth in grid_values(self.settings["max_depth"]):
            boosters[depth] = self._booster(X, t, y, depth, max(trees))
            for k in trees:
                mu = self._matrix(boosters[depth][:k], X_val)
                first = pol.one_hot(np.argmax(sign * mu, axis=1), len(self.treatments_))
                logged = pol.Logged(treated, sign * y_val, sign * mu, propensity)
                terms.append(pol.ope_terms(first, logged, self.clip)["dr"])
                rows.append({"max_depth": depth, "n_trees": k,
                             "valid_dr": sign * float(terms[-1].mean())})
        table = pd.DataFrame(rows)
        default = self.settings.get("default", {})
        anchor = table.index[(table["max_depth"] == default.get("max_depth"))
                             & (table["n_trees"] == default.get("n_estimators"))]
        best = table.loc[choose(np.vstack(terms), int(anchor[0]) if len(anchor) else None,
                                self.replace_z)]
        log.info("pooled effect learner: depth %d, %d trees (validation DR value %.4f)",
                 best["max_depth"], best["n_trees"], best["valid_dr"])
        self.chosen_ = {"max_depth": int(best["max_depth"]), "n_trees": int(best["n_trees"])}
        return boosters[best["max_depth"]][: int(best["n_trees"])], table

    def _names(self) -> list[str]:
        return [*self.feature_names_, *(f"treatment={t}" for t in self.treatments_)]

    # --------------------------------------------------------------------- prediction
    def _matrix(self, booster: Any, X: pd.DataFrame) -> np.ndarray:
        return np.column_stack([
            booster.inplace_predict(treatment_design(X.to_numpy(), name, self.treatments_),
                                    validate_features=False)
            for name in self.treatments_]).astype(float)

    def _checked(self, X: Any) -> pd.DataFrame:
        if not hasattr(self, "booster_"):
            raise RuntimeError("PooledEffectLearner is not fitted yet; call fit first")
        X = _frame(X)
        if list(X.columns) != self.feature_names_:
            raise ValueError("feature columns differ from those the learner was fitted on")
        return X

    def predict_matrix(self, X: Any) -> np.ndarray:
        """(n, T) expected outcome (probability for a binary one) under every treatment."""
        X = self._checked(X)
        return self._matrix(self.booster_, X)

    def predict(self, X: Any, treatment: str) -> np.ndarray:
        """Expected outcome of every row under ``treatment``."""
        return self.predict_matrix(X)[:, self.treatments_.index(str(treatment))]

    def effect(self, X: Any, treatment: str, baseline: str) -> np.ndarray:
        """Conditional average effect of ``treatment`` against ``baseline`` per row."""
        mu = self.predict_matrix(X)
        return (mu[:, self.treatments_.index(str(treatment))]
                - mu[:, self.treatments_.index(str(baseline))])

    def recommend(self, X: Any) -> np.ndarray:
        """Per row, the treatment with the best expected outcome."""
        mu = self.predict_matrix(X)
        best = np.argmax(mu if self.higher_is_better else -mu, axis=1)
        return np.asarray(self.treatments_, dtype=object)[best]
