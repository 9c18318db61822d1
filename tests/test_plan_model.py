"""The plan learner: component-wise pooled design, exact SHAP per plan, the bundle round trip."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from precision_pain.data.features import build_features
from precision_pain.data.prepare import prepare_cohort
from precision_pain.data.simulate import simulate_cohort
from precision_pain.data.split import split_cohort
from precision_pain.models.plan_model import (
    N_COMPONENTS,
    PlanModel,
    episode_plans,
    fit_plan_models,
    has_plan_episodes,
    plan_design,
    plan_design_names,
    split_contributions,
)
from precision_pain.models.pooled import design, design_names

TREATMENTS = ("nsaid", "duloxetine", "tramadol", "physical_therapy", "epidural_steroid")


@pytest.fixture(scope="module")
def planned(params):
    sim = simulate_cohort(params.simulate.model_copy(update={"plans": True}), 0.3,
                          n_patients=1500, seed=5)
    return prepare_cohort(sim.cohort, "plans", 0.3)


@pytest.fixture(scope="module")
def fitted(planned, params):
    hyper = params.model.hyperparameters["pooled_xgboost"]
    settings = {**hyper, "response": {**hyper["response"], "default": {"max_depth": 3,
                                                                        "n_estimators": 60}},
                "adverse_event": {**hyper["adverse_event"], "n_estimators": [20, 40]}}
    splits = split_cohort(planned, 0.15, 0.25, seed=1)
    treatments = sorted({t for p in episode_plans(planned) for t in p.split("+")})
    settings["plan_optimism_correction"] = True
    return fit_plan_models(splits["train"], splits["valid"], treatments, settings, 3), splits


def test_one_component_plan_is_the_pooled_design_plus_its_size(planned):
    X = build_features(planned.head(4))
    got = plan_design(X, "duloxetine", TREATMENTS)
    np.testing.assert_array_equal(got[:, :-1], design(X, "duloxetine", TREATMENTS))
    assert (got[:, -1] == 1).all()
    assert plan_design_names(TREATMENTS) == [*design_names(TREATMENTS), N_COMPONENTS]


def test_plan_design_is_the_union_of_its_components(planned):
    X = build_features(planned.head(6))
    got = plan_design(X, "duloxetine+physical_therapy+epidural_steroid", TREATMENTS)
    parts = [design(X, t, TREATMENTS) for t in ("duloxetine", "physical_therapy",
                                                 "epidural_steroid")]
    np.testing.assert_array_equal(got[:, :-1], np.maximum.reduce(parts))
    assert (got[:, -1] == 3).all()
    per_row = plan_design(X, np.array(["nsaid", "tramadol+physical_therapy"] * 3, object),
                          TREATMENTS)
    names = plan_design_names(TREATMENTS)
    onehot = per_row[:, [names.index(f"treatment={t}") for t in TREATMENTS]]
    assert onehot.sum(axis=1).tolist() == [1, 2] * 3
    assert per_row[:, -1].tolist() == [1, 2] * 3


def test_episode_plans_read_v1_and_v2_rows():
    v1 = pd.DataFrame({"treatment": ["nsaid", "cbt"]})
    v2 = pd.DataFrame({"treatment": ["", "cbt"], "plan": ["nsaid+cbt", "cbt"]})
    assert episode_plans(v1).tolist() == ["nsaid", "cbt"]
    assert episode_plans(v2).tolist() == ["nsaid+cbt", "cbt"]
    assert not has_plan_episodes(v1) and has_plan_episodes(v2)


def test_plan_shap_parts_sum_to_the_plan_log_odds(fitted):
    models, splits = fitted
    X = build_features(splits["test"].head(20))
    plan = "duloxetine+physical_therapy"
    for outcome in ("response", "adverse_event"):
        model = models.model(outcome)
        phi = model.contributions_full(X, plan)
        parts = split_contributions(phi, plan, models.treatments)
        assert {"component=duloxetine", "component=physical_therapy"} <= set(parts)
        total = parts["features"].sum(axis=1) + sum(v for k, v in parts.items()
                                                    if k != "features")
        np.testing.assert_allclose(total, model.raw(X, plan), atol=1e-4)


def test_every_valid_plan_is_scored_and_the_bundle_keeps_the_plan_learner(fitted, tmp_path):
    from precision_pain.models.bundle import ModelBundle, load_bundle, save_bundle
    from precision_pain.data.features import FEATURE_NAMES

    models, splits = fitted
    assert models.summary["plan_train_multi_component_episodes"] > 0
    X = build_features(splits["test"].head(30))
    p = models.response.predict_plans(X, models.plans)
    assert p.shape == (30, len(models.plans)) and ((p > 0) & (p < 1)).all()
    bundle = ModelBundle("pooled_xgboost", FEATURE_NAMES, {}, {}, None, models)
    save_bundle(bundle, tmp_path / "b")
    loaded = load_bundle(tmp_path / "b")
    assert loaded.plan_models.plans == models.plans
    np.testing.assert_allclose(loaded.plan_models.response.predict_plans(X, models.plans), p,
                               rtol=1e-6)
    assert isinstance(loaded.plan_models.adverse_event, PlanModel)
    (tmp_path / "b" / "plans" / "response.pooled_plans.ubj").write_bytes(b"x")
    with pytest.raises(ValueError, match="plans/response.pooled_plans.ubj does not match"):
        load_bundle(tmp_path / "b")


def test_the_ranking_penalty_is_the_extra_selection_optimism_of_a_plans_size(fitted, params):
    models, splits = fitted
    summary = models.summary
    optimism = {k: summary[f"plan_selection_optimism_{k}"] for k in (1, 2, 3)}
    for k in (1, 2, 3):
        assert summary[f"plan_ranking_penalty_{k}"] == pytest.approx(
            max(0.0, optimism[k] - optimism[1]))
    penalty = models.ranking_penalty()
    sizes = np.array([p.count("+") + 1 for p in models.plans])
    assert (penalty[sizes == 1] == 0).all()
    np.testing.assert_allclose(penalty[sizes == 3], summary["plan_ranking_penalty_3"])
    # choosing the best of many noisy estimates promises more than an independent fit confirms
    assert optimism[3] > 0
    # seeded: the same settings give the same correction
    from precision_pain.models.plan_model import selection_optimism, fit_plan_outcome

    treatments = models.treatments

    def fit(frame, outcome, seed):
        return fit_plan_outcome(frame, outcome, 30, seed, treatments, {"max_depth": 2})

    args = (splits["train"], splits["valid"], treatments, fit, 7, 0.5)
    assert selection_optimism(*args) == selection_optimism(*args)


def test_plans_ranked_beside_the_single_treatments_change_nothing(fitted, small_bundle,
                                                                  options, monkeypatch):
    """recommend ranks and explains the plans on a second thread while it explains the single
    treatments: every output equals that of the two one after the other (the plans run when
    their result is asked for, after the single treatments)."""
    from dataclasses import replace

    from precision_pain.predict import recommend as module

    class Later:
        def __init__(self, fn, args):
            self.fn, self.args = fn, args

        def result(self):
            return self.fn(*self.args)

    class OneAfterTheOther:
        def __init__(self, workers: int):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def submit(self, fn, *args):
            return Later(fn, args)

    models, splits = fitted
    bundle = replace(small_bundle, plan_models=models)
    patients = splits["test"].head(80).reset_index(drop=True)
    together = module.recommend(patients, bundle, options)
    monkeypatch.setattr(module, "ThreadPoolExecutor", OneAfterTheOther)
    apart = module.recommend(patients, bundle, options)
    assert together.plans is not None and len(together.plans.table) > 0
    for got, want in ((together.table, apart.table), (together.shap, apart.shap),
                      (together.plans.table, apart.plans.table),
                      (together.plans.shap, apart.plans.shap)):
        pd.testing.assert_frame_equal(got, want)


def test_a_failure_in_the_single_treatments_releases_the_plan_thread(fitted, small_bundle,
                                                                   options, monkeypatch):
    """The plan thread waits for the single treatments' scores: when scoring them fails, the
    error reaches the caller (no thread left waiting, no hang)."""
    from dataclasses import replace

    from precision_pain.predict import recommend as module

    def broken(*args, **kwargs):
        raise RuntimeError("scoring failed")

    import threading

    models, splits = fitted
    monkeypatch.setattr(module, "score_patients", broken)
    raised: list[BaseException] = []

    def call() -> None:
        try:
            module.recommend(splits["test"].head(20).reset_index(drop=True),
                             replace(small_bundle, plan_models=models), options)
        except BaseException as error:  # noqa: BLE001 - what the caller would see
            raised.append(error)

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    caller.join(120)
    assert not caller.is_alive(), "recommend hung with the plan thread waiting"
    assert len(raised) == 1 and "scoring failed" in str(raised[0])


def test_a_warmed_up_bundle_builds_nothing_on_its_first_prediction(fitted, small_bundle,
                                                                   options, monkeypatch):
    """ModelBundle.warm_up (what a served model runs when it loads) builds every SHAP table
    and one-walk scorer, so the first request only looks them up."""
    from dataclasses import replace

    from precision_pain.models import plan_scoring, treeshap
    from precision_pain.predict.recommend import recommend

    import pickle

    models, splits = fitted
    # a copy as a freshly loaded bundle is: no table or scorer built yet (pickling drops them)
    bundle = pickle.loads(pickle.dumps(replace(small_bundle, plan_models=models)))
    bundle.warm_up()

    def refuse(*args, **kwargs):
        raise AssertionError("built during a prediction, after warm_up")

    monkeypatch.setattr(treeshap, "build_tables", refuse)
    monkeypatch.setattr(plan_scoring, "build_scorer", refuse)
    result = recommend(splits["test"].head(20).reset_index(drop=True), bundle, options)
    assert len(result.plans.table) > 0 and len(result.shap) > 0
