"""Split stage: train / validation / test, grouped by patient.

All episodes of one patient land in the same split, so no patient is seen in
training and then scored in testing. The assignment depends only on the set
of patient ids and the seed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

SPLITS = ("train", "valid", "test")


def assign_splits(patient_ids: pd.Series, valid_fraction: float, test_fraction: float,
                  seed: int) -> pd.Series:
    """Map each row to 'train', 'valid' or 'test', grouped by patient id."""
    if valid_fraction + test_fraction >= 1:
        raise ValueError("valid_fraction + test_fraction must be below 1")
    unique = np.sort(patient_ids.astype(str).unique())
    order = np.random.default_rng(seed).permutation(len(unique))
    n_test = int(round(test_fraction * len(unique)))
    n_valid = int(round(valid_fraction * len(unique)))
    labels = np.empty(len(unique), dtype=object)
    labels[order[:n_test]] = "test"
    labels[order[n_test:n_test + n_valid]] = "valid"
    labels[order[n_test + n_valid:]] = "train"
    lookup = pd.Series(labels, index=unique)
    return pd.Series(lookup.loc[patient_ids.astype(str)].to_numpy(), index=patient_ids.index,
                     name="split")


def split_cohort(prepared: pd.DataFrame, valid_fraction: float, test_fraction: float,
                 seed: int) -> dict[str, pd.DataFrame]:
    """The prepared cohort cut into the three splits."""
    labels = assign_splits(prepared["patient_id"], valid_fraction, test_fraction, seed)
    return {name: prepared[labels == name].reset_index(drop=True) for name in SPLITS}
