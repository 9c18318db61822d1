"""Patient preferences: a per-patient harm weight and modalities the patient declines.

Both come from optional contract columns (docs/data-contract.md), validated there with rows
and the fix. ``harm_weight`` replaces ``evaluate.harm_weight`` in the patient's net benefit
(an empty cell keeps the params value); ``exclude_modalities`` lists, ';'-separated, kinds
(``drug``, ``procedure``, ``behavioural``), ``opioid``, drug classes or treatment names
(:data:`precision_pain.registry.MODALITIES`). A declined treatment ranks below every eligible
one the patient accepts; it stays in the list, flagged, like an avoided one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from precision_pain.registry import excluded_treatments

HARM_WEIGHT_COLUMN = "harm_weight"
EXCLUDE_COLUMN = "exclude_modalities"


@dataclass(frozen=True)
class Preferences:
    """Per patient: the harm weight used (n,), and the treatments declined (n, T)."""

    harm_weight: np.ndarray
    excluded: np.ndarray


def patient_preferences(prepared: pd.DataFrame, treatments: Sequence[str],
                        default_harm_weight: float) -> Preferences:
    """Preferences from the optional columns; without them, params' weight and none declined."""
    n = len(prepared)
    weight = np.full(n, float(default_harm_weight))
    if HARM_WEIGHT_COLUMN in prepared.columns:
        given = prepared[HARM_WEIGHT_COLUMN].to_numpy(dtype=float, na_value=np.nan)
        weight = np.where(np.isnan(given), weight, given)
    excluded = np.zeros((n, len(treatments)), dtype=bool)
    if EXCLUDE_COLUMN in prepared.columns:
        codes, uniques = pd.factorize(prepared[EXCLUDE_COLUMN].fillna("").astype(str))
        table = np.array([excluded_treatments(u, treatments) for u in uniques],
                         dtype=bool).reshape(len(uniques), len(treatments))
        excluded = table[codes] if len(uniques) else excluded
    return Preferences(weight, excluded)
