"""Cross-fitted evaluation (evaluate/crossfit.py): every patient valued by models that never
saw them, the learner trained as `precision-pain train` trains it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from precision_pain.evaluate import crossfit
from precision_pain.evaluate.core import headline_gain
from precision_pain.outcome import OutcomeSpec


def test_folds_keep_a_patients_episodes_together_and_are_balanced_and_seeded():
    ids = pd.Series([f"p{i // 2}" for i in range(40)])  # 20 patients, 2 episodes each
    fold = crossfit.assign_folds(ids, 3, seed=5)
    per_patient = pd.Series(fold).groupby(ids).nunique()
    assert (per_patient == 1).all()
    sizes = pd.Series(fold).groupby(ids).first().value_counts()
    assert sorted(sizes) == [6, 7, 7]
    assert np.array_equal(fold, crossfit.assign_folds(ids, 3, seed=5))
    assert not np.array_equal(fold, crossfit.assign_folds(ids, 3, seed=6))
    with pytest.raises(ValueError, match="21 folds for 20 patients"):
        crossfit.assign_folds(ids, 21, seed=5)


def test_large_extracts_and_a_zero_setting_are_not_cross_fitted(params):
    settings = params.evaluate.model_copy(update={"cross_fitted_folds": 5,
                                                  "cross_fitted_max_patients": 1000})
    assert crossfit.not_cross_fitted(1000, settings) is None
    assert "more than evaluate.cross_fitted_max_patients = 1000" in crossfit.not_cross_fitted(
        1001, settings)
    off = settings.model_copy(update={"cross_fitted_folds": 0})
    assert crossfit.not_cross_fitted(10, off) == "evaluate.cross_fitted_folds is 0"


def test_folds_setting_refuses_a_single_fold(params):
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="one fold leaves nothing to train on"):
        params.evaluate.model_validate({**params.evaluate.model_dump(), "cross_fitted_folds": 1})


@pytest.fixture(scope="module")
def small_params(params):
    """The default learner with a short grid, on 2 folds of the small cohort."""
    model = params.model.model_copy(update={"type": "xgboost", "seed": 0, "hyperparameters": {
        "xgboost": {"n_estimators": 80, "max_depth": 2, "learning_rate": 0.1},
        "propensity": {"logistic": {"C": 1.0, "max_iter": 2000}}},
        "treatments": ["tramadol", "duloxetine", "physical_therapy"]})
    evaluate = params.evaluate.model_copy(update={"cross_fitted_folds": 2, "n_bootstrap": 30})
    return params.model_copy(update={"model": model, "evaluate": evaluate})


@pytest.fixture(scope="module")
def crossed(small_splits, small_synthetic, small_params, monkeypatch_module):
    """Every episode of the small cohort, cross-fitted; each training's patients recorded."""
    import precision_pain.models.train as train

    seen: list[set[str]] = []
    real = train.train_bundle

    def recording(train_df, valid_df, *args, **kwargs):
        seen.append(set(train_df["patient_id"]) | set(valid_df["patient_id"]))
        return real(train_df, valid_df, *args, **kwargs)

    monkeypatch_module.setattr(train, "train_bundle", recording)
    held: list[set[str]] = []
    real_terms = crossfit.fold_terms

    def terms(held_df, rest, *args, **kwargs):
        held.append(set(held_df["patient_id"]))
        return real_terms(held_df, rest, *args, **kwargs)

    monkeypatch_module.setattr(crossfit, "fold_terms", terms)
    episodes = pd.concat(small_splits.values(), ignore_index=True)
    result = crossfit.cross_fitted_gain(episodes, small_params, small_synthetic.truth,
                                        OutcomeSpec())
    return result, seen, held, episodes


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


def test_every_patient_is_valued_once_by_models_that_never_saw_them(crossed):
    result, seen, held, episodes = crossed
    assert len(seen) == len(held) == 2
    assert set.union(*held) == set(episodes["patient_id"]) and not (held[0] & held[1])
    for trained_on, valued in zip(seen, held):
        assert not (trained_on & valued)
        assert trained_on == set(episodes["patient_id"]) - valued
    assert result["folds"] == 2 and result["n_patients"] == episodes["patient_id"].nunique()
    assert result["n_train_patients_per_fold"] == min(len(s) for s in seen)


def test_cross_fitted_gains_carry_intervals_and_the_truth_beside_them(crossed):
    result = crossed[0]
    for baseline in ("one_size_fits_all", "usual_care"):
        gain = headline_gain(result, baseline)
        assert gain is not None and gain["ci_low"] <= gain["estimate"] <= gain["ci_high"]
    # the truth of the same fold policies (a gain over one treatment for everyone of a few
    # hundredths in net benefit on the simulator), and the estimate within reach of it
    true = result["model_true_gain_over_one_size_fits_all"]
    assert np.isfinite(true) and np.isfinite(result["model_true_gain_over_usual_care"])
    assert abs(result["model_dr_gain_over_one_size_fits_all"] - true) < 0.1
    assert result["one_size_fits_all_treatment"].split(" (")[0] in {
        "tramadol", "duloxetine", "physical_therapy"}
    # the simulator's truth records usual care's probabilities: the same gain valued with
    # them in place of the fold's propensity model, with its own interval
    known = headline_gain(result, "one_size_fits_all_with_true_propensity")
    assert known is not None and known["ci_low"] <= known["estimate"] <= known["ci_high"]
    assert abs(known["estimate"] - true) < 0.1
    assert known["estimate"] != result["model_dr_gain_over_one_size_fits_all"]


def test_a_truth_without_usual_care_probabilities_gives_no_true_propensity_gain(
        small_splits, small_synthetic, small_params):
    episodes = pd.concat(small_splits.values(), ignore_index=True)
    truth = small_synthetic.truth.drop(columns="p_usual_care")
    result = crossfit.cross_fitted_gain(episodes, small_params, truth, OutcomeSpec())
    assert np.isfinite(result["model_true_gain_over_one_size_fits_all"])
    assert not any(key.startswith("model_dr_gain_over_one_size_fits_all_with")
                   for key in result)


def test_the_pooled_terms_are_means_over_patients_with_a_patient_bootstrap():
    ids = np.array(["a", "b", "c", "d"])
    terms = [crossfit.FoldTerms(ids[:2], {"model": np.array([1.0, 0.0]),
                                          "one_size_fits_all": np.array([0.5, 0.5]),
                                          "usual_care": np.array([0.0, 0.0])}, None, "x", 2),
             crossfit.FoldTerms(ids[2:], {"model": np.array([1.0, 1.0]),
                                          "one_size_fits_all": np.array([0.0, 0.0]),
                                          "usual_care": np.array([1.0, 0.0])}, None, "y", 2)]
    out = crossfit.summarize_folds(terms, n_bootstrap=200, seed=1)
    assert out["model_dr_net_benefit"] == pytest.approx(0.75)
    assert out["model_dr_gain_over_one_size_fits_all"] == pytest.approx((0.5 - 0.5 + 1 + 1) / 4)
    assert out["model_dr_gain_over_usual_care"] == pytest.approx((1 + 0 + 0 + 1) / 4)
    assert out["one_size_fits_all_treatment"] == "x (1 of 2 folds), y (1 of 2 folds)"
    assert "model_true_gain_over_one_size_fits_all" not in out
    low, high = (out["model_dr_gain_over_one_size_fits_all_ci_low"],
                 out["model_dr_gain_over_one_size_fits_all_ci_high"])
    assert -0.5 <= low < 0.5 < high <= 1  # per-patient gains 0.5, -0.5, 1, 1
    # terms valued with the truth's propensities in every fold: their gain beside the others
    known = [crossfit.FoldTerms(t.patient_ids, t.dr, None, t.one_size_fits_all, 2,
                                {name: v + 0.25 * (name == "model") for name, v in t.dr.items()})
             for t in terms]
    out = crossfit.summarize_folds(known, n_bootstrap=50, seed=1)
    assert out["model_dr_gain_over_one_size_fits_all_with_true_propensity"] == pytest.approx(
        (0.5 - 0.5 + 1 + 1) / 4 + 0.25)
    partial = crossfit.summarize_folds([known[0], terms[1]], n_bootstrap=50, seed=1)
    assert "model_dr_gain_over_one_size_fits_all_with_true_propensity" not in partial
    # a fold without a treatment open to every patient: no gain over one-size-fits-all
    bare = crossfit.FoldTerms(ids[2:], {"model": np.ones(2), "usual_care": np.zeros(2)},
                              None, None, 2)
    out = crossfit.summarize_folds([terms[0], bare], n_bootstrap=20, seed=1)
    assert "model_dr_gain_over_one_size_fits_all" not in out
    assert "one_size_fits_all_treatment" not in out and "model_dr_gain_over_usual_care" in out


def test_a_fold_the_learner_cannot_be_trained_on_says_so_and_how_to_skip(
        monkeypatch, small_splits, small_params):
    import precision_pain.models.train as train

    def refuse(*args, **kwargs):
        raise ValueError("model.treatments names cbt, but only 12 training patients got it")

    monkeypatch.setattr(train, "modeled_treatments", refuse)
    episodes = pd.concat(small_splits.values(), ignore_index=True)
    with pytest.raises(ValueError, match=r"could not be trained on \d+ patients \(one fold left "
                       r"out\): model.treatments names cbt.*evaluate.cross_fitted_folds: 0"):
        crossfit.cross_fitted_gain(episodes, small_params, None, OutcomeSpec())
