"""Plan learner: one pooled booster per outcome over every episode, single or multi-component.

A treatment plan (:mod:`precision_pain.plans`) is a set of up to three registry treatments.
One model per combination would need episodes of every combination; the registry's
treatments make over a hundred valid plans, most given to a few dozen patients at best.
The plan learner instead extends the pooled learner's design
(:func:`precision_pain.models.pooled.design`) from one treatment to a set of them:

    [patient features (data.features)]
    + [multi-hot of the plan's components:                 ``treatment=<t>``]
    + [one indicator per eligible (condition, component): ``pair=<condition>:<t>``]
    + [number of components:                               ``n_components``]

The columns are those of the single-treatment design (the multi-hot is the element-wise
maximum of each component's one-hot, so a one-component plan has exactly the pooled
learner's row) plus the plan's size. One binary booster per outcome (response, serious
adverse event) is fitted on *every* episode, single treatments and plans alike: a
component's effect is learned from every plan that holds it, the sub-additivity of
combining (or the burden of a longer plan) from ``n_components`` and splits on two
component indicators, and any valid plan can be scored, including plans no training
patient received.

Reading SHAP of a plan
----------------------
xgboost's exact TreeSHAP over the whole design, in log-odds. For one patient and plan:

- a component's part is the sum of the SHAP of its ``treatment=<t>`` column and its
  ``pair=*`` columns: how much having that component moves the plan's log-odds for this
  patient, against the training mix of plans. By the Shapley split, it carries half of each
  interaction between the component and the patient's features (and with the other
  components): "amitriptyline is there because this patient sleeps badly" shows up as a
  positive amitriptyline part, the other half on the sleep feature;
- ``n_components``' part is the plan's size (a longer plan's burden, or its extra reach);
- the ``treatment=``/``pair=`` columns of treatments *not* in the plan are zeros whose SHAP
  says how the plan differs from the training mix by what it leaves out; with the bias
  they form the baseline;
- a patient feature's part is how it moves P(outcome | plan) for this patient.

Ranking correction for the winner's curse
-----------------------------------------
A patient has 10-80 valid plans of three components (by condition) but only 6-10 single
treatments, and the learner estimates a plan's net benefit with noise of a few hundredths
(the multi-component plans were each received by a few dozen training patients). The
largest of many noisy estimates is biased upwards, more so the more candidates there are,
so an argmax over every plan picks three-component plans because they are many, not
because they are better (the optimism of a selected maximum: Tibshirani & Tibshirani,
Ann Appl Stat 2009, for the minimum cross-validation error; Varma & Simon, BMC
Bioinformatics 2006). With ``plan_optimism_correction`` the optimism is estimated from the
data, without any outcome: two boosters fitted on the two halves of the training patients
(same settings) each choose the best plan of every size for the validation patients, and
the other half's booster values the choice; the mean gap, ``optimism[k]`` for plans of
``k`` components, is what the choosing half promised over what the independent half
confirms. The ranking then subtracts ``optimism[k] - optimism[1]`` from the net benefit of
a plan of ``k`` components (``ranking_penalty``): one-component plans are ranked as before,
a longer plan must beat them by more than the extra optimism of its larger pool. The
estimate uses the training harm weight (evaluate.harm_weight).

Choices (never on the test split): the response booster takes the pooled learner's
``default`` depth and number of trees (a doubly robust choice over plans would need a
propensity model over a hundred-odd plans, too sparse: docs/evaluation.md); the
adverse-event booster's number of trees is chosen by validation log-loss over observed
episodes, as the pooled learner's is. With ``refit_on_validation`` both are then refitted,
same settings, on train + validation.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from precision_pain.data.contract.schema import PLAN_COLUMN
from precision_pain.data.features import FEATURE_NAMES, build_features
from precision_pain.engine import LOCAL
from precision_pain.models.pooled import (PooledModel, design, design_names, fixed_settings,
                                          grid_values)
from precision_pain.plans import SEPARATOR, parse_plan, plan_name, valid_plans
from precision_pain.registry import CONDITIONS

log = logging.getLogger(__name__)

KIND = "pooled_plans"
N_COMPONENTS = "n_components"
PLAN_FOLDER = "plans"
# Seeds of the plan boosters, offset from the single-treatment pooled learner's.
_SEED_OFFSET = 10


# ------------------------------------------------------------------------------ design

def plan_membership(plan: str | np.ndarray, n: int, treatments: Sequence[str]
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(n, T) float32 multi-hot of each row's plan components over ``treatments``, and (n,)
    sizes. ``plan`` is one plan name (every row gets it) or one per row; a component
    outside ``treatments`` has no column (as a treatment outside them has none in
    :func:`~precision_pain.models.pooled.design`)."""
    names = np.full(n, plan, dtype=object) if isinstance(plan, str) else np.asarray(plan, object)
    codes, uniques = pd.factorize(names)
    index = {t: j for j, t in enumerate(treatments)}
    table = np.zeros((len(uniques), len(treatments)), dtype=np.float32)
    sizes = np.zeros(len(uniques), dtype=np.float32)
    for i, text in enumerate(uniques):
        parts = parse_plan(text)
        table[i, [index[t] for t in parts if t in index]] = 1.0
        sizes[i] = len(parts)
    return table[codes], sizes[codes]


@lru_cache(maxsize=8)
def _indicator_basis(treatments: tuple[str, ...]) -> np.ndarray:
    """(C + 1, T, K): the indicator part (one-hot and pair columns) of
    :func:`~precision_pain.models.pooled.design` for each condition (last: none) and
    treatment, computed by that function itself so the two designs cannot drift."""
    f = len(FEATURE_NAMES)
    basis = []
    for condition in (*CONDITIONS, None):
        frame = pd.DataFrame(np.zeros((len(treatments), f), dtype=np.float32),
                             columns=list(FEATURE_NAMES))
        if condition is not None:
            frame[f"condition={condition}"] = 1.0
        basis.append(design(frame, np.asarray(treatments, dtype=object), treatments)[:, f:])
    return np.stack(basis)


def condition_codes(X: pd.DataFrame) -> np.ndarray:
    """Each row's condition as an index into CONDITIONS (len(CONDITIONS): none), read from the
    features' condition one-hot."""
    conditions = X[[f"condition={c}" for c in CONDITIONS]].to_numpy()
    return np.where(conditions.any(axis=1), conditions.argmax(axis=1),
                    len(CONDITIONS)).astype(np.int64)


def plan_design(X: pd.DataFrame, plan: str | np.ndarray, treatments: Sequence[str]
                ) -> np.ndarray:
    """(n, F + T + P + 1) float32: the pooled design with a multi-hot of the plan's
    components (the sum of each component's one-hot and pair indicators, which never
    overlap) and the number of components."""
    treatments = tuple(treatments)
    member, sizes = plan_membership(plan, len(X), treatments)
    basis = _indicator_basis(treatments)
    code = condition_codes(X)
    indicators = np.zeros((len(X), basis.shape[2]), dtype=np.float32)
    for c in np.unique(code):
        rows = np.flatnonzero(code == c)
        indicators[rows] = member[rows] @ basis[c]
    return np.hstack([X.to_numpy(np.float32), indicators, sizes[:, None]])


def plan_design_names(treatments: Sequence[str]) -> list[str]:
    """Column names of :func:`plan_design`."""
    return [*design_names(treatments), N_COMPONENTS]


class PlanModel(PooledModel):
    """A pooled booster over the plan design, for one outcome (one file, UBJSON)."""

    kind: ClassVar[str] = KIND

    @staticmethod
    def design_of(X: pd.DataFrame, treatment: str | np.ndarray, treatments: Sequence[str]
                  ) -> np.ndarray:
        """:func:`plan_design` (``treatment``: a plan name, or one per row)."""
        return plan_design(X, treatment, treatments)

    @staticmethod
    def names_of(treatments: Sequence[str]) -> list[str]:
        """:func:`plan_design_names`."""
        return plan_design_names(treatments)

    def predict_plans(self, X: pd.DataFrame, plans: Sequence[str]) -> np.ndarray:
        """(n, P) P(outcome) of every patient under every plan."""
        if not plans:
            return np.zeros((len(X), 0))
        return np.column_stack([self.predict_proba(X, p) for p in plans]).astype(float)

    def view(self, treatment: str) -> Any:
        """Plans have no per-treatment view (the bundle keeps them apart)."""
        raise TypeError("a plan model scores plans (predict_plans), not one treatment's view")


# ------------------------------------------------------------------------------ SHAP parts

@lru_cache(maxsize=8)
def component_columns(treatments: tuple[str, ...]) -> tuple[tuple[int, ...], ...]:
    """Per treatment, the plan design's columns that carry its part of a plan's log-odds:
    its ``treatment=`` column and its ``pair=`` columns."""
    names = plan_design_names(treatments)
    return tuple(tuple(j for j, c in enumerate(names)
                       if c == f"treatment={t}" or (c.startswith("pair=") and c.endswith(f":{t}")))
                 for t in treatments)


def treatment_parts(phi: np.ndarray, treatments: Sequence[str]) -> np.ndarray:
    """(n, T) each treatment's :func:`component_parts` value, whether or not in the plan."""
    return np.column_stack([phi[:, list(cols)].sum(axis=1)
                            for cols in component_columns(tuple(treatments))])


def component_parts(phi: np.ndarray, plan: str, treatments: Sequence[str]
                    ) -> dict[str, np.ndarray]:
    """Per component of ``plan``: (n,) its share of the plan's log-odds (the SHAP of its
    ``treatment=`` and ``pair=`` columns), from full-design SHAP ``phi`` (n, D + 1)."""
    columns = component_columns(tuple(treatments))
    index = {t: j for j, t in enumerate(treatments)}
    return {t: phi[:, list(columns[index[t]]) if t in index else []].sum(axis=1)
            for t in parse_plan(plan)}


def split_contributions(phi: np.ndarray, plan: str, treatments: Sequence[str]
                        ) -> dict[str, np.ndarray]:
    """SHAP of a plan in parts: ``features`` (n, F), one (n,) part per component,
    ``n_components`` (n,) and ``baseline`` (n,: bias plus the columns of treatments not in
    the plan). Every row's parts sum to the plan's log-odds."""
    f = len(FEATURE_NAMES)
    components = component_parts(phi, plan, treatments)
    size = phi[:, -2]
    rest = phi[:, f:-2].sum(axis=1) - sum(components.values(), np.zeros(len(phi)))
    return {"features": phi[:, :f], **{f"component={t}": v for t, v in components.items()},
            N_COMPONENTS: size, "baseline": phi[:, -1] + rest}


# ------------------------------------------------------------------------------ fitting

@dataclass(frozen=True)
class PlanModels:
    """The plan learner's two boosters, the plans it scores and what training found."""

    response: PlanModel
    adverse_event: PlanModel
    plans: tuple[str, ...]
    summary: Mapping[str, float] = field(default_factory=dict)
    # training episodes per plan received (the boosters' fitting episodes; counts only)
    episodes: Mapping[str, int] = field(default_factory=dict)

    @property
    def treatments(self) -> tuple[str, ...]:
        """The components the boosters know."""
        return self.response.treatments

    def ranking_penalty(self, plans: Sequence[str] | None = None) -> np.ndarray:
        """(P,) what the ranking subtracts from each plan's net benefit: the selection
        optimism of its size beyond that of one-component plans (0 where not estimated)."""
        plans = self.plans if plans is None else plans
        return np.array([self.summary.get(f"plan_ranking_penalty_{len(parse_plan(p))}", 0.0)
                         for p in plans], dtype=float)

    def model(self, outcome: str) -> PlanModel:
        """The booster of one outcome."""
        return {"response": self.response, "adverse_event": self.adverse_event}[outcome]


def episode_plans(frame: pd.DataFrame) -> np.ndarray:
    """Each episode's plan name: the contract-v2 ``plan`` column, else the treatment."""
    if PLAN_COLUMN in frame.columns:
        plan = frame[PLAN_COLUMN].astype(str).to_numpy(dtype=object)
        single = frame["treatment"].astype(str).to_numpy(dtype=object)
        return np.where(np.isin(plan, ["", "nan", "None"]), single, plan)
    return frame["treatment"].astype(str).to_numpy(dtype=object)


def plan_counts(frame: pd.DataFrame) -> dict[str, int]:
    """Episodes per plan received (one-component plans included), in canonical names."""
    counts = pd.Series(episode_plans(frame)).value_counts()
    return {plan_name(parse_plan(p)): int(n) for p, n in counts.items()}


def has_plan_episodes(frame: pd.DataFrame) -> bool:
    """Whether any episode is a plan of two or more components."""
    return bool(pd.Series(episode_plans(frame)).str.contains(SEPARATOR, regex=False).any())


def modelable(frame: pd.DataFrame, treatments: Sequence[str]) -> pd.DataFrame:
    """The episodes whose every component is a modeled treatment (others counted, logged)."""
    known = set(treatments)
    plans = episode_plans(frame)
    keep = np.array([set(p.split(SEPARATOR)) <= known for p in plans], dtype=bool)
    if not keep.all():
        log.warning("plan learner: %d of %d episodes hold a treatment that is not modeled; "
                    "left out", int((~keep).sum()), len(frame))
    return frame.loc[keep]


def fit_plan_outcome(frame: pd.DataFrame, outcome: str, trees: int, seed: int,
                     treatments: Sequence[str], hyperparameters: Mapping[str, Any],
                     engine: Any = LOCAL) -> PlanModel:
    """One booster of ``outcome`` on every episode of ``frame`` (already :func:`modelable`)."""
    return PlanModel.fit(build_features(frame), episode_plans(frame),
                         frame[outcome].to_numpy(float), outcome, trees, seed, treatments,
                         engine=engine, **hyperparameters)


def _log_loss(p: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(p, 1e-7, 1 - 1e-7)
    return -float(np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def _adverse_event_trees(model: PlanModel, valid: pd.DataFrame, grid: Sequence[int]
                         ) -> tuple[int, dict[str, float]]:
    """The adverse-event tree count with the lowest validation log-loss (observed plans)."""
    X, plans = build_features(valid), episode_plans(valid)
    y = valid["adverse_event"].to_numpy(float)
    losses = {int(k): _log_loss(model.sliced(k).predict_proba(X, plans), y) for k in grid}
    return min(losses, key=losses.get), losses


def _response_settings(settings: Mapping[str, Any]) -> tuple[dict[str, Any], int]:
    """The response booster's xgboost parameters and trees: the pooled learner's default."""
    response = settings["response"]
    default = response.get("default", {})
    hyper = {**fixed_settings(response, ("n_estimators", "max_depth")),
             "max_depth": int(default.get("max_depth", max(grid_values(response["max_depth"]))))}
    return hyper, int(default.get("n_estimators", max(grid_values(response["n_estimators"]))))


def _net_benefits(models: tuple[PlanModel, PlanModel], X: pd.DataFrame, plans: Sequence[str],
                  eligible: np.ndarray, harm_weight: float) -> np.ndarray:
    """(n, P) P(response) - harm_weight x P(adverse event) of every plan, -inf where not
    valid for the patient's condition."""
    response, adverse = (m.predict_plans(X, plans) for m in models)
    return np.where(eligible, response - harm_weight * adverse, -np.inf)


def selection_optimism(train: pd.DataFrame, valid: pd.DataFrame, treatments: Sequence[str],
                       fit: Any, seed: int, harm_weight: float) -> dict[int, float]:
    """Per plan size k: the mean over the validation patients of what the best plan of k
    components promises by one half of the training patients' boosters minus what the
    other half's boosters give the same plan, both ways round (module docstring).

    ``fit(frame, outcome, seed)`` fits one booster with the learner's settings."""
    from precision_pain.plans import plan_eligibility

    ids = train["patient_id"].astype(str).unique()
    first = set(np.random.default_rng(seed).permutation(ids)[: len(ids) // 2])
    in_first = train["patient_id"].astype(str).isin(first).to_numpy()
    halves = [train.loc[in_first], train.loc[~in_first]]
    boosters = [(fit(h, "response", seed), fit(h, "adverse_event", seed + 1)) for h in halves]
    patients = valid.drop_duplicates("patient_id")
    X = build_features(patients)
    plans = tuple(plan_name(p) for p in valid_plans(None, treatments))
    sizes = np.array([len(parse_plan(p)) for p in plans])
    eligible = plan_eligibility(patients["condition"], [parse_plan(p) for p in plans])
    nets = [_net_benefits(b, X, plans, eligible, harm_weight) for b in boosters]
    rows = np.arange(len(X))
    optimism: dict[int, float] = {}
    for k in sorted(set(sizes.tolist())):
        gaps = []
        for chooser, checker in ((nets[0], nets[1]), (nets[1], nets[0])):
            masked = np.where(sizes[None, :] == k, chooser, -np.inf)
            pick = masked.argmax(axis=1)
            valid_rows = np.isfinite(masked[rows, pick])
            gaps.append(masked[rows, pick][valid_rows] - checker[rows, pick][valid_rows])
        both = np.concatenate(gaps)
        optimism[int(k)] = float(both.mean()) if len(both) else 0.0
    return optimism


def refit_plan_models(models: PlanModels, episodes: pd.DataFrame, settings: Mapping[str, Any],
                      seed: int, engine: Any = LOCAL) -> PlanModels:
    """The same boosters (settings, seeds, numbers of trees) fitted again on ``episodes``
    (every split, for the deployed bundle of the pooled learner's ``refit_on_all``)."""
    episodes = modelable(episodes, models.treatments)
    r_hyper, r_trees = _response_settings(settings)
    a_hyper = fixed_settings(settings["adverse_event"], ("n_estimators",))
    a_trees = int(models.summary["plan_adverse_event_n_estimators"])
    seed = seed + _SEED_OFFSET
    response = fit_plan_outcome(episodes, "response", r_trees, seed, models.treatments, r_hyper,
                                engine)
    adverse = fit_plan_outcome(episodes, "adverse_event", a_trees, seed + 1, models.treatments,
                               a_hyper, engine)
    log.info("plan learner refitted on %d episodes (every split)", len(episodes))
    return PlanModels(response, adverse, models.plans,
                      {**models.summary, "plan_refit_on_all": 1.0}, plan_counts(episodes))


def _fmt(values: Mapping[int, float]) -> str:
    return ", ".join(f"{k}: {v:.4f}" for k, v in values.items())


def fit_plan_models(train: pd.DataFrame, valid: pd.DataFrame, treatments: Sequence[str],
                    settings: Mapping[str, Any], seed: int, engine: Any = LOCAL,
                    harm_weight: float = 0.5) -> PlanModels:
    """Both plan boosters over the episodes of ``treatments`` (settings: the pooled
    learner's, ``model.hyperparameters.pooled_xgboost``), and with
    ``plan_optimism_correction`` the ranking's correction for the winner's curse at
    ``harm_weight`` (:func:`selection_optimism`)."""
    treatments = tuple(treatments)
    train, valid = modelable(train, treatments), modelable(valid, treatments)
    adverse = settings["adverse_event"]
    r_hyper, r_trees = _response_settings(settings)
    a_hyper = fixed_settings(adverse, ("n_estimators",))
    a_grid = grid_values(adverse["n_estimators"])
    seed = seed + _SEED_OFFSET
    big_ae = fit_plan_outcome(train, "adverse_event", max(a_grid), seed + 1, treatments,
                              a_hyper, engine)
    a_trees, losses = _adverse_event_trees(big_ae, valid, a_grid)
    resp_model = fit_plan_outcome(train, "response", r_trees, seed, treatments, r_hyper, engine)
    ae_model = big_ae.sliced(a_trees)
    valid_loss = _log_loss(resp_model.predict_proba(build_features(valid), episode_plans(valid)),
                           valid["response"].to_numpy(float))
    fitted_on = train
    if settings.get("refit_on_validation", False):
        both = fitted_on = pd.concat([train, valid], ignore_index=True)
        resp_model = fit_plan_outcome(both, "response", r_trees, seed, treatments, r_hyper,
                                      engine)
        ae_model = fit_plan_outcome(both, "adverse_event", a_trees, seed + 1, treatments,
                                    a_hyper, engine)
    correction = {}
    if settings.get("plan_optimism_correction", False):
        def fit(frame: pd.DataFrame, outcome: str, s: int) -> PlanModel:
            trees, hyper = ((r_trees, r_hyper) if outcome == "response" else (a_trees, a_hyper))
            return fit_plan_outcome(frame, outcome, trees, s, treatments, hyper, engine)

        optimism = selection_optimism(train, valid, treatments, fit, seed + 2, harm_weight)
        correction = {**{f"plan_selection_optimism_{k}": v for k, v in optimism.items()},
                      **{f"plan_ranking_penalty_{k}": max(0.0, v - optimism.get(1, 0.0))
                         for k, v in optimism.items()}}
        log.info("plan learner: selection optimism by plan size %s (net benefit at harm "
                 "weight %g); the ranking subtracts %s", _fmt(optimism), harm_weight,
                 _fmt({k: correction[f"plan_ranking_penalty_{k}"] for k in optimism}))
    multi = pd.Series(episode_plans(train)).str.contains(SEPARATOR, regex=False)
    summary = {**correction, "plan_train_episodes": float(len(train)),
               "plan_train_multi_component_episodes": float(multi.sum()),
               "plan_response_max_depth": float(r_hyper["max_depth"]),
               "plan_response_n_estimators": float(r_trees),
               "plan_adverse_event_n_estimators": float(a_trees),
               "plan_valid_response_log_loss": valid_loss,
               "plan_valid_adverse_event_log_loss": losses[a_trees],
               "plan_refit_on_validation": float(bool(settings.get("refit_on_validation")))}
    log.info("plan learner: %d training episodes (%d plans of 2+ components); response depth "
             "%d, %d trees; adverse event %d trees (validation log-loss %s)", len(train),
             int(multi.sum()), r_hyper["max_depth"], r_trees, a_trees,
             " / ".join(f"{v:.4f}" for v in losses.values()))
    plans = tuple(plan_name(p) for p in valid_plans(None, treatments))
    return PlanModels(resp_model, ae_model, plans, summary, plan_counts(fitted_on))
