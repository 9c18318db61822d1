"""Propensity model: fit, choice on validation, eligibility zeros, safe save/load, bundle."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from precision_pain.models.propensity import (PROPENSITY_TYPES, fit_propensity,
                                              load_propensity, multinomial_log_loss,
                                              predict_propensity)
from precision_pain.data.simulate import simulated_treatments
from precision_pain.registry import UnknownTreatmentError
from precision_pain.registry import eligibility as registry_eligibility

# The synthetic cohort's treatments (the registry without opt-in neurofeedback).
TREATMENT_NAMES = simulated_treatments()


def eligibility(frame: pd.DataFrame, treatments: list[str]) -> np.ndarray:
    return registry_eligibility(frame["condition"], treatments)

SMALL_XGB = {"n_estimators": 60, "learning_rate": 0.2, "max_depth": 2,
             "early_stopping_rounds": 10}
LOGISTIC = {"C": 1.0, "max_iter": 2000}


@pytest.fixture(scope="module")
def fitted(small_splits):
    """Both candidate types on the small cohort; the better one by validation log-loss."""
    return fit_propensity(small_splits["train"], small_splits["valid"],
                          {"xgboost": SMALL_XGB, "logistic": LOGISTIC}, seed=0)


def test_eligibility_by_hand():
    frame = pd.DataFrame({"condition": ["fibromyalgia", "knee_osteoarthritis"]})
    got = eligibility(frame, ["nsaid", "pregabalin", "cbt", "oxycodone"])
    # NSAIDs not for fibromyalgia; pregabalin not for knee OA; oxycodone not for fibromyalgia
    assert got.tolist() == [[False, True, True, False], [True, False, True, True]]


def test_unknown_treatment_is_an_error_naming_the_valid_ones(small_splits):
    with pytest.raises(UnknownTreatmentError, match="valid treatments: nsaid"):
        eligibility(pd.DataFrame({"condition": ["fibromyalgia"]}), ["nsaid", "acupuncture"])
    train = small_splits["train"].head(200).assign(treatment="acupuncture")
    with pytest.raises(UnknownTreatmentError, match="acupuncture"):
        fit_propensity(train, small_splits["valid"], {"logistic": LOGISTIC}, seed=0)


def test_chooses_the_lower_validation_log_loss(fitted, small_splits):
    model, report = fitted
    losses = report["valid_log_loss"]
    assert set(losses) == {"xgboost", "logistic"}
    assert report["chosen"] == min(losses, key=losses.get) == model.kind
    assert losses[model.kind] == pytest.approx(multinomial_log_loss(model, small_splits["valid"]))
    assert model.classes_ == [t for t in TREATMENT_NAMES if t in set(small_splits["train"]
                                                                       ["treatment"])]


def test_probabilities_sum_to_one_and_respect_eligibility(fitted, small_splits):
    model, _ = fitted
    test = small_splits["test"]
    e = predict_propensity(model, test, list(TREATMENT_NAMES))
    assert np.allclose(e.sum(axis=1), 1.0)
    assert np.all(e[~eligibility(test, list(TREATMENT_NAMES))] == 0)
    assert np.all(e[eligibility(test, list(TREATMENT_NAMES))] > 0)


def test_close_to_the_true_usual_care_probabilities(fitted, small_splits, small_synthetic):
    from precision_pain.evaluate.policy import wide

    model, _ = fitted
    test = small_splits["test"]
    names = list(TREATMENT_NAMES)
    e = predict_propensity(model, test, names)
    true = wide(small_synthetic.truth, "p_usual_care", test["patient_id"].astype(str), names)
    uniform = eligibility(test, names) / eligibility(test, names).sum(axis=1, keepdims=True)
    # much closer to the truth than guessing uniformly over eligible treatments
    assert np.abs(e - true).mean() < 0.6 * np.abs(uniform - true).mean()


@pytest.mark.parametrize("kind", ["xgboost", "logistic"])
def test_save_load_round_trip_without_pickle(kind, small_splits, tmp_path):
    hyper = SMALL_XGB if kind == "xgboost" else LOGISTIC
    model, _ = fit_propensity(small_splits["train"], small_splits["valid"], {kind: hyper}, 0)
    path = model.save(tmp_path / "propensity")
    assert path.name == f"propensity.{kind}.{'ubj' if kind == 'xgboost' else 'skops'}"
    loaded = load_propensity(path)
    test = small_splits["test"]
    names = list(TREATMENT_NAMES)
    np.testing.assert_allclose(predict_propensity(loaded, test, names),
                               predict_propensity(model, test, names), rtol=1e-6)
    assert loaded.classes_ == model.classes_


def test_bad_input_is_explained(small_splits):
    with pytest.raises(ValueError, match="valid: " + ", ".join(PROPENSITY_TYPES)):
        fit_propensity(small_splits["train"], small_splits["valid"], {"forest": {}}, 0)
    with pytest.raises(ValueError, match="no candidate"):
        fit_propensity(small_splits["train"], small_splits["valid"], {}, 0)


def test_bundle_saves_and_loads_the_propensity_model(small_bundle, fitted, small_splits,
                                                     tmp_path):
    from precision_pain.models.bundle import load_bundle, save_bundle

    model, report = fitted
    bundle = replace(small_bundle, propensity=model,
                     metadata={**small_bundle.metadata, "propensity": report})
    loaded = load_bundle(save_bundle(bundle, tmp_path / "bundle"))
    assert loaded.propensity is not None and loaded.propensity.kind == model.kind
    assert loaded.metadata["propensity"]["chosen"] == report["chosen"]
    test = small_splits["test"]
    np.testing.assert_allclose(predict_propensity(loaded.propensity, test, ["cbt"]),
                               predict_propensity(model, test, ["cbt"]), rtol=1e-6)
    plain = replace(small_bundle, propensity=None)
    without = load_bundle(save_bundle(plain, tmp_path / "plain"))
    assert without.propensity is None
