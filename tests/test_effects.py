"""The pooled learner on any table (models/effects.py) and the causal benchmark script."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmark_modules import load_benchmark
from precision_pain.models.effects import CONTINUOUS_SETTINGS, PooledEffectLearner, dr_scores

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"max_depth": [2, 3], "n_estimators": [50, 150], "learning_rate": 0.1,
            "default": {"max_depth": 2, "n_estimators": 150}}
PROPENSITY = {"n_estimators": 50, "max_depth": 2, "early_stopping_rounds": 10}
# The stacked learner with a small grid (the benchmark's defaults are CONTINUOUS_SETTINGS).
STACKED = {**CONTINUOUS_SETTINGS, "max_depth": [2, 3], "n_estimators": [50, 150],
           "stack_folds": 3}


def _table(n: int, seed: int):
    """Confounded treatment, effect 2 * x1 (the sign varies), known truth."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    t = (rng.random(n) < 1 / (1 + np.exp(-X[:, 0]))).astype(int).astype(str)
    tau = 2.0 * X[:, 1]
    y = X[:, 0] + X[:, 2] + (t == "1") * tau + rng.normal(scale=0.5, size=n)
    return X, t, y, tau


def _bench():
    return load_benchmark("causal_benchmarks")


@pytest.fixture(scope="module")
def fitted():
    X, t, y, tau = _table(1500, 0)
    learner = PooledEffectLearner(SETTINGS, ["0", "1"], propensity=PROPENSITY, seed=3)
    return learner.fit(X[:900], t[:900], y[:900], X[900:1200], t[900:1200], y[900:1200]), X, tau


def test_recovers_a_heterogeneous_effect(fitted):
    learner, X, tau = fitted
    estimate = learner.effect(X[1200:], "1", "0")
    pehe = np.sqrt(np.mean((estimate - tau[1200:]) ** 2))
    assert pehe < 0.6 * tau.std()  # a constant effect would score tau.std()
    assert np.corrcoef(estimate, tau[1200:])[0, 1] > 0.85
    assert set(learner.table_.columns) >= {"max_depth", "n_trees", "valid_dr"}
    assert len(learner.table_) == 4 and learner.chosen_["max_depth"] in (2, 3)


def test_direction_of_the_outcome_sets_the_recommendation(fitted):
    learner, X, tau = fitted
    higher = learner.recommend(X[1200:])
    learner.higher_is_better = False
    try:
        lower = learner.recommend(X[1200:])
    finally:
        learner.higher_is_better = True
    assert (higher != lower).all()
    assert np.mean((higher == "1") == (tau[1200:] > 0)) > 0.85


def test_same_seed_same_model_and_refit_uses_more_rows():
    X, t, y, _ = _table(600, 1)
    a, b, c = (PooledEffectLearner(SETTINGS, ["0", "1"], propensity=PROPENSITY, seed=5,
                                   refit=refit)
               .fit(X[:400], t[:400], y[:400], X[400:], t[400:], y[400:])
               for refit in (False, False, True))
    np.testing.assert_array_equal(a.predict_matrix(X), b.predict_matrix(X))
    assert c.chosen_ == a.chosen_
    assert not np.allclose(a.predict_matrix(X), c.predict_matrix(X))


def test_errors_are_clear():
    X, t, y, _ = _table(300, 2)
    learner = PooledEffectLearner(SETTINGS, ["0", "1"], propensity=PROPENSITY)
    with pytest.raises(RuntimeError, match="not fitted"):
        learner.predict_matrix(X)
    with pytest.raises(ValueError, match="unknown outcome type"):
        PooledEffectLearner(SETTINGS, ["0", "1"], outcome_type="counts").fit(
            X, t, y, X, t, y)
    learner.fit(X[:200], t[:200], y[:200], X[200:], t[200:], y[200:])
    with pytest.raises(ValueError, match="feature columns differ"):
        learner.predict_matrix(X[:, :3])


def _stacked(n: int, data_seed: int, **kwargs):
    X, t, y, tau = _table(n, data_seed)
    a, b = int(0.6 * n), int(0.8 * n)
    learner = PooledEffectLearner(STACKED, ["0", "1"], propensity=PROPENSITY, refit=True,
                                  **kwargs)
    return learner.fit(X[:a], t[:a], y[:a], X[a:b], t[a:b], y[a:b]), X[b:], tau[b:]


def test_stacked_learner_recovers_a_heterogeneous_effect():
    learner, X, tau = _stacked(1500, 0, seed=3)
    estimate = learner.effect(X, "1", "0")
    pehe = np.sqrt(np.mean((estimate - tau) ** 2))
    assert pehe < 0.4 * tau.std()  # a constant effect would score tau.std()
    assert np.corrcoef(estimate, tau)[0, 1] > 0.9
    assert set(learner.weights_) == {"pooled", "per_arm", "x", "constant"}
    assert all(w >= 0 for w in learner.weights_.values())
    assert sum(learner.weights_[k] for k in ("pooled", "per_arm", "x")) > 0.5
    assert set(learner.components_["component"]) == {"pooled", "arm=0", "arm=1", "x=1|1",
                                                     "x=1|0"}
    np.testing.assert_allclose(learner.effect(X, "0", "1"), -estimate)


def test_stacked_learner_falls_back_to_a_constant_effect():
    """No heterogeneity: the stack should put (nearly) everything on the constant."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(1200, 4))
    t = (rng.random(1200) < 0.5).astype(int).astype(str)
    y = X[:, 0] + 1.5 * (t == "1") + rng.normal(size=1200)
    learner = PooledEffectLearner(STACKED, ["0", "1"], propensity=PROPENSITY, refit=True,
                                  seed=1).fit(X[:700], t[:700], y[:700], X[700:1000],
                                              t[700:1000], y[700:1000])
    estimate = learner.effect(X[1000:], "1", "0")
    assert abs(estimate.mean() - 1.5) < 0.3 and estimate.std() < 0.3


def test_stacked_learner_is_deterministic_for_a_seed_and_validation_stacking_works():
    a, X, _ = _stacked(600, 1, seed=7)
    b, _, _ = _stacked(600, 1, seed=7)
    np.testing.assert_array_equal(a.predict_matrix(X), b.predict_matrix(X))
    assert a.weights_ == b.weights_
    on_validation = PooledEffectLearner({**STACKED, "stack_folds": 0}, ["0", "1"],
                                        propensity=PROPENSITY, refit=False, seed=7)
    X_, t, y, _ = _table(600, 1)
    on_validation.fit(X_[:360], t[:360], y[:360], X_[360:480], t[360:480], y[360:480])
    assert on_validation.predict_matrix(X).shape == (len(X), 2)


def test_stacked_learner_with_three_treatments():
    rng = np.random.default_rng(5)
    n = 1800
    X = rng.normal(size=(n, 3))
    t = rng.choice(["a", "b", "c"], size=n)
    effect = {"a": 0.0, "b": 2.0 * X[:, 1], "c": np.full(n, 1.0)}
    y = X[:, 0] + np.select([t == k for k in effect], [effect[k] for k in effect])
    y = y + rng.normal(scale=0.5, size=n)
    learner = PooledEffectLearner(STACKED, ["a", "b", "c"], propensity=PROPENSITY,
                                  refit=True, seed=2)
    learner.fit(X[:1000], t[:1000], y[:1000], X[1000:1400], t[1000:1400], y[1000:1400])
    test = X[1400:]
    assert learner.predict_matrix(test).shape == (len(test), 3)
    b_vs_a = learner.effect(test, "b", "a")
    assert np.corrcoef(b_vs_a, 2.0 * test[:, 1])[0, 1] > 0.85
    assert abs(learner.effect(test, "c", "a").mean() - 1.0) < 0.3
    assert set(learner.recommend(test)) <= {"a", "b", "c"}


def test_stacked_learner_refuses_unfitted_use_and_bad_settings():
    X, t, y, _ = _table(300, 2)
    learner = PooledEffectLearner(STACKED, ["0", "1"], propensity=PROPENSITY)
    with pytest.raises(RuntimeError, match="not fitted"):
        learner.effect(X, "1", "0")
    for bad, message in (({"learner": "forest"}, "unknown learner"),
                         ({"candidates": ["pooled", "bart"]}, "candidates must be"),
                         ({"selection": "brier"}, "unknown selection")):
        with pytest.raises(ValueError, match=message):
            PooledEffectLearner({**STACKED, **bad}, ["0", "1"], propensity=PROPENSITY).fit(
                X[:200], t[:200], y[:200], X[200:], t[200:], y[200:])
    with pytest.raises(ValueError, match="needs at least 2 train rows"):
        PooledEffectLearner(STACKED, ["0", "1", "2"], propensity=PROPENSITY).fit(
            X[:200], t[:200], y[:200], X[200:], t[200:], y[200:])


def test_pooled_learner_chosen_by_effect_loss():
    X, t, y, tau = _table(900, 6)
    learner = PooledEffectLearner({**SETTINGS, "selection": "effect_loss"}, ["0", "1"],
                                  propensity=PROPENSITY, seed=3)
    learner.fit(X[:500], t[:500], y[:500], X[500:700], t[500:700], y[500:700])
    assert "valid_effect_loss" in learner.table_ and len(learner.table_) == 4
    assert learner.chosen_["max_depth"] in (2, 3)


def test_dr_scores_by_hand():
    mu = np.array([[1.0, 2.0], [0.0, 1.0], [5.0, 5.0]])
    treated = np.array([1, 0, -1])
    y = np.array([4.0, 2.0, 9.0])
    e = np.array([[0.5, 0.5], [0.001, 0.999], [0.5, 0.5]])
    got = dr_scores(mu, treated, y, e, clip=0.01)
    # row 0: arm 1, (4 - 2) / 0.5 added; row 1: arm 0, e clipped to 0.01; row 2: untouched
    np.testing.assert_allclose(got, [[1.0, 6.0], [200.0, 1.0], [5.0, 5.0]])


def test_benchmark_metrics_by_hand():
    bench = _bench()
    tau = np.array([1.0, -1.0, 2.0, -2.0])
    got = bench.effect_metrics(tau, tau, np.array([1.0, 1.0, 1.0, -1.0]), tau)
    assert got["pehe_in"] == 0.0
    assert got["pehe_out"] == pytest.approx(np.sqrt((0 + 4 + 1 + 1) / 4))
    assert got["ate_error"] == pytest.approx(0.5)
    # the oracle treats rows 0 and 2 (gain 3 / 4); the policy treats 0, 1, 2: 2 / 4
    assert got["policy_risk"] == pytest.approx(0.25)


def test_benchmark_ties_and_doc_section(tmp_path):
    import pandas as pd

    bench = _bench()
    rows = [{"benchmark": "b", "setting": "s", "rep": r, "method": m, "pehe_out": v}
            for r in range(3) for m, v in (("a", 1.0 + 0.01 * r), ("b", 1.02 - 0.01 * r),
                                           ("c", 3.0 + r))]
    ties = bench.tied_best(pd.DataFrame(rows), "pehe_out").set_index("method")
    assert ties.loc["a", "tied"] and ties.loc["b", "tied"] and not ties.loc["c", "tied"]
    doc = tmp_path / "bench.md"
    doc.write_text(f"intro\n{bench.BEGIN}\nold\n{bench.END}\nafter\n")
    bench.write_section(doc, "new table\n")
    assert doc.read_text() == f"intro\n{bench.BEGIN}\nnew table\n{bench.END}\nafter\n"
    (tmp_path / "plain.md").write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        bench.write_section(tmp_path / "plain.md", "x")


@pytest.mark.slow
def test_benchmark_script_smoke(tmp_path):
    """One IHDP replication and one ACIC setting, three methods, through main(); the
    learner's grid cut down through a params ``nrs_change`` block (the script's default,
    effects.CONTINUOUS_SETTINGS, runs in benchmarks/causal_benchmarks.py)."""
    import yaml

    pytest.importorskip("econml", reason="uv sync --group benchmarks")
    pytest.importorskip("causallib", reason="uv sync --group benchmarks")
    bench = _bench()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["model"]["hyperparameters"]["pooled_xgboost"]["nrs_change"] = {
        **CONTINUOUS_SETTINGS, "max_depth": [3, 4], "n_estimators": [100, 200],
        "stack_folds": 2}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    doc, png = tmp_path / "bench.md", tmp_path / "bench.png"
    doc.write_text(f"{bench.BEGIN}\n{bench.END}\n")
    results = bench.main(["--ihdp-reps", "1", "--acic-reps", "1", "--acic-settings", "3",
                          "--methods", bench.OURS, "EconML XLearner", "T-learner (xgboost)",
                          "--params", str(tmp_path / "params.yaml"),
                          "--doc", str(doc), "--plot", str(png)])
    assert len(results) == 6 and results["pehe_out"].between(0, 20).all()
    assert png.stat().st_size > 10_000
    text = doc.read_text()
    assert "IHDP" in text and "ACIC 2016" in text and "CFR-Wass" in text


def test_benchmark_machinery_without_the_benchmark_libraries(tmp_path, params):
    """The script's loop, metrics, tie test, markdown and plot on a synthetic two-arm table
    with a known effect, with the methods that need no optional library (precision-pain's
    learner, the T- and S-learners): what CI runs when the benchmarks group is not installed
    (the data sets themselves ship inside EconML's and causallib's wheels)."""
    bench = _bench()
    rng = np.random.default_rng(3)
    n = 500
    X = rng.normal(size=(n, 4))
    t = (rng.random(n) < 1 / (1 + np.exp(-X[:, 0]))).astype(int)
    tau = 1.0 + X[:, 1]
    y = X[:, 0] + t * tau + rng.normal(scale=0.5, size=n)
    reps = [bench.Replication("synthetic", "1", r, X, t, y, tau, bench.split_rows(n, r))
            for r in range(2)]
    small = {**CONTINUOUS_SETTINGS, "max_depth": [2, 3], "n_estimators": [50, 100],
             "stack_folds": 2}
    hyper = params.model.hyperparameters
    fast = params.model_copy(update={"model": params.model.model_copy(update={
        "hyperparameters": {**hyper, "pooled_xgboost": {**hyper["pooled_xgboost"],
                                                        "nrs_change": small}}})})
    methods = bench.available_methods([bench.OURS, "T-learner (xgboost)", "S-learner (xgboost)"])
    assert set(methods) == {bench.OURS, "T-learner (xgboost)", "S-learner (xgboost)"}
    results = bench.run(iter(reps), methods, fast, seed=11)
    assert len(results) == 6 and results["pehe_out"].notna().all()
    ours = results[results["method"] == bench.OURS]
    assert ours["pehe_out"].mean() < np.std(tau)  # better than a constant effect
    ties = bench.tied_best(results, "pehe_out")
    assert len(ties) == 3 and ties["best"].sum() == 1 and ties.loc[ties["best"], "tied"].all()
    means = results.groupby("method")["pehe_out"].mean()
    assert ties.loc[ties["best"], "method"].item() == means.idxmin()
    text = bench.markdown(results, 12.0, "pytest")
    assert "### synthetic" in text and bench.OURS in text and "Published IHDP" in text
    bench.plot(results, tmp_path / "bench.png")
    assert (tmp_path / "bench.png").stat().st_size > 1000
