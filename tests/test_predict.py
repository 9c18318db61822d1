"""Recommendations: ranking rules, explanations, and predict's handling of bad input."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from precision_pain.bundle import load_bundle, save_bundle
from precision_pain.cli import main
from precision_pain.predict import rank_treatments, recommend

OUTCOME_COLUMNS = ["treatment", "pain_followup", "adverse_event"]


def test_rank_puts_eligible_first_then_net_benefit():
    scored = pd.DataFrame({
        "patient_id": ["a"] * 3, "treatment": ["x", "y", "z"],
        "eligible": [True, False, True], "p_response": [0.2, 0.9, 0.5],
        "p_adverse_event": [0.0, 0.0, 0.1], "net_benefit": [0.2, 0.9, 0.45],
        "explanation": ["", "", ""],
    })
    ranked = rank_treatments(scored)
    assert ranked["treatment"].tolist() == ["z", "x", "y"]
    assert ranked["rank"].tolist() == [1, 2, 3]


def test_recommend_ranks_all_and_explains(small_splits, small_bundle):
    test = small_splits["test"].head(200)
    result = recommend(test, small_bundle, harm_weight=0.5, n_features=3)
    table, shap = result.table, result.shap
    assert len(table) == len(test) * len(small_bundle.treatments)
    assert (table.groupby("patient_id")["rank"].apply(lambda r: sorted(r) == [1, 2, 3])).all()
    assert table["explanation"].str.contains("chance of response").all()
    np.testing.assert_allclose(table["net_benefit"],
                               table["p_response"] - 0.5 * table["p_adverse_event"])
    # the SHAP file sums (with bias) to each row's logit
    merged = table.merge(shap, on=["patient_id", "treatment"])
    feature_cols = [c for c in shap.columns if c not in {"patient_id", "treatment"}]
    logit = np.log(merged["p_response"] / (1 - merged["p_response"]))
    np.testing.assert_allclose(merged[feature_cols].sum(axis=1), logit, atol=1e-3)


def test_explanation_names_the_strongest_features_in_clinical_words(small_splits):
    from precision_pain.predict import explain_rows
    from precision_pain.features import build_features

    X = build_features(small_splits["test"].head(2))
    contrib = np.zeros((2, X.shape[1] + 1))
    pm = list(X.columns).index("cyp2d6_effective_phenotype=PM")
    contrib[:, pm] = -1.2
    contrib[:, list(X.columns).index("pain_baseline")] = 0.3
    X.iloc[:, pm] = 1.0
    sentences = explain_rows("tramadol", X, contrib, n_features=2)
    assert sentences[0].startswith(
        "tramadol: CYP2D6 poor metabolizer lowers the chance of response (odds x0.30); "
        "baseline pain")
    assert "raises the chance of response (odds x1.35)" in sentences[0]


@pytest.fixture(scope="module")
def saved_models(small_bundle, tmp_path_factory):
    return save_bundle(small_bundle, tmp_path_factory.mktemp("m") / "bundle")


@pytest.fixture()
def new_cohort(small_synthetic):
    return small_synthetic.cohort.head(50).drop(columns=OUTCOME_COLUMNS)


def _predict(tmp_path, saved_models, frame_or_text, suffix=".csv"):
    src = tmp_path / f"in{suffix}"
    if isinstance(frame_or_text, str):
        src.write_text(frame_or_text)
    else:
        frame_or_text.to_csv(src, index=False)
    out = tmp_path / "out" / "pred.csv"
    result = CliRunner().invoke(main, ["predict", str(src), "--out", str(out),
                                       "--models", str(saved_models)])
    return result, out


def test_predict_cli_writes_table_and_shap(tmp_path, saved_models, new_cohort):
    result, out = _predict(tmp_path, saved_models, new_cohort)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    assert {"patient_id", "rank", "treatment", "p_response", "p_adverse_event",
            "explanation"} <= set(table.columns)
    assert (out.parent / "pred.shap.csv").exists()
    assert load_bundle(saved_models).treatments == ("tramadol", "duloxetine", "physical_therapy")


@pytest.mark.parametrize("corrupt, expected", [
    (lambda f: f.drop(columns=["pcs"]), "pcs"),
    (lambda f: f.assign(condition=["migraine"] + list(f["condition"].iloc[1:])), "condition"),
    (lambda f: f.assign(bmi=["heavy"] + list(f["bmi"].astype(str).iloc[1:])), "bmi"),
])
def test_predict_bad_input_names_column_and_writes_nothing(tmp_path, saved_models, new_cohort,
                                                           corrupt, expected):
    result, out = _predict(tmp_path, saved_models, corrupt(new_cohort))
    assert result.exit_code != 0
    assert expected in result.output
    assert not out.exists() and not (out.parent / "pred.shap.csv").exists()


def test_predict_bad_value_names_the_row(tmp_path, saved_models, new_cohort):
    frame = new_cohort.copy()
    frame.loc[frame.index[3], "age"] = 12
    result, out = _predict(tmp_path, saved_models, frame)
    assert result.exit_code != 0
    assert "age" in result.output and "4" in result.output  # data row 4 (1-based)
    assert not out.exists()


def test_predict_empty_file(tmp_path, saved_models):
    result, out = _predict(tmp_path, saved_models, "")
    assert result.exit_code != 0 and "empty" in result.output.lower()
    assert not out.exists()


def test_predict_missing_models_says_how_to_train(tmp_path, new_cohort):
    src = tmp_path / "in.csv"
    new_cohort.to_csv(src, index=False)
    result = CliRunner().invoke(main, ["predict", str(src), "--out", str(tmp_path / "o.csv"),
                                       "--models", str(tmp_path / "nowhere")])
    assert result.exit_code != 0 and "dvc repro" in result.output
