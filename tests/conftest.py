"""Shared fixtures: a small synthetic cohort, prepared and split once per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("PRECISION_PAIN_PROGRESS", "0")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def params():
    """The project's params.yaml, validated."""
    from precision_pain.config import load_params

    return load_params(ROOT / "params.yaml")


@pytest.fixture(scope="session")
def small_synthetic(params):
    """A 4,000-patient synthetic cohort with its ground truth."""
    from precision_pain.data.simulate import simulate_cohort

    return simulate_cohort(params.simulate, params.prepare.response_threshold,
                           n_patients=4000, seed=123)


@pytest.fixture(scope="session")
def small_splits(small_synthetic, params):
    """The small cohort prepared and split into train/valid/test."""
    from precision_pain.data.prepare import prepare_cohort
    from precision_pain.data.split import split_cohort

    prepared = prepare_cohort(small_synthetic.cohort, "synthetic", 0.3)
    return split_cohort(prepared, 0.15, 0.25, seed=1)


@pytest.fixture(scope="session")
def small_bundle(small_splits):
    """xgboost models for three treatments, trained on the small cohort (no tracking)."""
    from precision_pain.models.bundle import bundle_from_training
    from precision_pain.registry import select_treatments
    from precision_pain.models.train import train_all

    fitted = train_all(select_treatments(["tramadol", "duloxetine", "physical_therapy"]),
                       small_splits["train"], small_splits["valid"], "xgboost",
                       {"n_estimators": 150, "max_depth": 3, "learning_rate": 0.1}, seed=0)
    return bundle_from_training(fitted, "xgboost", {"response_threshold": 0.3})
