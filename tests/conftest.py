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
def small_bundle(small_splits, params):
    """The train stage's core on the small cohort for three treatments (no tracking):
    xgboost models, the training profile and a logistic propensity model."""
    from precision_pain.models.train import train_bundle
    from precision_pain.registry import select_treatments

    model = params.model.model_copy(update={"type": "xgboost", "seed": 0, "hyperparameters": {
        "xgboost": {"n_estimators": 150, "max_depth": 3, "learning_rate": 0.1},
        "propensity": {"logistic": {"C": 1.0, "max_iter": 2000}}}})
    return train_bundle(small_splits["train"], small_splits["valid"],
                        select_treatments(["tramadol", "duloxetine", "physical_therapy"]),
                        model, response_threshold=0.3, harm_weight=0.5, propensity_clip=0.01)


@pytest.fixture(scope="session")
def options(params):
    """Prediction settings from the project's params.yaml."""
    from precision_pain.predict.recommend import options_from_params

    return options_from_params(params)


# The modules that take minutes (dvc repro several times, a Dask cluster, notebook kernels),
# longest first (measured 2026-12-02). Only the order in which tests start depends on this.
LONGEST_FIRST = ("test_treatment_support.py", "test_pipeline_integration.py",
                 "test_dask_engine.py", "test_notebooks.py")


def pytest_collection_modifyitems(items):
    """Longest modules first, then the other modules with end-to-end (slow) tests, then the
    rest; each module's tests together and in their order. README's `pytest -n 2` hands whole
    modules to two worker processes in this order (pyproject.toml: `--dist loadfile
    --no-loadscope-reorder`), so the long modules start at once and the short ones fill in at
    the end: both workers finish together."""
    slow = {item.path for item in items if item.get_closest_marker("slow")}

    def rank(item) -> tuple[int, int]:
        name = item.path.name
        return (LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST),
                item.path not in slow)

    items.sort(key=rank)
