"""Synthetic plan episodes: components' effects combined, interactions, usual care over plans.

Opt-in (``simulate.plans``); the default cohort never calls this module. Every valid plan
of the simulated treatments (:func:`precision_pain.plans.valid_plans`) gets a true
probability of response and of a serious adverse event for every patient, and usual care
gives a share ``simulate.plan_share`` of the episodes a plan of two or more components.

Efficacy (docs/synthetic-cohort.md, "Treatment plans"): each component's gain over placebo
is the single-treatment gain of the structural model, computed in the plan's context (a
plan with duloxetine phenoconverts the patient's CYP2D6 for its other components, with the
project's phenoconversion code). Gains combine sub-additively on the scale of the mean
relative NRS reduction: the largest counts in full, each further one by
:data:`PLAN_ADDED_SHARE` -- less when it shares its kind (drug with drug: similar central
mechanisms; COMBO-DN, Tesfaye et al., Pain 2013;154:2616: duloxetine plus pregabalin no
better than either drug at a high dose; Chaparro et al., Cochrane CD008943, 2012: combined
neuropathic pain drugs add modestly) than when it brings another modality (exercise or
psychological therapy with a drug: multidisciplinary rehabilitation beats usual care by a
small margin, Kamper et al., BMJ 2015;350:h444). The factors are approximations where the
evidence is thin; a one-component plan is the single treatment exactly. A longer plan
must earn its place: each component beyond the first multiplies the plan's gain by an
adherence factor (:data:`PLAN_ADHERENCE_PER_EXTRA_COMPONENT`; regimen complexity lowers
adherence, Claxton et al., Clin Ther 2001;23:1296).

Harms combine as independent events, ``1 - prod(1 - p_k)``, with the log odds ratio of each
interaction rule the plan fires added (:data:`PLAN_HARM_INTERACTIONS`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import pandas as pd
from scipy.special import expit, logit, ndtr

from precision_pain.data import pgx
from precision_pain.data.simulate import TruthArrays
from precision_pain.plans import (
    PLAN_RULES,
    Plan,
    fired_rules,
    plan_eligibility,
    plan_name,
    valid_plans,
)
from precision_pain.registry import CONDITIONS, TREATMENTS

# Share of a further component's gain that adds to the plan's (the largest counts in full).
PLAN_ADDED_SHARE: Mapping[str, float] = MappingProxyType({"same_kind": 0.35, "other_kind": 0.6})
# Burden of a longer plan: each component beyond the first multiplies the whole plan's
# delivered gain by this adherence factor (approx.). Adherence falls as a regimen grows:
# 79 % with one daily dose, 69 % with two, 65 % with three (Claxton et al., Clin Ther
# 2001;23:1296), about 0.87 of the previous level per added dose; up to 70 % of patients do
# not fully adhere to prescribed home exercise (Jack et al., Man Ther 2010;15:220). A plan
# that holds a component with its own regimen asks more of the patient for each one.
PLAN_ADHERENCE_PER_EXTRA_COMPONENT = 0.85
# Log odds ratio of a serious adverse event added when a plan fires an interaction rule.
# gabapentinoid + opioid: Gomes 2017 (opioid-related death OR 1.49 with gabapentin); the
# serotonergic, TCA-exposure and bleeding interactions: direction from the US labels, size
# approx. (OR 1.5).
PLAN_HARM_INTERACTIONS: Mapping[str, float] = MappingProxyType({
    "gabapentinoid_opioid": math.log(1.49),
    "serotonergic_tramadol_snri": math.log(1.5),
    "serotonergic_tramadol_tca": math.log(1.5),
    "snri_tca": math.log(1.5),
    "snri_nsaid_bleeding": math.log(1.5),
})
# Usual care mixes this share of a uniform choice over the valid multi-component plans into
# its confounded choice among them (overlap: every valid plan can be given).
PLAN_UNIFORM_MIX = 0.2

_RULE_NAMES = {r.name for r in PLAN_RULES}
if set(PLAN_HARM_INTERACTIONS) - _RULE_NAMES:  # pragma: no cover - a table typo
    raise ValueError(f"PLAN_HARM_INTERACTIONS names unknown plan rules: "
                     f"{sorted(set(PLAN_HARM_INTERACTIONS) - _RULE_NAMES)}")


@dataclass(frozen=True)
class PlanTruth(TruthArrays):
    """The simulator's truth arrays over ``plans``."""

    plans: tuple[Plan, ...]


@dataclass(frozen=True)
class _Components:
    """Per inhibitor context: (n, T) gains and harm log odds of every simulated treatment."""

    gain: np.ndarray
    harm_logit: np.ndarray


def _contexts(patients: pd.DataFrame, names: Sequence[str], plans: Sequence[Plan]
              ) -> dict[tuple[str, ...], _Components]:
    """Component effects once per distinct set of in-plan CYP2D6 inhibitors."""
    from precision_pain.data.simulate import _gains, _harm_logit, _modifiers

    cond = pd.Categorical(patients["condition"], categories=CONDITIONS).codes
    out = {}
    for inhibitors in sorted({_inhibitors(p) for p in plans}):
        context = pgx.with_inhibitor_drugs(patients, inhibitors) if inhibitors else patients
        z = _modifiers(context)
        out[inhibitors] = _Components(_gains(z, cond, names), _harm_logit(z, names))
    return out


def _inhibitors(plan: Plan) -> tuple[str, ...]:
    return tuple(t for t in plan if t in pgx.CYP2D6_INHIBITORS)


def combine_gains(gains: np.ndarray, kinds: Sequence[str]) -> np.ndarray:
    """(n,) plan gain from (n, k) component gains: sub-additive (:data:`PLAN_ADDED_SHARE`).

    Per row the components are taken largest gain first; the first counts in full, each
    later one by the same-kind share if an earlier one has its kind, else the other-kind one.
    """
    order = np.argsort(-gains, axis=1, kind="stable")
    ranked = np.take_along_axis(gains, order, axis=1)
    kind_codes = np.array([list(dict.fromkeys(kinds)).index(k) for k in kinds])[order]
    weight = np.ones_like(ranked)
    for j in range(1, ranked.shape[1]):
        seen = (kind_codes[:, :j] == kind_codes[:, j:j + 1]).any(axis=1)
        weight[:, j] = np.where(seen, PLAN_ADDED_SHARE["same_kind"], PLAN_ADDED_SHARE["other_kind"])
    return (ranked * weight).sum(axis=1)


def combine_harms(harm_logits: np.ndarray, interaction: float) -> np.ndarray:
    """(n,) P(serious adverse event) of a plan: independent harms, plus the interaction log OR."""
    if harm_logits.shape[1] == 1 and interaction == 0.0:
        return expit(harm_logits[:, 0])
    none = np.prod(1.0 - expit(harm_logits), axis=1)
    return expit(logit(1.0 - none) + interaction)


def plan_truth(patients: pd.DataFrame, names: Sequence[str], single_scores: np.ndarray,
               response_sd: float, threshold: float, plan_share: float,
               single_usual_care: np.ndarray) -> PlanTruth:
    """The truth under every valid plan of ``names`` for every patient.

    ``single_scores`` (n, T) are usual care's log-weights per treatment and
    ``single_usual_care`` (n, T) its probabilities over single treatments.
    """
    from precision_pain.data.simulate import _modifiers, _prognosis, expected_clipped_change

    plans = valid_plans(None, names)
    contexts = _contexts(patients, names, plans)
    prognosis = _prognosis(_modifiers(patients))
    eligible = plan_eligibility(patients["condition"], plans)
    mu = np.column_stack([prognosis + _plan_gain(contexts[_inhibitors(p)], names, p)
                          for p in plans])
    harm = np.column_stack([_plan_harm(contexts[_inhibitors(p)], names, p) for p in plans])
    usual = _plan_usual_care(plans, names, eligible, single_scores, single_usual_care,
                             plan_share)
    return PlanTruth(plans=plans, eligible=eligible, mean_reduction=mu,
                     p_response=ndtr((mu - threshold) / response_sd), p_adverse_event=harm,
                     p_usual_care=usual, expected_nrs_change=expected_clipped_change(
                         patients["pain_baseline"].to_numpy(), mu, response_sd))


def _plan_gain(components: _Components, names: Sequence[str], plan: Plan) -> np.ndarray:
    idx = [names.index(t) for t in plan]
    return (combine_gains(components.gain[:, idx], [TREATMENTS[t].kind for t in plan])
            * plan_adherence(len(plan)))


def plan_adherence(n_components: int) -> float:
    """Share of a plan's gain delivered, given its size (1 for a single treatment)."""
    return PLAN_ADHERENCE_PER_EXTRA_COMPONENT ** (n_components - 1)


def _plan_harm(components: _Components, names: Sequence[str], plan: Plan) -> np.ndarray:
    idx = [names.index(t) for t in plan]
    interaction = sum(PLAN_HARM_INTERACTIONS.get(r.name, 0.0) for r in fired_rules(plan))
    return combine_harms(components.harm_logit[:, idx], interaction)


def _plan_usual_care(plans: Sequence[Plan], names: Sequence[str], eligible: np.ndarray,
                     scores: np.ndarray, single: np.ndarray, share: float) -> np.ndarray:
    """(n, P): one-component plans keep (1 - share) x usual care's single choice; the
    multi-component ones share ``share``, by the sum of their components' log-weights."""
    from precision_pain.data.simulate import softmax_with_floor

    multi = np.array([len(p) > 1 for p in plans])
    out = np.zeros(eligible.shape)
    for j, p in enumerate(plans):
        if len(p) == 1:
            out[:, j] = (1.0 - share) * single[:, names.index(p[0])]
    plan_scores = np.column_stack([scores[:, [names.index(t) for t in p]].sum(axis=1)
                                   for p, m in zip(plans, multi) if m])
    ok = eligible[:, multi]
    chosen = softmax_with_floor(np.where(ok, plan_scores, -np.inf), ok, 0.0)
    uniform = ok / np.maximum(ok.sum(axis=1, keepdims=True), 1)
    out[:, multi] = share * ((1.0 - PLAN_UNIFORM_MIX) * chosen + PLAN_UNIFORM_MIX * uniform)
    return out


def plan_truth_frame(ids: np.ndarray, truth: PlanTruth) -> pd.DataFrame:
    """Long table: one row per (patient, plan), eligible or not."""
    n, k = truth.eligible.shape
    names = np.array([plan_name(p) for p in truth.plans], dtype=object)
    return pd.DataFrame({
        "patient_id": np.repeat(ids, k),
        "plan": np.tile(names, n),
        "n_components": np.tile(np.array([len(p) for p in truth.plans], dtype=np.int64), n),
        "eligible": truth.eligible.ravel(),
        "p_response": truth.p_response.ravel(),
        "p_adverse_event": truth.p_adverse_event.ravel(),
        "p_usual_care": truth.p_usual_care.ravel(),
        "expected_nrs_change": truth.expected_nrs_change.ravel(),
    })


PLAN_TRUTH_COLUMNS: tuple[str, ...] = (
    "patient_id", "plan", "n_components", "eligible", "p_response", "p_adverse_event",
    "p_usual_care", "expected_nrs_change",
)


def empty_plan_truth() -> pd.DataFrame:
    """The per-plan truth of a cohort simulated without plans: the columns, no rows (the
    pipeline declares the file either way, so evaluate's dependency cannot go stale)."""
    none = np.empty((0, 0))
    return plan_truth_frame(np.array([], dtype=object), PlanTruth(
        plans=(), eligible=none.astype(bool), mean_reduction=none, p_response=none,
        p_adverse_event=none, p_usual_care=none, expected_nrs_change=none))
