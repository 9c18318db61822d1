"""predict's fast paths against a plain reference, row by row.

`recommend` scores with ``inplace_predict``, computes SHAP only for the explained ranks,
maps them back by rank, and writes each distinct phrase once. A bug in any of those
shortcuts (a row mapped to the wrong rank, a phrase reused for the wrong value) would still
give plausible-looking output, so this test recomputes every number and sentence the slow,
obvious way (xgboost's DMatrix predict per treatment, full TreeSHAP of every row, a Python
sort per patient, one sentence per row with :func:`describe`) and requires: ranks
identical, probabilities within 1e-9 (per-treatment models) or 1e-6 (the pooled learner,
whose scores sum xgboost's float32 leaves in float64: models/plan_scoring.py), SHAP values
within 1e-6, sentences equal.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from precision_pain.data.features import FEATURE_NAMES, build_features, describe
from precision_pain.models.bundle import ModelBundle
from precision_pain.models.pooled import PooledModel, design, design_names
from precision_pain.predict.guidelines import check_guidelines
from precision_pain.predict.recommend import recommend
from precision_pain.registry import TREATMENTS

_WORDS = {"response": "the chance of response", "adverse_event": "the risk of a serious "
                                                                  "adverse event"}


@pytest.fixture(scope="module")
def pooled_bundle(small_splits, small_bundle):
    """A pooled learner on the small cohort (small trees), with the per-treatment bundle's
    training profile and propensity model."""
    train = small_splits["train"]
    treatments = small_bundle.treatments
    train = train[train["treatment"].isin(treatments)]
    X = build_features(train)
    fitted = {outcome: PooledModel.fit(X, train["treatment"].to_numpy(),
                                       train[outcome].to_numpy(), outcome, 60, 0, treatments,
                                       max_depth=4, learning_rate=0.1)
              for outcome in ("response", "adverse_event")}
    models = {t: {o: fitted[o].view(t) for o in fitted} for t in treatments}
    return ModelBundle("pooled_xgboost", FEATURE_NAMES, models, small_bundle.metadata,
                       small_bundle.propensity)


def _reference_contributions(bundle, treatment, outcome, X):
    """(n, F + 1) full TreeSHAP of every patient under ``treatment`` (pooled: the treatment
    and pair columns folded into the bias), and P(outcome) from DMatrix predict."""
    import xgboost as xgb

    model = bundle.model(treatment, outcome)
    if model.kind == "pooled_xgboost":
        pooled = model.shared
        matrix = xgb.DMatrix(design(X, treatment, pooled.treatments),
                             feature_names=design_names(pooled.treatments))
        phi = pooled.booster_.predict(matrix, pred_contribs=True)
        f = len(FEATURE_NAMES)
        phi = np.column_stack([phi[:, :f], phi[:, f:].sum(axis=1)])
        return phi, pooled.booster_.predict(matrix)
    if model.kind != "xgboost":  # a constant-rate model: nothing to shortcut
        return model.contributions(X), model.predict_proba(X)
    matrix = xgb.DMatrix(X.to_numpy(np.float32), feature_names=list(X.columns))
    return (model.booster_.predict(matrix, pred_contribs=True),
            model.booster_.predict(matrix))


def _reference_sentence(label, phi, values, outcome, n_features):
    order = sorted(range(len(phi)), key=lambda j: (-abs(phi[j]), j))[:n_features]
    parts = [f"{describe(FEATURE_NAMES[j], float(values[j]))} "
             f"{'raises' if phi[j] > 0 else 'lowers'} {_WORDS[outcome]} "
             f"(odds x{format(float(np.round(np.exp(phi[j]), 2)) + 0.0, '.2f')})"
             for j in order if abs(phi[j]) > 1e-9]
    return f"{label}: " + ("; ".join(parts)
                           or "no feature moves the prediction (constant-rate model)")


@pytest.mark.parametrize("kind", ["xgboost", "pooled_xgboost"])
def test_recommend_equals_the_plain_reference(kind, small_splits, small_bundle, pooled_bundle,
                                              options):
    bundle = small_bundle if kind == "xgboost" else pooled_bundle
    tolerance = 1e-9 if kind == "xgboost" else 1e-6
    patients = small_splits["test"].head(120).reset_index(drop=True)
    result = recommend(patients, bundle, options)
    X = build_features(patients)
    values = X.to_numpy(np.float32)
    treatments = bundle.treatments
    ref = {(t, o): _reference_contributions(bundle, t, o, X)
           for t in treatments for o in ("response", "adverse_event")}
    guide = check_guidelines(patients, treatments)
    table = result.table.set_index(["patient_id", "treatment"])
    shap = result.shap.set_index(["patient_id", "treatment", "outcome"])
    checked_sentences = 0
    for i, patient in patients.iterrows():
        pid = str(patient["patient_id"])
        keys = []
        # CDC 2022 recommendation 2 (options.non_opioid_first): an opioid goes below the
        # patient's non-opioid options when one is eligible and not avoided
        usable_non_opioid = any(
            TREATMENTS[t].eligible(patient["condition"]) and not guide.avoid[i, k]
            and not TREATMENTS[t].opioid for k, t in enumerate(treatments))
        for k, t in enumerate(treatments):
            p_r, p_a = ref[(t, "response")][1][i], ref[(t, "adverse_event")][1][i]
            row = table.loc[(pid, t)]
            assert abs(row["p_response"] - p_r) <= tolerance
            assert abs(row["p_adverse_event"] - p_a) <= tolerance
            eligible = TREATMENTS[t].eligible(patient["condition"])
            demoted = (options.non_opioid_first and usable_non_opioid
                       and TREATMENTS[t].opioid)
            keys.append((not eligible, bool(guide.avoid[i, k]), demoted,
                         -(float(p_r) - options.harm_weight * float(p_a)), t))
        expected = [key[-1] for key in sorted(keys)]
        ranked = result.table[result.table["patient_id"] == pid].sort_values("rank")
        assert ranked["treatment"].tolist() == expected
        for rank, t in enumerate(expected[:options.top_k], start=1):
            for outcome, column in (("response", "explanation"),
                                    ("adverse_event", "adverse_event_explanation")):
                phi = ref[(t, outcome)][0][i]
                got = shap.loc[(pid, t, outcome)]
                assert int(got["rank"]) == rank
                np.testing.assert_allclose(got[[*FEATURE_NAMES, "bias"]].to_numpy(float), phi,
                                           rtol=0, atol=1e-6)
                assert table.loc[(pid, t), column] == _reference_sentence(
                    TREATMENTS[t].label, phi[:-1], values[i], outcome, options.n_features)
                checked_sentences += 1
    assert checked_sentences == len(patients) * options.top_k * 2
    assert len(result.shap) == checked_sentences
    assert pd.Series(result.table["explanation"]).str.contains("raises|lowers").any()


def test_a_warmed_up_pooled_bundle_builds_nothing_on_its_first_prediction(
        pooled_bundle, small_splits, options, monkeypatch):
    """ModelBundle.warm_up builds the pooled model's SHAP tables and one-walk scorers."""
    from precision_pain.models import plan_scoring, treeshap

    import pickle

    # a copy as a freshly loaded bundle is: no table or scorer built yet (pickling drops them)
    fresh = pickle.loads(pickle.dumps(pooled_bundle))
    fresh.warm_up()

    def refuse(*args, **kwargs):
        raise AssertionError("built during a prediction, after warm_up")

    monkeypatch.setattr(treeshap, "build_tables", refuse)
    monkeypatch.setattr(plan_scoring, "build_scorer", refuse)
    assert len(recommend(small_splits["test"].head(20), fresh, options).table) > 0
