"""Model-type contract: fit/predict, exact SHAP additivity, safe round trips."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from precision_pain.models.estimators import (
    MODEL_TYPES, SELECTABLE_MODEL_TYPES, fit_binary, get_model_class, load_model, make_model,
)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(1200, 5)), columns=list("abcde")).astype(np.float32)
    X.iloc[::17, 2] = np.nan  # missing values must be handled by every model type
    logit = 1.5 * X["a"].to_numpy() - np.nan_to_num(X["c"].to_numpy()) + 0.5 * (X["b"] > 0)
    y = (rng.random(1200) < 1 / (1 + np.exp(-logit))).astype(int)
    return X.iloc[:900], y[:900], X.iloc[900:], y[900:]


HYPER = {"xgboost": {"n_estimators": 80, "max_depth": 3}, "logistic": {"C": 1.0},
         "hist_gb": {"max_iter": 80, "max_depth": 3}}


@pytest.mark.parametrize("kind", SELECTABLE_MODEL_TYPES)
def test_fit_predict_learns_signal(kind, data):
    X, y, Xv, yv = data
    model = make_model(kind, HYPER[kind], seed=0).fit(X, y, Xv, yv)
    p = model.predict_proba(Xv)
    assert p.shape == (len(Xv),) and np.all((p > 0) & (p < 1))
    from sklearn.metrics import roc_auc_score
    assert roc_auc_score(yv, p) > 0.75


@pytest.mark.parametrize("kind", SELECTABLE_MODEL_TYPES)
def test_shap_values_sum_to_the_logit(kind, data):
    X, y, Xv, yv = data
    model = make_model(kind, HYPER[kind], seed=0).fit(X, y, Xv, yv)
    contrib = model.contributions(Xv)
    assert contrib.shape == (len(Xv), X.shape[1] + 1)
    p = model.predict_proba(Xv)
    np.testing.assert_allclose(contrib.sum(axis=1), np.log(p / (1 - p)), atol=1e-3)


@pytest.mark.parametrize("kind", SELECTABLE_MODEL_TYPES)
def test_save_load_round_trip_without_pickle(kind, data, tmp_path):
    X, y, Xv, yv = data
    model = make_model(kind, HYPER[kind], seed=0).fit(X, y, Xv, yv)
    path = model.save(tmp_path / "response")
    assert path.name.startswith(f"response.{kind}.")
    assert path.suffix in {".ubj", ".skops"}
    loaded = load_model(path)
    np.testing.assert_allclose(loaded.predict_proba(Xv), model.predict_proba(Xv), rtol=1e-6)
    np.testing.assert_allclose(loaded.contributions(Xv), model.contributions(Xv), atol=1e-5)


def test_xgboost_without_early_stopping_keeps_every_tree(data):
    """early_stopping_rounds: null keeps n_estimators trees (chosen as a shared grid value)."""
    X, y, Xv, yv = data
    # a tiny noisy validation set, on which early stopping would stop after a few trees
    noisy = np.random.default_rng(1).integers(0, 2, size=40)
    kept = make_model("xgboost", {"n_estimators": 60, "early_stopping_rounds": None},
                      seed=0).fit(X, y, Xv.iloc[:40], noisy)
    stopped = make_model("xgboost", {"n_estimators": 60, "early_stopping_rounds": 3},
                         seed=0).fit(X, y, Xv.iloc[:40], noisy)
    assert kept.booster_.num_boosted_rounds() == 60 == kept.summary()["n_trees"]
    assert stopped.booster_.num_boosted_rounds() < 60


def test_same_seed_same_model(data):
    X, y, Xv, yv = data
    hyper = {"n_estimators": 50, "subsample": 0.7, "colsample_bytree": 0.7}
    a = make_model("xgboost", hyper, seed=3).fit(X, y, Xv, yv).predict_proba(Xv)
    b = make_model("xgboost", hyper, seed=3).fit(X, y, Xv, yv).predict_proba(Xv)
    np.testing.assert_array_equal(a, b)


def test_too_few_events_falls_back_to_constant(data, tmp_path):
    X, _, Xv, _ = data
    y = np.zeros(len(X), dtype=int)
    y[:2] = 1
    model = fit_binary("xgboost", HYPER["xgboost"], 0, X, y, Xv, np.zeros(len(Xv), dtype=int))
    assert model.kind == "constant"
    assert np.allclose(model.predict_proba(Xv), (2 + 0.5) / (len(X) + 1))
    assert np.allclose(model.contributions(Xv)[:, :-1], 0)
    assert load_model(model.save(tmp_path / "ae")).rate_ == model.rate_


def test_columns_must_match_training(data):
    X, y, Xv, yv = data
    model = make_model("logistic", {}, seed=0).fit(X, y, Xv, yv)
    with pytest.raises(ValueError, match="missing"):
        model.predict_proba(Xv.drop(columns="a"))


def test_unknown_model_type_lists_valid_ones():
    with pytest.raises(ValueError, match="xgboost, logistic, hist_gb"):
        get_model_class("random_forest")
    assert set(SELECTABLE_MODEL_TYPES) <= set(MODEL_TYPES)


def test_sliced_xgboost_is_the_smaller_fit(data, tmp_path):
    X, y, Xv, yv = data
    hyper = {"max_depth": 2, "subsample": 0.8, "colsample_bytree": 0.8,
             "early_stopping_rounds": None}
    big = make_model("xgboost", {**hyper, "n_estimators": 60}, seed=3).fit(X, y, Xv, yv)
    small = make_model("xgboost", {**hyper, "n_estimators": 25}, seed=3).fit(X, y, Xv, yv)
    cut = big.sliced(25)
    assert np.max(np.abs(cut.predict_proba(Xv) - small.predict_proba(Xv))) == 0.0
    assert np.max(np.abs(cut.contributions(Xv) - small.contributions(Xv))) == 0.0
    assert cut.save(tmp_path / "a").read_bytes() == small.save(tmp_path / "b").read_bytes()
    assert cut.summary() == {"n_trees": 25}


@pytest.mark.parametrize(("kind", "hyper", "key"), [
    ("xgboost", {"n_estimators": 10, "early_stopping_rounds": None}, "n_estimators"),
    ("xgboost", {"n_estimators": 10, "early_stopping_rounds": 5}, None),
    ("xgboost", {"n_estimators": 10}, None),  # early stopping by default
    ("logistic", {"C": 1.0}, None), ("hist_gb", {"max_depth": 2}, None)])
def test_only_a_tree_count_without_early_stopping_is_sliceable(kind, hyper, key):
    from precision_pain.models.estimators import sliceable

    assert sliceable(kind, hyper) == key


def test_grid_scored_by_slicing_matches_one_fit_per_point(small_splits):
    from precision_pain.data.features import build_features
    from precision_pain.models.train import train_all
    from precision_pain.registry import select_treatments

    treatments = select_treatments(["tramadol", "cbt"])
    X = build_features(small_splits["valid"])
    base = {"max_depth": 2, "subsample": 0.8, "early_stopping_rounds": None}
    grid = train_all(treatments, small_splits["train"], small_splits["valid"], "xgboost",
                     {**base, "n_estimators": [10, 30], "learning_rate": [0.05, 0.1]}, seed=1)
    chosen = grid["tramadol"].validation
    for outcome in ("response", "adverse_event"):
        point = {**base, "n_estimators": int(chosen[f"valid_{outcome}_chosen_n_estimators"]),
                 "learning_rate": chosen[f"valid_{outcome}_chosen_learning_rate"]}
        single = train_all(treatments, small_splits["train"], small_splits["valid"],
                           "xgboost", point, seed=1)
        for name in ("tramadol", "cbt"):
            got = grid[name].models[outcome].predict_proba(X)
            assert np.max(np.abs(got - single[name].models[outcome].predict_proba(X))) == 0.0


def test_train_bundle_holds_models_profile_and_propensity(small_bundle):
    from precision_pain.models.profile import has_profile
    from precision_pain.registry import OUTCOMES

    assert small_bundle.treatments == ("tramadol", "duloxetine", "physical_therapy")
    assert all(set(small_bundle.models[t]) == set(OUTCOMES) for t in small_bundle.treatments)
    assert has_profile(small_bundle.metadata)
    assert small_bundle.propensity is not None
    assert small_bundle.metadata["propensity"]["chosen"] == small_bundle.propensity.kind
    assert small_bundle.metadata["counts"]["tramadol"]["n_train"] > 0
