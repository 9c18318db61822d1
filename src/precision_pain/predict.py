"""Predict stage: ranked treatments per patient, each with an exact SHAP explanation.

For every patient and treatment the bundle's models give P(response) and
P(serious adverse event). Treatments are ranked by net benefit,
``p_response - harm_weight * p_adverse_event``; treatments that are not a
usual option for the patient's condition rank below every eligible one.
Explanations come from exact SHAP values of the response model (xgboost's
TreeSHAP, exact linear SHAP for the logistic baseline) in log-odds: each
contribution multiplies the odds of response by ``exp(value)``, which is how
the sentences state its size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .bundle import ModelBundle
from .features import build_features, describe
from .registry import TREATMENTS

OUTPUT_COLUMNS = ("patient_id", "rank", "treatment", "eligible", "p_response",
                  "p_adverse_event", "net_benefit", "explanation")


@dataclass(frozen=True)
class Recommendations:
    """Ranked rows (one per patient and treatment) and their full SHAP values."""

    table: pd.DataFrame
    shap: pd.DataFrame


def recommend(prepared: pd.DataFrame, bundle: ModelBundle, harm_weight: float,
              n_features: int = 3) -> Recommendations:
    """Rank every treatment for every patient and explain each ranked row."""
    X = build_features(prepared)
    ids = prepared["patient_id"].astype(str).to_numpy()
    conditions = prepared["condition"].astype(str).to_numpy()
    tables, shaps = [], []
    for treatment in bundle.treatments:
        contrib = bundle.model(treatment, "response").contributions(X)
        p_resp = bundle.model(treatment, "response").predict_proba(X)
        p_ae = bundle.model(treatment, "adverse_event").predict_proba(X)
        eligible = np.array([TREATMENTS[treatment].eligible(c) for c in conditions])
        tables.append(pd.DataFrame({
            "patient_id": ids, "treatment": treatment, "eligible": eligible,
            "p_response": p_resp.astype(float), "p_adverse_event": p_ae.astype(float),
            "net_benefit": (p_resp - harm_weight * p_ae).astype(float),
            "explanation": explain_rows(treatment, X, contrib, n_features),
        }))
        shap_frame = pd.DataFrame(contrib[:, :-1], columns=list(X.columns))
        shaps.append(shap_frame.assign(patient_id=ids, treatment=treatment,
                                       bias=contrib[:, -1]))
    table = rank_treatments(pd.concat(tables, ignore_index=True))
    shap = pd.concat(shaps, ignore_index=True)
    shap = shap[["patient_id", "treatment", *X.columns, "bias"]]
    return Recommendations(table, shap)


def rank_treatments(scored: pd.DataFrame) -> pd.DataFrame:
    """Add ``rank`` (1 = best) per patient: eligible first, then by net benefit."""
    order = scored.sort_values(
        ["patient_id", "eligible", "net_benefit", "treatment"],
        ascending=[True, False, False, True], kind="mergesort",
    )
    ranked = order.assign(rank=order.groupby("patient_id", sort=False).cumcount() + 1)
    return ranked[list(OUTPUT_COLUMNS)].reset_index(drop=True)


def explain_rows(treatment: str, X: pd.DataFrame, contributions: np.ndarray,
                 n_features: int) -> list[str]:
    """One sentence per row naming the features that moved P(response) most."""
    values = X.to_numpy()
    names = list(X.columns)
    top = np.argsort(-np.abs(contributions[:, :-1]), axis=1)[:, :n_features]
    label = TREATMENTS[treatment].label
    return [
        _sentence(label, [(names[j], values[i, j], contributions[i, j]) for j in top[i]])
        for i in range(len(X))
    ]


def _sentence(label: str, parts: list[tuple[str, float, float]]) -> str:
    phrases = [
        f"{describe(name, value)} {'raises' if phi > 0 else 'lowers'} the chance of response "
        f"(odds x{np.exp(phi):.2f})"
        for name, value, phi in parts if abs(phi) > 1e-9
    ]
    if not phrases:
        return f"{label}: no feature moves the predicted response (constant-rate model)"
    return f"{label}: " + "; ".join(phrases)
