"""The pooled learner's refit on train + validation (models/pooled.py)."""

from __future__ import annotations

import numpy as np
import pytest

from precision_pain.data.features import build_features
from precision_pain.models.train import train_bundle, training_summary
from precision_pain.registry import select_treatments

TREATMENTS = ["tramadol", "duloxetine", "physical_therapy"]


def _pooled(params, refit: bool):
    settings = {
        "response": {"max_depth": [2, 3], "n_estimators": [20, 40],
                     "default": {"max_depth": 3, "n_estimators": 40}, "learning_rate": 0.1,
                     "min_child_weight": 5},
        "adverse_event": {"n_estimators": [10, 30], "max_depth": 2, "learning_rate": 0.1},
        "replace_z": 2.0, "refit_on_validation": refit}
    return params.model.model_copy(update={"type": "pooled_xgboost", "seed": 3, "hyperparameters": {
        "pooled_xgboost": settings, "propensity": {"logistic": {"C": 1.0, "max_iter": 2000}}}})


@pytest.fixture(scope="module")
def bundles(small_splits, params):
    """The pooled learner trained on the small cohort without, and twice with, the refit."""
    def train(refit: bool):
        return train_bundle(small_splits["train"], small_splits["valid"],
                            select_treatments(TREATMENTS), _pooled(params, refit),
                            response_threshold=0.3, harm_weight=0.5, propensity_clip=0.01)
    return train(False), train(True), train(True)


def _matrix(bundle, X, outcome):
    return np.column_stack([bundle.model(t, outcome).predict_proba(X) for t in TREATMENTS])


def test_refit_keeps_every_choice_and_changes_only_the_data(bundles, small_splits):
    plain, refitted, again = bundles
    X = build_features(small_splits["test"])
    chosen = plain.metadata["selection"]
    assert refitted.metadata["selection"]["valid_dr_net_benefit"] == chosen["valid_dr_net_benefit"]
    assert refitted.metadata["selection"]["refit_on_validation"] == 1.0
    assert "refit_on_validation" not in chosen
    for outcome in ("response", "adverse_event"):
        a, b = _matrix(plain, X, outcome), _matrix(refitted, X, outcome)
        assert not np.allclose(a, b), outcome  # more data, other trees
        np.testing.assert_array_equal(b, _matrix(again, X, outcome))  # same params, same numbers
        trees = [plain.model(t, outcome).pooled.n_trees for t in TREATMENTS]
        assert trees == [refitted.model(t, outcome).pooled.n_trees for t in TREATMENTS]


def test_refit_reports_the_validation_figures_of_the_train_only_fit(bundles, small_splits):
    plain, refitted, _ = bundles
    valid = small_splits["valid"]
    before = training_summary(plain, valid, 0.5, 0.01, 1.0)
    after = training_summary(refitted, valid, 0.5, 0.01, 1.0)
    # never the refitted models' in-sample value on the validation split they were fitted on
    assert after["valid_dr_net_benefit"] == before["valid_dr_net_benefit"]
    assert after["valid_dr_standard_error"] == pytest.approx(before["valid_dr_standard_error"])
    assert "train-only" in after["valid_dr_of"] and "valid_dr_of" not in before
