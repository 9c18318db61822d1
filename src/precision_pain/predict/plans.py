"""Ranked treatment plans per patient: the plan learner's scores, the plan checks, preferences.

When the bundle carries the plan learner (:mod:`precision_pain.models.plan_model`), predict
ranks every valid plan (:func:`precision_pain.plans.valid_plans`) of each patient's
condition as the single-treatment ranking ranks treatments
(:func:`precision_pain.predict.recommend.rank_order`), per patient:

1. plans valid for the patient's condition before every other one;
2. plans holding a modality the patient declines (``exclude_modalities``) after every
   accepted one;
3. plans a check says to avoid (a component's CPIC rule on the patient's effective
   phenotype in that plan, or an interaction rule:
   :func:`precision_pain.predict.plan_checks.check_plans`) after every allowed one: the
   model never overrides a check. A plan an ``exclude`` rule forbids (two opioids, two
   drugs of one class) is not a plan at all and is never scored;
4. with ``non_opioid_first``, plans holding an opioid after the patient's valid, allowed,
   accepted plans without one (CDC 2022, recommendation 2);
5. then by net benefit, P(response) - harm_weight * P(serious adverse event), with the
   patient's own harm weight where the ``harm_weight`` column gives one, less the plan
   learner's correction for the winner's curse of its size (``ranking_penalty``, 0 for
   one-component plans: :mod:`precision_pain.models.plan_model`); the difference is the
   ``ranking_score`` column.

Each listed plan is compared with the best single treatment: the single-treatment
recommender's first choice for the patient, valued by the plan learner (its one-component
plan), so the two net benefits come from one model.

Explanations: exact TreeSHAP of the plan learner, per outcome, split as
:func:`precision_pain.models.plan_model.split_contributions` says: each component's part
(why it is in the plan for this patient), the part of the plan's size, and the patient's
features that move the plan's prediction most.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from precision_pain.data.features import FEATURE_NAMES
from precision_pain.models.plan_model import PlanModels, treatment_parts
from precision_pain.plans import SEPARATOR, parse_plan, plan_eligibility
from precision_pain.predict.guidelines import NON_OPIOID_NOTE, opioid_demotion
from precision_pain.predict.plan_checks import PlanChecks, check_plans
from precision_pain.predict.preferences import Preferences
from precision_pain.predict.recommend import explain_matrix, format_numbers, rank_order
from precision_pain.registry import OUTCOMES, TREATMENTS

PLAN_COLUMNS: tuple[str, ...] = (
    "patient_id", "rank", "plan", "components", "n_components", "eligible", "p_response",
    "p_adverse_event", "net_benefit", "ranking_score", "harm_weight", "action", "rules",
    "note",
    "dose_guidance", "cyp2d6_effective_phenotype", "excluded_by_preference",
    "stewardship_note", "best_single_treatment", "best_single_net_benefit",
    "net_benefit_over_best_single", "training_episodes", "low_confidence", "confidence_reason",
    "explanation", "adverse_event_explanation",
)
# (patient, plan) pairs per booster call: one design matrix of this many rows (~25 MB).
_PAIRS_PER_CALL = 100_000
_OUTCOME_WORDS = {"response": "the chance of response", "adverse_event": "the risk of a "
                  "serious adverse event"}


@dataclass(frozen=True)
class RankedPlans:
    """Per patient (rows) and plan (columns): scores, checks, flags and ranks."""

    plans: tuple[str, ...]
    p_response: np.ndarray
    p_adverse_event: np.ndarray
    net_benefit: np.ndarray
    eligible: np.ndarray
    checks: PlanChecks
    excluded: np.ndarray
    demoted: np.ndarray
    harm_weight: np.ndarray
    order: np.ndarray  # (n, P) column index of the plan at each rank
    ranking_score: np.ndarray  # (n, P) net benefit less the plan size's ranking penalty

    def first(self) -> np.ndarray:
        """(n,) column of each patient's first-ranked plan (-1: no valid plan)."""
        return np.where(self.eligible.any(axis=1), self.order[:, 0], -1)


def membership(plans: Sequence[str], treatments: Sequence[str]) -> np.ndarray:
    """(T, P) bool: treatment t is a component of plan p."""
    parts = [set(parse_plan(p)) for p in plans]
    return np.array([[t in p for p in parts] for t in treatments], dtype=bool).reshape(
        len(treatments), len(plans))


def predict_eligible(X: pd.DataFrame, plan_models: PlanModels, plans: Sequence[str],
                     eligible: np.ndarray, outcome: str) -> np.ndarray:
    """(n, P) P(outcome) of the eligible (patient, plan) pairs, NaN elsewhere (never scored).

    Each tree is walked once per patient for all its plans
    (:mod:`precision_pain.models.plan_scoring`; the same values as xgboost's, about ten
    times faster); a stacked plan model goes through xgboost, one booster call per block of
    pairs (one design matrix)."""
    model = plan_models.model(outcome)
    if model.stack_ is None:
        from precision_pain.models.plan_model import condition_codes
        from precision_pain.models.plan_scoring import cached_scorer

        scorer = cached_scorer(model, plans, model.treatments)
        return scorer.predict(X.to_numpy(np.float32), condition_codes(X), eligible,
                              threads=None)
    out = np.full(eligible.shape, np.nan)
    rows, cols = np.nonzero(eligible)
    names = np.asarray(plans, dtype=object)
    for start in range(0, len(rows), _PAIRS_PER_CALL):
        r, c = rows[start:start + _PAIRS_PER_CALL], cols[start:start + _PAIRS_PER_CALL]
        out[r, c] = model.predict_proba(X.iloc[r], names[c])
    return out


def decide_plans(prepared: pd.DataFrame, plans: Sequence[str], treatments: Sequence[str],
                 p_response: np.ndarray, p_adverse_event: np.ndarray,
                 preferences: Preferences, *, non_opioid_first: bool = True,
                 eligible: np.ndarray | None = None,
                 penalty: np.ndarray | None = None) -> RankedPlans:
    """Checks and ranking of every plan for given scores (the model's, or any), ordered
    within each tier by net benefit less ``penalty`` (P,), the plan's ranking penalty."""
    plans = tuple(plans)
    if eligible is None:
        eligible = plan_eligibility(prepared["condition"], [parse_plan(p) for p in plans])
    checks = check_plans(prepared, plans)
    member = membership(plans, treatments)
    excluded = (preferences.excluded.astype(np.int64) @ member.astype(np.int64)) > 0
    weight = np.asarray(preferences.harm_weight, dtype=float)
    net = p_response - weight[:, None] * p_adverse_event
    opioid = np.array([any(TREATMENTS[t].opioid for t in parse_plan(p)) for p in plans],
                      dtype=bool)
    demoted = (opioid_demotion(eligible, checks.avoid, excluded, opioid) if non_opioid_first
               else np.zeros_like(excluded))
    score = net - (np.zeros(len(plans)) if penalty is None else np.asarray(penalty, float))
    order = rank_order(eligible, checks.avoid, np.nan_to_num(score, nan=-np.inf), plans,
                       demoted=demoted, excluded=excluded)
    return RankedPlans(plans, p_response, p_adverse_event, net, eligible, checks, excluded,
                       demoted, weight, order, score)


def score_plans(prepared: pd.DataFrame, X: pd.DataFrame, plan_models: PlanModels,
                preferences: Preferences, *, non_opioid_first: bool = True) -> RankedPlans:
    """The plan learner's P(response) and P(adverse event) of every valid plan, ranked.

    ``preferences`` are over ``plan_models.treatments``."""
    plans = plan_models.plans
    eligible = plan_eligibility(prepared["condition"], [parse_plan(p) for p in plans])
    p = {o: predict_eligible(X, plan_models, plans, eligible, o) for o in OUTCOMES}
    return decide_plans(prepared, plans, plan_models.treatments, p["response"],
                        p["adverse_event"], preferences, non_opioid_first=non_opioid_first,
                        eligible=eligible, penalty=plan_models.ranking_penalty(plans))


# --------------------------------------------------------------------------- explanations

def plan_shap(X: pd.DataFrame, plan_models: PlanModels, ranked: RankedPlans, depth: int,
              outcome: str) -> np.ndarray:
    """(n, depth, D + 1) exact SHAP (full plan design, bias last) of ranks 1..depth."""
    model = plan_models.model(outcome)
    plans = np.asarray(ranked.plans, dtype=object)[ranked.order[:, :depth]]
    phi = model.contributions_grouped(X, plans)  # the patient's features once for its plans
    return phi.reshape(len(X), depth, -1).astype(np.float32)


def _slots(plans: Sequence[str], treatments: Sequence[str]) -> np.ndarray:
    """(P, most components) each plan's components as indices into ``treatments``, in the
    plan's order; -1 past its last component (or for a component outside them)."""
    parsed = [parse_plan(p) for p in plans]
    index = {t: j for j, t in enumerate(treatments)}
    out = np.full((len(plans), max((len(p) for p in parsed), default=0)), -1, dtype=np.int64)
    for i, parts in enumerate(parsed):
        out[i, :len(parts)] = [index.get(t, -1) for t in parts]
    return out


def _join(texts: np.ndarray, more: np.ndarray, present: np.ndarray, separator: str
          ) -> np.ndarray:
    """Row-wise ``texts + separator + more`` where ``present`` (``more`` alone where texts is
    empty), ``texts`` elsewhere."""
    joined = np.where(texts == "", more, texts + separator + more)
    return np.where(present, joined, texts)


def plan_explanations(phi: np.ndarray, ranked: RankedPlans, X: pd.DataFrame,
                      treatments: Sequence[str], n_features: int, outcome: str) -> np.ndarray:
    """(n, depth) sentences: why each component is there, and the patient's features:
    'components, by how much each moves <outcome>: <component> (odds xA.BC), ...; plan size
    (odds xA.BC). patient: ...'. A component's part is its
    :func:`~precision_pain.models.plan_model.component_parts` value."""
    n, depth = phi.shape[:2]
    values = X.to_numpy(np.float32)
    out = np.full((n, depth), "", dtype=object)
    labels = np.full(n, "patient", dtype=object)
    names = np.array([TREATMENTS[t].label for t in treatments], dtype=object)
    slots = _slots(ranked.plans, treatments)
    rows = np.arange(n)
    f = len(FEATURE_NAMES)
    head = f"components, by how much each moves {_OUTCOME_WORDS[outcome]}: "
    for r in range(depth):
        features = np.hstack([phi[:, r, :f], phi[:, r, -1:]])  # the plan's columns -> bias
        about = explain_matrix(features, values, labels, n_features, outcome)
        parts = treatment_parts(phi[:, r].astype(float), treatments)
        words = np.full(n, "", dtype=object)
        for s in range(slots.shape[1]):
            k = slots[ranked.order[:, r], s]
            odds = format_numbers(np.exp(parts[rows, np.maximum(k, 0)]), ".2f")
            words = _join(words, names[np.maximum(k, 0)] + " (odds x" + odds + ")", k >= 0,
                          ", ")
        size = "plan size (odds x" + format_numbers(np.exp(phi[:, r, -2].astype(float)),
                                                    ".2f") + ")"
        out[:, r] = head + _join(words, size, np.ones(n, dtype=bool), ", ") + ". " + about
    return out


# --------------------------------------------------------------------------- the table

@dataclass(frozen=True)
class ComponentConfidence:
    """Per patient (rows) and treatment (columns, ``treatments``): the single-treatment
    flags that carry over to a plan holding the treatment (training ranges, propensity)."""

    treatments: tuple[str, ...]
    flag: np.ndarray
    reason: np.ndarray


def plan_confidence(ranked: RankedPlans, depth: int, episodes: dict[str, int],
                    min_episodes: int, components: ComponentConfidence | None
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n * depth,) training episodes, low_confidence and reasons of the listed plans: a plan
    fewer than ``min_episodes`` training patients received (its estimate rests on what its
    components did in other plans), and every flag of its components."""
    n = len(ranked.order)
    rows, cols = np.repeat(np.arange(n), depth), ranked.order[:, :depth].reshape(-1)
    counts = np.array([episodes.get(p, 0) for p in ranked.plans], dtype=np.int64)
    known = bool(episodes)  # bundles saved before the counts existed: no count flag
    few = known & (counts < min_episodes)
    count_text = np.array([f"{c} training patients received this plan (fewer than "
                           f"{min_episodes}): its estimate rests on what its components did "
                           "in other plans" for c in counts], dtype=object)
    flag = few[cols].copy()
    text = np.where(few[cols], count_text[cols], "").astype(object)
    if components is not None:
        slots = _slots(ranked.plans, components.treatments)
        names = np.asarray(components.treatments, dtype=object)
        for s in range(slots.shape[1]):
            k = slots[cols, s]
            hit = (k >= 0) & components.flag[rows, np.maximum(k, 0)]
            reason = names[np.maximum(k, 0)] + ": " + components.reason[rows, np.maximum(k, 0)]
            text = _join(text, reason, hit, "; ")
            flag |= hit
    return (counts[cols] if known else np.full(len(cols), -1, dtype=np.int64)), flag, text


def plan_table(ids: np.ndarray, ranked: RankedPlans, depth: int, best_single: np.ndarray,
               explanations: dict[str, np.ndarray],
               confidence: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
               ) -> pd.DataFrame:
    """The top ``depth`` plans of every patient, in patient then rank order.

    ``best_single`` (n,) names each patient's best single treatment ('' if none);
    ``confidence``: :func:`plan_confidence` of the listed plans."""
    n = len(ids)
    rows, cols = np.repeat(np.arange(n), depth), ranked.order[:, :depth].reshape(-1)
    pick = (rows, cols)
    plans = np.asarray(ranked.plans, dtype=object)
    single_col = {p: j for j, p in enumerate(ranked.plans) if SEPARATOR not in p}
    codes, names = pd.factorize(np.asarray(best_single, dtype=object))
    column = np.array([single_col.get(name, -1) for name in names], dtype=np.int64)[codes]
    single_net = np.where(column >= 0, ranked.net_benefit[np.arange(n), np.maximum(column, 0)],
                          np.nan)
    rules = np.array([";".join(r) for r in ranked.checks.rules], dtype=object)
    if confidence is None:
        confidence = (np.full(len(cols), -1, dtype=np.int64), np.zeros(len(cols), dtype=bool),
                      np.full(len(cols), "", dtype=object))
    episodes, low, reason = confidence
    stewardship = np.where(ranked.demoted[pick], NON_OPIOID_NOTE, "")
    return pd.DataFrame({
        "patient_id": np.repeat(ids, depth),
        "rank": np.tile(np.arange(1, depth + 1), n),
        "plan": plans[cols],
        "components": np.char.replace(plans[cols].astype(str), SEPARATOR, "; ").astype(object),
        "n_components": np.array([len(parse_plan(p)) for p in ranked.plans])[cols],
        "eligible": ranked.eligible[pick],
        "p_response": ranked.p_response[pick],
        "p_adverse_event": ranked.p_adverse_event[pick],
        "net_benefit": ranked.net_benefit[pick],
        "ranking_score": ranked.ranking_score[pick],
        "harm_weight": ranked.harm_weight[rows],
        "action": ranked.checks.action[pick],
        "rules": rules[cols],
        "note": ranked.checks.note[pick],
        "dose_guidance": ranked.checks.dose[pick],
        "cyp2d6_effective_phenotype": ranked.checks.cyp2d6_effective_phenotype[pick],
        "excluded_by_preference": ranked.excluded[pick],
        "stewardship_note": stewardship.astype(object),
        "best_single_treatment": np.asarray(best_single, dtype=object)[rows],
        "best_single_net_benefit": single_net[rows],
        "net_benefit_over_best_single": ranked.net_benefit[pick] - single_net[rows],
        "training_episodes": episodes,
        "low_confidence": low,
        "confidence_reason": reason,
        "explanation": explanations["response"].reshape(-1),
        "adverse_event_explanation": explanations["adverse_event"].reshape(-1),
    }, columns=list(PLAN_COLUMNS))


def plan_shap_frame(ids: np.ndarray, ranked: RankedPlans, phi: dict[str, np.ndarray],
                    treatments: Sequence[str]) -> pd.DataFrame:
    """Long SHAP table of the listed plans: patient_id, plan, outcome, rank, then every
    column of the plan design and ``bias`` (a row sums to that outcome's log-odds)."""
    from precision_pain.models.plan_model import plan_design_names

    names = [*plan_design_names(treatments), "bias"]
    frames = []
    for outcome, values in phi.items():
        n, depth, width = values.shape
        frame = pd.DataFrame(values.reshape(n * depth, width), columns=names)
        frame.insert(0, "patient_id", np.repeat(ids, depth))
        frame.insert(1, "plan", np.asarray(ranked.plans, dtype=object)[
            ranked.order[:, :depth].reshape(-1)])
        frame.insert(2, "outcome", outcome)
        frame.insert(3, "rank", np.tile(np.arange(1, depth + 1), n))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


@dataclass(frozen=True)
class PlanRecommendations:
    """The listed plans per patient and their SHAP values."""

    table: pd.DataFrame
    shap: pd.DataFrame


@dataclass(frozen=True)
class ExplainedPlans:
    """Every valid plan of each patient scored, checked and ranked, the top ``depth``
    explained: what :func:`plan_recommendations` compares with the best single
    treatments."""

    ranked: RankedPlans
    depth: int
    phi: dict[str, np.ndarray]    # outcome -> (n, depth, design + 1) SHAP values
    words: dict[str, np.ndarray]  # outcome -> (n, depth) explanations


def explain_plans(prepared: pd.DataFrame, X: pd.DataFrame, plan_models: PlanModels,
                  preferences: Preferences, depth: int, n_features: int,
                  non_opioid_first: bool = True, model_X: pd.DataFrame | None = None
                  ) -> ExplainedPlans:
    """Score, check and rank every plan; explain the top ``depth``. Needs nothing of the
    single-treatment models (``recommend`` runs it beside them). ``model_X``: X as the
    models score it (``ModelBundle.model_input``: missing values filled where training had
    none); the explanations describe X, the patient's own values."""
    model_X = X if model_X is None else model_X
    ranked = score_plans(prepared, model_X, plan_models, preferences,
                         non_opioid_first=non_opioid_first)
    depth = min(depth, len(ranked.plans))
    phi = {o: plan_shap(model_X, plan_models, ranked, depth, o) for o in OUTCOMES}
    words = {o: plan_explanations(phi[o], ranked, X, plan_models.treatments, n_features, o)
             for o in OUTCOMES}
    return ExplainedPlans(ranked, depth, phi, words)


def plan_recommendations(prepared: pd.DataFrame, plan_models: PlanModels,
                         explained: ExplainedPlans, best_single: np.ndarray,
                         components: ComponentConfidence | None = None,
                         min_plan_episodes: int = 20) -> PlanRecommendations:
    """The listed plans of :func:`explain_plans`, compared with ``best_single`` and flagged
    (:func:`plan_confidence`)."""
    ids = prepared["patient_id"].astype(str).to_numpy()
    ranked, depth = explained.ranked, explained.depth
    confidence = plan_confidence(ranked, depth, dict(plan_models.episodes), min_plan_episodes,
                                 components)
    return PlanRecommendations(
        plan_table(ids, ranked, depth, best_single, explained.words, confidence),
        plan_shap_frame(ids, ranked, explained.phi, plan_models.treatments))
