"""Grouped, deterministic splits."""

from __future__ import annotations

import pandas as pd
import pytest

from precision_pain.data.split import assign_splits


def _ids(n_patients: int, episodes: int = 2) -> pd.Series:
    return pd.Series([f"P{i:05d}" for i in range(n_patients) for _ in range(episodes)])


def test_patients_never_straddle_splits():
    ids = _ids(500)
    labels = assign_splits(ids, 0.15, 0.25, seed=1)
    assert (pd.DataFrame({"id": ids, "s": labels}).groupby("id")["s"].nunique() == 1).all()


def test_fractions_and_determinism():
    ids = _ids(1000, 1)
    a = assign_splits(ids, 0.15, 0.25, seed=4)
    assert a.value_counts().to_dict() == {"train": 600, "test": 250, "valid": 150}
    pd.testing.assert_series_equal(a, assign_splits(ids, 0.15, 0.25, seed=4))
    assert not a.equals(assign_splits(ids, 0.15, 0.25, seed=5))


def test_assignment_ignores_row_order():
    ids = _ids(300, 1)
    shuffled = ids.sample(frac=1, random_state=0)
    a = assign_splits(ids, 0.2, 0.2, seed=2)
    b = assign_splits(shuffled, 0.2, 0.2, seed=2)
    assert (a.groupby(ids).first() == b.groupby(shuffled).first()).all()


def test_fractions_must_leave_training_rows():
    with pytest.raises(ValueError, match="below 1"):
        assign_splits(_ids(10), 0.5, 0.5, seed=0)
