"""Evaluation of the plan learner against the per-plan ground truth (synthetic cohorts).

Run by ``precision-pain evaluate`` when the bundle carries the plan learner
(:mod:`precision_pain.models.plan_model`) and a per-plan truth is available
(``data.plan_truth``: by default the synthetic cohort's, written by ``simulate`` with
``simulate.plans: true``; or a bring-your-own extract's own, :func:`plan_truth_path`). On
the test split's patients, the true net benefit (P(response) - harm_weight x P(serious
adverse event), from the truth) of each patient's first-ranked plan is compared with:

- ``oracle``: the plan with the highest true net benefit among the patient's valid plans;
- ``best_single_for_everyone``: the one treatment (a one-component plan) valid for every
  patient with the highest mean true net benefit: the single-treatment evaluation's
  one-size-fits-all reference;
- ``best_plan_for_everyone``: the one plan (any size) valid for every patient with the
  highest mean true net benefit;
- ``single_recommender``: the bundle's single-treatment recommender's first choice (the
  ranking ``predict`` ships, guideline checks and non-opioid-first included), a one-component
  plan.

The model's first choice is ranked exactly as ``predict`` ranks plans
(:func:`precision_pain.predict.plans.score_plans`: plan checks, non-opioid-first). The
headline is the share of the oracle's gain over the best single treatment for everyone that
each policy captures, (V_policy - V_single) / (V_oracle - V_single), with percentile
intervals from resampling test patients (``evaluate.n_bootstrap``, ``evaluate.seed``).

No doubly robust value over plans: it would need P(plan | features) for each of the
hundred-odd plans from the episodes observed, most of which a test split holds a handful
of times; the inverse weights would rest on a few patients per plan. ``off_policy`` reports
the counts that say so.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from precision_pain.config import DataParams
from precision_pain.data.contract.errors import _KEEP_ROWS, ContractError, Problem
from precision_pain.data.features import build_features
from precision_pain.evaluate import policy as pol
from precision_pain.evaluate.metrics import estimate_with_ci
from precision_pain.models.bundle import ModelBundle
from precision_pain.models.plan_model import episode_plans
from precision_pain.plans import SEPARATOR
from precision_pain.predict.plans import score_plans
from precision_pain.predict.preferences import patient_preferences

POLICIES: tuple[str, ...] = ("model", "oracle", "best_single_for_everyone",
                             "best_plan_for_everyone", "single_recommender")


PLAN_TRUTH_REQUIRED: tuple[str, ...] = ("patient_id", "plan", "p_response", "p_adverse_event")
PLAN_TRUTH_FIX = "write one row per (patient, plan): docs/data-contract.md, \"Per-plan truth\""


def plan_truth_path(data: DataParams, has_truth: bool) -> Path | None:
    """The per-plan truth ``evaluate`` scores plans against, or None.

    ``data.plan_truth`` (default: the synthetic cohort's, ``data.synthetic_plan_truth``) is
    used when the run has a ground truth at all, unless it is the synthetic cohort's file
    while ``data.cohort`` is another cohort: a bring-your-own extract is scored only
    against its own per-plan truth."""
    path = data.plan_truth or data.synthetic_plan_truth
    if not has_truth or path is None:
        return None
    synthetic_file = (data.synthetic_plan_truth is not None
                      and Path(path) == Path(data.synthetic_plan_truth))
    if synthetic_file and Path(data.cohort) != Path(data.synthetic_cohort):
        return None
    return Path(path)


def _bad_rows(mask: np.ndarray) -> tuple[list[int], int]:
    rows = (np.flatnonzero(mask) + 1).tolist()
    return rows[:_KEEP_ROWS], len(rows)


def check_plan_truth(truth: pd.DataFrame, source: str | Path) -> pd.DataFrame:
    """A per-plan truth table, checked (every problem at once, as a ContractError naming
    the file, columns and rows) and with canonical plan names (components in registry
    order, so ``duloxetine+physical_therapy`` and ``physical_therapy + duloxetine`` agree)."""
    from precision_pain.plans import parse_plan, plan_name

    missing = [c for c in PLAN_TRUTH_REQUIRED if c not in truth.columns]
    if missing:
        raise ContractError(source, [Problem(None, f"missing required columns: "
                                             f"{', '.join(missing)}", PLAN_TRUTH_FIX)])
    problems: list[Problem] = []
    names: dict[str, str | None] = {}
    for text in pd.unique(truth["plan"].astype(str)):
        try:
            names[text] = plan_name(parse_plan(text))
        except (KeyError, ValueError):
            names[text] = None
    canonical = truth["plan"].astype(str).map(names)
    unknown = canonical.isna().to_numpy()
    if unknown.any():
        rows, count = _bad_rows(unknown)
        problems.append(Problem("plan", "name no valid plan", "write registry treatment "
                                "names joined by '+' (docs/predictions.md, plans)", rows, count,
                                sorted(truth.loc[unknown, "plan"].astype(str).unique())[:5]))
    for column in ("p_response", "p_adverse_event"):
        values = pd.to_numeric(truth[column], errors="coerce").to_numpy(float)
        bad = ~((values >= 0) & (values <= 1))
        if bad.any():
            rows, count = _bad_rows(bad)
            problems.append(Problem(column, "are not probabilities in [0, 1]",
                                    "write each plan's true probability", rows, count,
                                    sorted(truth.loc[bad, column].astype(str).unique())[:5]))
    keys = pd.DataFrame({"id": truth["patient_id"].astype(str), "plan": canonical})
    repeated = keys.duplicated(keep=False).to_numpy() & ~unknown
    if repeated.any():
        rows, count = _bad_rows(repeated)
        problems.append(Problem("plan", "repeat a (patient_id, plan) pair",
                                "keep one row per patient and plan", rows, count))
    if problems:
        raise ContractError(source, problems)
    return truth.assign(plan=canonical, patient_id=truth["patient_id"].astype(str),
                        **{c: pd.to_numeric(truth[c]) for c in ("p_response", "p_adverse_event")})


def true_plan_net(truth: pd.DataFrame, ids: np.ndarray, plans: tuple[str, ...],
                  eligible: np.ndarray, harm_weight: float) -> np.ndarray:
    """(n, P) true net benefit of every plan for every patient (NaN where not valid)."""
    long = truth.rename(columns={"plan": "treatment"})
    p_resp = pol.wide(long, "p_response", ids, plans)
    p_ae = pol.wide(long, "p_adverse_event", ids, plans)
    net = p_resp - harm_weight * p_ae
    lacking = np.isnan(np.where(eligible, net, 0.0))
    if lacking.any():
        raise ValueError(f"the per-plan ground truth lacks rows for {int(lacking.sum())} test "
                         f"(patient, valid plan) pairs of {int(lacking.any(axis=1).sum())} "
                         "patients: it belongs to another cohort; regenerate it with the "
                         "cohort (`precision-pain simulate` with simulate.plans: true), or "
                         "give data.plan_truth a row for every patient and valid plan")
    return np.where(eligible, net, np.nan)


def plan_choices(patients: pd.DataFrame, bundle: ModelBundle, net: np.ndarray,
                 eligible: np.ndarray, harm_weight: float, non_opioid_first: bool
                 ) -> dict[str, np.ndarray]:
    """(n,) plan column of each policy for each patient (-1: none)."""
    from precision_pain.predict.recommend import score_patients

    plans_models = bundle.plan_models
    X = build_features(patients)
    prefs = patient_preferences(patients, plans_models.treatments, harm_weight)
    ranked = score_plans(patients, X, plans_models, prefs, non_opioid_first=non_opioid_first)
    single = np.array([SEPARATOR not in p for p in ranked.plans])
    filled = np.nan_to_num(net)  # only plans valid for every patient are candidates
    best_single = pol.best_single_treatment(filled, eligible & single)
    best_plan = pol.best_single_treatment(filled, eligible)
    scores = score_patients(patients, X, bundle, harm_weight, non_opioid_first=non_opioid_first)
    column = {p: j for j, p in enumerate(ranked.plans)}
    first = np.asarray(scores.treatments, dtype=object)[scores.order[:, 0]]
    recommender = np.array([column.get(t, -1) if ok else -1
                            for t, ok in zip(first, scores.eligible.any(axis=1))])
    n = len(patients)
    return {"model": ranked.first(), "oracle": pol.best_choice(net, eligible),
            "best_single_for_everyone": np.full(n, best_single),
            "best_plan_for_everyone": np.full(n, best_plan),
            "single_recommender": recommender}


def _values(net: np.ndarray, choice: np.ndarray) -> np.ndarray:
    rows = np.arange(len(net))
    return np.where(choice >= 0, net[rows, np.maximum(choice, 0)], np.nan)


def _replicate_means(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(1 + B,) weighted means: the point estimate, then each bootstrap replicate."""
    both = np.vstack([np.ones((1, weights.shape[1])), weights])
    ok = np.isfinite(values)
    return both[:, ok] @ values[ok] / both[:, ok].sum(axis=1)


def summarize_plans(values: dict[str, np.ndarray], weights: np.ndarray) -> dict[str, Any]:
    """Mean true net benefit per policy and its share of the oracle's gain, with CIs."""
    means = {p: _replicate_means(v, weights) for p, v in values.items()}
    base, oracle = means["best_single_for_everyone"], means["oracle"]
    gain = oracle - base
    out: dict[str, Any] = {"mean_true_net_benefit": {
        p: estimate_with_ci(m[0], m[1:]) for p, m in means.items()}}
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = {p: np.where(gain > 1e-12, (m - base) / gain, np.nan)
                  for p, m in means.items() if p not in {"oracle", "best_single_for_everyone"}}
    out["share_of_oracle_gain_over_best_single_for_everyone"] = {
        p: estimate_with_ci(s[0], s[1:]) for p, s in shares.items()}
    return out


def off_policy_feasibility(test: pd.DataFrame) -> dict[str, Any]:
    """Why no doubly robust value over plans: how thinly the test split covers them."""
    counts = pd.Series(episode_plans(test)).value_counts()
    return {"estimated": False, "observed_plans": int(len(counts)),
            "median_episodes_per_plan": float(counts.median()) if len(counts) else 0.0,
            "plans_with_fewer_than_10_episodes": int((counts < 10).sum()),
            "reason": "a propensity over plans would rest on a few episodes per plan"}


def evaluate_plans(test: pd.DataFrame, bundle: ModelBundle, truth: pd.DataFrame,
                   harm_weight: float, non_opioid_first: bool, n_bootstrap: int, seed: int
                   ) -> dict[str, Any]:
    """Plan-policy values on the test split's patients against the per-plan truth."""
    from precision_pain.evaluate.core import patient_weights
    from precision_pain.plans import parse_plan, plan_eligibility

    patients = test.drop_duplicates("patient_id").reset_index(drop=True)
    plans = bundle.plan_models.plans
    ids = patients["patient_id"].astype(str).to_numpy()
    eligible = plan_eligibility(patients["condition"], [parse_plan(p) for p in plans])
    net = true_plan_net(truth.assign(patient_id=truth["patient_id"].astype(str)), ids, plans,
                        eligible, harm_weight)
    choices = plan_choices(patients, bundle, net, eligible, harm_weight, non_opioid_first)
    values = {p: _values(net, c) for p, c in choices.items()}
    weights = patient_weights(ids, n_bootstrap, seed)
    sizes = np.array([len(parse_plan(p)) for p in plans])
    chosen_sizes = {p: {str(k): float(np.mean(sizes[c[c >= 0]] == k)) for k in (1, 2, 3)}
                    for p, c in choices.items() if p in {"model", "oracle"}}
    fixed = {p: plans[int(choices[p][0])] if len(ids) and choices[p][0] >= 0 else None
             for p in ("best_single_for_everyone", "best_plan_for_everyone")}
    return {**summarize_plans(values, weights),
            "first_choice_matches_oracle": float(np.mean(choices["model"] == choices["oracle"])),
            "first_choice_components": chosen_sizes, "fixed_choices": fixed,
            "n_patients": int(len(ids)), "n_plans": int(len(plans)),
            "off_policy": off_policy_feasibility(test)}


def plans_report(result: dict[str, Any]) -> str:
    """The evaluation report's section on plans (markdown)."""
    values = result["mean_true_net_benefit"]
    shares = result["share_of_oracle_gain_over_best_single_for_everyone"]
    lines = ["", "## Treatment plans", "",
             f"{result['n_patients']} test patients, {result['n_plans']} valid plans "
             "(docs/evaluation.md, \"Treatment plans\"). True net benefit of each policy's "
             "plan, and the share of the oracle's gain over the best single treatment for "
             "everyone it captures (95 % bootstrap intervals):", "",
             "| policy | mean true net benefit | share of oracle's gain |", "|---|---|---|"]
    for p in POLICIES:
        v = values[p]
        s = shares.get(p)
        share = (f"{s['estimate']:.3f} ({s['ci_low']:.3f} to {s['ci_high']:.3f})" if s
                 else ("1 (by definition)" if p == "oracle" else "0 (by definition)"))
        lines.append(f"| {p} | {v['estimate']:.4f} ({v['ci_low']:.4f} to {v['ci_high']:.4f}) "
                     f"| {share} |")
    sizes = result["first_choice_components"]
    lines += ["", "Components of the first choice (share of patients): model "
              + ", ".join(f"{k}: {v:.3f}" for k, v in sizes["model"].items()) + "; oracle "
              + ", ".join(f"{k}: {v:.3f}" for k, v in sizes["oracle"].items())
              + f". First choice = oracle's: {result['first_choice_matches_oracle']:.3f}. "
              f"Fixed choices: {result['fixed_choices']}.", "",
              "No doubly robust value over plans: the test split holds "
              f"{result['off_policy']['observed_plans']} distinct plans, a median of "
              f"{result['off_policy']['median_episodes_per_plan']:.0f} episodes each "
              f"({result['off_policy']['plans_with_fewer_than_10_episodes']} with fewer "
              "than 10).", ""]
    return "\n".join(lines)
