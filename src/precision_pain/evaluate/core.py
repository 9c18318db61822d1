"""Evaluate stage: can each model be trusted, and do patients fare better under it?

All on the held-out test split (docs/evaluation.md explains every number):

1. Per treatment model, on the test patients who received that treatment: AUC,
   Brier score, calibration slope and intercept with bootstrap CIs, and the
   data of a reliability plot, for response and for adverse events.
2. With a ground truth (the synthetic cohort): the true mean response and net
   benefit when test patients get the model's first choice (ranked exactly as
   the shipped recommender ranks, guideline checks included:
   :func:`precision_pain.predict.recommend.decide`), the oracle's, the best single
   treatment for everyone, simulated usual care and a random eligible treatment;
   the share of the oracle's gain the model captures; regret per patient; and
   the expected number of trials until a first response in the model's order,
   stepped-care order and the oracle's order.
3. Without a ground truth: the same policy values estimated from observed
   outcomes (direct method, IPW, doubly robust) with the bundle's propensity
   model, and overlap diagnostics. With a truth, each estimate sits beside the
   true value of the same policy.
4. Everything by ancestry and by sex.

With ``prepare.outcome: nrs_change`` (:mod:`precision_pain.outcome`, read from the bundle) the
response is the reduction in NRS pain in points: its models get RMSE, MAE, R^2 and a linear
calibration slope and intercept instead of AUC, Brier score and the logistic ones; policy
values are mean expected reductions (and net benefit in NRS points); with a truth, sqrt-PEHE
(the error of the predicted differences between a patient's eligible treatments) is
reported; expected trials until a first response, a binary notion, are left out.

One table with a row per test episode holds every per-patient quantity; every
summary (whole test split, each subgroup, each bootstrap replicate) is a
weighted mean over its rows, so the bootstrap is a matrix product. Bootstrap
weights resample patients (all episodes of a patient together).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from precision_pain.evaluate import policy as pol
from precision_pain.models.bundle import ModelBundle
from precision_pain.config import EvaluateParams
from precision_pain.data.contract.schema import measurement_columns
from precision_pain.data.features import build_features
from precision_pain.engine import LOCAL
from precision_pain.evaluate.metrics import (CONTINUOUS_METRICS, METRICS, bootstrap_weights,
                                             calibration_intercept, calibration_slope,
                                             estimate_with_ci, linear_calibration_slope,
                                             mean_error, outcome_metrics_ci)
from precision_pain.models.profile import SEVERITY_BANDS, severity_band
from precision_pain.predict.confidence import ConfidenceSettings, conformal_halfwidths
from precision_pain.predict.recommend import decide
from precision_pain.models.propensity import predict_propensity
from precision_pain.outcome import OutcomeSpec
from precision_pain.registry import OUTCOMES, eligibility

SUBGROUP_COLUMNS: tuple[str, ...] = ("ancestry", "sex")
POLICIES: tuple[str, ...] = ("model", "oracle", "one_size_fits_all", "usual_care", "random")
OPE_POLICIES: tuple[str, ...] = ("model", "one_size_fits_all", "usual_care", "random")
ORDERS: tuple[str, ...] = ("model", "stepped_care", "oracle")
VALUES: tuple[str, ...] = ("response", "net_benefit")
ESTIMATORS: tuple[str, ...] = ("dm", "ipw", "snipw", "dr")
# What the model policy's off-policy gain is measured against (summarize_ope's "gain").
GAIN_BASELINES: tuple[str, ...] = ("one_size_fits_all", "usual_care")
WITHIN: tuple[int, ...] = (1, 2, 3)
N_RELIABILITY_BINS = 10


@dataclass(frozen=True)
class Evaluation:
    """Headline, per-treatment, policy and subgroup metrics, plus data for the plots."""

    summary: dict[str, Any]
    per_treatment: dict[str, Any]
    policy: dict[str, Any] = field(default_factory=dict)
    subgroups: dict[str, Any] = field(default_factory=dict)
    curves: dict[str, pd.DataFrame] = field(default_factory=dict)


@dataclass(frozen=True)
class EpisodeScores:
    """Predictions of every treatment's models for every test episode, as (n, k) matrices."""

    patient_ids: np.ndarray
    treatments: tuple[str, ...]
    eligible: np.ndarray
    p_response: np.ndarray
    p_adverse_event: np.ndarray
    treated: np.ndarray  # (n,) column of the treatment received, -1 if not in the bundle

    def net_benefit(self, harm_weight: float) -> np.ndarray:
        """Predicted net benefit, P(response) - harm_weight * P(adverse event)."""
        return self.p_response - harm_weight * self.p_adverse_event


# ------------------------------------------------------------------------------ scoring
def score_test(test: pd.DataFrame, bundle: ModelBundle) -> EpisodeScores:
    """Every bundle model's prediction for every test episode."""
    X = build_features(test)
    treatments = tuple(bundle.treatments)
    predict = {o: bundle.scores(X, o) for o in OUTCOMES}
    lookup = {t: j for j, t in enumerate(treatments)}
    treated = np.array([lookup.get(str(t), -1) for t in test["treatment"]], dtype=np.int64)
    return EpisodeScores(test["patient_id"].astype(str).to_numpy(), treatments,
                  eligibility(test["condition"], treatments), predict["response"].astype(float),
                  predict["adverse_event"].astype(float), treated)


def model_ranks(test: pd.DataFrame, scores: EpisodeScores, harm_weight: float,
                non_opioid_first: bool = False) -> np.ndarray:
    """(n, k) rank of each treatment (1 = first choice) exactly as the shipped recommender ranks."""
    decided = decide(test, scores.treatments, scores.p_response, scores.p_adverse_event,
                     harm_weight, non_opioid_first=non_opioid_first)
    return np.asarray(decided.rank, dtype=float)


def patient_weights(patient_ids: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """(n_boot, n_rows) bootstrap counts that resample patients, all their episodes together."""
    codes, unique = pd.factorize(pd.Series(patient_ids))
    counts = bootstrap_weights(len(unique), n_boot, np.random.default_rng(seed))
    return counts[:, codes]


# ---------------------------------------------------------------------- model metrics
def model_metrics(test: pd.DataFrame, scores: EpisodeScores, weights: np.ndarray,
                  true: dict[str, np.ndarray] | None = None, engine: Any = LOCAL,
                  outcome: OutcomeSpec = OutcomeSpec()) -> dict[str, dict[str, Any]]:
    """Per treatment and outcome: metrics with bootstrap CIs on the treated test rows.

    With a ground truth, ``true_probability`` holds the same metrics for the true
    probabilities on the same rows: the best any model could score there. Each treatment's
    bootstrap is one task on ``engine`` (it receives only its rows' replicate weights).
    """
    arms = []
    for j, treatment in enumerate(scores.treatments):
        rows = scores.treated == j
        if rows.any():
            arms.append((treatment, {o: (outcome.values(test, o)[rows],
                                         _predictions(scores, o)[rows, j],
                                         None if true is None else true[o][rows, j],
                                         outcome.continuous and o == "response")
                                     for o in OUTCOMES}, weights[:, rows]))
    results = engine.map(_arm_metrics, arms, desc="bootstrap metrics", unit="treatment")
    return {arm[0]: result for arm, result in zip(arms, results)}


def _arm_metrics(arm: tuple[str, dict[str, tuple[Any, ...]], np.ndarray]
                 ) -> dict[str, Any]:
    _, outcomes, weights = arm
    return {o: _outcome_metrics(y, p, weights, p_true, continuous)
            for o, (y, p, p_true, continuous) in outcomes.items()}


def with_arm_sizes(per_treatment: dict[str, Any], bundle: ModelBundle, small_arm: int
                   ) -> dict[str, Any]:
    """Each treatment's training patients and events, and ``small_arm`` below ``small_arm``
    patients (wide intervals follow; the pooled learner borrows strength for them)."""
    counts = bundle.metadata.get("counts", {})
    out = {}
    for treatment, metrics in per_treatment.items():
        arm = counts.get(treatment, {})
        n = arm.get("n_train")
        out[treatment] = {**metrics, "training": {
            "patients": n, "responders": arm.get("n_train_responders"),
            "adverse_events": arm.get("n_train_adverse_events"),
            "small_arm": bool(n is not None and n < small_arm)}}
    return out


def _outcome_metrics(y: np.ndarray, p: np.ndarray, weights: np.ndarray,
                     p_true: np.ndarray | None, continuous: bool = False) -> dict[str, Any]:
    metrics = outcome_metrics_ci(y, p, weights, continuous)
    if p_true is None:
        return metrics
    ceiling = outcome_metrics_ci(y, p_true, weights, continuous)
    names = CONTINUOUS_METRICS if continuous else METRICS
    return {**metrics, "true_probability": {m: ceiling[m] for m in names},
            "against_truth": calibration_against_truth(p_true, p, weights, continuous)}


def interval_coverage(test: pd.DataFrame, scores: EpisodeScores, bundle: ModelBundle,
                      weights: np.ndarray, level: float
                      ) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """A change-in-pain bundle: per treatment, the share of its test patients whose observed
    change lies inside predict's prediction interval at ``level`` (``expected_nrs_change_low``
    / ``_high``; docs/predictions.md), with a bootstrap interval, and the interval's median
    half-width in NRS points (None: unbounded, too few calibration patients for the level);
    and over every treatment's test patients, the share inside per baseline severity band,
    with the band's number of patients (the point of the banded tables).

    predict cuts the interval to the NRS range, which every observed change lies in, so a
    change is inside it exactly when it is within the half-width of the prediction.
    """
    tables = bundle.metadata.get("nrs_change_conformal", {})
    observed = bundle.outcome.values(test, "response")
    baseline = test["pain_baseline"].to_numpy(dtype=float)
    out, inside_all, band_all = {}, [], []
    for j, treatment in enumerate(scores.treatments):
        rows = scores.treated == j
        if not rows.any() or treatment not in tables:
            continue
        half = conformal_halfwidths(tables[treatment], level, baseline[rows])
        inside = (np.abs(observed[rows] - scores.p_response[rows, j]) <= half).astype(float)
        w = weights[:, rows]
        median = float(np.median(half))
        out[treatment] = {"level": level, "halfwidth": None if np.isinf(median) else median,
                          "coverage": estimate_with_ci(inside.mean(), (w @ inside) / w.sum(axis=1))}
        inside_all.append(inside)
        band_all.append(severity_band(baseline[rows]))
    if not out:
        return out, {}
    inside, band = np.concatenate(inside_all), np.concatenate(band_all)
    by_band = {name: {"n": int((band == k).sum()),
                      "coverage": float(inside[band == k].mean()) if (band == k).any() else None}
               for k, name in enumerate(SEVERITY_BANDS)}
    return out, by_band


def not_recorded(episodes: pd.DataFrame) -> dict[str, float]:
    """Share of episodes with each measurement left empty (not recorded), where any is
    (a category reads back as '', a number as NaN)."""
    empty = {name: episodes[name].isna().to_numpy() | (episodes[name].astype(str) == "").to_numpy()
             for name in measurement_columns() if name in episodes}
    return {name: float(mask.mean()) for name, mask in empty.items() if mask.any()}


def calibration_against_truth(p_true: np.ndarray, p: np.ndarray, weights: np.ndarray,
                              continuous: bool = False) -> dict[str, dict[str, float]]:
    """Calibration slope and intercept with the true probability in place of the outcome.

    The same logistic recalibration as the observed-outcome metrics, fitted to the expected
    log-likelihood over the outcome's noise (``y`` = the true P(outcome), a soft label): the
    true probabilities themselves score exactly 1 and 0, so what is left is the model's own
    miscalibration, not the coin flips of a few hundred test outcomes.
    """
    both = np.vstack([np.ones((1, len(p))), weights])
    slope, intercept = ((linear_calibration_slope, mean_error) if continuous
                        else (calibration_slope, calibration_intercept))
    return {name: estimate_with_ci(values[0], values[1:]) for name, values in (
        ("calibration_slope", slope(p_true, p, both)),
        ("calibration_intercept", intercept(p_true, p, both)))}


def _predictions(scores: EpisodeScores, outcome: str) -> np.ndarray:
    return scores.p_response if outcome == "response" else scores.p_adverse_event


def reliability_table(test: pd.DataFrame, scores: EpisodeScores, n_bins: int = N_RELIABILITY_BINS,
                      outcome_spec: OutcomeSpec = OutcomeSpec()) -> pd.DataFrame:
    """Mean prediction vs observed rate in quantile bins, per treatment and outcome."""
    frames = []
    for j, treatment in enumerate(scores.treatments):
        rows = scores.treated == j
        for outcome in OUTCOMES:
            if rows.sum() >= n_bins:
                p = _predictions(scores, outcome)[rows, j]
                frames.append(_bins(p, outcome_spec.values(test, outcome)[rows], n_bins)
                              .assign(treatment=treatment, outcome=outcome))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(
        columns=["treatment", "outcome", "mean_predicted", "observed", "n"])


def _bins(p: np.ndarray, y: np.ndarray, n_bins: int) -> pd.DataFrame:
    ranks = pd.Series(p).rank(method="first").to_numpy()
    bin_id = np.minimum((ranks - 1) * n_bins // len(p), n_bins - 1).astype(int)
    frame = pd.DataFrame({"bin": bin_id, "p": p, "y": y}).groupby("bin")
    return pd.DataFrame({"mean_predicted": frame["p"].mean(), "observed": frame["y"].mean(),
                         "n": frame["y"].size()}).reset_index(drop=True)


# ----------------------------------------------------------------- per-episode columns
def true_matrices(scores: EpisodeScores, truth: pd.DataFrame, harm_weight: float,
                  outcome: OutcomeSpec = OutcomeSpec()) -> dict[str, np.ndarray]:
    """(n, k) true P(response) (or expected reduction in NRS points), P(adverse event) and
    net benefit of every test episode (``harm_weight`` in the response's units)."""
    ids, names = scores.patient_ids, scores.treatments
    truth = truth.assign(_response=outcome.truth_response(truth).to_numpy(float))
    p_resp = pol.wide(truth, "_response", ids, names)
    p_ae = pol.wide(truth, "p_adverse_event", ids, names)
    if np.isnan(np.where(scores.eligible, p_resp + p_ae, 0.0)).any():
        raise ValueError("ground truth lacks rows for some test (patient, eligible treatment) "
                         "pairs; regenerate it with the cohort (`dvc repro prepare`)")
    return {"response": p_resp, "adverse_event": p_ae,
            "net_benefit": p_resp - harm_weight * p_ae}


def truth_columns(scores: EpisodeScores, truth: pd.DataFrame, true: dict[str, np.ndarray],
                  ranks: np.ndarray, stepped_care: Sequence[str], continuous: bool = False
                  ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """True value under every policy, regret and trials (a responder outcome) or squared
    effect errors (a continuous one), per test episode; and the choices."""
    names = scores.treatments
    policies, single = _truth_policies(scores, truth, true["net_benefit"], ranks)
    columns = {f"true.{v}.{p}": pol.policy_value(m, true[v])
               for v in VALUES for p, m in policies.items()}
    if single < 0:  # no treatment open to every patient: no one-size policy to value (not 0)
        columns |= {f"true.{v}.one_size_fits_all": np.full(len(ranks), np.nan) for v in VALUES}
    columns |= {f"regret.{p}": columns["true.net_benefit.oracle"] - columns[f"true.net_benefit.{p}"]
                for p in policies}
    columns["match_oracle"] = (policies["model"] * policies["oracle"]).sum(axis=1)
    if continuous:
        columns["pehe.squared_error"] = effect_squared_error(scores.p_response, true["response"],
                                                             scores.eligible)
    else:
        columns |= _trial_columns(scores, true["response"], ranks, stepped_care)
    return columns, {"one_size_fits_all": names[single] if single >= 0 else None}


def effect_squared_error(predicted: np.ndarray, true: np.ndarray, eligible: np.ndarray
                         ) -> np.ndarray:
    """Per patient, the mean squared error of the predicted effects of the eligible treatments
    against their mean (the same centring for prediction and truth): (tau_hat - tau)^2
    averaged over the eligible treatments, where tau_t = mu_t - the patient's mean over them.
    With two treatments it is the squared error of the effect of one against the other over
    4, so sqrt(mean) = sqrt-PEHE (Hill 2011) / 2; NaN without an eligible treatment."""
    count = eligible.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        diff = np.where(eligible, predicted - true, 0.0)  # the centring is linear
        diff = np.where(eligible, diff - (diff.sum(axis=1) / count)[:, None], 0.0)
        return np.where(count > 0, (diff ** 2).sum(axis=1) / count, np.nan)


def _truth_policies(scores: EpisodeScores, truth: pd.DataFrame, true_net: np.ndarray,
                    ranks: np.ndarray) -> tuple[dict[str, np.ndarray], int]:
    k = len(scores.treatments)
    single = pol.best_single_treatment(true_net, scores.eligible)
    policies = {
        "model": first_choice_policy(ranks),
        "oracle": pol.one_hot(pol.best_choice(true_net, scores.eligible), k),
        "one_size_fits_all": pol.one_hot(np.full(len(true_net), single), k),
        "usual_care": usual_care_policy(scores, truth),
        "random": pol.uniform_eligible(scores.eligible),
    }
    return policies, single


def usual_care_policy(scores: EpisodeScores, truth: pd.DataFrame) -> np.ndarray:
    """(n, k) the truth's usual-care probabilities over the modeled treatments, renormalized
    (NaN rows where the truth has none)."""
    shape = (len(scores.patient_ids), len(scores.treatments))
    usual = np.nan_to_num(pol.wide(truth, "p_usual_care", scores.patient_ids, scores.treatments)
                          ) if "p_usual_care" in truth else np.full(shape, np.nan)
    usual_total = usual.sum(axis=1, keepdims=True)
    return np.divide(usual, usual_total, out=np.full(usual.shape, np.nan),
                     where=usual_total > 0)


def first_choice_policy(ranks: np.ndarray) -> np.ndarray:
    """(n, k) one-hot of each patient's first choice (rank 1; no row where none is ranked)."""
    first = np.where(np.isfinite(ranks).any(axis=1), np.argmin(ranks, axis=1), -1)
    return pol.one_hot(first, ranks.shape[1])


def _trial_columns(scores: EpisodeScores, true_response: np.ndarray, ranks: np.ndarray,
                   stepped_care: Sequence[str]) -> dict[str, np.ndarray]:
    n = len(true_response)
    orders = {"model": ranks,
              "stepped_care": pol.list_ranks(stepped_care, scores.treatments, n),
              "oracle": -true_response}
    columns = {}
    for name, order in orders.items():
        columns[f"trials.expected.{name}"] = pol.expected_trials(true_response, order,
                                                                 scores.eligible)
        for m in WITHIN:
            columns[f"trials.within_{m}.{name}"] = pol.response_within(
                true_response, order, scores.eligible, m)
    return columns


def logged_outcomes(episodes: pd.DataFrame, scores: EpisodeScores, propensity: np.ndarray,
                    harm_weight: float, outcome: OutcomeSpec) -> dict[str, pol.Logged]:
    """Observed outcomes, the models' predictions and the propensities, per value."""
    response = outcome.values(episodes, "response")
    observed = {"response": response,
                "net_benefit": response - harm_weight * episodes["adverse_event"].to_numpy(float)}
    mu = {"response": scores.p_response, "net_benefit": scores.net_benefit(harm_weight)}
    return {v: pol.Logged(scores.treated, observed[v], mu[v], propensity) for v in VALUES}


def choose_one_size_fits_all(episodes: pd.DataFrame, bundle: ModelBundle,
                             settings: EvaluateParams) -> str | None:
    """The one treatment a clinic would give everyone, learned from ``episodes``.

    The universally eligible treatment with the highest doubly robust net benefit on the
    episodes the models were fitted on (train + validation), with the bundle's own outcome
    and propensity models. Chosen there, the choice is as independent of the test split as
    the model's recommendations are, so the test split values both without the optimism of
    a maximum taken over its own noise (the winner's curse; docs/evaluation.md measures it).
    None without a propensity model or a treatment open to every patient.
    """
    if bundle.propensity is None or episodes.empty:
        return None
    scores = score_test(episodes, bundle)
    e = predict_propensity(bundle.propensity, episodes, list(scores.treatments))
    harm_weight = settings.harm_weight * bundle.outcome.harm_scale
    logged = logged_outcomes(episodes, scores, e, harm_weight, bundle.outcome)["net_benefit"]
    single = _best_single_by_dr(scores, logged, settings.propensity_clip)
    return scores.treatments[single] if single >= 0 else None


def ope_columns(test: pd.DataFrame, scores: EpisodeScores, ranks: np.ndarray,
                propensity: np.ndarray, settings: EvaluateParams,
                true: dict[str, np.ndarray] | None, outcome: OutcomeSpec = OutcomeSpec(),
                one_size_fits_all: str | None = None
                ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Per-episode DM/IPW/DR terms for each policy and outcome (and the truth, if known).

    ``one_size_fits_all``: the single treatment chosen without the test split
    (:func:`choose_one_size_fits_all`); used when it is open to every test patient, else the
    one with the highest DR value on the test split is (optimistic: its estimate is the
    largest of several noisy ones). The detail says which (``one_size_fits_all_chosen_on``).
    """
    k = len(scores.treatments)
    harm_weight = settings.harm_weight * outcome.harm_scale
    logged = logged_outcomes(test, scores, propensity, harm_weight, outcome)
    universal = scores.eligible.all(axis=0)
    given = scores.treatments.index(one_size_fits_all) if (
        one_size_fits_all in scores.treatments) else -1
    if given >= 0 and universal[given]:
        single, chosen_on = given, "training"
    else:
        single = _best_single_by_dr(scores, logged["net_benefit"], settings.propensity_clip)
        chosen_on = "test"
    policies = {"model": first_choice_policy(ranks),
                "random": pol.uniform_eligible(scores.eligible)}
    if single >= 0:  # else no treatment is eligible for every patient: no such policy
        policies["one_size_fits_all"] = pol.one_hot(np.full(len(ranks), single), k)
    columns: dict[str, np.ndarray] = {}
    for v in VALUES:
        columns[f"ope.observed.{v}"] = logged[v].outcome
        for name, matrix in policies.items():
            terms = pol.ope_terms(matrix, logged[v], settings.propensity_clip)
            columns |= {f"ope.{t}.{v}.{name}": terms[t] for t in ("dm", "dr", "wy")}
            columns[f"ope.w.{name}"] = terms["w"]
            if true is not None:
                columns[f"ope.true.{v}.{name}"] = pol.policy_value(matrix, true[v])
    diagnostics = pol.overlap_summary(logged["net_benefit"], scores.eligible, scores.treatments,
                                      settings.propensity_clip)
    return columns, {"one_size_fits_all": scores.treatments[single] if single >= 0 else None,
                     "one_size_fits_all_chosen_on": chosen_on if single >= 0 else None,
                     "overlap": diagnostics}


def _best_single_by_dr(scores: EpisodeScores, logged: pol.Logged, clip: float) -> int:
    """The universally eligible treatment with the highest DR net-benefit estimate."""
    k = len(scores.treatments)
    universal = np.flatnonzero(scores.eligible.all(axis=0))
    if universal.size == 0:
        return -1
    value = [pol.ope_terms(pol.one_hot(np.full(len(scores.treated), j), k), logged, clip)["dr"]
             .mean() for j in universal]
    return int(universal[int(np.argmax(value))])


def fit_columns(test: pd.DataFrame, scores: EpisodeScores, outcome: OutcomeSpec = OutcomeSpec()
                ) -> dict[str, np.ndarray]:
    """Observed outcome and the received treatment's prediction, per episode (NaN if unmodelled)."""
    rows = np.arange(len(scores.treated))
    got = np.clip(scores.treated, 0, None)
    known = scores.treated >= 0
    return {f"fit.{x}.{o}": np.where(known, v, np.nan)
            for o in OUTCOMES
            for x, v in (("y", outcome.values(test, o)),
                         ("p", _predictions(scores, o)[rows, got]))}


# ------------------------------------------------------------------------- summaries
def mean_with_ci(values: np.ndarray, weights: np.ndarray) -> dict[str, float]:
    """The mean of ``values`` with its interval over the (B, n) bootstrap ``weights``."""
    both = _with_point(weights)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = both @ values / both.sum(axis=1)
    return estimate_with_ci(means[0], means[1:])


def _with_point(weights: np.ndarray) -> np.ndarray:
    return np.vstack([np.ones((1, weights.shape[1])), weights])


def _means(table: pd.DataFrame, columns: Sequence[str], weights: np.ndarray) -> np.ndarray:
    """(1 + B, len(columns)) weighted means: the point estimate first, then each replicate."""
    both = _with_point(weights)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (both @ table[list(columns)].to_numpy(float)) / both.sum(axis=1, keepdims=True)


def summarize_truth(table: pd.DataFrame, weights: np.ndarray) -> dict[str, Any]:
    """True policy values with CIs, the share of the oracle's gain captured, regret."""
    values = {p: {f"mean_true_{v}": mean_with_ci(table[f"true.{v}.{p}"].to_numpy(), weights)
                  for v in VALUES} for p in POLICIES}
    m = _means(table, [f"true.net_benefit.{p}" for p in ("model", "oracle", "one_size_fits_all")],
               weights)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = (m[:, 0] - m[:, 2]) / (m[:, 1] - m[:, 2])
    share = np.where(m[:, 1] - m[:, 2] > 1e-12, share, np.nan)
    extra = {}
    if "pehe.squared_error" in table:
        pehe = np.sqrt(_means(table, ["pehe.squared_error"], weights)[:, 0])
        extra["sqrt_pehe"] = estimate_with_ci(pehe[0], pehe[1:])
    return {"values": values, **extra,
            "share_of_oracle_gain_captured": estimate_with_ci(share[0], share[1:]),
            "first_choice_matches_oracle": mean_with_ci(table["match_oracle"].to_numpy(), weights),
            "regret": {p: pol.regret_summary(table[f"regret.{p}"].to_numpy())
                       for p in POLICIES if p != "oracle"}}


def summarize_trials(table: pd.DataFrame, weights: np.ndarray) -> dict[str, Any]:
    """Expected trials until a first response and P(response within m), per order."""
    return {order: {"expected_trials": mean_with_ci(table[f"trials.expected.{order}"].to_numpy(),
                                                weights),
                    **{f"p_response_within_{m}": float(table[f"trials.within_{m}.{order}"].mean())
                       for m in WITHIN}}
            for order in ORDERS}


def summarize_ope(table: pd.DataFrame, weights: np.ndarray) -> dict[str, Any]:
    """Each estimator's value of each policy with CIs, the truth beside it, and weight ESS."""
    out: dict[str, Any] = {}
    for v in VALUES:
        out[v] = {}
        for name in OPE_POLICIES:
            if _ope_term_column(v, name) in table:
                out[v][name] = _ope_policy(table, weights, v, name)
    out["effective_sample_size"] = {
        name: pol.effective_sample_size(table[f"ope.w.{name}"].to_numpy())
        for name in OPE_POLICIES if f"ope.w.{name}" in table}
    out["gain"] = {v: {name: _ope_gain(table, weights, v, name) for name in GAIN_BASELINES
                       if name in out[v]} for v in VALUES}
    return out


def _ope_gain(table: pd.DataFrame, weights: np.ndarray, v: str, baseline: str
              ) -> dict[str, Any]:
    """The model policy's value minus ``baseline``'s, estimated patient by patient.

    Each patient's DR term of the model policy minus the baseline's (for usual care, the
    outcome observed), averaged: a paired difference, its interval from the same bootstrap
    draws for both. The two policies' separate intervals share the test patients' sampling
    noise and overlap even where the difference is clear; the paired one does not."""
    model, base = (table[_ope_term_column(v, p)].to_numpy() for p in ("model", baseline))
    result: dict[str, Any] = {"dr": mean_with_ci(model - base, weights)}
    truths = [_ope_true_column(v, p) for p in ("model", baseline)]
    if all(t in table for t in truths):
        true_value = float(table[truths[0]].mean() - table[truths[1]].mean())
        result["true"] = true_value
        result["estimate_minus_true"] = result["dr"]["estimate"] - true_value
        result["covers_true"] = bool(result["dr"]["ci_low"] <= true_value
                                     <= result["dr"]["ci_high"])
    return result


def _ope_term_column(v: str, name: str) -> str:
    """Each episode's DR term of policy ``name`` (usual care: the outcome observed)."""
    return f"ope.observed.{v}" if name == "usual_care" else f"ope.dr.{v}.{name}"


def _ope_true_column(v: str, name: str) -> str:
    """Each episode's true value under policy ``name`` (present with a ground truth)."""
    return f"true.{v}.usual_care" if name == "usual_care" else f"ope.true.{v}.{name}"


def _ope_policy(table: pd.DataFrame, weights: np.ndarray, v: str, name: str) -> dict[str, Any]:
    if name == "usual_care":  # on-policy: the observed mean is every estimator's answer
        result = {"observed_mean": mean_with_ci(table[_ope_term_column(v, name)].to_numpy(),
                                            weights)}
    else:
        estimates = pol.ope_estimates(
            {"dm": table[f"ope.dm.{v}.{name}"].to_numpy(),
             "dr": table[f"ope.dr.{v}.{name}"].to_numpy(),
             "w": table[f"ope.w.{name}"].to_numpy(), "wy": table[f"ope.wy.{v}.{name}"].to_numpy()},
            _with_point(weights))
        result = {e: estimate_with_ci(estimates[e][0], estimates[e][1:]) for e in ESTIMATORS}
    truth_column = _ope_true_column(v, name)
    if truth_column in table:
        true_value = float(table[truth_column].mean())
        key = "observed_mean" if name == "usual_care" else "dr"
        result["true"] = true_value
        result["estimate_minus_true"] = result[key]["estimate"] - true_value
    return result


def summarize_fit(table: pd.DataFrame, weights: np.ndarray, continuous: bool = False
                  ) -> dict[str, Any]:
    """Pooled metrics of the received treatment's models (every treatment's rows together);
    ``continuous``: the response's are those of a regressor."""
    out = {}
    for o in OUTCOMES:
        y, p = table[f"fit.y.{o}"].to_numpy(), table[f"fit.p.{o}"].to_numpy()
        known = ~np.isnan(p)
        out[o] = outcome_metrics_ci(y[known], p[known], weights[:, known],
                                    continuous and o == "response")
    return out


def summarize(table: pd.DataFrame, weights: np.ndarray, continuous: bool = False
              ) -> dict[str, Any]:
    """Every summary the table's columns allow, for one set of rows."""
    out: dict[str, Any] = {"n": len(table),
                           "models_pooled": summarize_fit(table, weights, continuous)}
    if "true.net_benefit.model" in table:
        out["policy"] = summarize_truth(table, weights)
    if "trials.expected.model" in table:
        out["trials"] = summarize_trials(table, weights)
    if "ope.observed.net_benefit" in table:
        out["off_policy"] = summarize_ope(table, weights)
    return out


def subgroup_summaries(table: pd.DataFrame, weights: np.ndarray, groups: pd.DataFrame,
                       engine: Any = LOCAL, continuous: bool = False
                       ) -> dict[str, dict[str, Any]]:
    """:func:`summarize` within each level of each subgroup column (each level one task on
    ``engine``, with only its rows)."""
    levels = []
    for column in groups.columns:
        labels = groups[column].astype("string").fillna("unknown").to_numpy()
        levels += [(column, str(level), table[labels == level].reset_index(drop=True),
                    weights[:, labels == level], continuous) for level in pd.unique(labels)]
    results = engine.map(_level_summary, levels, desc="bootstrap subgroups", unit="subgroup")
    out: dict[str, dict[str, Any]] = {column: {} for column in groups.columns}
    for (column, level, *_), result in zip(levels, results):
        out[column][level] = result
    return out


def _level_summary(level: tuple[str, str, pd.DataFrame, np.ndarray, bool]) -> dict[str, Any]:
    return summarize(level[2], level[3], level[4])


# ------------------------------------------------------------------------------ headline
def headline(per_treatment: dict[str, Any], overall: dict[str, Any], choices: dict[str, Any],
             n_patients: int, model_type: str, outcome: OutcomeSpec = OutcomeSpec()
             ) -> dict[str, Any]:
    """The compact summary for metrics/evaluation.json: scalars only."""
    response = ("rmse", "r2") if outcome.continuous else ("auc", "brier")
    summary: dict[str, Any] = {
        "model_type": model_type, "n_test_patients": n_patients,
        "has_ground_truth": "policy" in overall,
        **({"outcome": outcome.type} if outcome.continuous else {}),
        **{f"mean_response_{m}": _mean_metric(per_treatment, "response", m) for m in response},
        **{f"mean_adverse_event_{m}": _mean_metric(per_treatment, "adverse_event", m)
           for m in ("auc", "brier")},
        "response_calibration_slope": _slope_summary(per_treatment, ()),
    }
    if any("against_truth" in m["response"] for m in per_treatment.values()):
        summary["response_calibration_slope_true_probability"] = _slope_summary(
            per_treatment, ("true_probability",))
        summary["response_calibration_slope_against_truth"] = _slope_summary(
            per_treatment, ("against_truth",))
    if "policy" in overall:
        summary["policy"] = _headline_policy(overall, choices)
    if "trials" in overall:
        summary["trials"] = {o: {"expected": t["expected_trials"]["estimate"],
                                 **{f"within_{m}": t[f"p_response_within_{m}"] for m in WITHIN}}
                             for o, t in overall["trials"].items()}
    if "off_policy" in overall:
        summary["off_policy"] = _headline_ope(overall["off_policy"])
    return summary


def _slope_summary(per_treatment: dict[str, Any], path: Sequence[str]) -> dict[str, float]:
    """Min, max and share within 0.8-1.2 of the response calibration slopes over treatments
    (``path`` picks a nested block: the true probabilities', or the slope against the truth)."""
    slopes = []
    for m in per_treatment.values():
        block = m["response"]
        for key in path:
            block = block.get(key, {})
        slopes.append(block.get("calibration_slope", {}).get("estimate", float("nan")))
    finite = [s for s in slopes if np.isfinite(s)]
    return {"min": min(finite, default=float("nan")), "max": max(finite, default=float("nan")),
            "share_within_0.8_1.2": float(np.mean([0.8 <= s <= 1.2 for s in finite]))
            if finite else float("nan")}


def _mean_metric(per_treatment: dict[str, Any], outcome: str, metric: str) -> float:
    values = [m[outcome][metric]["estimate"] for m in per_treatment.values()]
    values = [v for v in values if np.isfinite(v)]
    return float(np.mean(values)) if values else float("nan")


def _headline_policy(overall: dict[str, Any], choices: dict[str, Any]) -> dict[str, Any]:
    truth = overall["policy"]
    out: dict[str, Any] = {p: {k: v["estimate"] for k, v in truth["values"][p].items()}
                           for p in POLICIES}
    out["one_size_fits_all"]["treatment"] = choices.get("one_size_fits_all")
    out["share_of_oracle_gain_captured"] = truth["share_of_oracle_gain_captured"]["estimate"]
    if "sqrt_pehe" in truth:
        out["sqrt_pehe"] = truth["sqrt_pehe"]["estimate"]
    out["first_choice_matches_oracle"] = truth["first_choice_matches_oracle"]["estimate"]
    out["regret"] = truth["regret"]["model"]
    return out


def headline_gain(off_policy: Mapping[str, Any], baseline: str) -> dict[str, Any] | None:
    """The headline's paired DR gain over ``baseline`` (one of GAIN_BASELINES) as
    ``{estimate, ci_low, ci_high}``, as evaluation.json holds it (``_ci_low`` / ``_ci_high``
    beside ``model_dr_gain_over_<baseline>``); None where there is no such gain."""
    key = f"model_dr_gain_over_{baseline}"
    if key not in off_policy:
        return None
    return {"estimate": off_policy[key], "ci_low": off_policy.get(f"{key}_ci_low"),
            "ci_high": off_policy.get(f"{key}_ci_high")}


def gain_evidence(summary: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]]:
    """Which off-policy block answers "better than one treatment for everyone?": the one
    cross-fitted over every patient (``off_policy_cross_fitted``, evaluate/crossfit.py) when
    evaluate computed it, else the test split's (``off_policy``); with its name."""
    crossed = summary.get("off_policy_cross_fitted")
    if isinstance(crossed, Mapping) and crossed:
        return "cross_fitted", crossed
    return "test_split", summary.get("off_policy", {})


def gain_not_shown(off_policy: Mapping[str, Any]) -> bool:
    """Whether the headline's paired DR gain over one-size-fits-all care has a 95 % interval
    that reaches 0, or none (NaN, or null as read back from the JSON file); False where there
    is no such gain: the report, the log and predict's evidence warn."""
    gain = headline_gain(off_policy, "one_size_fits_all")
    low = None if gain is None else gain["ci_low"]
    return gain is not None and not (isinstance(low, (int, float)) and low > 0)


def _headline_ope(ope: dict[str, Any]) -> dict[str, Any]:
    model = ope["net_benefit"]["model"]
    out = {"model_dr_net_benefit": model["dr"]["estimate"],
           "model_dr_ci_low": model["dr"]["ci_low"], "model_dr_ci_high": model["dr"]["ci_high"],
           "model_effective_sample_size": ope["effective_sample_size"]["model"]}
    if "true" in model:
        out |= {"model_true_net_benefit": model["true"],
                "model_dr_error": model["estimate_minus_true"]}
    for baseline, gain in ope["gain"]["net_benefit"].items():
        key = f"model_dr_gain_over_{baseline}"  # read back by headline_gain
        out |= {key: gain["dr"]["estimate"], f"{key}_ci_low": gain["dr"]["ci_low"],
                f"{key}_ci_high": gain["dr"]["ci_high"]}
        if "true" in gain:
            out[f"model_true_gain_over_{baseline}"] = gain["true"]
    return out


# ------------------------------------------------------------------------------- evaluate
def evaluate(test: pd.DataFrame, bundle: ModelBundle, truth: pd.DataFrame | None,
             settings: EvaluateParams, engine: Any = LOCAL,
             interval_level: float = ConfidenceSettings.nrs_interval_level,
             one_size_fits_all: str | None = None) -> Evaluation:
    """Model metrics, policy values (true and off-policy), trials and subgroups; ``engine``
    spreads the bootstrap over workers (per treatment and per subgroup). A change-in-pain
    bundle's prediction intervals are checked at ``interval_level`` (params'
    ``predict.nrs_interval_level``: the intervals predict writes). ``one_size_fits_all``: the
    single treatment the off-policy gain is measured against, chosen on the training
    episodes (:func:`choose_one_size_fits_all`); None chooses it on the test split."""
    scores = score_test(test, bundle)
    outcome = bundle.outcome
    harm_weight = settings.harm_weight * outcome.harm_scale  # in the response's units
    weights = patient_weights(scores.patient_ids, settings.n_bootstrap, settings.seed)
    has_truth = truth is not None and not truth.empty
    true = true_matrices(scores, truth, harm_weight, outcome) if has_truth else None
    per_treatment = with_arm_sizes(model_metrics(test, scores, weights, true, engine, outcome),
                                   bundle, settings.small_arm_patients)
    coverage, by_band = (interval_coverage(test, scores, bundle, weights, interval_level)
                         if outcome.continuous else ({}, {}))
    for treatment, block in coverage.items():
        per_treatment[treatment]["response"]["prediction_interval"] = block
    ranks = model_ranks(test, scores, harm_weight, settings.non_opioid_first)
    columns, choices = fit_columns(test, scores, outcome), {}
    if true is not None:
        truth_cols, choices = truth_columns(scores, truth, true, ranks, settings.stepped_care,
                                            outcome.continuous)
        columns |= truth_cols
    ope_detail: dict[str, Any] = {}
    if bundle.propensity is not None:
        e = predict_propensity(bundle.propensity, test, list(scores.treatments))
        ope_cols, ope_detail = ope_columns(test, scores, ranks, e, settings, true, outcome,
                                           one_size_fits_all)
        columns |= ope_cols
    table = pd.DataFrame(columns)
    overall = summarize(table, weights, outcome.continuous)
    groups = test[[c for c in SUBGROUP_COLUMNS if c in test]].reset_index(drop=True)
    detail = {**overall, "choices": {"truth": choices, "off_policy": {
        k: v for k, v in ope_detail.items() if k != "overlap"}},
        "overlap": ope_detail.get("overlap", {}),
        "propensity_model": _scalars(bundle.metadata.get("propensity", {})),
        "settings": {"harm_weight": settings.harm_weight, "n_bootstrap": settings.n_bootstrap,
                     "seed": settings.seed, "propensity_clip": settings.propensity_clip,
                     "outcome": outcome.type,
                     **({"adverse_event_nrs_points": outcome.adverse_event_nrs_points}
                        if outcome.continuous else {})}}
    summary = headline(per_treatment, overall, choices, int(test["patient_id"].nunique()),
                       bundle.model_type, outcome)
    not_modeled = {a["treatment"]: a["reason"] for a in bundle.metadata.get("not_modeled", [])}
    summary["n_treatments_modeled"] = len(bundle.treatments)
    if "off_policy" in summary and ope_detail.get("one_size_fits_all"):
        # the single treatment the DR gain is measured against (chosen without the truth),
        # and on which episodes: "training" (unbiased) or "test" (optimistic)
        summary["off_policy"]["one_size_fits_all_treatment"] = ope_detail["one_size_fits_all"]
        summary["off_policy"]["one_size_fits_all_chosen_on"] = ope_detail[
            "one_size_fits_all_chosen_on"]
    gaps = not_recorded(test)
    if gaps:
        summary["measurements_not_recorded"] = gaps
    if coverage:
        shares = [block["coverage"]["estimate"] for block in coverage.values()]
        summary["response_interval_coverage"] = {
            "level": interval_level, "mean": float(np.mean(shares)),
            "min": float(np.min(shares)), "max": float(np.max(shares)),
            "by_baseline": by_band}
    if not_modeled:
        summary["treatments_not_modeled"] = ", ".join(not_modeled)
        detail["not_modeled"] = not_modeled
    curves = _curves(test, scores, table, outcome)
    if true is not None and not outcome.continuous:
        curves["trials"] = trials_curve(scores, true["response"], ranks, settings.stepped_care)
    return Evaluation(summary, per_treatment, detail,
                      subgroup_summaries(table, weights, groups, engine, outcome.continuous),
                      curves)


def _scalars(tree: dict[str, Any]) -> dict[str, Any]:
    """``tree`` without lists (DVC metrics hold numbers, strings and nested mappings only)."""
    return {k: _scalars(v) if isinstance(v, dict) else v for k, v in tree.items()
            if not isinstance(v, (list, tuple))}


def _curves(test: pd.DataFrame, scores: EpisodeScores, table: pd.DataFrame,
            outcome: OutcomeSpec = OutcomeSpec()) -> dict[str, pd.DataFrame]:
    """Plot data: reliability bins, per-patient regret, trials-to-response curves."""
    curves = {"reliability": reliability_table(test, scores, outcome_spec=outcome)}
    regret = [c for c in table.columns if c.startswith("regret.") and c != "regret.oracle"]
    if regret:
        curves["regret"] = table[regret].rename(columns=lambda c: c.split(".", 1)[1])
    return curves


def trials_curve(scores: EpisodeScores, true_response: np.ndarray, ranks: np.ndarray,
                 stepped_care: Sequence[str]) -> pd.DataFrame:
    """Mean P(response within m trials) for m = 0..k, per order (model, stepped care, oracle)."""
    orders = {"model": ranks,
              "stepped_care": pol.list_ranks(stepped_care, scores.treatments, len(ranks)),
              "oracle": -true_response}
    frames = []
    for name, order in orders.items():
        survival, _ = pol.survival_curve(true_response, order, scores.eligible)
        within = 1.0 - survival.mean(axis=0)
        frames.append(pd.DataFrame({"order": name, "trials": np.arange(len(within)),
                                    "p_response_within": within}))
    return pd.concat(frames, ignore_index=True)
