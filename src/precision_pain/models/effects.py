"""The pooled learner on any table: treatment effects for a binary or continuous outcome.

The pipeline's pooled learner (:mod:`precision_pain.models.pooled`) works on the
registry's patients, treatments and conditions. :class:`PooledEffectLearner` is the same
learner for any numeric feature matrix and any set of treatment labels (two, "control"
and "treated", on the public causal-inference benchmarks of
``benchmarks/causal_benchmarks.py``). Its ``learner`` setting picks one of two estimators.

``learner: pooled`` (the default, and the pipeline's responder model)
    1. the design: features + treatment one-hot (:func:`pooled.treatment_design`; without
       the registry's conditions there are no (condition, treatment) indicators), and one
       xgboost booster over it (:func:`pooled.fit_pooled_booster`, ``reg:squarederror`` for
       a continuous outcome, ``binary:logistic`` for a binary one): an S-learner;
    2. a propensity model fitted on the train split (:class:`propensity.XGBoostPropensity`,
       early-stopped on the validation split);
    3. the choice of depth and number of trees on the validation split, keeping the
       ``default`` candidate unless another beats it by more than ``replace_z`` standard
       errors of the paired difference (:func:`pooled.choose`), by ``selection``:
       ``policy_value`` (default) = the doubly robust value
       (:func:`precision_pain.evaluate.policy.ope_terms`) of the policy "the treatment with
       the best predicted outcome"; ``effect_loss`` = the squared error of the candidate's
       effects against doubly robust pseudo-outcomes (below), which targets the size of the
       effects rather than the decision.

``learner: stacked`` (for continuous outcomes: :data:`CONTINUOUS_SETTINGS`)
    Several effect estimators from the same xgboost building blocks, combined by their
    validation fit to doubly robust pseudo-outcomes (stacking: Nie & Wager 2021;
    Han & Wu 2022). Candidates (``candidates``):

    - ``pooled``: the S-learner above;
    - ``per_arm``: one booster per treatment on its own rows (the T-learner);
    - ``x``: the X-learner (Kuenzel et al. 2019) of every treatment against the first one:
      effects imputed with the other arm's booster, one booster per arm on them, combined
      by the propensity, e(j) / (e(j) + e(first)) weighting the first arm's;
    - ``constant``: one effect per treatment, the same for every patient (an intercept of
      free sign in the stack).

    Every booster's depth and number of trees is chosen on the validation split by its own
    squared error there (on the outcome, or on the imputed effects for the X-learner's
    second stage). Then with T treatments, doubly robust scores (Robins, Rotnitzky & Zhao
    1994; the DR-learner of Kennedy 2023) on each validation row i and treatment a,
    ``phi_ia = mu_a(x_i) + 1[t_i = a] (y_i - mu_a(x_i)) / max(e_a(x_i), clip)`` (mu = the
    per-arm boosters, e = the propensity model, both fitted on the train split), are
    centred over treatments, as is every candidate's matrix of effects; the weights are the
    non-negative least squares fit of the centred scores on the candidates' centred effects,
    with the constant's free. Centring makes the fit independent of a reference treatment,
    and with two treatments it is the regression of ``phi_1 - phi_0`` on the effects.
    With ``stack_folds: K`` (K > 1) the scores and the candidates' effects are instead
    cross-fitted over train + validation (Chernozhukov et al. 2018): K folds drawn within
    each treatment, every booster (at its chosen depth and trees) and the propensity model
    (at the train fit's number of rounds) fitted on the other K - 1 folds, so the weights
    rest on every row rather than on the validation split alone; no fold ever sees a test
    row. With ``refit`` (which the stacked learner should use) every booster is then fitted
    again, chosen settings kept, on train + validation, and the weights applied to it.
    The predicted outcome under a treatment is the pooled booster's mean over treatments
    plus the stacked, centred effect, so :meth:`PooledEffectLearner.effect` is the stack's.

Settings have the shape of params.yaml's ``model.hyperparameters.pooled_xgboost.response``
(``max_depth`` and ``n_estimators`` lists are searched, ``default`` names the anchor of the
``pooled`` learner's choice; ``learner``, ``selection``, ``candidates``, ``stack_folds`` and
``design`` (:data:`DESIGNS`: ``treatment`` for any table, ``condition_pairs`` for the
pipeline's patients, :mod:`precision_pain.models.stacked`) are read here; every other key goes
to xgboost) and ``model.hyperparameters.propensity.xgboost``.

References: Kuenzel, Sekhon, Bickel & Yu (2019), Metalearners for estimating heterogeneous
treatment effects using machine learning, PNAS 116:4156. Nie & Wager (2021), Quasi-oracle
estimation of heterogeneous treatment effects, Biometrika 108:299. Han & Wu (2022),
Ensemble methods for estimating individualized treatment effects, arXiv:2202.12445.
Kennedy (2023), Towards optimal doubly robust estimation of heterogeneous causal effects,
Electron J Stat 17:3008. Robins, Rotnitzky & Zhao (1994), Estimation of regression
coefficients when some regressors are not always observed, J Am Stat Assoc 89:846.
Chernozhukov et al. (2018), Double/debiased machine learning for treatment and structural
parameters, Econom J 21:C1.

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
>>> stacked = PooledEffectLearner({**CONTINUOUS_SETTINGS, "max_depth": [2],
...                                "n_estimators": [50, 100]}, ["0", "1"], refit=True)
>>> stacked = stacked.fit(X[:400], t[:400], y[:400], X[400:], t[400:], y[400:])
>>> sorted(stacked.weights_)
['constant', 'per_arm', 'pooled', 'x']
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import nnls

from precision_pain.evaluate import policy as pol
from precision_pain.models.estimators import training_threads
from precision_pain.models.pooled import (OBJECTIVES, choose, design, design_names,
                                          fit_pooled_booster, grid_values, treatment_design)
from precision_pain.models.propensity import XGBoostPropensity

log = logging.getLogger(__name__)

LEARNERS = ("pooled", "stacked")
SELECTIONS = ("policy_value", "effect_loss")
CANDIDATES = ("pooled", "per_arm", "x", "constant")
# Keys of the settings read by the learner itself; every other key goes to xgboost.
LEARNER_KEYS = {"max_depth", "n_estimators", "default", "learner", "selection", "candidates",
                "design", "stack_folds"}
# The pooled booster's design (the ``design`` setting): ``treatment`` = features + treatment
# one-hot, for any table; ``condition_pairs`` = the pipeline's pooled design
# (:func:`precision_pain.models.pooled.design`: also one indicator per eligible (condition,
# treatment) pair), for the registry's features and treatments.
DESIGNS = ("treatment", "condition_pairs")


def design_of(name: str, F: np.ndarray, treatment: str | np.ndarray, treatments: Sequence[str],
              feature_names: Sequence[str]) -> np.ndarray:
    """The pooled booster's design matrix of features ``F`` under ``treatment``."""
    if name == "treatment":
        return treatment_design(F, treatment, treatments)
    if name == "condition_pairs":
        return design(pd.DataFrame(F, columns=list(feature_names)), treatment, treatments)
    raise ValueError(f"unknown design {name!r}; valid: {', '.join(DESIGNS)}")


def design_names_of(name: str, feature_names: Sequence[str], treatments: Sequence[str]
                    ) -> list[str]:
    """Column names of :func:`design_of`."""
    if name == "condition_pairs":
        return design_names(treatments)
    return [*feature_names, *(f"treatment={t}" for t in treatments)]

# Defaults for a continuous outcome with a few treatments on hundreds to thousands of rows
# (the benchmarks of benchmarks/causal_benchmarks.py; the proposed
# ``model.hyperparameters.pooled_xgboost.nrs_change`` block): a learning rate high enough
# that a few hundred trees fit, every column in every tree (column subsampling would hide the
# treatment flag from some of the pooled booster's trees), light regularization.
CONTINUOUS_SETTINGS: Mapping[str, Any] = {
    "learner": "stacked",
    "candidates": list(CANDIDATES),
    "selection": "effect_loss",
    "stack_folds": 5,
    "max_depth": [2, 4, 6],
    "n_estimators": [50, 100, 200, 400],
    "default": {"max_depth": 4, "n_estimators": 200},
    "learning_rate": 0.1,
    "min_child_weight": 1,
    "subsample": 0.8,
    "colsample_bytree": 1.0,
    "reg_lambda": 1.0,
}


def _frame(X: Any) -> pd.DataFrame:
    frame = X if isinstance(X, pd.DataFrame) else pd.DataFrame(np.asarray(X))
    return frame.set_axis([str(c) for c in frame.columns], axis=1)


def _centred(matrix: np.ndarray) -> np.ndarray:
    return matrix - matrix.mean(axis=1, keepdims=True)


def dr_scores(mu: np.ndarray, treated: np.ndarray, y: np.ndarray, propensity: np.ndarray,
              clip: float) -> np.ndarray:
    """(n, T) doubly robust scores: mu + 1[t = a] (y - mu) / max(e_a, clip); ``treated`` is
    the column index of the treatment received (-1: none of the T)."""
    rows = np.flatnonzero(treated >= 0)
    out = np.array(mu, dtype=float)
    got = treated[rows]
    out[rows, got] += (y[rows] - mu[rows, got]) / np.maximum(propensity[rows, got], clip)
    return out


class PooledEffectLearner:
    """Treatment effects from xgboost boosters on any table (see the module docstring).

    Parameters
    ----------
    settings : the response settings (params.yaml ``pooled_xgboost.response`` shape; for a
        continuous outcome :data:`CONTINUOUS_SETTINGS`).
    treatments : the treatment labels, in column order of :meth:`predict_matrix`.
    outcome_type : ``continuous`` (squared error) or ``binary`` (log-loss).
    propensity : xgboost settings of the propensity model (params.yaml
        ``propensity.xgboost``); used by the choices and the X-learner's weights.
    higher_is_better : the direction of the outcome (False for the change in pain).
    replace_z, clip, seed : as in params.yaml (``replace_z``, ``evaluate.propensity_clip``,
        ``model.seed``).
    refit : after the choice, refit the chosen boosters on train + validation (the
        pipeline's pooled responder model does not here: False reproduces it).

    Attributes (after :meth:`fit`)
    ------------------------------
    chosen_, table_ : ``pooled`` learner: the chosen depth and trees, every candidate's
        validation figure.
    components_ : ``stacked`` learner: every booster's chosen depth, trees and validation
        squared error.
    weights_ : ``stacked`` learner: each candidate's stacking weight (for ``constant``, the
        sum of the absolute values of its per-treatment effects).
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
        """Fit on (X, treatment, y); make every choice on the validation rows."""
        if self.outcome_type not in OBJECTIVES:
            raise ValueError(f"unknown outcome type {self.outcome_type!r}; valid: "
                             f"{', '.join(OBJECTIVES)}")
        learner = self.settings.get("learner", "pooled")
        if learner not in LEARNERS:
            raise ValueError(f"unknown learner {learner!r}; valid: {', '.join(LEARNERS)}")
        selection = self.settings.get("selection", "policy_value")
        if selection not in SELECTIONS:
            raise ValueError(f"unknown selection {selection!r}; valid: {', '.join(SELECTIONS)}")
        candidates = list(self.settings.get("candidates", CANDIDATES))
        if learner == "stacked" and (not candidates or set(candidates) - set(CANDIDATES)):
            raise ValueError(f"candidates must be some of {', '.join(CANDIDATES)}; got "
                             f"{candidates}")
        X, X_val = _frame(X), _frame(X_val)
        t, t_val = np.asarray(treatment).astype(str), np.asarray(treatment_val).astype(str)
        y, y_val = np.asarray(y, float), np.asarray(y_val, float)
        self.treatments_ = [str(name) for name in self.treatments]
        self.feature_names_ = list(X.columns)
        for attr in ("booster_", "stack_"):
            self.__dict__.pop(attr, None)
        if learner == "stacked":
            code, code_val = self._codes(t), self._codes(t_val)
            for j, name in enumerate(self.treatments_):
                if (code == j).sum() < 2 or (code_val == j).sum() < 1:
                    raise ValueError(f"treatment {name!r} needs at least 2 train rows and 1 "
                                     "validation row for the stacked learner")
        with training_threads():
            self.propensity_model_ = self._propensity(X, t, X_val, t_val)
            propensity = self.propensity_model_.predict_proba(X_val)
            if learner == "stacked":
                self._fit_stacked(X, t, y, X_val, t_val, y_val, propensity, candidates)
                return self
            self.booster_, self.table_ = self._select(X, t, y, X_val, t_val, y_val,
                                                      propensity, selection)
            if self.refit:
                self.booster_ = self._booster(pd.concat([X, X_val], ignore_index=True),
                                              np.concatenate([t, t_val]),
                                              np.concatenate([y, y_val]),
                                              self.chosen_["max_depth"], self.chosen_["n_trees"])
        return self

    def _xgb_settings(self) -> dict[str, Any]:
        return {k: v for k, v in self.settings.items() if k not in LEARNER_KEYS}

    def _booster(self, X: pd.DataFrame, t: np.ndarray, y: np.ndarray, depth: int,
                 trees: int) -> Any:
        return fit_pooled_booster(self._design(X.to_numpy(np.float32), t),
                                  self._names(), y, trees, self.seed, self.outcome_type,
                                  max_depth=depth, **self._xgb_settings())

    def _propensity(self, X: pd.DataFrame, t: np.ndarray, X_val: pd.DataFrame,
                    t_val: np.ndarray) -> XGBoostPropensity:
        """P(treatment | x), fitted on the train rows (early-stopped on validation)."""
        settings = dict(self.propensity or {})
        model = XGBoostPropensity(seed=self.seed, classes=self.treatments_, **settings)
        return model.fit(X, t, X_val, t_val)

    def _codes(self, t: np.ndarray) -> np.ndarray:
        lookup = {name: j for j, name in enumerate(self.treatments_)}
        return np.array([lookup.get(name, -1) for name in t])

    def _select(self, X: pd.DataFrame, t: np.ndarray, y: np.ndarray, X_val: pd.DataFrame,
                t_val: np.ndarray, y_val: np.ndarray, propensity: np.ndarray,
                selection: str) -> tuple[Any, pd.DataFrame]:
        trees = sorted(int(k) for k in grid_values(self.settings["n_estimators"]))
        sign = 1.0 if self.higher_is_better else -1.0
        treated = self._codes(t_val)
        default = self.settings.get("default", {})
        rows, mus, boosters = [], [], {}
        for depth in grid_values(self.settings["max_depth"]):
            boosters[depth] = self._booster(X, t, y, depth, max(trees))
            for k in trees:
                mus.append(self._matrix(boosters[depth][:k], X_val))
                rows.append({"max_depth": depth, "n_trees": k})
        table = pd.DataFrame(rows)
        anchor = table.index[(table["max_depth"] == default.get("max_depth"))
                             & (table["n_trees"] == default.get("n_estimators"))]
        anchor = int(anchor[0]) if len(anchor) else None
        terms = []
        if selection == "policy_value":
            for mu in mus:
                first = pol.one_hot(np.argmax(sign * mu, axis=1), len(self.treatments_))
                logged = pol.Logged(treated, sign * y_val, sign * mu, propensity)
                terms.append(sign * pol.ope_terms(first, logged, self.clip)["dr"])
            table["valid_dr"] = [float(term.mean()) for term in terms]
            terms = [sign * term for term in terms]  # higher is better for choose()
        else:  # effect_loss: one set of scores (the anchor's, or the largest candidate's)
            phi = _centred(dr_scores(mus[len(mus) - 1 if anchor is None else anchor],
                                     treated, y_val, propensity, self.clip))
            terms = [-np.sum((phi - _centred(mu)) ** 2, axis=1) for mu in mus]
            table["valid_effect_loss"] = [float(-term.mean()) for term in terms]
        best = table.loc[choose(np.vstack(terms), anchor, self.replace_z)]
        log.info("pooled effect learner: depth %d, %d trees (by %s)", best["max_depth"],
                 best["n_trees"], selection)
        self.chosen_ = {"max_depth": int(best["max_depth"]), "n_trees": int(best["n_trees"])}
        return boosters[best["max_depth"]][: int(best["n_trees"])], table

    # ------------------------------------------------------------------- stacked learner
    def _chosen_booster(self, name: str, matrix: np.ndarray, names: list[str], y: np.ndarray,
                        matrix_val: np.ndarray, y_val: np.ndarray, objective: str,
                        seed: int) -> tuple[Any, dict[str, Any]]:
        """One booster per depth at the largest tree count; the (depth, trees) with the
        least validation squared error (of probabilities for a binary outcome)."""
        trees = sorted(int(k) for k in grid_values(self.settings["n_estimators"]))
        best: tuple[float, int, int] | None = None
        boosters = {}
        for depth in grid_values(self.settings["max_depth"]):
            boosters[depth] = fit_pooled_booster(matrix, names, y, max(trees), seed,
                                                 objective, max_depth=depth,
                                                 **self._xgb_settings())
            for k in trees:
                pred = boosters[depth][:k].inplace_predict(matrix_val, validate_features=False)
                loss = float(np.mean((pred - y_val) ** 2))
                if best is None or loss < best[0]:
                    best = (loss, int(depth), k)
        loss, depth, k = best
        return boosters[depth][:k], {"component": name, "max_depth": depth, "n_trees": k,
                                     "valid_mse": loss, "seed": seed, "objective": objective}

    def _refit_component(self, row: Mapping[str, Any], matrix: np.ndarray, names: list[str],
                         y: np.ndarray) -> Any:
        return fit_pooled_booster(matrix, names, y, row["n_trees"], row["seed"],
                                  row["objective"], max_depth=row["max_depth"],
                                  **self._xgb_settings())

    def _fit_stacked(self, X: pd.DataFrame, t: np.ndarray, y: np.ndarray, X_val: pd.DataFrame,
                     t_val: np.ndarray, y_val: np.ndarray, propensity: np.ndarray,
                     candidates: list[str]) -> None:
        T = len(self.treatments_)
        names = list(self.feature_names_)
        F, F_val = X.to_numpy(np.float32), X_val.to_numpy(np.float32)
        code, code_val = self._codes(t), self._codes(t_val)
        rows: list[dict[str, Any]] = []
        # the pooled S-learner (always: its mean over treatments is the outcome level)
        pooled, row = self._chosen_booster(
            "pooled", self._design(F, t), self._names(), y,
            self._design(F_val, t_val), y_val, self.outcome_type,
            self.seed)
        rows.append(row)
        # per-arm boosters (the T-learner; also the nuisance of the scores and the X-learner)
        arms = []
        for j in range(T):
            booster, row = self._chosen_booster(
                f"arm={self.treatments_[j]}", F[code == j], names, y[code == j],
                F_val[code_val == j], y_val[code_val == j], self.outcome_type,
                self.seed + 1 + j)
            arms.append(booster)
            rows.append(row)
        mu_val = self._arm_matrix(arms, F_val)
        xs = []
        if "x" in candidates:
            mu_train = self._arm_matrix(arms, F)
            for j in range(1, T):
                pair = []
                for arm, other, sign in ((j, 0, 1.0), (0, j, -1.0)):
                    keep, keep_val = code == arm, code_val == arm
                    target = sign * (y[keep] - mu_train[keep, other])
                    target_val = sign * (y_val[keep_val] - mu_val[keep_val, other])
                    booster, row = self._chosen_booster(
                        f"x={self.treatments_[j]}|{self.treatments_[arm]}", F[keep], names,
                        target, F_val[keep_val], target_val, "continuous",
                        self.seed + 1 + T + 2 * j + (arm == 0))
                    pair.append(booster)
                    rows.append({**row, "arm": arm, "other": other, "sign": sign})
                xs.append(pair)
        self.components_ = pd.DataFrame(rows)
        folds = int(self.settings.get("stack_folds", 0) or 0)
        if folds > 1:  # the stack on out-of-fold predictions over train + validation
            phi, effects = self._cross_fitted(X, t, y, X_val, t_val, y_val, candidates, folds)
        else:  # the stack on the validation rows, boosters fitted on train
            phi = dr_scores(mu_val, code_val, y_val, propensity, self.clip)
            effects = self._candidate_effects(candidates, pooled, arms, xs, F_val, propensity)
        self._stack(phi, effects, candidates)
        if self.refit:
            F_all = np.vstack([F, F_val])
            pooled, arms, xs = self._fit_components(F_all, np.concatenate([t, t_val]),
                                                    np.concatenate([y, y_val]), candidates)
        self.pooled_, self.arms_, self.xs_ = pooled, arms, xs
        self.booster_ = pooled

    def _stack(self, phi: np.ndarray, effects: Mapping[str, np.ndarray],
               candidates: list[str]) -> None:
        """Non-negative least squares of the centred scores on the centred candidates (the
        constant's weights free: a positive and a negative copy of each column)."""
        n, T = phi.shape
        columns = [effects[name].ravel() for name in effects]
        free = []
        if "constant" in candidates:  # one column per treatment but the first
            for j in range(1, T):
                unit = np.zeros((n, T))
                unit[:, j] = 1.0
                free.append(_centred(unit).ravel())
        design = np.column_stack([*columns, *free, *(-c for c in free)])
        weights, _ = nnls(design, _centred(phi).ravel())
        k = len(columns)
        self.stack_ = {"effects": dict(zip(effects, weights[:k])),
                       "constant": weights[k:k + len(free)] - weights[k + len(free):]}
        self.weights_ = {**{name: float(w) for name, w in self.stack_["effects"].items()},
                         **({"constant": float(np.sum(np.abs(self.stack_["constant"])))}
                            if "constant" in candidates else {})}
        log.info("stacked effect learner: weights %s, constant %s",
                 {k: round(v, 3) for k, v in self.stack_["effects"].items()},
                 np.round(self.stack_["constant"], 3))

    def _cross_fitted(self, X: pd.DataFrame, t: np.ndarray, y: np.ndarray,
                      X_val: pd.DataFrame, t_val: np.ndarray, y_val: np.ndarray,
                      candidates: list[str], folds: int
                      ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """DR scores and candidates' effects on every train + validation row, each from
        boosters (chosen settings) and a propensity model (the train fit's number of
        rounds) fitted on the other folds; folds drawn within each treatment."""
        X_all = pd.concat([X, X_val], ignore_index=True)
        F = X_all.to_numpy(np.float32)
        t_all, y_all = np.concatenate([t, t_val]), np.concatenate([y, y_val])
        code = self._codes(t_all)
        fold = np.zeros(len(F), dtype=int)
        rng = np.random.default_rng(self.seed)
        for j in np.unique(code):
            rows = rng.permutation(np.flatnonzero(code == j))
            fold[rows] = np.arange(len(rows)) % folds
        rounds = int(self.propensity_model_.booster_.num_boosted_rounds())
        settings = {**dict(self.propensity or {}), "n_estimators": rounds}
        settings.pop("early_stopping_rounds", None)
        T = len(self.treatments_)
        phi = np.zeros((len(F), T))
        effects: dict[str, np.ndarray] = {}
        for k in range(folds):
            out, inside = fold == k, fold != k
            e = (XGBoostPropensity(seed=self.seed, classes=self.treatments_,
                                   early_stopping_rounds=0, **settings)
                 .fit(X_all[inside], t_all[inside], X_all[out], t_all[out])
                 .predict_proba(X_all[out]))
            pooled, arms, xs = self._fit_components(F[inside], t_all[inside], y_all[inside],
                                                    candidates)
            phi[out] = dr_scores(self._arm_matrix(arms, F[out]), code[out], y_all[out], e,
                                 self.clip)
            for name, value in self._candidate_effects(candidates, pooled, arms, xs, F[out],
                                                       e).items():
                effects.setdefault(name, np.zeros((len(F), T)))[out] = value
        keep = code >= 0
        return phi[keep], {name: value[keep] for name, value in effects.items()}

    def _fit_components(self, F: np.ndarray, t: np.ndarray, y: np.ndarray,
                        candidates: list[str]) -> tuple[Any, list[Any], list[list[Any]]]:
        """Every chosen booster (same depth, trees and seed) on the rows given."""
        code = self._codes(t)
        names = list(self.feature_names_)
        table = self.components_.set_index("component", drop=False)
        pooled = self._refit_component(table.loc["pooled"],
                                       self._design(F, t),
                                       self._names(), y)
        arms = [self._refit_component(table.loc[f"arm={name}"], F[code == j], names,
                                      y[code == j])
                for j, name in enumerate(self.treatments_)]
        xs = []
        if "x" in candidates:
            mu = self._arm_matrix(arms, F)
            for j in range(1, len(self.treatments_)):
                pair = []
                for arm in (j, 0):
                    row = table.loc[f"x={self.treatments_[j]}|{self.treatments_[arm]}"]
                    keep = code == arm
                    target = row["sign"] * (y[keep] - mu[keep, int(row["other"])])
                    pair.append(self._refit_component(row, F[keep], names, target))
                xs.append(pair)
        return pooled, arms, xs

    def refitted(self, X: Any, treatment: Any, y: Any) -> PooledEffectLearner:
        """A copy of this fitted ``stacked`` learner with every booster fitted again on
        (X, treatment, y), every choice kept (depths, trees, seeds, stacking weights): the
        pipeline's refits on train + validation and on every split."""
        if not hasattr(self, "stack_"):
            raise RuntimeError("refitted needs a fitted stacked learner")
        X = self._checked(X)
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__dict__)
        with training_threads():
            copy.pooled_, copy.arms_, copy.xs_ = self._fit_components(
                X.to_numpy(np.float32), np.asarray(treatment).astype(str),
                np.asarray(y, float), list(self.stack_["effects"]))
        copy.booster_ = copy.pooled_
        return copy

    def _arm_matrix(self, arms: list[Any], F: np.ndarray) -> np.ndarray:
        return np.column_stack([arm.inplace_predict(F, validate_features=False)
                                for arm in arms]).astype(float)

    def _candidate_effects(self, candidates: list[str], pooled: Any, arms: list[Any],
                           xs: list[list[Any]], F: np.ndarray, propensity: np.ndarray
                           ) -> dict[str, np.ndarray]:
        """Each non-constant candidate's centred (n, T) matrix of effects."""
        out = {}
        if "pooled" in candidates:
            out["pooled"] = _centred(self._design_matrix(pooled, F))
        if "per_arm" in candidates:
            out["per_arm"] = _centred(self._arm_matrix(arms, F))
        if "x" in candidates:
            tau = np.zeros((len(F), len(self.treatments_)))
            for j, (on_treated, on_first) in enumerate(xs, start=1):
                e = propensity[:, j] / np.maximum(propensity[:, j] + propensity[:, 0], 1e-12)
                tau[:, j] = (e * on_first.inplace_predict(F, validate_features=False)
                             + (1 - e) * on_treated.inplace_predict(F, validate_features=False))
            out["x"] = _centred(tau)
        return out

    def _design(self, F: np.ndarray, treatment: str | np.ndarray) -> np.ndarray:
        """The pooled booster's design (the ``design`` setting, :data:`DESIGNS`)."""
        return design_of(self.settings.get("design", "treatment"), F, treatment,
                         self.treatments_, self.feature_names_)

    def _names(self) -> list[str]:
        return design_names_of(self.settings.get("design", "treatment"), self.feature_names_,
                               self.treatments_)

    # --------------------------------------------------------------------- prediction
    def _design_matrix(self, booster: Any, F: np.ndarray) -> np.ndarray:
        return np.column_stack([
            booster.inplace_predict(self._design(F, name),
                                    validate_features=False)
            for name in self.treatments_]).astype(float)

    def _matrix(self, booster: Any, X: pd.DataFrame) -> np.ndarray:
        return self._design_matrix(booster, X.to_numpy())

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
        if not hasattr(self, "stack_"):
            return self._matrix(self.booster_, X)
        F = X.to_numpy(np.float32)
        level = self._design_matrix(self.pooled_, F).mean(axis=1, keepdims=True)
        effects = self._candidate_effects(list(self.stack_["effects"]), self.pooled_,
                                          self.arms_, self.xs_, F,
                                          self.propensity_model_.predict_proba(X))
        tau = sum(w * effects[name] for name, w in self.stack_["effects"].items())
        constant = np.zeros(len(self.treatments_))
        constant[1:] = self.stack_["constant"] if len(self.stack_["constant"]) else 0.0
        return level + tau + _centred(constant[None, :])

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
