"""Evaluate stage: can each model be trusted, and do patients fare better under it?

Two questions, on the held-out test split:

1. Per treatment model: discrimination (AUC) and accuracy (Brier score) on the
   test patients who actually received that treatment.
2. Policy value: with the synthetic ground truth, the true mean response and
   net benefit when every test patient gets the model's first choice, compared
   with the oracle (each patient's truly best eligible treatment) and with
   one-size-fits-all care (the single treatment, eligible for every condition,
   that is best on average).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .bundle import ModelBundle
from .features import build_features
from .metrics import binary_metrics
from .predict import rank_treatments
from .registry import TREATMENTS
from .train import OUTCOMES


@dataclass(frozen=True)
class Evaluation:
    """Headline metrics and per-treatment metrics, ready to write and log."""

    summary: dict[str, Any]
    per_treatment: dict[str, dict[str, float]]


def model_metrics(test: pd.DataFrame, bundle: ModelBundle) -> dict[str, dict[str, float]]:
    """AUC, Brier score and counts per treatment and outcome on the treated test rows."""
    result: dict[str, dict[str, float]] = {}
    for treatment in bundle.treatments:
        rows = test[test["treatment"] == treatment]
        if rows.empty:
            continue
        X = build_features(rows)
        metrics: dict[str, float] = {}
        for outcome in OUTCOMES:
            p = bundle.model(treatment, outcome).predict_proba(X)
            for name, value in binary_metrics(rows[outcome].to_numpy(), p).items():
                metrics[f"{outcome}_{name}"] = value
        result[treatment] = metrics
    return result


def predicted_scores(prepared: pd.DataFrame, bundle: ModelBundle,
                     harm_weight: float) -> pd.DataFrame:
    """Predicted P(response), P(adverse event) and net benefit, one row per patient and treatment."""
    X = build_features(prepared)
    ids = prepared["patient_id"].astype(str).to_numpy()
    conditions = prepared["condition"].astype(str).to_numpy()
    frames = []
    for treatment in bundle.treatments:
        p_resp = bundle.model(treatment, "response").predict_proba(X)
        p_ae = bundle.model(treatment, "adverse_event").predict_proba(X)
        frames.append(pd.DataFrame({
            "patient_id": ids, "treatment": treatment,
            "eligible": [TREATMENTS[treatment].eligible(c) for c in conditions],
            "p_response": p_resp, "p_adverse_event": p_ae,
            "net_benefit": p_resp - harm_weight * p_ae, "explanation": "",
        }))
    return pd.concat(frames, ignore_index=True)


def policy_values(scores: pd.DataFrame, truth: pd.DataFrame, harm_weight: float
                  ) -> dict[str, Any]:
    """True value of the model's first choices against the oracle and one-size-fits-all."""
    truth = truth.assign(true_net=truth["p_response"] - harm_weight * truth["p_adverse_event"])
    truth = truth[truth["eligible"].astype(bool)]
    first = rank_treatments(scores).query("rank == 1")[["patient_id", "treatment"]]
    model_rows = first.merge(truth, on=["patient_id", "treatment"], how="left")
    if model_rows["p_response"].isna().any():
        raise ValueError("ground truth lacks rows for some recommended (patient, treatment) pairs")
    oracle_rows = truth.loc[truth.groupby("patient_id")["true_net"].idxmax()]
    n_patients = truth["patient_id"].nunique()
    universal = truth.groupby("treatment").filter(lambda g: len(g) == n_patients)
    by_treatment = universal.groupby("treatment")[["p_response", "true_net"]].mean()
    best_single = str(by_treatment["true_net"].idxmax())
    values = {
        "model": _value(model_rows),
        "oracle": _value(oracle_rows),
        "one_size_fits_all": {"treatment": best_single,
                              "mean_true_response": float(by_treatment.loc[best_single, "p_response"]),
                              "mean_true_net_benefit": float(by_treatment.loc[best_single, "true_net"])},
    }
    gain = values["oracle"]["mean_true_net_benefit"] - values["one_size_fits_all"]["mean_true_net_benefit"]
    captured = values["model"]["mean_true_net_benefit"] - values["one_size_fits_all"]["mean_true_net_benefit"]
    values["share_of_oracle_gain_captured"] = float(captured / gain) if gain > 0 else float("nan")
    values["first_choice_matches_oracle"] = float(
        (model_rows.set_index("patient_id")["treatment"]
         == oracle_rows.set_index("patient_id")["treatment"]).mean())
    return values


def _value(rows: pd.DataFrame) -> dict[str, float]:
    return {"mean_true_response": float(rows["p_response"].mean()),
            "mean_true_net_benefit": float(rows["true_net"].mean())}


def evaluate(test: pd.DataFrame, bundle: ModelBundle, truth: pd.DataFrame | None,
             harm_weight: float) -> Evaluation:
    """Model metrics and, when a ground truth is available, policy values."""
    per_treatment = model_metrics(test, bundle)
    summary: dict[str, Any] = {
        "n_test_patients": int(test["patient_id"].nunique()),
        "mean_response_auc": _mean(per_treatment, "response_auc"),
        "mean_response_brier": _mean(per_treatment, "response_brier"),
        "mean_adverse_event_auc": _mean(per_treatment, "adverse_event_auc"),
        "has_ground_truth": truth is not None and not truth.empty,
    }
    if summary["has_ground_truth"]:
        test_truth = truth[truth["patient_id"].isin(test["patient_id"])]
        scores = predicted_scores(test.drop_duplicates("patient_id"), bundle, harm_weight)
        summary["policy"] = policy_values(scores, test_truth, harm_weight)
    return Evaluation(summary, per_treatment)


def _mean(per_treatment: dict[str, dict[str, float]], key: str) -> float:
    values = [m[key] for m in per_treatment.values() if not np.isnan(m.get(key, np.nan))]
    return float(np.mean(values)) if values else float("nan")
