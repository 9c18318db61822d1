"""Plans scored in one pass per tree (models/plan_scoring.py) give xgboost's predictions."""

from __future__ import annotations

import numpy as np
import pytest

from precision_pain.data.features import build_features
from precision_pain.data.prepare import prepare_cohort
from precision_pain.data.simulate import simulate_cohort
from precision_pain.data.split import split_cohort
from precision_pain.models.plan_model import condition_codes, episode_plans, fit_plan_models
from precision_pain.models.plan_scoring import build_scorer, cached_scorer
from precision_pain.plans import parse_plan, plan_eligibility
from precision_pain.registry import CONDITIONS


@pytest.fixture(scope="module")
def planned(params):
    sim = simulate_cohort(params.simulate.model_copy(update={"plans": True}), 0.3,
                          n_patients=1500, seed=8)
    prepared = prepare_cohort(sim.cohort, "plans", 0.3)
    hyper = params.model.hyperparameters["pooled_xgboost"]
    settings = {**hyper, "response": {**hyper["response"], "default": {"max_depth": 4,
                                                                        "n_estimators": 80}},
                "adverse_event": {**hyper["adverse_event"], "n_estimators": [20, 40]},
                "plan_optimism_correction": False}
    splits = split_cohort(prepared, 0.15, 0.25, seed=2)
    treatments = sorted({t for p in episode_plans(prepared) for t in p.split("+")})
    models = fit_plan_models(splits["train"], splits["valid"], treatments, settings, 4)
    return models, splits["test"]


def _reference(model, X, plans, eligible):
    rows, cols = np.nonzero(eligible)
    out = np.full(eligible.shape, np.nan)
    out[rows, cols] = model.booster_.inplace_predict(
        model.design_of(X.iloc[rows], np.asarray(plans, dtype=object)[cols], model.treatments),
        validate_features=False, predict_type="margin")
    return out


@pytest.mark.parametrize("outcome", ["response", "adverse_event"])
def test_margins_are_xgboosts(planned, outcome):
    models, test = planned
    model = models.model(outcome)
    X = build_features(test)
    X.iloc[::7, X.columns.get_loc("pcs")] = np.nan  # missing values take the default side
    X.iloc[::5, X.columns.get_loc("cyp2d6_activity_score")] = np.nan
    plans = models.plans
    eligible = plan_eligibility(test["condition"], [parse_plan(p) for p in plans])
    scorer = build_scorer(model.booster_, plans, model.treatments, objective_logistic=True)
    got = scorer.margins(X.to_numpy(np.float32), condition_codes(X), eligible)
    want = _reference(model, X, plans, eligible)
    assert np.array_equal(np.isnan(got), ~eligible)
    np.testing.assert_allclose(got[eligible], want[eligible], atol=2e-5)
    split = scorer.margins(X.to_numpy(np.float32), condition_codes(X), eligible, threads=3)
    np.testing.assert_array_equal(split, got)  # the thread split changes nothing
    probability = scorer.predict(X.to_numpy(np.float32), condition_codes(X), eligible)
    np.testing.assert_allclose(probability[eligible], model.booster_.inplace_predict(
        model.design_of(X.iloc[np.nonzero(eligible)[0]],
                        np.asarray(plans, dtype=object)[np.nonzero(eligible)[1]],
                        model.treatments), validate_features=False), atol=5e-6)


def test_any_eligibility_pattern_and_no_condition(planned):
    """Every plan of every row, whatever the condition says (including none): still exact."""
    models, test = planned
    model = models.model("response")
    X = build_features(test.head(40))
    X.loc[X.index[:5], [f"condition={c}" for c in CONDITIONS]] = 0.0  # no condition
    everything = np.ones((len(X), len(models.plans)), dtype=bool)
    rng = np.random.default_rng(0)
    some = rng.random(everything.shape) < 0.3
    for eligible in (everything, some):
        scorer = cached_scorer(model, models.plans, model.treatments)
        got = scorer.margins(X.to_numpy(np.float32), condition_codes(X), eligible)
        want = _reference(model, X, models.plans, eligible)
        np.testing.assert_allclose(got[eligible], want[eligible], atol=2e-5)
    assert cached_scorer(model, models.plans, model.treatments) is scorer  # built once


def test_predict_ranks_plans_with_the_fast_scores(planned):
    from precision_pain.predict.plans import predict_eligible

    models, test = planned
    X = build_features(test)
    eligible = plan_eligibility(test["condition"], [parse_plan(p) for p in models.plans])
    for outcome in ("response", "adverse_event"):
        got = predict_eligible(X, models, models.plans, eligible, outcome)
        model = models.model(outcome)
        rows, cols = np.nonzero(eligible)
        want = model.predict_proba(X.iloc[rows], np.asarray(models.plans, dtype=object)[cols])
        np.testing.assert_allclose(got[rows, cols], want, atol=5e-6)
        assert np.isnan(got[~eligible]).all()


@pytest.mark.parametrize("objective", ["binary", "continuous"])
def test_pooled_scores_every_treatment_in_one_walk(small_splits, objective):
    """The single-treatment pooled learner's scores (a treatment is a one-component plan):
    xgboost's per-treatment predictions, with and without a stacked companion, for rows with
    missing values and rows with no condition; the bundle maps them to its treatment order."""
    from precision_pain.models.bundle import ModelBundle
    from precision_pain.models.pooled import PooledModel

    train = small_splits["train"]
    treatments = sorted(train["treatment"].unique())
    X = build_features(train)
    y = train["response"].to_numpy(float)
    if objective == "continuous":
        y = y + np.random.default_rng(1).normal(size=len(y))
    model = PooledModel.fit(X, train["treatment"].to_numpy(), y, "response", 60, 0, treatments,
                            outcome_type=objective, max_depth=4, learning_rate=0.1)
    test = build_features(small_splits["test"])
    test.iloc[::7, test.columns.get_loc("pcs")] = np.nan
    test.loc[test.index[:5], [f"condition={c}" for c in CONDITIONS]] = 0.0
    np.testing.assert_allclose(model.scores(test), model.predict_matrix(test), atol=1e-6)
    if objective == "binary":
        companion = PooledModel.fit(X, train["treatment"].to_numpy(),
                                    np.random.default_rng(2).normal(size=len(y)), "response",
                                    30, 0, treatments, outcome_type="continuous", max_depth=3)
        stacked = model.stacked(companion, (0.1, 0.9, 0.5))
        np.testing.assert_allclose(stacked.scores(test), stacked.predict_matrix(test),
                                   atol=1e-6)
    reordered = ModelBundle("pooled_xgboost", tuple(test.columns),
                            {t: {"response": model.view(t)} for t in reversed(treatments)}, {})
    np.testing.assert_allclose(reordered.scores(test, "response"),
                               model.predict_matrix(test)[:, ::-1], atol=1e-6)
    with pytest.raises(ValueError, match="feature columns"):
        model.scores(test.iloc[:, ::-1])
    # a model sent to a worker travels without its scorers and rebuilds them there
    import pickle

    copy = pickle.loads(pickle.dumps(model))
    assert "_plan_scorers" in model.__dict__ and "_plan_scorers" not in copy.__dict__
    np.testing.assert_array_equal(copy.scores(test), model.scores(test))
