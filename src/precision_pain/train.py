"""Train stage: one response model and one adverse-event model per treatment.

Each treatment's models are fitted on the patients who received it (the
observational "T-learner"), with the validation split used for early stopping
only. The core returns fitted models and validation metrics; tracking and
file output happen in the CLI layer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .features import build_features
from .metrics import binary_metrics
from .models import BinaryModel, fit_binary
from .registry import Treatment

log = logging.getLogger(__name__)

OUTCOMES: tuple[str, ...] = ("response", "adverse_event")


@dataclass(frozen=True)
class TreatmentModels:
    """The fitted models of one treatment and what was learned about them."""

    treatment: str
    models: Mapping[str, BinaryModel]
    counts: Mapping[str, int]
    validation: Mapping[str, float] = field(default_factory=dict)


def treatment_seed(seed: int, treatment_index: int, outcome_index: int) -> int:
    """A distinct, reproducible seed for each treatment and outcome."""
    return int(np.random.SeedSequence([seed, treatment_index, outcome_index]).generate_state(1)[0])


def train_treatment(treatment: Treatment, index: int, train: pd.DataFrame, valid: pd.DataFrame,
                    model_type: str, hyperparameters: Mapping[str, Any], seed: int
                    ) -> TreatmentModels:
    """Fit both outcome models of one treatment on the rows that received it."""
    tr = train[train["treatment"] == treatment.name]
    va = valid[valid["treatment"] == treatment.name]
    if len(tr) == 0 or len(va) == 0:
        raise ValueError(
            f"no {'training' if len(tr) == 0 else 'validation'} rows received treatment "
            f"{treatment.name!r}; drop it from model.treatments or provide more data"
        )
    X_tr, X_va = build_features(tr), build_features(va)
    models: dict[str, BinaryModel] = {}
    validation: dict[str, float] = {}
    for k, outcome in enumerate(OUTCOMES):
        y_tr, y_va = tr[outcome].to_numpy(), va[outcome].to_numpy()
        model = fit_binary(model_type, hyperparameters, treatment_seed(seed, index, k),
                           X_tr, y_tr, X_va, y_va)
        models[outcome] = model
        for name, value in binary_metrics(y_va, model.predict_proba(X_va)).items():
            validation[f"valid_{outcome}_{name}"] = value
    counts = {"n_train": len(tr), "n_valid": len(va),
              "n_train_responders": int(tr["response"].sum()),
              "n_train_adverse_events": int(tr["adverse_event"].sum())}
    return TreatmentModels(treatment.name, models, counts, validation)


def train_all(treatments: Iterable[Treatment], train: pd.DataFrame, valid: pd.DataFrame,
              model_type: str, hyperparameters: Mapping[str, Any], seed: int,
              on_done: Callable[[TreatmentModels], None] | None = None
              ) -> dict[str, TreatmentModels]:
    """Fit every treatment in ``treatments``; ``on_done`` is called after each one."""
    fitted: dict[str, TreatmentModels] = {}
    for index, treatment in enumerate(treatments):
        result = train_treatment(treatment, index, train, valid, model_type, hyperparameters, seed)
        log.info("trained %s on %d rows (%s)", treatment.name, result.counts["n_train"],
                 ", ".join(f"{o}={m.kind}" for o, m in result.models.items()))
        fitted[treatment.name] = result
        if on_done is not None:
            on_done(result)
    return fitted
