"""Predict stage: ranked treatments per patient, guideline-checked and explained.

For every patient and treatment the bundle's models give P(response) and
P(serious adverse event); net benefit is ``p_response - harm_weight *
p_adverse_event``. Ranking, per patient:

1. treatments that are a usual option for the patient's condition (eligible)
   before every other one;
2. among those, treatments the patient declines (optional ``exclude_modalities``,
   :mod:`precision_pain.predict.preferences`) after every accepted one;
3. then treatments a guideline says to avoid (:mod:`precision_pain.predict.guidelines`)
   after every allowed one: the model never overrides a guideline;
4. then, with ``non_opioid_first`` (``evaluate.non_opioid_first``, default on), opioids after
   the patient's eligible, allowed, accepted non-opioid options (CDC 2022, recommendation 2);
5. then by net benefit (ties: treatment name), with the patient's own harm weight when the
   optional ``harm_weight`` column gives one.

Explanations are exact SHAP values in log-odds (xgboost's TreeSHAP through
``pred_contribs``; exact linear SHAP for the logistic baseline) of the response
model and of the adverse-event model, computed only for the rows that are
explained (the ``top_k`` ranks, plus rank 2 for the contrast) unless
``shap_rows="all"``. Each contribution multiplies the odds by ``exp(value)``,
which is how the sentences state its size. The contrast explains why the first
choice outranks the second with the SHAP values of the difference of their
response log-odds (additive, so it is the difference of the two explanations).

With a bundle trained for ``prepare.outcome: nrs_change`` (:mod:`precision_pain.outcome`) the
response model predicts the reduction in NRS pain: ``expected_nrs_change`` (follow-up minus
baseline, lower is better) replaces P(response) (the ``p_response*`` columns are empty), net
benefit is in NRS points (expected reduction - harm_weight * adverse_event_nrs_points *
P(adverse event)), and the response explanations and contrast state SHAP values in NRS points
of expected relief instead of odds ratios.

Every step is vectorized over patients: the words for each distinct (feature,
value) pair, number and guideline or confidence pattern are written once per chunk,
and rows only join them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from precision_pain.models.bundle import ModelBundle
from precision_pain.models.treeshap import sharing_cores
from precision_pain.predict.confidence import (ConfidenceBasis, ConfidenceSettings,
                                               confidence_basis, low_confidence,
                                               nrs_change_intervals, response_intervals)
from precision_pain.data.features import FEATURE_NAMES, build_features, describe_cells
from precision_pain.predict.guidelines import (NON_OPIOID_NOTE, check_guidelines,
                                               naloxone_codes, naloxone_texts,
                                               non_opioid_demotion, projected_mme)
from precision_pain.predict.preferences import Preferences, patient_preferences
from precision_pain.registry import OUTCOMES, TREATMENTS, eligibility

_BASE_COLUMNS: tuple[str, ...] = (
    "patient_id", "rank", "treatment", "eligible", "p_response", "p_response_low",
    "p_response_high", "p_adverse_event", "net_benefit", "guideline_action", "guideline_note",
    "low_confidence", "confidence_reason", "explanation", "adverse_event_explanation",
    "contrast",
)
# Added after the first release (new columns only, never renamed): add_stewardship_columns,
# then the continuous outcome's expected change in pain (empty for a responder bundle).
STEWARDSHIP_COLUMNS: tuple[str, ...] = (
    "dose_guidance", "projected_mme", "offer_naloxone", "stewardship_note",
    "excluded_by_preference", "harm_weight",
)
OUTCOME_COLUMNS: tuple[str, ...] = ("expected_nrs_change", "expected_nrs_change_low",
                                     "expected_nrs_change_high")
OUTPUT_COLUMNS: tuple[str, ...] = _BASE_COLUMNS + STEWARDSHIP_COLUMNS + OUTCOME_COLUMNS
SHAP_ROWS = ("explained", "all")
_PHRASE = {"response": " the chance of response (odds x",
           "adverse_event": " the risk of a serious adverse event (odds x"}
# The response of a continuous-outcome bundle: SHAP values in NRS points of expected relief.
NRS_RESPONSE = "response_nrs"
_NRS_VERBS = (" adds to the expected pain relief (+", " takes from the expected pain relief (-")


@dataclass(frozen=True)
class PredictOptions:
    """How to rank, explain and flag: :func:`options_from_params` builds it from params.yaml,
    the one place its values are set (``evaluate.harm_weight`` and ``predict.*``)."""

    harm_weight: float
    n_features: int
    top_k: int
    shap_rows: str
    confidence: ConfidenceSettings
    non_opioid_first: bool = True

    def __post_init__(self) -> None:
        """Reject settings that cannot work."""
        if self.shap_rows not in SHAP_ROWS:
            raise ValueError(f"shap_rows={self.shap_rows!r}; valid: {', '.join(SHAP_ROWS)}")
        if self.top_k < 1 or self.n_features < 1:
            raise ValueError("top_k and n_features must be at least 1")


def options_from_params(params: Any, top_k: int | None = None,
                        harm_weight: float | None = None) -> PredictOptions:
    """Prediction settings from validated params (``predict`` and ``evaluate.harm_weight``);
    ``top_k`` and ``harm_weight``, when given, replace theirs (the CLI's options)."""
    p = params.predict
    return PredictOptions(
        harm_weight=params.evaluate.harm_weight if harm_weight is None else float(harm_weight),
        n_features=p.n_explanation_features,
        top_k=p.top_k_explained if top_k is None else top_k, shap_rows=p.shap_rows,
        confidence=ConfidenceSettings(p.min_propensity, p.max_interval_width,
                                      p.calibration_tolerance, p.min_plan_episodes,
                                      p.nrs_interval_level),
        non_opioid_first=params.evaluate.non_opioid_first)


@dataclass(frozen=True)
class Recommendations:
    """Ranked rows (one per patient and treatment), their SHAP values and model features.

    ``shap`` has one row per explained (patient, treatment, outcome): the SHAP value of
    every feature in log-odds and ``bias``; a row sums to that model's logit.
    ``features`` is the model matrix (one row per patient, ``patient_id`` first).
    """

    table: pd.DataFrame
    shap: pd.DataFrame
    features: pd.DataFrame
    plans: Any = None  # predict.plans.PlanRecommendations when the bundle has the plan learner


@dataclass(frozen=True)
class RankedScores:
    """Everything known per patient (rows) and treatment (columns) before explaining:
    model probabilities, eligibility, guideline action and note, net benefit and rank."""

    treatments: tuple[str, ...]
    p_response: np.ndarray
    p_adverse_event: np.ndarray
    eligible: np.ndarray
    action: np.ndarray
    note: np.ndarray
    net_benefit: np.ndarray
    rank: np.ndarray
    order: np.ndarray  # (n, T): column index of the treatment at each rank
    dose: np.ndarray | None = None  # (n, T): dose guidance of the fired guideline rules
    demoted: np.ndarray | None = None  # (n, T): opioid moved below the non-opioids
    excluded: np.ndarray | None = None  # (n, T): declined by the patient
    harm_weight: np.ndarray | None = None  # (n,): the weight used in net benefit
    continuous: bool = False  # p_response holds the expected NRS reduction (nrs_change)


# --------------------------------------------------------------------------- entry points

def recommend(prepared: pd.DataFrame, bundle: ModelBundle, options: PredictOptions
              ) -> Recommendations:
    """Rank every treatment for every patient, check guidelines, explain and flag."""
    X = build_features(prepared)
    # The plans need nothing of the single-treatment models until they are compared with
    # the best single treatment: they are scored, ranked and explained on a second thread
    # while this one scores and explains the single treatments, then compared there with
    # the single scores. Both halves spend most of their time in compiled kernels that
    # release the GIL, so they overlap on two cores (each half's kernels get half the cores
    # while both run: sharing_cores); the results are the same as one after the other.
    scored: Future = Future()
    with ThreadPoolExecutor(1) as pool, sharing_cores():
        plans = (pool.submit(_plans, prepared, X, bundle, scored, options)
                 if getattr(bundle, "plan_models", None) is not None else None)
        try:
            prefs = patient_preferences(prepared, bundle.treatments, options.harm_weight)
            scores = score_patients(prepared, X, bundle, options.harm_weight,
                                    non_opioid_first=options.non_opioid_first,
                                    preferences=prefs)
            # the confidence flags' patient part, once for the single treatments and plans
            basis = confidence_basis(X, bundle, scores.treatments)
        except BaseException as error:  # the plan thread waits for the scores: release it
            scored.set_exception(error)
            raise
        scored.set_result((scores, basis))
        width = len(scores.treatments) if options.shap_rows == "all" else max(options.top_k, 2)
        width = min(width, len(scores.treatments))
        contrib = {o: _ranked_contributions(bundle, o, X, scores, width) for o in OUTCOMES}
        ids = prepared["patient_id"].astype(str).to_numpy()
        table = _assemble(ids, X, bundle, scores, contrib, options, basis)
        table = add_stewardship_columns(table, prepared, scores)
        table = add_outcome_columns(table, scores, bundle, X,
                                    options.confidence.nrs_interval_level)
        n_t = len(scores.treatments)
        depth = n_t if options.shap_rows == "all" else min(options.top_k, n_t)
        shap = _shap_frame(ids, scores, contrib, depth)
        return Recommendations(table, shap,
                               X.assign(patient_id=ids)[["patient_id", *X.columns]],
                               None if plans is None else plans.result())


def _plans(prepared: pd.DataFrame, X: pd.DataFrame, bundle: ModelBundle, scored: Future,
           options: PredictOptions) -> Any:
    """The plan learner's plans, ranked and explained (:func:`.plans.explain_plans`), then
    compared with the single treatments' scores once ``scored`` holds them."""
    from precision_pain.predict.plans import explain_plans

    prefs = patient_preferences(prepared, bundle.plan_models.treatments, options.harm_weight)
    with sharing_cores():
        explained = explain_plans(prepared, X, bundle.plan_models, prefs, options.top_k,
                                  options.n_features, options.non_opioid_first,
                                  model_X=bundle.model_input(X))
    return _compare_plans(explained, prepared, X, bundle, *scored.result(), options)


def _compare_plans(explained: Any, prepared: pd.DataFrame, X: pd.DataFrame,
                   bundle: ModelBundle, scores: RankedScores, basis: ConfidenceBasis,
                   options: PredictOptions) -> Any:
    """The explained plans compared with this ranking's first choice and flagged
    (:func:`.plans.plan_recommendations`)."""
    from precision_pain.predict.plans import ComponentConfidence, plan_recommendations

    first = np.asarray(scores.treatments, dtype=object)[scores.order[:, 0]]
    best_single = np.where(scores.eligible.any(axis=1), first, "")
    # the single-treatment flags that carry over to a plan: training ranges and propensity
    # (no interval: those are of the single models' P(response), not the plan learner's)
    none = np.full(scores.p_response.shape, np.nan)
    flag, reason = low_confidence(X, bundle, scores.treatments, scores.p_response,
                                  scores.eligible, (none, none), options.confidence, basis)
    return plan_recommendations(prepared, bundle.plan_models, explained, best_single,
                                ComponentConfidence(tuple(scores.treatments), flag, reason),
                                options.confidence.min_plan_episodes)


def predict_chunks(chunks: Iterable[pd.DataFrame], bundle: ModelBundle, source: str,
                   options: PredictOptions) -> Iterator[Recommendations]:
    """Validate, prepare and recommend chunk by chunk (row numbers count from the file start)."""
    from precision_pain.data.contract import ContractError
    from precision_pain.data.prepare import prepare_cohort
    from precision_pain.progress import track

    seen: set[str] = set()
    offset = 0
    for raw in track(chunks, "predict", unit="chunk"):
        try:
            prepared = prepare_cohort(raw, source, None, require_outcomes=False)
        except ContractError as exc:
            raise _shifted(exc, offset) from None
        ids = prepared["patient_id"].astype(str).tolist()
        _check_unique_patients(ids, seen, offset, source)
        seen.update(ids)
        yield recommend(prepared, bundle, options)
        offset += len(raw)


def _shifted(exc: Any, offset: int) -> Any:
    """The same contract error with row numbers counted from the start of the file."""
    problems = [replace(p, rows=[r + offset for r in p.rows]) for p in exc.problems]
    return type(exc)(exc.source, problems)


def _check_unique_patients(ids: list[str], seen: set[str], offset: int, source: str) -> None:
    """Refuse a chunk that repeats a patient (within it, or from an earlier chunk)."""
    duplicated = pd.Series(ids).duplicated(keep="first").to_numpy() | np.fromiter(
        (i in seen for i in ids), dtype=bool, count=len(ids))
    if duplicated.any():
        rows = np.flatnonzero(duplicated)
        raise ValueError(
            f"{source}: patient_id: {len(rows)} rows repeat a patient already in the file "
            f"(rows {', '.join(map(str, rows[:5] + offset + 1))}; values not shown). Fix: "
            "predict ranks treatments per patient, so keep one row per patient (e.g. the most "
            "recent episode)")


# --------------------------------------------------------------------------- scoring and ranking

def score_patients(prepared: pd.DataFrame, X: pd.DataFrame, bundle: ModelBundle,
                   harm_weight: float, *, non_opioid_first: bool = False,
                   preferences: Preferences | None = None) -> RankedScores:
    """Probabilities, eligibility, guideline actions, net benefit and rank for every pair."""
    treatments = bundle.treatments
    p_resp, p_ae = (bundle.scores(X, o) for o in ("response", "adverse_event"))
    outcome = bundle.outcome
    decided = decide(prepared, treatments, p_resp.astype(float), p_ae.astype(float),
                     harm_weight, non_opioid_first=non_opioid_first, preferences=preferences,
                     harm_scale=outcome.harm_scale)
    return replace(decided, continuous=outcome.continuous)


def decide(prepared: pd.DataFrame, treatments: Sequence[str], p_response: np.ndarray,
           p_adverse_event: np.ndarray, harm_weight: float, *, non_opioid_first: bool = False,
           preferences: Preferences | None = None, harm_scale: float = 1.0) -> RankedScores:
    """Guideline checks and ranking for given model scores (any scores: the model's or a test's).

    ``preferences`` (per-patient harm weight, declined treatments) replace ``harm_weight``
    and add the exclusions; ``non_opioid_first`` applies CDC 2022 recommendation 2. Net
    benefit = p_response - weight * harm_scale * p_adverse_event: ``harm_scale`` is what one
    unit of harm weight costs in the response's units (:attr:`OutcomeSpec.harm_scale`: 1, or
    NRS points for a continuous outcome); the returned weights stay the patients' own.
    """
    treatments = tuple(treatments)
    n = len(prepared)
    eligible = eligibility(prepared["condition"], treatments)
    guide = check_guidelines(prepared, treatments)
    weight = (np.full(n, float(harm_weight)) if preferences is None
              else np.asarray(preferences.harm_weight, dtype=float))
    excluded = (np.zeros((n, len(treatments)), dtype=bool) if preferences is None
                else preferences.excluded)
    net = p_response - (weight * harm_scale)[:, None] * p_adverse_event
    demoted = (non_opioid_demotion(eligible, guide.avoid, excluded, treatments)
               if non_opioid_first else np.zeros_like(excluded))
    order = rank_order(eligible, guide.avoid, net, treatments, demoted=demoted,
                       excluded=excluded)
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(1, len(treatments) + 1)[None, :], axis=1)
    return RankedScores(treatments, p_response, p_adverse_event, eligible, guide.action, guide.note,
                  net, rank, order, guide.dose, demoted, excluded, weight)


def rank_order(eligible: np.ndarray, avoid: np.ndarray, net: np.ndarray,
               treatments: Sequence[str], demoted: np.ndarray | None = None,
               excluded: np.ndarray | None = None) -> np.ndarray:
    """(n, T) column indices from best to worst: eligible, accepted, not avoided, not demoted,
    then net benefit (ties: name)."""
    name_rank = np.argsort(np.argsort(np.asarray(treatments, dtype=str)))
    names = np.broadcast_to(name_rank, net.shape)
    keys = [names, -net]
    if demoted is not None and demoted.any():
        keys.append(demoted)
    keys.append(avoid)
    if excluded is not None and excluded.any():
        keys.append(excluded)
    return np.lexsort((*keys, ~eligible), axis=1)  # keys that are all False change nothing


def add_stewardship_columns(table: pd.DataFrame, prepared: pd.DataFrame, scores: RankedScores
                            ) -> pd.DataFrame:
    """The ranked table plus dose guidance, opioid stewardship and preference columns."""
    n, n_t = scores.rank.shape
    pick = (np.repeat(np.arange(n), n_t), scores.order.reshape(-1))
    codes = naloxone_codes(prepared, scores.treatments)[pick]
    demoted = (np.zeros(n * n_t, dtype=bool) if scores.demoted is None
               else scores.demoted[pick])
    naloxone = naloxone_texts()
    notes = np.concatenate([naloxone, [" | ".join(filter(None, (NON_OPIOID_NOTE, t)))
                                       for t in naloxone]]).astype(object)
    dose = np.full(n * n_t, "", dtype=object) if scores.dose is None else scores.dose[pick]
    excluded = (np.zeros(n * n_t, dtype=bool) if scores.excluded is None
                else scores.excluded[pick])
    weight = np.full(n, np.nan) if scores.harm_weight is None else scores.harm_weight
    return table.assign(
        dose_guidance=dose, projected_mme=projected_mme(prepared, scores.treatments)[pick],
        offer_naloxone=codes > 0, stewardship_note=notes[codes + demoted * len(naloxone)],
        excluded_by_preference=excluded, harm_weight=np.repeat(weight, n_t))


# --------------------------------------------------------------------------- SHAP values

def add_outcome_columns(table: pd.DataFrame, scores: RankedScores, bundle: ModelBundle,
                        X: pd.DataFrame, level: float) -> pd.DataFrame:
    """``expected_nrs_change`` (follow-up minus baseline) of a continuous-outcome bundle and
    the split-conformal prediction interval of the patient's change at ``level``
    (``expected_nrs_change_low`` / ``_high``), whose ``p_response`` columns are then emptied;
    NaN for a responder bundle."""
    if not scores.continuous:
        return table.assign(expected_nrs_change=np.nan, expected_nrs_change_low=np.nan,
                            expected_nrs_change_high=np.nan)
    n, n_t = scores.rank.shape
    pick = (np.repeat(np.arange(n), n_t), scores.order.reshape(-1))
    low, high = nrs_change_intervals(bundle, scores.treatments, -scores.p_response,
                                     X["pain_baseline"].to_numpy(float), level)
    return table.assign(expected_nrs_change=-table["p_response"].to_numpy(float),
                        expected_nrs_change_low=low[pick], expected_nrs_change_high=high[pick],
                        p_response=np.nan, p_response_low=np.nan, p_response_high=np.nan)


def _ranked_contributions(bundle: ModelBundle, outcome: str, X: pd.DataFrame, scores: RankedScores,
                          width: int) -> np.ndarray:
    """(n, width, F + 1) SHAP values of the treatments at ranks 1..width, bias last."""
    names = np.asarray(scores.treatments, dtype=object)[scores.order[:, :width]]
    return bundle.contributions(X, outcome, names)


def _shap_frame(ids: np.ndarray, scores: RankedScores, contrib: Mapping[str, np.ndarray],
                depth: int) -> pd.DataFrame:
    """Long SHAP table: patient_id, treatment, outcome, rank, one column per feature, bias."""
    n = len(ids)
    names = np.asarray(scores.treatments, dtype=object)[scores.order[:, :depth]].reshape(-1)
    frames = []
    for outcome, values in contrib.items():
        frame = pd.DataFrame(values[:, :depth].reshape(n * depth, -1),
                             columns=[*FEATURE_NAMES, "bias"])
        frame.insert(0, "patient_id", np.repeat(ids, depth))
        frame.insert(1, "treatment", names)
        frame.insert(2, "outcome", outcome)
        frame.insert(3, "rank", np.tile(np.arange(1, depth + 1), n))
        frames.append(frame)
    interleaved = np.arange(n * depth * len(frames)).reshape(len(frames), -1).T.reshape(-1)
    return pd.concat(frames, ignore_index=True).iloc[interleaved].reset_index(drop=True)


# --------------------------------------------------------------------------- the table

def _assemble(ids: np.ndarray, X: pd.DataFrame, bundle: ModelBundle, scores: RankedScores,
              contrib: Mapping[str, np.ndarray], options: PredictOptions,
              basis: ConfidenceBasis | None = None) -> pd.DataFrame:
    """One row per patient and treatment, in patient then rank order."""
    n, n_t = scores.rank.shape
    rows, cols = np.repeat(np.arange(n), n_t), scores.order.reshape(-1)
    low, high = response_intervals(bundle, scores.treatments, scores.p_response)
    flag, reason = low_confidence(X, bundle, scores.treatments, scores.p_response,
                                  scores.eligible, (low, high), options.confidence, basis)
    values = X.to_numpy(np.float32)
    k = min(options.top_k, n_t)
    response = NRS_RESPONSE if scores.continuous else "response"
    explanation = _by_rank(n, n_t, [_sentences(contrib["response"][:, r], values, scores, r,
                                               options.n_features, response)
                                    for r in range(k)])
    ae_explanation = _by_rank(n, n_t, [_sentences(contrib["adverse_event"][:, r], values,
                                                  scores, r, options.n_features,
                                                  "adverse_event") for r in range(k)])
    contrast = _by_rank(n, n_t, [contrast_sentences(contrib["response"], values, scores,
                                                    options.n_features)] if n_t > 1 else [])
    pick = (rows, cols)
    return pd.DataFrame({
        "patient_id": np.repeat(ids, n_t),
        "rank": np.tile(np.arange(1, n_t + 1), n),
        "treatment": np.asarray(scores.treatments, dtype=object)[cols],
        "eligible": scores.eligible[pick],
        "p_response": scores.p_response[pick],
        "p_response_low": low[pick], "p_response_high": high[pick],
        "p_adverse_event": scores.p_adverse_event[pick],
        "net_benefit": scores.net_benefit[pick],
        "guideline_action": scores.action[pick], "guideline_note": scores.note[pick],
        "low_confidence": flag[pick], "confidence_reason": reason[pick],
        "explanation": explanation, "adverse_event_explanation": ae_explanation,
        "contrast": contrast,
    }, columns=list(_BASE_COLUMNS))


def _by_rank(n: int, n_t: int, columns: list[np.ndarray]) -> np.ndarray:
    """Flattened (patient, rank) texts: the given ranks' texts, '' for the rest."""
    out = np.full((n, n_t), "", dtype=object)
    for r, texts in enumerate(columns):
        out[:, r] = texts
    return out.reshape(-1)


# --------------------------------------------------------------------------- sentences

def explain_matrix(contributions: np.ndarray, values: np.ndarray, labels: np.ndarray,
                   n_features: int, outcome: str) -> np.ndarray:
    """Sentences for many rows at once: '<label>: <feature> raises ... (odds xA.BC); ...'."""
    phi = np.asarray(contributions, dtype=float)[:, :len(FEATURE_NAMES)]
    top = top_features(phi, n_features)
    rows = np.arange(len(phi))
    # |phi| falls along a row's top features, so a phrase left out (|phi| ~ 0) is followed
    # only by phrases left out: each later phrase carries its own '; ' separator.
    phrases = [_phrases(top[:, s], phi[rows, top[:, s]], values[rows, top[:, s]], outcome,
                        "; " if s else "") for s in range(top.shape[1])]
    empty = "no feature moves the prediction (constant-rate model)"
    text = np.asarray(labels, dtype=object) + ": "
    if not phrases:
        return text + empty
    return np.where(phrases[0] == "", text + empty, sum(phrases[1:], text + phrases[0]))


def _phrases(features: np.ndarray, size: np.ndarray, cell_values: np.ndarray, outcome: str,
             separator: str) -> np.ndarray:
    """'<separator><feature in words> raises/lowers <outcome> (odds xA.BC)' per row, '' where
    the SHAP value is ~0; each distinct phrase is written once. For :data:`NRS_RESPONSE` the
    SHAP value is in NRS points: '... adds to the expected pain relief (+0.42 NRS points)'."""
    word_codes, words = pd.factorize(describe_cells(features, cell_values))
    nrs = outcome == NRS_RESPONSE
    odds_codes, odds = pd.factorize(np.round(np.abs(size) if nrs else np.exp(size), 2))
    state = np.where(np.abs(size) <= 1e-9, 0, np.where(size > 0, 1, 2))
    key = (word_codes.astype(np.int64) * len(odds) + odds_codes) * 3 + state
    inverse, distinct = pd.factorize(key)
    odds_text = format_numbers(odds, ".2f")
    verb = (("", *_NRS_VERBS) if nrs
            else ("", " raises" + _PHRASE[outcome], " lowers" + _PHRASE[outcome]))
    close = " NRS points)" if nrs else ")"
    texts = np.array([f"{separator}{words[k // 3 // len(odds)]}{verb[k % 3]}"
                      f"{odds_text[k // 3 % len(odds)]}{close}" if k % 3 else ""
                      for k in distinct.tolist()], dtype=object)
    return texts[inverse]


def top_features(phi: np.ndarray, k: int) -> np.ndarray:
    """(n, k) column indices of the k largest |phi| per row, largest first (ties: lower index)."""
    size = np.abs(phi)
    rows = np.arange(len(phi))
    top = np.empty((len(phi), min(k, phi.shape[1])), dtype=np.int64)
    for s in range(top.shape[1]):
        top[:, s] = np.argmax(size, axis=1)
        size[rows, top[:, s]] = -1.0
    return top


def _sentences(contrib: np.ndarray, values: np.ndarray, scores: RankedScores, r: int,
               n_features: int, outcome: str) -> np.ndarray:
    """Explanations of the treatment at rank r + 1 of every patient."""
    labels = _labels(scores.treatments)[scores.order[:, r]]
    return explain_matrix(contrib, values, labels, n_features, outcome)


def contrast_sentences(contrib: np.ndarray, values: np.ndarray, scores: RankedScores,
                       n_features: int) -> np.ndarray:
    """Why rank 1 outranks rank 2, with the SHAP values of their response log-odds difference."""
    n = len(values)
    first, second = scores.order[:, 0], scores.order[:, 1]
    rows = np.arange(n)
    diff = contrib[:, 0].astype(float) - contrib[:, 1].astype(float)
    labels = _labels(scores.treatments)
    l1, l2 = labels[first], labels[second]
    why = _contrast_reason(scores, rows, first, second, l2)
    top = top_features(diff[:, :-1], n_features)
    parts = [describe_cells(top[:, s], values[rows, top[:, s]])
             for s in range(top.shape[1])]
    sizes = [format_numbers(diff[rows, top[:, s]], "+.2f") for s in range(top.shape[1])]
    names = np.asarray(scores.treatments, dtype=object)
    total = format_numbers(diff.sum(axis=1), "+.2f")
    bias = format_numbers(diff[:, -1], "+.2f")
    scale = ("expected NRS reduction in points" if scores.continuous
             else "log-odds of response")
    return np.array([
        f"{a} ranks above {b}{w}. Difference in {scale} ({na} minus {nb}): {t}, "
        f"of which {bi} is the difference of the two models' averages and the rest comes from "
        f"this patient's features, most from: "
        + ", ".join(f"{p} {z}" for p, z in zip(row[:len(parts)], row[len(parts):]))
        for a, b, w, na, nb, t, bi, *row in zip(
            *(np.asarray(c).tolist() for c in (l1, l2, why, names[first], names[second], total,
                                                bias, *parts, *sizes)))], dtype=object)


def _contrast_reason(scores: RankedScores, rows: np.ndarray, first: np.ndarray,
                     second: np.ndarray, label2: np.ndarray) -> np.ndarray:
    """': <why>' for each patient: a guideline, eligibility, or the higher net benefit."""
    avoided = scores.action[rows, second] == "avoid"
    avoided &= scores.action[rows, first] != "avoid"
    ineligible = scores.eligible[rows, first] & ~scores.eligible[rows, second]
    declined = _pair_flag(scores.excluded, rows, second) & ~_pair_flag(scores.excluded, rows, first)
    demoted = _pair_flag(scores.demoted, rows, second) & ~_pair_flag(scores.demoted, rows, first)
    response = ("; expected NRS change " + format_numbers(-scores.p_response[rows, first], "+.2f")
                + " vs " + format_numbers(-scores.p_response[rows, second], "+.2f")
                if scores.continuous else
                "; P(response) " + format_numbers(scores.p_response[rows, first], ".2f")
                + " vs " + format_numbers(scores.p_response[rows, second], ".2f"))
    by_benefit = (": higher net benefit (" + format_numbers(scores.net_benefit[rows, first], ".2f")
                  + " vs " + format_numbers(scores.net_benefit[rows, second], ".2f")
                  + response
                  + ", P(serious adverse event) "
                  + format_numbers(scores.p_adverse_event[rows, first], ".3f") + " vs "
                  + format_numbers(scores.p_adverse_event[rows, second], ".3f") + ")")
    return np.where(ineligible, ": " + label2 + " is not a usual option for this condition",
                    np.where(declined, ": the patient declines " + label2,
                             np.where(avoided, ": a guideline says avoid " + label2,
                                      np.where(demoted, ": non-opioid options are preferred "
                                               "(CDC 2022); " + label2 + " is an opioid",
                                               by_benefit))))


def _pair_flag(flags: np.ndarray | None, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """flags[rows, cols], all False when the flags were not computed."""
    return np.zeros(len(rows), dtype=bool) if flags is None else flags[rows, cols]


def _labels(treatments: Sequence[str]) -> np.ndarray:
    return np.array([TREATMENTS[t].label for t in treatments], dtype=object)


def format_numbers(values: np.ndarray, spec: str) -> np.ndarray:
    """format(value, spec) for many numbers, computed once per distinct rounded value."""
    decimals = int(spec.rstrip("f").split(".")[-1])
    inverse, distinct = pd.factorize(np.round(np.asarray(values, dtype=float), decimals))
    texts = np.array([format(v + 0.0, spec) for v in distinct], dtype=object)
    return texts[inverse]
