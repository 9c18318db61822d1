"""The stacked learner in the pipeline: the change in pain (``prepare.outcome: nrs_change``).

With ``model.type: pooled_xgboost`` and a continuous outcome, params.yaml's
``model.hyperparameters.pooled_xgboost.nrs_change`` block may say ``learner: stacked``. The
response model is then :class:`precision_pain.models.effects.PooledEffectLearner`'s stacked
learner (the same code the causal benchmarks run, ``benchmarks/causal_benchmarks.py``) on
the patients' features, restricted to candidates whose combination keeps exact SHAP values:

- ``pooled``: one booster over features + treatment one-hot (an S-learner), S_t(x);
- ``per_arm``: one booster per treatment on its own patients (a T-learner), A_t(x);
- ``constant``: one shift per treatment, c_t (centred over treatments).

With weights w_S and w_A from the non-negative least squares fit of cross-fitted doubly
robust scores (effects.py), the expected reduction in pain under treatment t is

    f_t(x) = (1 - w_S) * mean_u S_u(x) + w_S * S_t(x) + w_A * (A_t(x) - mean_u A_u(x)) + c_t

a weighted sum of boosters, so its SHAP values are the same weighted sum of theirs (exact,
in NRS points, bias last; :mod:`precision_pain.models.treeshap`). The X-learner candidate is
left out: its propensity-weighted combination of two boosters is a product of models, whose
SHAP values are not a sum of theirs. The adverse-event model is the pooled learner's.

A patient feature's SHAP value thus reads as for any model: how much that feature moves this
patient's expected relief under t; the treatment one-hot's share in the pooled booster and
the constants are folded into the bias ("this treatment's baseline"), as for the pooled
learner (:mod:`precision_pain.models.pooled`).
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from precision_pain.data.features import FEATURE_NAMES, build_features
from precision_pain.engine import LOCAL
from precision_pain.models.estimators import artifact_path
from precision_pain.models.pooled import (Candidate, PooledFit, ValidationData, check_features,
                                          observed_episodes, adverse_event_candidate,
                                          fit_adverse_event,
                                          fit_candidates, fixed_settings)
from precision_pain.models.treeshap import Explainer
from precision_pain.outcome import OutcomeSpec

log = logging.getLogger(__name__)

KIND = "stacked"
# Candidates whose stack is a weighted sum of boosters (exact SHAP); see the module docstring.
PIPELINE_CANDIDATES = ("pooled", "per_arm", "constant")


def uses_stacked(settings: Mapping[str, Any], outcome: OutcomeSpec) -> bool:
    """Whether the pooled learner's response model is the stacked learner: a continuous
    outcome and an ``nrs_change`` block with ``learner: stacked``."""
    return outcome.continuous and settings.get("nrs_change", {}).get("learner") == "stacked"


class StackedModel:
    """The stacked response model for every treatment (one file: boosters and weights)."""

    kind: ClassVar[str] = KIND
    suffix: ClassVar[str] = ".json"

    def __init__(self, pooled: Any, arms: Sequence[Any], treatments: Sequence[str],
                 weights: Mapping[str, float], constant: Sequence[float],
                 learner: Any = None, design: str = "condition_pairs"):
        self.design = design
        self.pooled_ = pooled
        self.arms_ = list(arms)
        self.treatments = tuple(treatments)
        self.weights = {"pooled": float(weights.get("pooled", 0.0)),
                        "per_arm": float(weights.get("per_arm", 0.0))}
        const = np.asarray(constant, dtype=float).reshape(len(self.treatments))
        self.constant = const - const.mean()
        self.learner = learner  # the fitted PooledEffectLearner (in memory only: refits)
        self.feature_names_ = list(FEATURE_NAMES)
        self._explainers: dict[str, Explainer] = {}
        if len(self.arms_) != len(self.treatments):
            raise ValueError("the stacked model needs one arm booster per treatment")

    @classmethod
    def from_learner(cls, learner: Any) -> StackedModel:
        """The pipeline's model from a fitted stacked :class:`PooledEffectLearner`."""
        effects = dict(learner.stack_["effects"])
        if set(effects) - set(PIPELINE_CANDIDATES):
            raise ValueError(f"the pipeline's stacked learner takes the candidates "
                             f"{', '.join(PIPELINE_CANDIDATES)} (exact SHAP), not "
                             f"{', '.join(sorted(set(effects) - set(PIPELINE_CANDIDATES)))}")
        constant = np.zeros(len(learner.treatments_))
        given = np.asarray(learner.stack_["constant"], dtype=float)
        constant[1:1 + len(given)] = given
        return cls(learner.pooled_, learner.arms_, learner.treatments_, effects, constant,
                   learner, learner.settings.get("design", "treatment"))

    # --------------------------------------------------------------------- prediction
    def _index(self, treatment: str) -> int:
        if treatment not in self.treatments:
            raise KeyError(f"the stacked model was not trained on {treatment!r}; it knows "
                           f"{', '.join(self.treatments)}")
        return self.treatments.index(treatment)

    def _check(self, X: pd.DataFrame) -> np.ndarray:
        check_features(X)
        return X.to_numpy(np.float32)

    def _design(self, F: np.ndarray, treatment: str) -> np.ndarray:
        from precision_pain.models.effects import design_of

        return design_of(self.design, F, treatment, self.treatments, self.feature_names_)

    def _pooled_matrix(self, F: np.ndarray) -> np.ndarray:
        return np.column_stack([
            self.pooled_.inplace_predict(self._design(F, t), validate_features=False)
            for t in self.treatments]).astype(float)

    def _arm_matrix(self, F: np.ndarray) -> np.ndarray:
        return np.column_stack([arm.inplace_predict(F, validate_features=False)
                                for arm in self.arms_]).astype(float)

    def predict_matrix(self, X: pd.DataFrame) -> np.ndarray:
        """(n, T) expected reduction in NRS points under every treatment."""
        F = self._check(X)
        S, A = self._pooled_matrix(F), self._arm_matrix(F)
        w_s, w_a = self.weights["pooled"], self.weights["per_arm"]
        level = S.mean(axis=1, keepdims=True)
        return ((1 - w_s) * level + w_s * S + w_a * (A - A.mean(axis=1, keepdims=True))
                + self.constant[None, :])

    def predict_proba(self, X: pd.DataFrame, treatment: str) -> np.ndarray:
        """E[reduction in NRS points] under ``treatment`` (the contract's name)."""
        return self.predict_matrix(X)[:, self._index(treatment)]

    def _explainer(self, name: str, booster: Any) -> Explainer:
        if name not in self._explainers:
            self._explainers[name] = Explainer([booster])
        return self._explainers[name]

    def contributions(self, X: pd.DataFrame, treatment: str) -> np.ndarray:
        """(n, F + 1) exact SHAP values of f_t (NRS points), bias last: the module
        docstring's weighted sum of the boosters' SHAP values, each booster's treatment
        one-hot part folded into the bias."""
        F = self._check(X)
        j = self._index(treatment)
        T, n_feat = len(self.treatments), F.shape[1]
        w_s, w_a = self.weights["pooled"], self.weights["per_arm"]
        out = np.zeros((len(F), n_feat + 1))
        pooled = self._explainer("pooled", self.pooled_)
        for u, name in enumerate(self.treatments):
            weight = (1 - w_s) / T + (w_s if u == j else 0.0)
            if weight:
                phi = pooled(self._design(F, name))
                out[:, :n_feat] += weight * phi[:, :n_feat]
                out[:, n_feat] += weight * phi[:, n_feat:].sum(axis=1)
        if w_a:
            for u, arm in enumerate(self.arms_):
                weight = w_a * ((1.0 if u == j else 0.0) - 1.0 / T)
                out += weight * self._explainer(f"arm{u}", arm)(F)
        out[:, n_feat] += self.constant[j]
        return out

    def view(self, treatment: str) -> StackedTreatmentView:
        """This model as ``treatment``'s model (the project's model contract)."""
        self._index(treatment)
        return StackedTreatmentView(self, treatment)

    @property
    def n_trees(self) -> int:
        """Trees over every booster."""
        return int(self.pooled_.num_boosted_rounds()
                   + sum(a.num_boosted_rounds() for a in self.arms_))

    def refitted(self, frame: pd.DataFrame, outcome: OutcomeSpec) -> StackedModel:
        """Every booster fitted again on ``frame``'s episodes of these treatments, with every
        choice kept (needs the in-memory learner: within the training run)."""
        if self.learner is None:
            raise ValueError("a stacked model read from disk cannot be refitted; retrain")
        rows = observed_episodes(frame, self.treatments)
        learner = self.learner.refitted(build_features(rows), rows["treatment"].astype(str),
                                        outcome.values(rows, "response"))
        return StackedModel.from_learner(learner)

    # ----------------------------------------------------------------------- files
    def save(self, stem: Path) -> Path:
        """Every booster (xgboost UBJSON, base64) and the weights in one JSON file."""
        path = artifact_path(stem, self.kind, self.suffix)
        raw = [bytes(b.save_raw("ubj")) for b in (self.pooled_, *self.arms_)]
        state = {"treatments": list(self.treatments), "weights": self.weights,
                 "design": self.design,
                 "constant": self.constant.tolist(),
                 "boosters": [base64.b64encode(r).decode("ascii") for r in raw]}
        path.write_text(json.dumps(state))
        return path

    @classmethod
    def load(cls, path: Path) -> StackedModel:
        """Read a model written by :meth:`save` (boosters through xgboost's own loader)."""
        import xgboost as xgb

        from precision_pain.models.safe_skops import check_names

        state = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(state, dict) or not isinstance(state.get("boosters"), list):
            raise ValueError(f"{path}: not a stacked model file written by precision-pain")
        treatments = check_names(state.get("treatments"), "treatments", path)
        if len(state["boosters"]) != len(treatments) + 1:
            raise ValueError(f"{path}: a stacked model needs one pooled and one booster per "
                             "treatment")
        boosters = []
        for text in state["boosters"]:
            booster = xgb.Booster()
            booster.load_model(bytearray(base64.b64decode(str(text), validate=True)))
            boosters.append(booster)
        weights = state.get("weights")
        if not isinstance(weights, dict) or not all(
                isinstance(weights.get(k), float) for k in ("pooled", "per_arm")):
            raise ValueError(f"{path}: a stacked model's weights are missing")
        from precision_pain.models.effects import DESIGNS

        design = state.get("design", "condition_pairs")
        if design not in DESIGNS:
            raise ValueError(f"{path}: unknown design {design!r}")
        return cls(boosters[0], boosters[1:], treatments, weights, state.get("constant", []),
                   design=design)

    def summary(self) -> dict[str, Any]:
        """Facts worth logging."""
        return {"n_trees": self.n_trees, **{f"stack_weight_{k}": v
                                            for k, v in self.weights.items()}}


class StackedTreatmentView:
    """The stacked model seen as one treatment's model."""

    kind: ClassVar[str] = KIND

    def __init__(self, stacked: StackedModel, treatment: str):
        self.stacked = stacked
        self.treatment = treatment
        self.feature_names_ = list(FEATURE_NAMES)

    @property
    def shared(self) -> StackedModel:
        """The model every treatment's view shares (the bundle saves it once)."""
        return self.stacked

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """E[reduction in NRS points] under this view's treatment."""
        return self.stacked.predict_proba(X, self.treatment)

    def contributions(self, X: pd.DataFrame) -> np.ndarray:
        """(n, F + 1) exact SHAP values in NRS points, bias last."""
        return self.stacked.contributions(X, self.treatment).astype(np.float32)

    def mlflow_artifact(self) -> None:
        """None: the registered recommender carries the shared model."""
        return None

    def summary(self) -> dict[str, Any]:
        """Facts worth logging about the fitted model."""
        return self.stacked.summary()


# ------------------------------------------------------------------------------ fitting

def fit_stacked(train: pd.DataFrame, valid: pd.DataFrame, treatments: Sequence[str],
                settings: Mapping[str, Any], propensity_settings: Mapping[str, Any] | None,
                harm_weight: float, clip: float, seed: int, outcome: OutcomeSpec,
                propensity: Any, engine: Any = LOCAL) -> PooledFit:
    """The stacked response model and the pooled adverse-event model; with
    ``refit_on_validation`` both refitted on train + validation, choices kept (the
    train-only fit is ``PooledFit.validated``). ``harm_weight`` is in NRS points."""
    from precision_pain.models.effects import PooledEffectLearner

    block = dict(settings["nrs_change"])
    candidates = list(block.get("candidates", PIPELINE_CANDIDATES))
    if set(candidates) - set(PIPELINE_CANDIDATES):
        raise ValueError(
            "model.hyperparameters.pooled_xgboost.nrs_change.candidates: the pipeline's "
            f"stacked learner takes {', '.join(PIPELINE_CANDIDATES)} (their combination keeps "
            "exact SHAP explanations); remove "
            + ", ".join(sorted(set(candidates) - set(PIPELINE_CANDIDATES))))
    tr, va = observed_episodes(train, treatments), observed_episodes(valid, treatments)
    learner = PooledEffectLearner(
        {**block, "candidates": candidates}, list(treatments), "continuous",
        propensity_settings, higher_is_better=True,
        replace_z=float(settings.get("replace_z", 2.0)), clip=clip, refit=False, seed=seed)
    learner.fit(build_features(tr), tr["treatment"].astype(str), outcome.values(tr, "response"),
                build_features(va), va["treatment"].astype(str), outcome.values(va, "response"))
    response = StackedModel.from_learner(learner)
    data = ValidationData.build(valid, propensity, treatments, clip, outcome)
    big_ae = fit_candidates([adverse_event_candidate(settings["adverse_event"], seed + 1)], train,
                            treatments, engine, outcome)[0]
    adverse_event, _ = fit_adverse_event(train, data, settings["adverse_event"], seed + 1, big_ae)
    dr = data.dr_terms(response.predict_matrix(data.X), adverse_event.predict_matrix(data.X),
                       harm_weight)
    got, y = data.received(response.predict_matrix(data.X), "response")
    chosen = {"valid_adverse_event_chosen_n_estimators": float(adverse_event.n_trees),
              "valid_dr_net_benefit": float(dr.mean()),
              "valid_dr_standard_error": float(dr.std(ddof=1) / np.sqrt(len(dr))),
              "valid_response_mse": float(np.mean((got - y) ** 2)),
              **{f"valid_stack_weight_{k}": v for k, v in response.weights.items()}}
    log.info("stacked response model: weights %s, constants %s (validation DR net benefit "
             "%.4f NRS points)", response.weights, np.round(response.constant, 3),
             chosen["valid_dr_net_benefit"])
    fit = PooledFit(response, adverse_event, chosen)
    if settings.get("refit_on_validation", False):
        return refit_stacked(fit, pd.concat([train, valid], ignore_index=True), settings, seed,
                             engine, "refit_on_validation", outcome)
    return fit


def refit_stacked(fit: PooledFit, episodes: pd.DataFrame, settings: Mapping[str, Any],
                  seed: int, engine: Any, marker: str, outcome: OutcomeSpec) -> PooledFit:
    """:func:`precision_pain.models.pooled.refit` for the stacked response model."""
    ae = Candidate("adverse_event", int(fit.chosen["valid_adverse_event_chosen_n_estimators"]),
                   seed + 1, fixed_settings(settings["adverse_event"], ("n_estimators",)))
    adverse_event = fit_candidates([ae], episodes, fit.response.treatments, engine, outcome)[0]
    response = fit.response.refitted(episodes, outcome)
    log.info("stacked models refitted (%s) on %d episodes", marker,
             len(observed_episodes(episodes, fit.response.treatments)))
    return PooledFit(response, adverse_event, {**fit.chosen, marker: 1.0}, fit.table,
                     validated=fit.validated or fit)
