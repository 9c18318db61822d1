"""Pooled learner: one xgboost model per outcome over every treatment (``pooled_xgboost``).

Per-treatment models (a T-learner) fit each arm on its own 300-2,000 patients and relearn
the patient effects common to every treatment ten times over. The pooled learner (an
S-learner with explicit treatment interactions) fits one binary classifier per outcome on
*all* training episodes, over the design

    [patient features (data.features)]
    + [one-hot of the treatment received:                 ``treatment=<t>``]
    + [one indicator per eligible (condition, treatment): ``pair=<condition>:<t>``]

Patient effects shared by every treatment are learned once from every row; treatment
effects and their modification by patient features are splits on the treatment and pair
indicators. The pair indicator lets one split say "this treatment for this condition"
(e.g. epidural steroid for radiculopathy), where a treatment one-hot and a condition
one-hot would need two splits in sequence, which shallow trees rarely find.

Each treatment sees the pooled model through a :class:`PooledTreatmentView` with the
project's model contract (``predict_proba(X)``, ``contributions(X)`` on the patients'
feature matrix; the view sets the treatment and pair columns itself).

Reading SHAP of a pooled model
------------------------------
xgboost's exact TreeSHAP over the whole design, in log-odds, relative to one mean logit
over the training mix of treatments. For one patient under treatment t:

- the *treatment part* is the sum over every ``treatment=*`` and ``pair=*`` column: "this
  treatment, for this patient's condition", against the mix of treatments the model was
  trained on (the all-zero indicators of the other treatments belong to it too);
- a patient feature's SHAP is how that feature moves P(outcome | t) for this patient,
  including its share of the feature-by-treatment interaction (Shapley values split an
  interaction equally between the feature and the treatment columns: PHQ-9's SHAP under
  duloxetine carries half of "duloxetine works better in depressed patients").

``contributions(X)`` keeps the project's shape (a column per patient feature, bias last)
and folds the treatment part into the bias, which so reads "this treatment's baseline
log-odds" exactly as for a per-treatment model; rows still sum to the logit, and the
explanations name patient features. :meth:`PooledTreatmentView.contributions_split`
returns the parts separately.

Choosing hyperparameters (never on the test split)
--------------------------------------------------
The adverse-event model is shallow, its number of trees chosen by validation log-loss.
For the response model, one booster per ``max_depth`` in the grid is fitted with the
largest tree count; ``booster[:k]`` predicts exactly like a k-tree fit, so each tree count
costs nothing more. Each candidate is valued by what it is for: the doubly robust estimate
(:func:`precision_pain.evaluate.policy.ope_terms`, propensity model fitted on the train
split) of the net benefit of the shipped recommender's first choice (guideline checks
included) on the validation split. This needs no ground truth, so it works on a real
extract. The ``default`` candidate is kept unless another beats it by more than
``replace_z`` standard errors of the paired per-patient difference: on a few thousand
validation patients DR differences between reasonable candidates are mostly noise, and a
plain argmax chose worse models (measured on two independent generators). The validation
Brier score of every candidate is logged as a check, not used to choose: it prefers few
trees, which learn the main effects but not the treatment interactions a policy needs.

With ``refit_on_validation`` (the default) the chosen models are then fitted again, same
settings, seeds and tree counts, on train + validation (:func:`refit`): the choice is made
out of sample, the final models see a quarter more patients, and the test split is never
touched.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from scipy.special import expit

from precision_pain.data.contract import relative_reduction
from precision_pain.outcome import OutcomeSpec
from precision_pain.data.features import FEATURE_NAMES, build_features
from precision_pain.engine import LOCAL
from precision_pain.evaluate import policy as pol
from precision_pain.evaluate.metrics import logistic_coefficients
from precision_pain.models.estimators import TRAIN_THREADS, MlflowArtifact, artifact_path
from precision_pain.models.treeshap import Explainer
from precision_pain.registry import CONDITIONS, TREATMENTS

log = logging.getLogger(__name__)

KIND = "pooled_xgboost"
# The response classifier's companion (``pain_companion``): a regressor of the relative
# reduction in pain, the continuous outcome the responder flag thresholds. Its UBJSON bytes
# travel inside the response model's file (base64 in a booster attribute), so the bundle's
# layout and the manifest's SHA-256 of that file cover it unchanged.
PAIN_REDUCTION = "relative_pain_reduction"
_COMPANION_ATTR = "pooled_pain_companion_ubj"
_STACK_ATTR = "pooled_stack"


def pain_reduction(frame: pd.DataFrame) -> np.ndarray:
    """The companion's label: (baseline - follow-up) / baseline, clipped to [-1, 1] (a patient
    whose pain more than doubled counts as -1, so a few outliers cannot dominate the squares)."""
    return np.clip(relative_reduction(frame["pain_baseline"], frame["pain_followup"]), -1.0, 1.0)


# ------------------------------------------------------------------------------ design

def treatment_columns(treatments: Sequence[str]) -> list[str]:
    """One-hot column names of the treatments."""
    return [f"treatment={t}" for t in treatments]


def pair_columns(treatments: Sequence[str]) -> list[tuple[str, str, str]]:
    """(column name, condition, treatment) for every registry-eligible pair."""
    return [(f"pair={c}:{t}", c, t) for t in treatments for c in CONDITIONS
            if TREATMENTS[t].eligible(c)]


def design(X: pd.DataFrame, treatment: str | np.ndarray, treatments: Sequence[str]
           ) -> np.ndarray:
    """(n, F + T + P) float32 design: patient features, treatment one-hot, pair indicators.

    ``treatment`` is one name (every row gets it) or one name per row.
    """
    given = _given(treatment, len(X))
    condition = {c: X[f"condition={c}"].to_numpy(np.float32) for c in CONDITIONS}
    pairs = pair_columns(treatments)
    pair = (np.column_stack([condition[c] * (given == t) for _, c, t in pairs])
            if pairs else np.zeros((len(X), 0))).astype(np.float32)
    return np.hstack([treatment_design(X.to_numpy(np.float32), given, treatments), pair])


def _given(treatment: str | np.ndarray, n: int) -> np.ndarray:
    return (np.full(n, treatment, dtype=object) if isinstance(treatment, str)
            else np.asarray(treatment, dtype=object))


def treatment_design(features: np.ndarray, treatment: str | np.ndarray,
                     treatments: Sequence[str]) -> np.ndarray:
    """(n, F + T) float32: any numeric feature matrix and the treatment one-hot.

    The registry-free part of :func:`design` (the pair indicators need the registry's
    conditions); :mod:`precision_pain.models.effects` fits the pooled learner on it.
    """
    given = _given(treatment, len(features))
    onehot = np.column_stack([given == t for t in treatments]).astype(np.float32)
    return np.hstack([np.asarray(features, dtype=np.float32), onehot])


# The xgboost objective of each outcome type: a responder flag (the pipeline's default) or a
# continuous outcome such as the change in pain (models/effects.py).
OBJECTIVES: Mapping[str, Mapping[str, str]] = {
    "binary": {"objective": "binary:logistic", "eval_metric": "logloss"},
    "continuous": {"objective": "reg:squarederror", "eval_metric": "rmse"},
}


def fit_pooled_booster(matrix: np.ndarray, names: Sequence[str], y: np.ndarray,
                       n_estimators: int, seed: int, outcome_type: str = "binary", *,
                       engine: Any = LOCAL, **hyperparameters: Any) -> Any:
    """One booster on a pooled design (rows: episodes; columns: ``names``), trained by
    ``engine`` (in this process, or with xgboost.dask above its row threshold)."""
    if outcome_type not in OBJECTIVES:
        raise ValueError(f"unknown outcome type {outcome_type!r}; valid: {', '.join(OBJECTIVES)}")
    params = {**OBJECTIVES[outcome_type], "tree_method": "hist", "seed": seed,
              "nthread": TRAIN_THREADS, **hyperparameters}
    return engine.train_booster(params, matrix, np.asarray(y, float), int(n_estimators), names)


def design_names(treatments: Sequence[str]) -> list[str]:
    """Column names of :func:`design`."""
    return [*FEATURE_NAMES, *treatment_columns(treatments),
            *(name for name, _, _ in pair_columns(treatments))]


# ------------------------------------------------------------------------------ models

class PooledModel:
    """One xgboost booster over the pooled design, for one outcome.

    With a ``companion`` (a regressor over the same design, e.g. of the relative reduction in
    pain) and ``stack`` = (a, b, c), P(outcome) = expit(a + b * margin + c * companion): a
    logistic stack of the classifier's log-odds and the companion's prediction, with weights
    fitted on predictions neither model made for patients it saw (:func:`stack_companion`).
    """

    kind: ClassVar[str] = KIND
    suffix: ClassVar[str] = ".ubj"

    def __init__(self, booster: Any, treatments: Sequence[str], outcome: str,
                 companion: Any = None, stack: Sequence[float] | None = None):
        if (companion is None) != (stack is None):
            raise ValueError("a companion model needs its stacking weights, and vice versa")
        self.booster_ = booster
        self.treatments = tuple(treatments)
        self.outcome = outcome
        self.companion_ = companion
        self.stack_ = None if stack is None else tuple(float(w) for w in stack)
        self._explainer: Explainer | None = None

    @classmethod
    def fit(cls, X: pd.DataFrame, treatment: np.ndarray, y: np.ndarray, outcome: str,
            n_estimators: int, seed: int, treatments: Sequence[str], *, engine: Any = LOCAL,
            outcome_type: str = "binary", **hyperparameters: Any) -> PooledModel:
        """Fit on every row: X = patient features, ``treatment`` = the treatment received.

        ``engine`` trains the booster (:mod:`precision_pain.engine`: in this process, or with
        xgboost.dask over a cluster's workers for a training set too large for one)."""
        booster = fit_pooled_booster(cls.design_of(X, treatment, treatments),
                                     cls.names_of(treatments), y, n_estimators, seed,
                                     outcome_type, engine=engine, **hyperparameters)
        return cls(booster, treatments, outcome)

    @staticmethod
    def design_of(X: pd.DataFrame, treatment: str | np.ndarray, treatments: Sequence[str]
                  ) -> np.ndarray:
        """The design the booster reads (:func:`design`; the plan learner's is its own)."""
        return design(X, treatment, treatments)

    @staticmethod
    def names_of(treatments: Sequence[str]) -> list[str]:
        """Column names of :meth:`design_of`."""
        return design_names(treatments)

    @property
    def n_trees(self) -> int:
        """Number of boosting rounds (of the classifier)."""
        return int(self.booster_.num_boosted_rounds())

    def sliced(self, k: int) -> PooledModel:
        """The first k trees (predicts exactly like a k-tree fit with the same seed)."""
        return type(self)(self.booster_[: int(k)], self.treatments, self.outcome)

    def stacked(self, companion: PooledModel, stack: Sequence[float]) -> PooledModel:
        """This classifier stacked with ``companion``'s booster, weights ``stack``."""
        return type(self)(self.booster_, self.treatments, self.outcome, companion.booster_,
                           stack)

    def raw(self, X: pd.DataFrame, treatment: str | np.ndarray) -> np.ndarray:
        """The booster's own output (log-odds for a classifier, the value for a regressor)
        under ``treatment``: one name, or one per row."""
        return self.booster_.inplace_predict(self.design_of(X, treatment, self.treatments),
                                             validate_features=False, predict_type="margin")

    def predict_proba(self, X: pd.DataFrame, treatment: str) -> np.ndarray:
        """P(outcome = 1) of every patient in X under ``treatment``."""
        matrix = self.design_of(X, treatment, self.treatments)
        if self.stack_ is None:
            return self.booster_.inplace_predict(matrix, validate_features=False)
        a, b, c = self.stack_
        margin = self.booster_.inplace_predict(matrix, validate_features=False,
                                               predict_type="margin")
        return expit(a + b * margin + c * self.companion_.inplace_predict(
            matrix, validate_features=False)).astype(np.float32)

    def predict_matrix(self, X: pd.DataFrame) -> np.ndarray:
        """(n, T) P(outcome) of every patient under every treatment, by ``predict_proba``."""
        return np.column_stack([self.predict_proba(X, t) for t in self.treatments])

    def scores(self, X: pd.DataFrame) -> np.ndarray:
        """(n, T) float32 P(outcome) (E[y] for a regressor) of every patient under every
        treatment, each tree walked once per patient for all treatments
        (:mod:`.plan_scoring`). The margins are xgboost's summed in float64 rather than its
        float32 (differences of order 1e-6; tests/test_plan_scoring.py); predict and
        evaluate score with this, training's choices with :meth:`predict_matrix`."""
        from precision_pain.models.plan_model import condition_codes
        from precision_pain.models.plan_scoring import booster_scorer

        check_features(X)
        features, code = X.to_numpy(np.float32), condition_codes(X)
        every = np.ones((len(X), len(self.treatments)), bool)

        def scorer(role: str) -> Any:
            return booster_scorer(self, getattr(self, f"{role}_"), self.treatments,
                                  self.treatments, lambda frame, names: self.design_of(
                                      frame, names, self.treatments), role)

        if self.stack_ is None:
            return scorer("booster").predict(features, code, every, threads=None
                                             ).astype(np.float32)
        a, b, c = self.stack_
        margin, companion = (scorer(role).margins(features, code, every, threads=None)
                             for role in ("booster", "companion"))
        return expit(a + b * margin + c * companion).astype(np.float32)

    def contributions_full(self, X: pd.DataFrame, treatment: str) -> np.ndarray:
        """Exact TreeSHAP over the whole design (log-odds), bias last.

        Shapley values are linear in the model: those of the stacked score a + b * f + c * g
        are b * phi_f + c * phi_g, with a added to the bias; still exact, still summing to the
        logit. One table-driven pass explains both boosters (:mod:`.treeshap`)."""
        return self.explainer(self.design_of(X, treatment, self.treatments))

    def contributions_grouped(self, X: pd.DataFrame, names: np.ndarray) -> np.ndarray:
        """(n * k, design + 1) :meth:`contributions_full` of each patient of X under the k
        options of its row of ``names`` (n, k), rows patient by patient. The patient's
        features are the same in its k design rows, so the splits and leaves that look at
        them alone are explained once per patient (:meth:`.Explainer.grouped`): the same
        values, faster."""
        names = np.asarray(names, dtype=object)
        n, k = names.shape
        design = self.design_of(X.iloc[np.repeat(np.arange(n), k)], names.reshape(-1),
                                self.treatments)
        return self.explainer.grouped(design, k, len(FEATURE_NAMES))

    def ranked_contributions(self, X: pd.DataFrame, names: np.ndarray) -> np.ndarray:
        """(n, k, F + 1) float32: each patient's :meth:`PooledTreatmentView.contributions`
        under the k treatments of its row of ``names`` (n, k), in one grouped pass."""
        check_features(X)
        phi = fold_treatment_columns(self.contributions_grouped(X, names))
        return phi.reshape(len(X), np.shape(names)[1], -1)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the scorers and SHAP tables built from the boosters (a worker
        rebuilds them on first use)."""
        return {k: v for k, v in self.__dict__.items() if k not in ("_plan_scorers",
                                                                   "_explainer")}

    @property
    def explainer(self) -> Explainer:
        """Exact TreeSHAP of the (stacked) log-odds, built once per model."""
        if getattr(self, "_explainer", None) is None:
            if self.stack_ is None:
                self._explainer = Explainer([self.booster_])
            else:
                a, b, c = self.stack_
                self._explainer = Explainer([self.booster_, self.companion_], [b, c], a)
        return self._explainer

    def view(self, treatment: str) -> PooledTreatmentView:
        """This model as ``treatment``'s model (the project's model contract)."""
        if treatment not in self.treatments:
            raise KeyError(f"the pooled model was not trained on {treatment!r}; it knows "
                           f"{', '.join(self.treatments)}")
        return PooledTreatmentView(self, treatment)

    def save(self, stem: Path) -> Path:
        """Write the booster once, treatments and outcome as attributes (UBJSON, no pickle)."""
        path = artifact_path(stem, self.kind, self.suffix)
        booster = self.booster_.copy()
        booster.set_attr(pooled_treatments=json.dumps(list(self.treatments)),
                         pooled_outcome=self.outcome)
        if self.stack_ is not None:
            raw = bytes(self.companion_.save_raw("ubj"))
            booster.set_attr(**{_COMPANION_ATTR: base64.b64encode(raw).decode("ascii"),
                                _STACK_ATTR: json.dumps(list(self.stack_))})
        booster.save_model(str(path))
        return path

    @classmethod
    def load(cls, path: Path) -> PooledModel:
        """Read a booster written by :meth:`save`; its design must be this version's."""
        import xgboost as xgb

        booster = xgb.Booster(model_file=str(path))
        treatments = json.loads(booster.attr("pooled_treatments") or "[]")
        unknown = [t for t in treatments if t not in TREATMENTS]
        if not treatments or unknown or booster.feature_names != cls.names_of(treatments):
            raise ValueError(f"{path}: not a pooled model of this version of precision-pain "
                             f"(unknown treatments {unknown} or another design); retrain with "
                             "`dvc repro`")
        companion, stack = _load_companion(path, booster, cls.names_of(treatments))
        return cls(booster, treatments, booster.attr("pooled_outcome") or "", companion, stack)


def _load_companion(path: Path, booster: Any, names: list[str]
                    ) -> tuple[Any, tuple[float, ...] | None]:
    """The companion booster and stacking weights a response file carries, if any."""
    import xgboost as xgb

    encoded, weights = booster.attr(_COMPANION_ATTR), booster.attr(_STACK_ATTR)
    if encoded is None and weights is None:
        return None, None
    try:
        stack = tuple(float(w) for w in json.loads(weights or "null"))
        companion = xgb.Booster()
        companion.load_model(bytearray(base64.b64decode(encoded or "", validate=True)))
    except (TypeError, ValueError, xgb.core.XGBoostError) as exc:
        raise ValueError(f"{path}: its pain-reduction companion model cannot be read ({exc}); "
                         "retrain with `dvc repro`") from None
    if len(stack) != 3 or not np.all(np.isfinite(stack)) or companion.feature_names != names:
        raise ValueError(f"{path}: its pain-reduction companion model does not fit this "
                         "design (three finite stacking weights and the same features are "
                         "needed); retrain with `dvc repro`")
    return companion, stack


def check_features(X: pd.DataFrame) -> None:
    """Refuse a matrix whose columns are not the model features, in their order."""
    if list(X.columns) != list(FEATURE_NAMES):
        raise ValueError("feature columns differ from data.features.FEATURE_NAMES")


def fold_treatment_columns(phi: np.ndarray) -> np.ndarray:
    """(n, F + 1) float32 of a pooled design's SHAP values (n, design + 1): the patient
    features', and the bias plus every column that depends only on the treatment (its
    one-hot, its (condition, treatment) indicators)."""
    f = len(FEATURE_NAMES)
    bias = phi[:, -1] + phi[:, f:-1].sum(axis=1)
    return np.hstack([phi[:, :f], bias[:, None]]).astype(np.float32)


class PooledTreatmentView:
    """A pooled model seen as one treatment's model."""

    kind: ClassVar[str] = KIND

    def __init__(self, pooled: PooledModel, treatment: str):
        self.pooled = pooled
        self.treatment = treatment
        self.feature_names_ = list(FEATURE_NAMES)

    @property
    def shared(self) -> PooledModel:
        """The model every treatment's view shares (the bundle saves it once)."""
        return self.pooled

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """The expected outcome of each patient under this view's treatment: P(y = 1), or
        for a regressor (prepare.outcome nrs_change) E[y]."""
        check_features(X)
        return self.pooled.predict_proba(X, self.treatment)

    def contributions_split(self, X: pd.DataFrame) -> dict[str, np.ndarray]:
        """SHAP parts: ``features`` (n, F), ``treatment`` and ``pair`` (n,), ``bias`` (n,)."""
        check_features(X)
        phi = self.pooled.contributions_full(X, self.treatment)
        f, t = len(FEATURE_NAMES), len(self.pooled.treatments)
        return {"features": phi[:, :f], "treatment": phi[:, f:f + t].sum(axis=1),
                "pair": phi[:, f + t:-1].sum(axis=1), "bias": phi[:, -1]}

    def contributions(self, X: pd.DataFrame) -> np.ndarray:
        """(n, F + 1) exact TreeSHAP (log-odds); the treatment part is folded into the bias."""
        check_features(X)
        return fold_treatment_columns(self.pooled.contributions_full(X, self.treatment))

    def mlflow_artifact(self) -> MlflowArtifact | None:
        """None: a pooled model has no model of its own per treatment to register; the
        registered recommender carries the shared boosters."""
        return None

    def summary(self) -> dict[str, Any]:
        """Facts worth logging about the fitted model."""
        return {"n_trees": self.pooled.n_trees, "pooled_treatments": len(self.pooled.treatments)}


# --------------------------------------------------------------------------- selection

@dataclass(frozen=True)
class ValidationData:
    """What valuing a policy on the validation split needs, computed once."""

    prepared: pd.DataFrame
    X: pd.DataFrame
    treatments: tuple[str, ...]
    treated: np.ndarray
    response: np.ndarray
    adverse_event: np.ndarray
    propensity: np.ndarray
    clip: float

    @classmethod
    def build(cls, valid: pd.DataFrame, propensity_model: Any, treatments: Sequence[str],
              clip: float, outcome: OutcomeSpec = OutcomeSpec()) -> ValidationData:
        """From the validation split and a propensity model fitted on the train split;
        ``response`` holds ``outcome``'s value (the flag, or the reduction in NRS points)."""
        from precision_pain.models.propensity import predict_propensity

        treatments = tuple(treatments)
        lookup = {t: j for j, t in enumerate(treatments)}
        treated = np.array([lookup.get(str(t), -1) for t in valid["treatment"]])
        propensity = (np.ones((len(valid), 1)) if propensity_model is None  # one treatment
                      else predict_propensity(propensity_model, valid, list(treatments)))
        return cls(valid, build_features(valid), treatments, treated,
                   outcome.values(valid, "response"), valid["adverse_event"].to_numpy(float),
                   propensity, clip)

    def dr_terms(self, p_response: np.ndarray, p_adverse_event: np.ndarray,
                 harm_weight: float) -> np.ndarray:
        """Per-patient DR terms of the shipped recommender's first choice (net benefit;
        ``harm_weight`` in the response's units: :attr:`OutcomeSpec.harm_scale` applied)."""
        from precision_pain.predict.recommend import decide

        decided = decide(self.prepared, self.treatments, p_response, p_adverse_event,
                         harm_weight)
        first = np.where(decided.eligible.any(axis=1), decided.order[:, 0], -1)
        observed = self.response - harm_weight * self.adverse_event
        logged = pol.Logged(self.treated, observed, p_response - harm_weight * p_adverse_event,
                            self.propensity)
        return pol.ope_terms(pol.one_hot(first, len(self.treatments)), logged, self.clip)["dr"]

    def received(self, p: np.ndarray, outcome: str) -> tuple[np.ndarray, np.ndarray]:
        """Predictions for the treatment each validation patient received, and the outcome."""
        rows = np.flatnonzero(self.treated >= 0)
        y = self.response if outcome == "response" else self.adverse_event
        return p[rows, self.treated[rows]], y[rows]


@dataclass(frozen=True)
class PooledFit:
    """The chosen pooled models and the validation table behind the choice.

    ``validated`` holds the train-only models that the validation figures describe when the
    chosen ones were refitted on train + validation (:func:`refit`); otherwise None, and the
    validation figures describe ``response`` and ``adverse_event`` themselves.
    ``out_of_fold`` holds, when the stack was cross-fitted (``pain_companion_folds``), the
    response model's out-of-fold predictions over train + validation (:func:`cross_fit`),
    kept by :func:`refit`: the Venn-Abers calibration set of the refitted models
    (:meth:`calibration_set`).
    """

    response: PooledModel
    adverse_event: PooledModel
    chosen: Mapping[str, float]
    table: pd.DataFrame = field(default_factory=pd.DataFrame)
    validated: PooledFit | None = None
    out_of_fold: CrossFitted | None = None

    def calibration_set(self, treatment: str) -> tuple[np.ndarray, np.ndarray] | None:
        """Held-out P(response) and observed response of ``treatment``'s episodes for its
        Venn-Abers table, when they are not the validation split's: for models refitted on
        train + validation with a cross-fitted stack, the out-of-fold predictions of every
        train and validation episode (each by models fitted without its fold, in the form
        the refitted model has). None: score the validation split with the train-only models
        (:meth:`validation_views`), as without a cross-fit or a refit."""
        if self.out_of_fold is None or self.validated is None:
            return None
        rows = self.out_of_fold.treatment == treatment
        return self.out_of_fold.p_response(self.response)[rows], self.out_of_fold.y[rows]

    def views(self) -> dict[str, dict[str, PooledTreatmentView]]:
        """``{treatment: {outcome: view}}``, the shape of ModelBundle.models."""
        return {t: {"response": self.response.view(t),
                    "adverse_event": self.adverse_event.view(t)}
                for t in self.response.treatments}

    def validation_views(self) -> dict[str, dict[str, PooledTreatmentView]]:
        """The views whose validation-split figures are out of sample."""
        return (self.validated or self).views()


def grid_values(values: Any) -> list[Any]:
    """A searched setting's candidates: the list, or the one value as a list."""
    return list(values) if isinstance(values, list) else [values]


def fixed_settings(settings: Mapping[str, Any], searched: tuple[str, ...]) -> dict[str, Any]:
    """The xgboost parameters of an outcome's settings that are not searched."""
    return {k: v for k, v in settings.items() if k not in {*searched, "default"}}


def observed_episodes(frame: pd.DataFrame, treatments: Sequence[str]) -> pd.DataFrame:
    """The episodes of ``frame`` whose treatment is one of ``treatments``."""
    return frame[frame["treatment"].astype(str).isin(treatments)]


@dataclass(frozen=True)
class Candidate:
    """One booster to fit: an outcome's label, its largest tree count, seed and settings."""

    outcome: str
    n_estimators: int
    seed: int
    hyperparameters: Mapping[str, Any]
    outcome_type: str = "binary"


def fit_candidate(candidate: Candidate, X: pd.DataFrame, treatment: np.ndarray,
                  labels: Mapping[str, np.ndarray], treatments: Sequence[str],
                  engine: Any = LOCAL) -> PooledModel:
    """One candidate's booster (a task of its own on a Dask engine)."""
    return PooledModel.fit(X, treatment, labels[candidate.outcome], candidate.outcome,
                           candidate.n_estimators, candidate.seed, treatments, engine=engine,
                           outcome_type=candidate.outcome_type, **candidate.hyperparameters)


def _label(frame: pd.DataFrame, outcome: str, spec: OutcomeSpec) -> np.ndarray:
    return pain_reduction(frame) if outcome == PAIN_REDUCTION else spec.values(frame, outcome)


def fit_candidates(candidates: Sequence[Candidate], train: pd.DataFrame,
                   treatments: Sequence[str], engine: Any = LOCAL,
                   outcome: OutcomeSpec = OutcomeSpec()) -> list[PooledModel]:
    """Every candidate's booster on the training episodes of ``treatments``.

    Candidates are independent: on the local engine they are fitted on up to
    ``engine.local_threads`` threads at once (each booster single-threaded, so the boosters
    are those of a sequential loop); on a Dask engine each is one task on one worker, unless
    the training set is too large for one worker (``engine.distributed_training_rows``);
    then they are fitted one after another, each with xgboost.dask over every worker.
    """
    tr = observed_episodes(train, treatments)
    X, t = build_features(tr), tr["treatment"].astype(str).to_numpy()
    labels = {o: _label(tr, o, outcome) for o in {c.outcome for c in candidates}}
    if getattr(engine, "distributes", lambda n: False)(len(X)):
        return [fit_candidate(c, X, t, labels, treatments, engine) for c in candidates]
    return engine.map(fit_candidate, candidates, X, t, labels, tuple(treatments),
                      desc="pooled boosters", unit="booster", threads=True)


def adverse_event_candidate(settings: Mapping[str, Any], seed: int) -> Candidate:
    """The adverse-event booster, at the largest number of trees searched."""
    return Candidate("adverse_event", max(grid_values(settings["n_estimators"])), seed,
                     fixed_settings(settings, ("n_estimators",)))


def response_settings(settings: Mapping[str, Any], outcome: OutcomeSpec) -> Mapping[str, Any]:
    """The response model's settings: ``response``, or for a continuous outcome
    ``nrs_change`` when params.yaml gives that block (else ``response``'s)."""
    if outcome.continuous and "nrs_change" in settings:
        # the stacked learner's own keys (models/effects.py) are not xgboost's
        own = {"learner", "selection", "candidates", "stack_folds"}
        return {k: v for k, v in settings["nrs_change"].items() if k not in own}
    return settings["response"]


def response_objective(outcome: OutcomeSpec) -> str:
    """The response booster's outcome type (:data:`OBJECTIVES`)."""
    return "continuous" if outcome.continuous else "binary"


def response_candidates(settings: Mapping[str, Any], seed: int,
                        outcome: OutcomeSpec = OutcomeSpec()) -> list[Candidate]:
    """One response booster per max_depth, at the largest number of trees searched."""
    trees = max(grid_values(settings["n_estimators"]))
    fixed = fixed_settings(settings, ("n_estimators", "max_depth"))
    return [Candidate("response", trees, seed, {"max_depth": depth, **fixed},
                      response_objective(outcome))
            for depth in grid_values(settings["max_depth"])]


def companion_candidate(settings: Mapping[str, Any], seed: int) -> Candidate:
    """The pain-reduction regressor: the response model's default depth and number of trees
    and its other settings, squared error on the relative reduction in pain."""
    default = settings.get("default", {})
    depth = default.get("max_depth", max(grid_values(settings["max_depth"])))
    trees = default.get("n_estimators", max(grid_values(settings["n_estimators"])))
    fixed = fixed_settings(settings, ("n_estimators", "max_depth"))
    return Candidate(PAIN_REDUCTION, int(trees), seed, {**fixed, "max_depth": int(depth)},
                     "continuous")


def stack_companion(classifier: PooledModel, companion: PooledModel, valid: ValidationData,
                    alpha: float, crossfit: CrossFitted | None = None) -> PooledModel:
    """The response classifier stacked with the pain-reduction regressor.

    The responder flag is a threshold of a continuous outcome; a regressor of that outcome
    learns from every patient's degree of relief, not only which side of 30 % it fell on
    (dichotomizing throws away information: Altman & Royston, BMJ 2006). The stack is
    P(response) = expit(a + b * classifier log-odds + c * predicted reduction), with (a, b,
    c) a logistic regression of observed response on the two models' predictions for the
    treatment each patient received, made by models that did not see the patient: the
    validation split's, or with ``crossfit`` the out-of-fold predictions over train +
    validation (:func:`cross_fit`, the super learner's cross-validated stacking: van der
    Laan, Polley & Hubbard 2007). Three numbers; the two predictions are strongly
    correlated, so the validation split alone fixes b and c poorly (docs/evaluation.md).

    The companion is used only where the follow-up score carries information beyond the
    flag: its prediction must explain the observed relief *within* responders and within
    non-responders (a one-sided test of the slope of the within-class observed relief on
    the within-class prediction, p < ``alpha``, on the same patients), and c must be > 0. In
    a cohort whose follow-up scores were drawn from the flag alone, the within-class relief
    is noise, the regressor's contrasts too, and stacking them anyway lost 4-15 points of
    the oracle's gain at 5,000 patients on the independent generator (docs/evaluation.md);
    a likelihood-ratio test of c = 0 could not tell the two kinds of cohort apart.
    Otherwise, or if a fit fails, the classifier alone, unchanged.
    """
    where = "train + validation, out of fold" if crossfit is not None else "the validation split"
    if crossfit is None:
        rows = np.flatnonzero(valid.treated >= 0)
        received = np.asarray(valid.treatments, dtype=object)[valid.treated[rows]]
        X = valid.X.iloc[rows]
        crossfit = CrossFitted(classifier.raw(X, received), companion.raw(X, received),
                               valid.response[rows],
                               pain_reduction(valid.prepared.iloc[rows]), received)
    features = np.column_stack([np.ones(len(crossfit.y)), crossfit.margin, crossfit.reduction])
    weights = logistic_coefficients(features, crossfit.y)
    if not np.all(np.isfinite(weights)):
        log.warning("the pain-reduction companion could not be stacked (logistic fit failed "
                    "on %s); the response classifier is used alone", where)
        return classifier
    p_value = within_flag_p_value(crossfit.relief, crossfit.reduction, crossfit.y)
    if weights[2] <= 0 or not p_value < alpha:
        log.info("pain-reduction companion not used: on %s the follow-up score adds nothing "
                 "beyond the flag (stack weight %.3f; within-flag p = %.3g, needed < %g)",
                 where, weights[2], p_value, alpha)
        return classifier
    log.info("response = expit(%.3f + %.3f * classifier log-odds + %.3f * predicted pain "
             "reduction) (log-loss fit on %s; within-flag p = %.3g)", *weights, where, p_value)
    return classifier.stacked(companion, weights)


@dataclass(frozen=True)
class CrossFitted:
    """What the stack is fitted on, one entry per episode: the classifier's log-odds and the
    companion's predicted reduction for the treatment received, by models that did not see
    the episode; the observed response flag and relative reduction in pain."""

    margin: np.ndarray
    reduction: np.ndarray
    y: np.ndarray
    relief: np.ndarray
    treatment: np.ndarray  # the treatment received, by name

    def p_response(self, model: PooledModel) -> np.ndarray:
        """P(response) that ``model``'s form (the classifier alone, or stacked with the
        companion by its weights) gives these out-of-fold predictions."""
        if model.stack_ is None:
            return expit(self.margin)
        a, b, c = model.stack_
        return expit(a + b * self.margin + c * self.reduction)


def fold_of_patients(patient_id: pd.Series, folds: int, seed: int) -> np.ndarray:
    """Each row's fold, 0 .. folds - 1, whole patients in one fold (a patient's episodes
    are not independent), at random by ``seed``."""
    codes, patients = pd.factorize(patient_id, sort=True)
    order = np.random.default_rng(seed).permutation(len(patients))
    fold = np.empty(len(patients), dtype=int)
    fold[order] = np.arange(len(patients)) % folds
    return fold[codes]


def cross_fit(episodes: pd.DataFrame, candidates: Sequence[Candidate], treatments: Sequence[str],
              folds: int, seed: int, engine: Any = LOCAL,
              outcome: OutcomeSpec = OutcomeSpec()) -> CrossFitted:
    """Out-of-fold predictions of the classifier and companion ``candidates`` (in that
    order) over ``episodes``: ``folds`` fits of both on all but one fold of patients, each
    predicting the fold left out."""
    episodes = observed_episodes(episodes, treatments).reset_index(drop=True)
    fold = fold_of_patients(episodes["patient_id"], folds, seed)
    margin, reduction = np.empty(len(episodes)), np.empty(len(episodes))
    for k in range(folds):
        out = fold == k
        classifier, companion = fit_candidates(candidates, episodes[~out], treatments, engine,
                                               outcome)
        held = episodes[out]
        X, received = build_features(held), held["treatment"].astype(str).to_numpy()
        margin[out], reduction[out] = classifier.raw(X, received), companion.raw(X, received)
    log.info("stacking predictions cross-fitted over %d folds of %d episodes", folds,
             len(episodes))
    return CrossFitted(margin, reduction, _label(episodes, "response", outcome),
                       pain_reduction(episodes), episodes["treatment"].astype(str).to_numpy())


def within_flag_p_value(observed: np.ndarray, predicted: np.ndarray, flag: np.ndarray) -> float:
    """One-sided p-value that ``predicted`` explains ``observed`` within each level of
    ``flag``: the slope of the observed on the predicted value, both centred per level
    (a regression with one intercept per level), is > 0. NaN if it cannot be computed."""
    flag = np.asarray(flag).astype(bool)
    x, z = np.asarray(predicted, float).copy(), np.asarray(observed, float).copy()
    for level in (False, True):
        at = flag == level
        if at.any():
            x[at] -= x[at].mean()
            z[at] -= z[at].mean()
    sxx = float(x @ x)
    dof = len(x) - 3  # two intercepts and the slope
    if sxx <= 0 or dof <= 0:
        return float("nan")
    slope = float(x @ z) / sxx
    residual = z - slope * x
    se = np.sqrt(float(residual @ residual) / dof / sxx)
    from scipy.stats import t as student

    return float(student.sf(slope / se, dof)) if se > 0 else float("nan")


def fit_adverse_event(train: pd.DataFrame, valid: ValidationData, settings: Mapping[str, Any],
                      seed: int, fitted: PooledModel | None = None
                      ) -> tuple[PooledModel, pd.DataFrame]:
    """Pooled adverse-event model; its number of trees by validation log-loss (``fitted``:
    its booster at the largest count, if already fitted)."""
    big = fitted or fit_candidates([adverse_event_candidate(settings, seed)], train,
                                   valid.treatments)[0]
    rows = []
    for k in grid_values(settings["n_estimators"]):
        got, y = valid.received(big.sliced(k).predict_matrix(valid.X), "adverse_event")
        got = np.clip(got, 1e-7, 1 - 1e-7)
        rows.append({"n_trees": k, "log_loss": -float(np.mean(y * np.log(got)
                                                              + (1 - y) * np.log(1 - got)))})
    table = pd.DataFrame(rows)
    best = int(table.loc[table["log_loss"].idxmin(), "n_trees"])
    log.info("pooled adverse-event model: %d trees (validation log-loss %s)", best,
             " / ".join(f"{v:.4f}" for v in table["log_loss"]))
    return big.sliced(best), table


def select_pooled(train: pd.DataFrame, valid: ValidationData, settings: Mapping[str, Any],
                  harm_weight: float, seed: int, engine: Any = LOCAL,
                  outcome: OutcomeSpec = OutcomeSpec()) -> PooledFit:
    """Both pooled models; the response model's depth and trees by validation DR value.

    The adverse-event booster and one response booster per max_depth are fitted first, as
    independent candidates (in parallel on a Dask engine); the choice follows. With a
    continuous outcome the response booster is a regressor and the companion (a regressor
    of the same relief) has nothing to add: it is not fitted. ``harm_weight`` is in the
    response's units (:attr:`OutcomeSpec.harm_scale` applied)."""
    response = response_settings(settings, outcome)
    companion = ([companion_candidate(response, seed + 2)]
                 if settings.get("pain_companion") and not outcome.continuous else [])
    candidates = [adverse_event_candidate(settings["adverse_event"], seed + 1),
                  *response_candidates(response, seed, outcome)]
    big_ae, *fitted = fit_candidates([*candidates, *companion], train, valid.treatments, engine,
                                     outcome)
    fitted, companion_model = (fitted[:-1], fitted[-1]) if companion else (fitted, None)
    adverse_event, _ = fit_adverse_event(train, valid, settings["adverse_event"], seed + 1,
                                         big_ae)
    p_ae = adverse_event.predict_matrix(valid.X)
    trees = grid_values(response["n_estimators"])
    rows, terms = [], []
    boosters = {int(c.hyperparameters["max_depth"]): m for c, m in zip(candidates[1:], fitted)}
    for depth, booster in boosters.items():
        for k in trees:
            p = booster.sliced(k).predict_matrix(valid.X)
            dr = valid.dr_terms(p, p_ae, harm_weight)
            got, y = valid.received(p, "response")
            terms.append(dr)
            rows.append({"max_depth": depth, "n_trees": k, "valid_dr": float(dr.mean()),
                         "valid_brier": float(np.mean((got - y) ** 2))})
    table = pd.DataFrame(rows)
    default = response.get("default", {})
    anchor = table.index[(table["max_depth"] == default.get("max_depth"))
                         & (table["n_trees"] == default.get("n_estimators"))]
    best = choose(np.vstack(terms), int(anchor[0]) if len(anchor) else None,
                  float(settings.get("replace_z", 2.0)))
    row = table.loc[best]
    log.info("pooled response model: depth %d, %d trees (validation DR net benefit %.4f; "
             "grid %s)", row["max_depth"], row["n_trees"], row["valid_dr"],
             ", ".join(f"d{r.max_depth}/{r.n_trees}: {r.valid_dr:.4f}"
                       for r in table.itertuples()))
    chosen = {"valid_response_chosen_max_depth": float(row["max_depth"]),
              "valid_response_chosen_n_estimators": float(row["n_trees"]),
              "valid_adverse_event_chosen_n_estimators": float(adverse_event.n_trees),
              "valid_dr_net_benefit": float(row["valid_dr"]),
              "valid_dr_standard_error": float(terms[best].std(ddof=1)
                                               / np.sqrt(len(terms[best]))),
              # the Brier score, or for a continuous outcome the mean squared error
              f"valid_response_{'mse' if outcome.continuous else 'brier'}":
                  float(row["valid_brier"])}
    chosen_model = boosters[int(row["max_depth"])].sliced(int(row["n_trees"]))
    if companion_model is not None:
        folds = int(settings.get("pain_companion_folds") or 0)
        crossfit = (cross_fit(pd.concat([train, valid.prepared], ignore_index=True),
                              [chosen_candidate(chosen, response, seed, outcome),
                               companion[0]], valid.treatments, folds, seed + 3, engine,
                              outcome)
                    if folds > 1 else None)
        chosen_model = stack_companion(chosen_model, companion_model, valid,
                                       float(settings.get("pain_companion_alpha", 0.01)),
                                       crossfit)
        if chosen_model.stack_ is not None:
            chosen = {**chosen, **_stack_summary(chosen_model, valid, p_ae, harm_weight)}
        return PooledFit(chosen_model, adverse_event, chosen, table, out_of_fold=crossfit)
    return PooledFit(chosen_model, adverse_event, chosen, table)


def _stack_summary(stacked: PooledModel, valid: ValidationData, p_ae: np.ndarray,
                   harm_weight: float) -> dict[str, float]:
    """The stacking weights, and the stacked model's validation DR value and Brier score (the
    figures training reports: they describe the model that ships)."""
    p = stacked.predict_matrix(valid.X)
    dr = valid.dr_terms(p, p_ae, harm_weight)
    got, y = valid.received(p, "response")
    a, b, c = stacked.stack_
    return {"valid_stack_intercept": a, "valid_stack_classifier_weight": b,
            "valid_stack_pain_reduction_weight": c,
            "valid_dr_net_benefit": float(dr.mean()),
            "valid_dr_standard_error": float(dr.std(ddof=1) / np.sqrt(len(dr))),
            "valid_response_brier": float(np.mean((got - y) ** 2))}


def choose(terms: np.ndarray, default: int | None, z: float) -> int:
    """The candidate (row of per-patient DR terms) to use: ``default`` unless another beats
    it by more than ``z`` standard errors of the paired difference; without a default, the
    largest mean."""
    means = terms.mean(axis=1)
    if default is None:
        return int(np.argmax(means))
    diff = terms - terms[default][None, :]
    se = diff.std(axis=1, ddof=1) / np.sqrt(terms.shape[1])
    clearly = np.flatnonzero(diff.mean(axis=1) > z * np.maximum(se, 1e-12))
    return int(clearly[np.argmax(means[clearly])]) if clearly.size else int(default)


def refit(fit: PooledFit, episodes: pd.DataFrame, settings: Mapping[str, Any], seed: int,
          engine: Any = LOCAL, marker: str = "refit_on_validation",
          outcome: OutcomeSpec = OutcomeSpec()) -> PooledFit:
    """The chosen models fitted again, with the same settings, seeds, numbers of trees and
    stacking weights, on ``episodes``: more patients than the choice was made with.

    Every choice was made before, on the validation split; the refit only gives the final
    models more data (the learning curve is steep at the cohort sizes real studies have:
    docs/evaluation.md). ``marker`` names the refit in the chosen figures:
    ``refit_on_validation`` (train + validation; the test split stays untouched and the
    validation figures keep describing the train-only models, ``PooledFit.validated``) or
    ``refit_on_all`` (every split: the deployed bundle, after evaluation's bundle is saved).
    """
    chosen = fit.chosen
    response = response_settings(settings, outcome)
    candidates = [
        Candidate("adverse_event", int(chosen["valid_adverse_event_chosen_n_estimators"]),
                  seed + 1, fixed_settings(settings["adverse_event"], ("n_estimators",))),
        chosen_candidate(chosen, response, seed, outcome),
    ]
    stacked = fit.response.stack_ is not None
    if stacked:
        candidates.append(companion_candidate(response, seed + 2))
    adverse_event, response_model, *companion = fit_candidates(
        candidates, episodes, fit.response.treatments, engine, outcome)
    if stacked:
        response_model = response_model.stacked(companion[0], fit.response.stack_)
    log.info("pooled models refitted (%s) on %d episodes", marker,
             len(observed_episodes(episodes, fit.response.treatments)))
    return PooledFit(response_model, adverse_event, {**chosen, marker: 1.0}, fit.table,
                     validated=fit.validated or fit, out_of_fold=fit.out_of_fold)


def chosen_candidate(chosen: Mapping[str, float], response: Mapping[str, Any], seed: int,
                     outcome: OutcomeSpec = OutcomeSpec()) -> Candidate:
    """The response booster with the depth and number of trees chosen on validation."""
    return Candidate("response", int(chosen["valid_response_chosen_n_estimators"]), seed,
                     {**fixed_settings(response, ("n_estimators", "max_depth")),
                      "max_depth": int(chosen["valid_response_chosen_max_depth"])},
                     response_objective(outcome))


def fit_pooled(train: pd.DataFrame, valid: pd.DataFrame, treatments: Sequence[str],
               settings: Mapping[str, Any], propensity: Any, harm_weight: float, clip: float,
               seed: int, engine: Any = LOCAL, outcome: OutcomeSpec = OutcomeSpec()
               ) -> PooledFit:
    """The pooled learner for ``treatments``: selection on the validation split by DR value,
    then (``refit_on_validation``, the default) the chosen models refitted on train +
    validation."""
    if propensity is None and len(treatments) > 1:
        raise ValueError("the pooled learner chooses its hyperparameters by a doubly robust "
                         "value on the validation split, which needs a propensity model: "
                         "set model.hyperparameters.propensity in params.yaml")
    data = ValidationData.build(valid, propensity, treatments, clip, outcome)
    fit = select_pooled(train, data, settings, harm_weight, seed, engine, outcome)
    if settings.get("refit_on_validation", False):
        return refit(fit, pd.concat([train, valid], ignore_index=True), settings, seed,
                     engine, outcome=outcome)
    return fit

