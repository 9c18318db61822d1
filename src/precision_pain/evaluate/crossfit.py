"""Cross-fitted evaluation: the doubly robust gain over one treatment for everyone, every patient.

The test split holds a sixth or so of an extract, and on 5,000 test patients a real gain of
0.05 in net benefit is shown (interval above 0) only about half the time (docs/evaluation.md).
Cross-fitting values the recommendations on every patient of the extract instead, each by
models that never saw them:

1. The patients are cut into ``folds`` groups at random (seeded by ``evaluate.seed``; all
   episodes of a patient in one group).
2. For each group: the learner in params.yaml's ``model`` is trained on the other groups
   exactly as ``precision-pain train`` trains the bundle ``evaluate`` scores (cut into train
   and validation by ``split``, the treatments to model chosen the same way, the propensity
   model fitted on their train part); the single treatment for everyone is chosen on those
   same episodes (:func:`precision_pain.evaluate.core.choose_one_size_fits_all`). The group's
   patients are ranked exactly as predict ranks them, guideline checks included, and each
   gets the doubly robust term of the recommendations' first choice, of the single treatment
   and of usual care (the outcome observed), from that fold's outcome and propensity models.
3. Each patient's paired difference is averaged over all patients; the 95 % interval comes
   from the bootstrap over patients (``evaluate.n_bootstrap``), the same draws for both
   policies.

What it estimates: the value of the *procedure* (train this learner on (folds - 1) / folds of
this extract, then follow its first choices) over one treatment for everyone, averaged over
the fitted models (Luedtke & van der Laan, Ann Stat 2016;44:713, cross-validated estimation
of a learned rule's value; cross-fitted doubly robust scores as in Athey & Wager,
Econometrica 2021;89:133). It is not the value of the one bundle ``train`` writes, which is
fitted on more patients; and the bootstrap over patients leaves out the variability of the
fits themselves, so its coverage is measured (``benchmarks/dr_coverage.py --cross-fitted``)
rather than assumed. With a ground truth, each patient's true gain under the same fold
policies sits beside the estimate; with a truth that records usual care's probabilities (the
synthetic cohort), so does the same DR gain valued with those in place of the fold's
propensity model, which tells the propensity model's share of the error from the rest.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from precision_pain.config import EvaluateParams, Params
from precision_pain.engine import LOCAL
from precision_pain.evaluate import policy as pol
from precision_pain.evaluate.core import (EpisodeScores, choose_one_size_fits_all,
                                          first_choice_policy, logged_outcomes, mean_with_ci,
                                          model_ranks, patient_weights, score_test,
                                          true_matrices, usual_care_policy)
from precision_pain.models.bundle import ModelBundle
from precision_pain.models.propensity import predict_propensity
from precision_pain.outcome import OutcomeSpec

BASELINES: tuple[str, ...] = ("one_size_fits_all", "usual_care")
# suffix of the gain valued with the truth's usual-care probabilities as the propensities
TRUE_PROPENSITY = "_with_true_propensity"


@dataclass(frozen=True)
class FoldTerms:
    """One fold's patients: their DR terms (and true values, with a truth) per policy."""

    patient_ids: np.ndarray
    dr: dict[str, np.ndarray]  # "model", "one_size_fits_all", "usual_care" (the outcome)
    true: dict[str, np.ndarray] | None
    one_size_fits_all: str | None
    n_train_patients: int
    # with a truth that carries usual care's probabilities: the same DR terms with those in
    # place of the fold's propensity model (the model's share of the error, a diagnostic)
    dr_true_propensity: dict[str, np.ndarray] | None = None


def assign_folds(patient_ids: pd.Series, folds: int, seed: int) -> np.ndarray:
    """Each row's fold (0 .. folds - 1), all rows of a patient in the same one."""
    unique = np.sort(patient_ids.astype(str).unique())
    if folds < 2 or folds > len(unique):
        raise ValueError(f"evaluate.cross_fitted_folds: {folds} folds for {len(unique)} "
                         "patients; use 0 (off) or 2 to the number of patients")
    order = np.random.default_rng(seed).permutation(len(unique))
    fold = np.empty(len(unique), dtype=np.int64)
    fold[order] = np.arange(len(unique)) % folds
    lookup = pd.Series(fold, index=unique)
    return lookup.loc[patient_ids.astype(str)].to_numpy()


def fold_terms(held: pd.DataFrame, rest: pd.DataFrame, params: Params,
               truth: pd.DataFrame | None, outcome: OutcomeSpec, engine: Any = LOCAL
               ) -> FoldTerms:
    """Train on ``rest`` as ``train`` would, choose the single treatment there, and value
    both policies on ``held`` (none of whose patients the models saw)."""
    settings = params.evaluate
    bundle = _fold_bundle(rest, params, outcome, engine)
    single = choose_one_size_fits_all(rest, bundle, settings)
    scores = score_test(held, bundle)
    harm_weight = settings.harm_weight * outcome.harm_scale
    k = len(scores.treatments)
    policies = {"model": first_choice_policy(
        model_ranks(held, scores, harm_weight, settings.non_opioid_first))}
    if single is not None and scores.eligible[:, scores.treatments.index(single)].all():
        policies["one_size_fits_all"] = pol.one_hot(
            np.full(len(held), scores.treatments.index(single)), k)
    e = predict_propensity(bundle.propensity, held, list(scores.treatments))
    dr = _dr_terms(policies, held, scores, e, harm_weight, outcome, settings.propensity_clip)
    true = dr_true_propensity = None
    if truth is not None:
        net = true_matrices(scores, truth, harm_weight, outcome)["net_benefit"]
        true = {name: pol.policy_value(matrix, net) for name, matrix in policies.items()}
        usual = usual_care_policy(scores, truth)
        true["usual_care"] = pol.policy_value(usual, net)
        if np.isfinite(usual).all():
            dr_true_propensity = _dr_terms(policies, held, scores, usual, harm_weight, outcome,
                                           settings.propensity_clip)
    return FoldTerms(scores.patient_ids, dr, true,
                     single if "one_size_fits_all" in policies else None,
                     int(rest["patient_id"].nunique()), dr_true_propensity)


def _dr_terms(policies: dict[str, np.ndarray], held: pd.DataFrame, scores: EpisodeScores,
              propensity: np.ndarray, harm_weight: float, outcome: OutcomeSpec, clip: float
              ) -> dict[str, np.ndarray]:
    """Each policy's per-patient DR net-benefit terms, and usual care's (the outcome seen)."""
    logged = logged_outcomes(held, scores, propensity, harm_weight, outcome)["net_benefit"]
    dr = {name: pol.ope_terms(matrix, logged, clip)["dr"] for name, matrix in policies.items()}
    dr["usual_care"] = logged.outcome
    return dr


def _fold_bundle(rest: pd.DataFrame, params: Params, outcome: OutcomeSpec, engine: Any
                 ) -> ModelBundle:
    """The learner trained on one fold's complement as ``train`` trains the evaluated
    bundle; a fold it cannot be trained on is an error that says which and how to skip."""
    from precision_pain.data.split import split_cohort
    from precision_pain.models.train import modeled_treatments, train_bundle

    parts = split_cohort(rest, params.split.valid_fraction, 0.0, params.split.seed)
    try:
        treatments, skipped = modeled_treatments(parts["train"], parts["valid"], params.model)
        bundle = train_bundle(parts["train"], parts["valid"], treatments, params.model,
                              params.prepare.response_threshold,
                              harm_weight=params.evaluate.harm_weight,
                              propensity_clip=params.evaluate.propensity_clip,
                              not_modeled=skipped, engine=engine, outcome=outcome)
    except ValueError as err:
        raise ValueError(f"cross-fitted evaluation: the learner could not be trained on "
                         f"{rest['patient_id'].nunique()} patients (one fold left out): {err} "
                         "(fewer folds, or evaluate.cross_fitted_folds: 0, skip it)") from err
    if bundle.propensity is None:
        raise ValueError("cross-fitted evaluation needs a propensity model: set "
                         "model.hyperparameters.propensity (or evaluate.cross_fitted_folds: 0)")
    return bundle


def not_cross_fitted(n_patients: int, settings: EvaluateParams) -> str | None:
    """Why an extract of ``n_patients`` gets no cross-fitted gains, or None if it does."""
    if not settings.cross_fitted_folds:
        return "evaluate.cross_fitted_folds is 0"
    if n_patients > settings.cross_fitted_max_patients:
        return (f"{n_patients} patients, more than evaluate.cross_fitted_max_patients = "
                f"{settings.cross_fitted_max_patients}: the test split alone holds enough")
    return None


def cross_fitted_gain(episodes: pd.DataFrame, params: Params, truth: pd.DataFrame | None,
                      outcome: OutcomeSpec, engine: Any = LOCAL,
                      on_fold: Callable[[], None] | None = None) -> dict[str, Any]:
    """The paired DR gains over one-size-fits-all care and over usual care, cross-fitted over
    ``params.evaluate.cross_fitted_folds`` folds of ``episodes`` (every split's
    single-treatment episodes); with ``truth``, the true gains of the same fold policies.
    ``on_fold`` is called after each fold (the CLI's progress bar)."""
    settings = params.evaluate
    fold = assign_folds(episodes["patient_id"], settings.cross_fitted_folds, settings.seed)
    episodes = episodes.reset_index(drop=True)
    terms = []
    for f in range(settings.cross_fitted_folds):
        terms.append(fold_terms(episodes[fold == f].reset_index(drop=True),
                                episodes[fold != f].reset_index(drop=True), params, truth,
                                outcome, engine))
        if on_fold is not None:
            on_fold()
    return summarize_folds(terms, settings.n_bootstrap, settings.seed)


def summarize_folds(terms: list[FoldTerms], n_bootstrap: int, seed: int) -> dict[str, Any]:
    """The folds' terms pooled: each gain with its bootstrap interval (patients resampled),
    which single treatment each fold compared against, and how many patients it valued."""
    ids = np.concatenate([t.patient_ids for t in terms])
    weights = patient_weights(ids, n_bootstrap, seed)
    model = np.concatenate([t.dr["model"] for t in terms])
    out: dict[str, Any] = {"folds": len(terms), "n_patients": int(pd.Series(ids).nunique()),
                           "n_train_patients_per_fold": int(min(t.n_train_patients
                                                                for t in terms))}
    out |= _flat("model_dr_net_benefit", mean_with_ci(model, weights), ci_name="model_dr")
    chosen = Counter(t.one_size_fits_all for t in terms)
    baselines = [b for b in BASELINES if all(b in t.dr for t in terms)]
    for baseline in baselines:
        base = np.concatenate([t.dr[baseline] for t in terms])
        out |= _flat(f"model_dr_gain_over_{baseline}", mean_with_ci(model - base, weights))
        if all(t.true is not None for t in terms):
            gain = np.concatenate([t.true["model"] - t.true[baseline] for t in terms])
            if np.isfinite(gain).any():  # a truth without usual-care probabilities: none
                out[f"model_true_gain_over_{baseline}"] = float(np.nanmean(gain))
    if "one_size_fits_all" in baselines and all(t.dr_true_propensity for t in terms):
        gain = np.concatenate([t.dr_true_propensity["model"]
                               - t.dr_true_propensity["one_size_fits_all"] for t in terms])
        out |= _flat(f"model_dr_gain_over_one_size_fits_all{TRUE_PROPENSITY}",
                     mean_with_ci(gain, weights))
    if "one_size_fits_all" in baselines:
        out["one_size_fits_all_treatment"] = ", ".join(
            f"{name} ({n} of {len(terms)} folds)" if len(chosen) > 1 else str(name)
            for name, n in chosen.most_common())
    return out


def _flat(key: str, ci: dict[str, float], ci_name: str | None = None) -> dict[str, float]:
    """``{key: estimate, <ci_name or key>_ci_low: ..., _ci_high: ...}``: the headline's
    spelling (:func:`precision_pain.evaluate.core.headline_gain` reads it)."""
    name = ci_name or key
    return {key: ci["estimate"], f"{name}_ci_low": ci["ci_low"],
            f"{name}_ci_high": ci["ci_high"]}
