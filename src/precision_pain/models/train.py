"""Train stage: one response model and one adverse-event model per treatment.

Each treatment's models are fitted on the patients who received it (the
observational "T-learner"). The validation split chooses hyperparameters given as
lists (e.g. ``n_estimators: [50, 100, 200]`` or ``C: [0.003, 0.01, 0.1]``): one
combination per outcome, shared by all treatments, by the validation Brier score
pooled over treatments (and, where a model type is set to, it stops early on it);
never the test split.
:func:`train_bundle` is the whole stage's core: every treatment's models, the training
profile (:mod:`precision_pain.models.profile`) and the propensity model, as one
:class:`~precision_pain.models.bundle.ModelBundle`. It returns results and reports each
treatment through a callback; tracking and file output happen in the CLI layer.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from precision_pain.config import ModelParams
from precision_pain.data.features import build_features
from precision_pain.engine import LOCAL
from precision_pain.evaluate.metrics import outcome_metrics
from precision_pain.models.bundle import ModelBundle, bundle_from_training
from precision_pain.models.estimators import (CONTINUOUS_KINDS, POOLED_MODEL_TYPES, BinaryModel,
                                              fit_binary, fit_continuous, sliceable, sliced,
                                              training_threads)
from precision_pain.models.pooled import PooledFit, ValidationData, fit_pooled, refit
from precision_pain.models.profile import fitted_profile, training_profile
from precision_pain.models.propensity import fit_propensity
from precision_pain.models.stacked import StackedModel, fit_stacked, refit_stacked, uses_stacked
from precision_pain.outcome import OutcomeSpec
from precision_pain.registry import OUTCOMES, Treatment, select_treatments

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TreatmentModels:
    """The fitted models of one treatment and what was learned about them."""

    treatment: str
    models: Mapping[str, BinaryModel]
    counts: Mapping[str, int]
    validation: Mapping[str, float] = field(default_factory=dict)
    # The train-only models whose validation-split predictions are out of sample, when
    # ``models`` were refitted on train + validation (the pooled learner's default); None:
    # ``models`` themselves never saw the validation split.
    held_out: Mapping[str, BinaryModel] | None = None
    # Held-out P(response) and observed response for the Venn-Abers table when they are not
    # the validation split's scored by ``out_of_sample`` (PooledFit.calibration_set: the
    # out-of-fold predictions over train + validation of the refitted pooled learner).
    calibration: tuple[np.ndarray, np.ndarray] | None = None

    @property
    def out_of_sample(self) -> Mapping[str, BinaryModel]:
        """The models to score the validation split with (the training profile's intervals)."""
        return self.models if self.held_out is None else self.held_out


@dataclass(frozen=True)
class ArmSupport:
    """How many patients and events the splits hold for one treatment, and whether that is
    enough to model it (``reason`` says why not)."""

    treatment: str
    n_train: int
    n_valid: int
    n_train_responders: int
    n_train_non_responders: int
    n_train_adverse_events: int
    reason: str = ""

    @property
    def supported(self) -> bool:
        """Enough data to model this treatment."""
        return not self.reason


def arm_support(train: pd.DataFrame, valid: pd.DataFrame, treatments: Iterable[Treatment],
                min_patients: int, min_events: int) -> list[ArmSupport]:
    """Patients and events per treatment, and why a treatment cannot be modeled, if so."""
    counts = train.groupby("treatment", observed=True)["response"].agg(["size", "sum"])
    adverse = train.groupby("treatment", observed=True)["adverse_event"].sum()
    n_valid = valid["treatment"].value_counts()
    arms = []
    for t in treatments:
        n = int(counts["size"].get(t.name, 0))
        responders = int(counts["sum"].get(t.name, 0))
        arm = ArmSupport(t.name, n, int(n_valid.get(t.name, 0)), responders, n - responders,
                         int(adverse.get(t.name, 0)))
        reason = _shortfall(arm, min_patients, min_events)
        arms.append(ArmSupport(**{**arm.__dict__, "reason": reason}))
    return arms


def _shortfall(arm: ArmSupport, min_patients: int, min_events: int) -> str:
    if arm.n_train < min_patients:
        return (f"{arm.n_train} training patients received it, fewer than model.min_patients "
                f"= {min_patients}")
    if min(arm.n_train_responders, arm.n_train_non_responders) < min_events:
        return (f"{arm.n_train_responders} responders and {arm.n_train_non_responders} "
                f"non-responders in training, fewer than model.min_events = {min_events} of "
                "each")
    if arm.n_valid == 0:
        return "no validation patient received it"
    return ""


def modeled_treatments(train: pd.DataFrame, valid: pd.DataFrame, model: ModelParams
                       ) -> tuple[tuple[Treatment, ...], list[ArmSupport]]:
    """The treatments to model and the registered ones skipped for lack of data.

    With ``model.treatments`` null every supported registered treatment is modeled; a
    treatment named explicitly that the data cannot support is an error.
    """
    arms = arm_support(train, valid, select_treatments(model.treatments), model.min_patients,
                       model.min_events)
    skipped = [a for a in arms if not a.supported]
    if skipped and model.treatments is not None:
        raise ValueError(
            "model.treatments names treatments the train split cannot support: "
            + "; ".join(f"{a.treatment}: {a.reason}" for a in skipped)
            + ". Fix: drop them from model.treatments (or set it to null to model every "
            "supported treatment), or provide more data")
    modeled = tuple(t for t, a in zip(select_treatments(model.treatments), arms) if a.supported)
    if not modeled:
        raise ValueError(
            "no treatment has enough training data to be modeled (model.min_patients = "
            f"{model.min_patients}, model.min_events = {model.min_events}): "
            + "; ".join(f"{a.treatment}: {a.reason}" for a in skipped)
            + ". Fix: provide more data, or lower the minimums in params.yaml")
    for arm in skipped:
        log.warning("not modeling %s: %s", arm.treatment, arm.reason)
    return modeled, skipped


def train_bundle(train: pd.DataFrame, valid: pd.DataFrame, treatments: Iterable[Treatment],
                 model: ModelParams, response_threshold: float, *, harm_weight: float,
                 propensity_clip: float, not_modeled: Sequence[ArmSupport] = (),
                 on_done: Callable[[TreatmentModels], None] | None = None,
                 engine: Any = LOCAL, outcome: OutcomeSpec = OutcomeSpec()) -> ModelBundle:
    """Every treatment's models, the training profile and the propensity model, as a bundle.

    ``on_done`` gets each treatment's final result (the CLI logs it to MLflow). Without
    ``model.hyperparameters.propensity`` the bundle has no propensity model. The pooled
    learner chooses its hyperparameters by the doubly robust value of its recommendations
    at ``harm_weight`` (importance weights capped at ``1 / propensity_clip``). ``engine``
    (:mod:`precision_pain.engine`) runs the independent fits: the pooled learner's candidate
    boosters, or the per-treatment arms. ``outcome`` (:mod:`precision_pain.outcome`) says what
    the response models predict; the bundle records it.
    """
    hyper = model.hyperparameters.get(model.type, {})
    treatments = tuple(treatments)
    check_outcome_support(model.type, outcome)
    with training_threads():
        propensity, report = _propensity(train, valid, model)
        if model.type in POOLED_MODEL_TYPES:
            fitted = train_pooled(treatments, train, valid, hyper, propensity,
                                  harm_weight * outcome.harm_scale, propensity_clip, model.seed,
                                  on_done, engine, outcome,
                                  model.hyperparameters.get("propensity", {}).get("xgboost"))
        else:
            fitted = train_all(treatments, train, valid, model.type, hyper, model.seed, on_done,
                               engine, outcome)
        fitted_on = _fitted_on(fitted, train, valid, hyper, model.type)
        splits = {"train": train, "valid": valid}
        profile = training_profile(train, valid,
                                   {n: r.out_of_sample for n, r in fitted.items()},
                                   outcome.continuous,
                                   pd.concat([splits[s] for s in fitted_on["splits"]]),
                                   {n: r.calibration for n, r in fitted.items()
                                    if r.calibration is not None})
    metadata = {"response_threshold": response_threshold, "hyperparameters": hyper, **profile,
                "outcome": outcome.to_metadata(),
                **({"selection": _selection(fitted)} if model.type in POOLED_MODEL_TYPES else {}),
                **({"propensity": report} if report else {}),
                "not_modeled": [a.__dict__ for a in not_modeled],
                "min_patients": model.min_patients, "min_events": model.min_events,
                "fitted_on": fitted_on}
    return bundle_from_training(fitted, model.type, metadata, propensity)


def check_outcome_support(model_type: str, outcome: OutcomeSpec) -> None:
    """Refuse a model type that has no regressor for a continuous outcome."""
    if outcome.continuous and model_type not in (*CONTINUOUS_KINDS, *POOLED_MODEL_TYPES):
        raise ValueError(
            f"model.type {model_type!r} has no regressor for prepare.outcome: nrs_change. "
            f"Fix: set model.type to one of {', '.join((*POOLED_MODEL_TYPES, *CONTINUOUS_KINDS))}"
            " (logistic fits its linear counterpart, ridge regression), or prepare.outcome: "
            "responder")


def _fitted_on(fitted: Mapping[str, TreatmentModels], train: pd.DataFrame, valid: pd.DataFrame,
               hyper: Mapping[str, Any], model_type: str) -> dict[str, Any]:
    """Which splits the final models were fitted on, and how many episodes of the modeled
    treatments they hold."""
    refitted = model_type in POOLED_MODEL_TYPES and hyper.get("refit_on_validation", False)
    frames = [train, valid] if refitted else [train]
    return {"splits": ["train", "valid"][:len(frames)],
            "n_episodes": _n_episodes(frames, list(fitted))}


def _n_episodes(frames: Iterable[pd.DataFrame], treatments: Sequence[str]) -> int:
    """Episodes of ``treatments`` in ``frames``: the rows the models were fitted on."""
    return sum(int(f["treatment"].astype(str).isin(treatments).sum()) for f in frames)


def refits_on_all(model: ModelParams) -> bool:
    """Whether training ends with the deployed bundle refitted on every split
    (``refit_on_all``; the pooled learner only)."""
    return (model.type in POOLED_MODEL_TYPES
            and bool(model.hyperparameters.get(model.type, {}).get("refit_on_all", False)))


def refit_on_all(bundle: ModelBundle, splits: Mapping[str, pd.DataFrame], model: ModelParams,
                 engine: Any = LOCAL) -> ModelBundle:
    """The deployed bundle: evaluation's pooled models fitted once more, with every choice
    they were made with (depth, numbers of trees, stacking weights, seeds), on all of
    ``splits`` (train, validation and test).

    The usual practice in clinical prediction modelling: the test split measures the
    procedure, then the final model uses every patient (Steyerberg et al., J Clin Epidemiol
    2001;54:774-81; TRIPOD explanation and elaboration, Moons et al., Ann Intern Med
    2015;162:W1-73). Evaluation's figures describe the bundle fitted without the test split,
    a slightly pessimistic estimate for this one. Nothing is chosen here; the propensity
    model and the Venn-Abers tables stay those of the evaluated bundle, the feature ranges
    become those of every split.
    """
    if bundle.model_type not in POOLED_MODEL_TYPES:
        raise ValueError(f"refit_on_all needs a pooled model type, not {bundle.model_type!r}")
    shared = {o: bundle.model(bundle.treatments[0], o).shared for o in OUTCOMES}
    chosen = bundle.metadata["selection"]
    fit = PooledFit(shared["response"], shared["adverse_event"], chosen)
    episodes = pd.concat(list(splits.values()), ignore_index=True)
    with training_threads():
        if isinstance(fit.response, StackedModel):
            final = refit_stacked(fit, episodes, model.hyperparameters[model.type], model.seed,
                                  engine, "refit_on_all", bundle.outcome)
        else:
            final = refit(fit, episodes, model.hyperparameters[model.type], model.seed, engine,
                          "refit_on_all", bundle.outcome)
    metadata = {**bundle.metadata, "selection": {**chosen, "refit_on_all": 1.0},
                "fitted_on": {"splits": list(splits),
                              "n_episodes": _n_episodes([episodes], bundle.treatments)},
                # predict's "outside the training range" flag and the values it fills in:
                # those of every patient these models saw (the Venn-Abers tables need
                # held-out scores, so they stay the evaluated bundle's: out of fold over
                # train + validation, or the validation split's)
                **fitted_profile(episodes, bundle.treatments)}
    return replace(bundle, models=final.views(), metadata=metadata)


_CHOSEN_KEYS = ("valid_response_chosen_max_depth", "valid_response_chosen_n_estimators",
                "valid_adverse_event_chosen_n_estimators", "valid_stack_intercept",
                "valid_stack_classifier_weight", "valid_stack_pain_reduction_weight",
                "valid_stack_weight_pooled", "valid_stack_weight_per_arm")
_SELECTION_KEYS = ("valid_dr_net_benefit", "valid_dr_standard_error", "refit_on_validation",
                   "valid_response_brier", "valid_response_mse", *_CHOSEN_KEYS)


def _selection(fitted: Mapping[str, TreatmentModels]) -> dict[str, float]:
    """What the pooled learner's choice found on the validation split (the same for every
    treatment: one model serves them all)."""
    first = next(iter(fitted.values())).validation
    return {k: float(first[k]) for k in _SELECTION_KEYS if k in first}


def training_summary(bundle: ModelBundle, valid: pd.DataFrame, harm_weight: float,
                     propensity_clip: float, seconds: float) -> dict[str, Any]:
    """Training's figures for metrics/training.json, comparable across model types: the
    wall time and the doubly robust value of the recommendations' first choice on the
    validation split (net benefit at ``harm_weight``; no ground truth needed). Only the
    pooled learner chose anything by that value; for the others it is a check. Models
    refitted on train + validation have seen the validation split, so for them the value is
    the one their train-only fit had when it was chosen (``valid_dr_of`` says so)."""
    summary: dict[str, Any] = {"model_type": bundle.model_type,
                               "train_seconds": round(float(seconds), 1),
                               "n_treatments_modeled": len(bundle.treatments)}
    selection = bundle.metadata.get("selection", {})
    summary |= {k: selection[k] for k in _CHOSEN_KEYS if k in selection}  # what was chosen
    if selection.get("refit_on_validation"):
        return {**summary, "valid_dr_net_benefit": selection["valid_dr_net_benefit"],
                "valid_dr_standard_error": selection["valid_dr_standard_error"],
                "valid_dr_of": "the train-only models chosen on the validation split, before "
                               "the refit on train + validation"}
    if bundle.propensity is None or len(bundle.treatments) < 2:
        return summary
    outcome = bundle.outcome
    data = ValidationData.build(valid, bundle.propensity, bundle.treatments, propensity_clip,
                                outcome)
    p = {o: np.column_stack([bundle.model(t, o).predict_proba(data.X)
                             for t in bundle.treatments]) for o in OUTCOMES}
    terms = data.dr_terms(p["response"], p["adverse_event"], harm_weight * outcome.harm_scale)
    summary["valid_dr_net_benefit"] = float(terms.mean())
    summary["valid_dr_standard_error"] = float(terms.std(ddof=1) / np.sqrt(len(terms)))
    return summary


def train_pooled(treatments: Sequence[Treatment], train: pd.DataFrame, valid: pd.DataFrame,
                 settings: Mapping[str, Any], propensity: Any, harm_weight: float,
                 propensity_clip: float, seed: int,
                 on_done: Callable[[TreatmentModels], None] | None = None,
                 engine: Any = LOCAL, outcome: OutcomeSpec = OutcomeSpec(),
                 propensity_settings: Mapping[str, Any] | None = None
                 ) -> dict[str, TreatmentModels]:
    """The pooled learner (models/pooled.py), reported per treatment like the others
    (``harm_weight`` in the response's units); for the change in pain with ``learner:
    stacked``, its stacked response model (models/stacked.py), whose own propensity model
    takes ``propensity_settings`` (params' ``propensity.xgboost``)."""
    names = [t.name for t in treatments]
    if uses_stacked(settings, outcome):
        fit = fit_stacked(train, valid, names, settings, propensity_settings, harm_weight,
                          propensity_clip, seed, outcome, propensity, engine)
    else:
        fit = fit_pooled(train, valid, names, settings, propensity, harm_weight,
                         propensity_clip, seed, engine, outcome)
    fitted = {}
    validated = fit.validation_views()  # out of sample on the validation split
    for name, views in fit.views().items():
        tr, va = train[train["treatment"] == name], valid[valid["treatment"] == name]
        X_va = build_features(va)
        validation = dict(fit.chosen)
        for kind, view in validated[name].items():
            for metric, value in _metrics(outcome, kind, va, view.predict_proba(X_va)).items():
                validation[f"valid_{kind}_{metric}"] = value
        fitted[name] = TreatmentModels(name, views, arm_counts(tr, va), validation,
                                       None if fit.validated is None else validated[name],
                                       fit.calibration_set(name))
        _done(fitted[name], on_done)
    return fitted


def _metrics(spec: OutcomeSpec, outcome: str, frame: pd.DataFrame, p: np.ndarray
             ) -> dict[str, float]:
    """Validation metrics of one outcome's predictions (continuous ones for a regressor)."""
    return outcome_metrics(spec.values(frame, outcome), p,
                           spec.continuous and outcome == "response")


def arm_counts(tr: pd.DataFrame, va: pd.DataFrame) -> dict[str, int]:
    """Patients and events of one treatment arm in the train and validation splits."""
    return {"n_train": len(tr), "n_valid": len(va),
            "n_train_responders": int(tr["response"].sum()),
            "n_train_adverse_events": int(tr["adverse_event"].sum())}


def _propensity(train: pd.DataFrame, valid: pd.DataFrame, model: ModelParams
                ) -> tuple[Any, dict[str, Any]]:
    """P(treatment | features) for off-policy evaluation; (None, {}) without candidates."""
    candidates = model.hyperparameters.get("propensity")
    if not candidates:
        log.info("no model.hyperparameters.propensity: skipping the propensity model")
        return None, {}
    if train["treatment"].nunique() < 2:
        log.info("every training patient received the same treatment: P(treatment) is 1, "
                 "no propensity model to fit")
        return None, {}
    fitted, report = fit_propensity(train, valid, candidates, model.seed)
    log.info("propensity model: %s (validation log-loss %s)", report["chosen"],
             ", ".join(f"{k} {v:.4f}" for k, v in report["valid_log_loss"].items()))
    return fitted, report


def treatment_seed(seed: int, treatment_index: int, outcome_index: int) -> int:
    """A distinct, reproducible seed for each treatment and outcome."""
    return int(np.random.SeedSequence([seed, treatment_index, outcome_index]).generate_state(1)[0])


def train_treatment(treatment: Treatment, index: int, train: pd.DataFrame, valid: pd.DataFrame,
                    model_type: str, hyperparameters: Mapping[str, Any], seed: int,
                    outcome: OutcomeSpec = OutcomeSpec()) -> TreatmentModels:
    """Fit both outcome models of one treatment on the rows that received it."""
    return train_treatment_grid(treatment, index, train, valid, model_type,
                                [dict(hyperparameters)], seed, outcome)[0]


def train_treatment_grid(treatment: Treatment, index: int, train: pd.DataFrame,
                         valid: pd.DataFrame, model_type: str, grid: Sequence[Mapping[str, Any]],
                         seed: int, spec: OutcomeSpec = OutcomeSpec()) -> list[TreatmentModels]:
    """One treatment's models at every grid point (a sliceable hyperparameter fitted once)."""
    tr = train[train["treatment"] == treatment.name]
    va = valid[valid["treatment"] == treatment.name]
    if len(tr) == 0 or len(va) == 0:
        raise ValueError(
            f"no {'training' if len(tr) == 0 else 'validation'} rows received treatment "
            f"{treatment.name!r}; drop it from model.treatments or provide more data"
        )
    X_tr, X_va = build_features(tr), build_features(va)
    models: list[dict[str, BinaryModel]] = [{} for _ in grid]
    validation: list[dict[str, float]] = [{} for _ in grid]
    for k, outcome in enumerate(OUTCOMES):
        y_tr, y_va = spec.values(tr, outcome), spec.values(va, outcome)
        continuous = spec.continuous and outcome == "response"
        fits = _fit_grid(model_type, grid, treatment_seed(seed, index, k), X_tr, y_tr, X_va, y_va,
                         continuous)
        for i, model in enumerate(fits):
            models[i][outcome] = model
            for name, value in _metrics(spec, outcome, va, model.predict_proba(X_va)).items():
                validation[i][f"valid_{outcome}_{name}"] = value
    counts = arm_counts(tr, va)
    return [TreatmentModels(treatment.name, m, counts, v) for m, v in zip(models, validation)]


def _fit_grid(model_type: str, grid: Sequence[Mapping[str, Any]], seed: int, X: pd.DataFrame,
              y: np.ndarray, X_val: pd.DataFrame, y_val: np.ndarray, continuous: bool = False
              ) -> list[BinaryModel]:
    """A model per grid point: one fit per group of points that differ only in the sliceable
    hyperparameter (at its largest value), cut to each point's value. ``continuous``: the
    model type's regressor (:func:`fit_continuous`)."""
    fits: list[BinaryModel | None] = [None] * len(grid)
    fit = fit_continuous if continuous else fit_binary
    for largest, members in slice_groups(model_type, grid):
        model = fit(model_type, largest, seed, X, y, X_val, y_val)
        key = sliceable(model_type, largest)
        for i in members:
            fits[i] = model if key is None else sliced(model, grid[i][key])
    return [m for m in fits if m is not None]


def slice_groups(model_type: str, grid: Sequence[Mapping[str, Any]]
                 ) -> list[tuple[dict[str, Any], list[int]]]:
    """Grid points grouped by everything but the sliceable hyperparameter: per group, the
    point to fit (that hyperparameter at its largest value) and the indices it serves."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, point in enumerate(grid):
        key = sliceable(model_type, point)
        rest = tuple(repr(v) for k, v in point.items() if k != key) if key else (i,)
        groups.setdefault(rest, []).append(i)
    out = []
    for members in groups.values():
        point = dict(grid[members[0]])
        key = sliceable(model_type, point)
        if key is not None:
            point[key] = max(grid[i][key] for i in members)
        out.append((point, members))
    return out


def hyperparameter_grid(hyperparameters: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Every combination of the list-valued hyperparameters (scalars stay fixed)."""
    values = [v if isinstance(v, list) else [v] for v in hyperparameters.values()]
    return [dict(zip(hyperparameters, combo)) for combo in itertools.product(*values)]


def train_all(treatments: Iterable[Treatment], train: pd.DataFrame, valid: pd.DataFrame,
              model_type: str, hyperparameters: Mapping[str, Any], seed: int,
              on_done: Callable[[TreatmentModels], None] | None = None,
              engine: Any = LOCAL, outcome: OutcomeSpec = OutcomeSpec()
              ) -> dict[str, TreatmentModels]:
    """Fit every treatment (at each grid point, if any); ``on_done`` gets each final result.

    The arms are independent: ``engine`` maps :func:`train_arm` over them (on a Dask engine,
    each arm is one task that receives only its own rows)."""
    grid = hyperparameter_grid(hyperparameters)
    treatments = tuple(treatments)
    arms = [Arm(index, treatment, train[train["treatment"] == treatment.name],
                valid[valid["treatment"] == treatment.name])
            for index, treatment in enumerate(treatments)]
    results = engine.map(train_arm, arms, model_type, grid, seed, outcome, desc="train arms",
                         unit="treatment")
    per_treatment = {t.name: r for t, r in zip(treatments, results)}
    if len(grid) == 1:
        for result in per_treatment.values():
            _done(result[0], on_done)
        return {name: results[0] for name, results in per_treatment.items()}
    runs = [{name: results[i] for name, results in per_treatment.items()}
            for i in range(len(grid))]
    fitted = choose_shared(runs, grid, hyperparameters)
    for result in fitted.values():
        _done(result, on_done)
    return fitted


@dataclass(frozen=True)
class Arm:
    """One treatment's training and validation rows: the unit of work of per-treatment types."""

    index: int
    treatment: Treatment
    train: pd.DataFrame
    valid: pd.DataFrame


def train_arm(arm: Arm, model_type: str, grid: Sequence[Mapping[str, Any]], seed: int,
              outcome: OutcomeSpec = OutcomeSpec()) -> list[TreatmentModels]:
    """:func:`train_treatment_grid` on one arm's rows (a task of its own on a Dask engine)."""
    with training_threads():
        return train_treatment_grid(arm.treatment, arm.index, arm.train, arm.valid, model_type,
                                    grid, seed, outcome)


def _done(result: TreatmentModels, on_done: Callable[[TreatmentModels], None] | None) -> None:
    log.info("trained %s on %d rows (%s)", result.treatment, result.counts["n_train"],
             ", ".join(f"{o}={m.kind}" for o, m in result.models.items()))
    if on_done is not None:
        on_done(result)


def pooled_brier(run: Mapping[str, TreatmentModels], outcome: str) -> float:
    """Validation Brier score of one outcome's models, pooled over treatments (row-weighted);
    the mean squared error for a regressor."""
    n = np.array([r.counts["n_valid"] for r in run.values()], dtype=float)
    first = next(iter(run.values())).validation
    metric = "brier" if f"valid_{outcome}_brier" in first else "mse"
    brier = np.array([r.validation[f"valid_{outcome}_{metric}"] for r in run.values()])
    return float(n @ brier / n.sum())


def choose_shared(runs: list[dict[str, TreatmentModels]], grid: list[dict[str, Any]],
                  hyperparameters: Mapping[str, Any]) -> dict[str, TreatmentModels]:
    """Per outcome, the grid point with the lowest pooled validation Brier score."""
    best = {o: int(np.argmin([pooled_brier(run, o) for run in runs])) for o in OUTCOMES}
    tuned = [key for key, value in hyperparameters.items() if isinstance(value, list)]
    chosen = {f"valid_{o}_chosen_{key}": float(grid[best[o]][key])
              for o in OUTCOMES for key in tuned if isinstance(grid[best[o]][key], (int, float))}
    for o in OUTCOMES:
        log.info("%s models: %s chosen on the validation split (pooled Brier score, or mean "
                 "squared error for a regressor: %s over the grid)",
                 o, ", ".join(f"{key}={grid[best[o]][key]}" for key in tuned),
                 " / ".join(f"{pooled_brier(run, o):.5f}" for run in runs))
    return {name: _combine([runs[best[o]][name] for o in OUTCOMES], chosen) for name in runs[0]}


def _combine(per_outcome: list[TreatmentModels], chosen: Mapping[str, float]) -> TreatmentModels:
    """One treatment's models, each outcome's taken from the run chosen for it."""
    models = {o: r.models[o] for o, r in zip(OUTCOMES, per_outcome)}
    validation = {k: v for o, r in zip(OUTCOMES, per_outcome)
                  for k, v in r.validation.items() if k.startswith(f"valid_{o}_")}
    first = per_outcome[0]
    return TreatmentModels(first.treatment, models, first.counts, {**validation, **chosen})
