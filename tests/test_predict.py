"""Recommendations: ranking rules, explanations, confidence, and predict's inputs and outputs."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from precision_pain import RESEARCH_NOTICE
from precision_pain.models.bundle import load_bundle, save_bundle
from precision_pain.cli import main
from precision_pain.models.profile import training_profile
from precision_pain.predict.recommend import (OUTPUT_COLUMNS, rank_order,
                                    recommend)

OUTCOME_COLUMNS = ["treatment", "pain_followup", "adverse_event"]


def _order(avoid=(False, False, False)):
    return rank_order(np.array([[True, False, True]]), np.array([avoid]),
                      np.array([[0.2, 0.9, 0.45]]), ["x", "y", "z"])[0].tolist()


def test_rank_puts_eligible_first_then_net_benefit():
    assert _order() == [2, 0, 1]  # z, x, then the ineligible y


def test_rank_puts_avoided_below_allowed_but_above_ineligible():
    assert _order(avoid=(False, False, True)) == [0, 2, 1]  # x, z, y


def test_recommend_ranks_all_and_explains(small_splits, small_bundle, options):
    test = small_splits["test"].head(200)
    result = recommend(test, small_bundle, options)
    table, shap = result.table, result.shap
    assert list(table.columns) == list(OUTPUT_COLUMNS)
    assert len(table) == len(test) * len(small_bundle.treatments)
    assert (table.groupby("patient_id")["rank"].apply(lambda r: sorted(r) == [1, 2, 3])).all()
    assert table["explanation"].str.contains("chance of response").all()
    assert table["adverse_event_explanation"].str.len().gt(0).all()
    np.testing.assert_allclose(table["net_benefit"],
                               table["p_response"] - 0.5 * table["p_adverse_event"])
    # the SHAP file sums (with bias) to each row's logit, for both outcomes
    features = [c for c in shap.columns if c not in {"patient_id", "treatment", "outcome", "rank"}]
    for outcome, column in (("response", "p_response"), ("adverse_event", "p_adverse_event")):
        rows = shap[shap["outcome"] == outcome].drop(columns="rank")
        merged = table.merge(rows, on=["patient_id", "treatment"])
        assert len(merged) == len(table)
        logit = np.log(merged[column] / (1 - merged[column]))
        np.testing.assert_allclose(merged[features].sum(axis=1), logit, atol=1e-3)


def test_explanation_names_the_strongest_features_in_clinical_words(small_splits):
    from precision_pain.data.features import build_features
    from precision_pain.predict.recommend import explain_matrix

    X = build_features(small_splits["test"].head(2))
    contrib = np.zeros((2, X.shape[1] + 1))
    pm = list(X.columns).index("cyp2d6_effective_phenotype=PM")
    contrib[:, pm] = -1.2
    contrib[:, list(X.columns).index("pain_baseline")] = 0.3
    X.iloc[:, pm] = 1.0
    sentences = explain_matrix(contrib, X.to_numpy(np.float32), np.full(2, "tramadol"), 2,
                               "response")
    assert sentences[0].startswith(
        "tramadol: CYP2D6 poor metabolizer lowers the chance of response (odds x0.30); "
        "baseline pain")
    assert "raises the chance of response (odds x1.35)" in sentences[0]


def test_only_top_k_rows_are_explained_and_rank_one_gets_the_contrast(small_splits,
                                                                       small_bundle, options):
    test = small_splits["test"].head(50)
    table = recommend(test, small_bundle, replace(options, top_k=1)).table
    first, rest = table[table["rank"] == 1], table[table["rank"] > 1]
    assert first["explanation"].str.len().gt(0).all()
    assert (rest["explanation"] == "").all() and (rest["contrast"] == "").all()
    assert first["contrast"].str.contains(r"ranks above .+ minus ", regex=True).all()


def test_contrast_is_the_difference_of_the_two_response_explanations(small_splits,
                                                                     small_bundle, options):
    result = recommend(small_splits["test"].head(20), small_bundle, options)
    shap = result.shap[result.shap["outcome"] == "response"]
    features = [c for c in shap.columns if c not in {"patient_id", "treatment", "outcome",
                                                      "rank"}]
    row = result.table.iloc[0]
    pair = shap[shap["patient_id"] == row["patient_id"]].set_index("rank")[features]
    difference = float(pair.loc[1].sum() - pair.loc[2].sum())
    assert f"{difference:+.2f}" in row["contrast"]


def test_guideline_avoid_outranks_the_model(small_splits, small_bundle, options):
    """A CYP2D6 ultrarapid metabolizer never gets tramadol above an allowed treatment."""
    um = small_splits["test"].head(30).assign(cyp2d6_effective_phenotype="UM",
                                              cyp2d6_phenotype="UM")
    table = recommend(um, small_bundle, options).table
    tramadol = table[table["treatment"] == "tramadol"]
    assert (tramadol["guideline_action"] == "avoid").all()
    assert tramadol["guideline_note"].str.contains(
        "CYP2D6 ultrarapid metabolizer: tramadol, risk of toxicity; CPIC, strong").all()
    allowed_eligible = table[table["eligible"] & (table["guideline_action"] != "avoid")]
    worst_allowed = allowed_eligible.groupby("patient_id")["rank"].max()
    assert (tramadol.set_index("patient_id")["rank"] > worst_allowed).all()


def test_intervals_and_confidence_from_the_training_profile(small_splits, small_bundle, options):
    test = small_splits["test"].head(100)
    table = recommend(test, small_bundle, options).table
    assert table[["p_response_low", "p_response_high"]].notna().all().all()
    assert (table["p_response_low"] <= table["p_response_high"]).all()
    assert table["p_response_low"].between(0, 1).all()
    odd = test.head(1).assign(baseline_mme=5000.0)
    flagged = recommend(odd, small_bundle, options).table
    assert flagged["low_confidence"].all()
    assert flagged["confidence_reason"].str.contains(
        "current opioid dose above the training range").all()


def test_interval_flags_say_what_the_held_out_patients_showed():
    from precision_pain.predict.confidence import ConfidenceSettings, interval_conditions

    settings = ConfidenceSettings(min_propensity=0.02, max_interval_width=0.30,
                                  calibration_tolerance=0.10)
    p = np.array([0.30, 0.30, 0.30, 0.45])
    low = np.array([0.28, 0.05, 0.41, 0.30])
    high = np.array([0.31, 0.40, 0.42, 0.34])
    (wide, wide_reason), (outside, outside_reason) = interval_conditions(p, low, high, settings)
    assert wide.tolist() == [False, True, False, False]
    assert outside.tolist() == [False, False, True, True]  # 0.11 below; 0.11 above
    # the same words whichever held-out scores built the table (validation or out of fold)
    assert "validation" not in wide_reason + outside_reason
    assert "held-out" in wide_reason and "held-out" in outside_reason
    assert "miscalibrated" not in outside_reason  # a reason for doubt, not a verdict


def test_bundle_without_profile_gives_nan_interval_and_no_flag(small_splits, small_bundle, options):
    bare = replace(small_bundle, metadata={})
    table = recommend(small_splits["test"].head(5), bare, options).table
    assert table["p_response_low"].isna().all()


def test_low_propensity_flags_eligible_rows(small_splits, small_bundle, options):
    class Propensity:
        classes_ = ["duloxetine", "physical_therapy", "tramadol"]

        def predict_proba(self, X):
            return np.tile([0.001, 0.5, 0.499], (len(X), 1))

    bundle = replace(small_bundle, propensity=Propensity())
    table = recommend(small_splits["test"].head(10), bundle, options).table
    duloxetine = table[table["treatment"] == "duloxetine"]
    assert duloxetine["low_confidence"].all()
    assert duloxetine["confidence_reason"].str.contains("propensity below 0.02").all()


def test_a_shared_confidence_basis_gives_the_same_flags(small_splits, small_bundle, options):
    """recommend computes the patients' part of the flags once (out-of-range patterns,
    propensity) for the single treatments and the plans: the flags equal those computed
    from scratch; a basis of other treatments is not used."""
    from precision_pain.data.features import build_features
    from precision_pain.predict.confidence import confidence_basis, low_confidence

    test = small_splits["test"].head(60).copy()
    test.loc[test.index[:3], "baseline_mme"] = 5000.0  # outside the training range
    X = build_features(test)
    treatments = list(small_bundle.treatments)
    rng = np.random.default_rng(3)
    p = rng.uniform(0.05, 0.95, (len(X), len(treatments)))
    eligible = rng.random(p.shape) < 0.8
    interval = (p - rng.uniform(0, 0.3, p.shape), p + rng.uniform(0, 0.3, p.shape))
    scratch = low_confidence(X, small_bundle, treatments, p, eligible, interval,
                             options.confidence)
    basis = confidence_basis(X, small_bundle, treatments)
    shared = low_confidence(X, small_bundle, treatments, p, eligible, interval,
                            options.confidence, basis)
    assert scratch[0].any() and not scratch[0].all()
    np.testing.assert_array_equal(shared[0], scratch[0])
    np.testing.assert_array_equal(shared[1], scratch[1])
    other = confidence_basis(X, small_bundle, treatments[::-1])
    reordered = low_confidence(X, small_bundle, treatments, p, eligible, interval,
                               options.confidence, other)
    np.testing.assert_array_equal(reordered[1], scratch[1])


# --------------------------------------------------------------------------- the CLI

@pytest.fixture(scope="module")
def saved_models(small_bundle, tmp_path_factory):
    return save_bundle(small_bundle, tmp_path_factory.mktemp("m") / "bundle")


@pytest.fixture()
def new_cohort(small_synthetic):
    return small_synthetic.cohort.head(50).drop(columns=OUTCOME_COLUMNS)


def _predict(tmp_path, saved_models, frame_or_text, suffix=".csv", out_suffix=".csv",
             extra=()):
    src = tmp_path / f"in{suffix}"
    if isinstance(frame_or_text, str):
        src.write_text(frame_or_text)
    elif suffix == ".csv":
        frame_or_text.to_csv(src, index=False)
    else:
        frame_or_text.to_parquet(src, index=False)
    out = tmp_path / "out" / f"pred{out_suffix}"
    result = CliRunner().invoke(main, ["predict", str(src), "--out", str(out),
                                       "--models", str(saved_models), *extra])
    return result, out


def _outputs(out):
    return [out, out.with_name(f"{out.stem}.shap{out.suffix}"),
            out.with_name(f"{out.stem}.json"), out.with_name(f"{out.stem}.html")]


def test_predict_cli_writes_table_shap_json_and_html(tmp_path, saved_models, new_cohort):
    result, out = _predict(tmp_path, saved_models, new_cohort)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out, keep_default_na=False, na_values=[""])
    assert list(table.columns) == list(OUTPUT_COLUMNS)
    assert table["patient_id"].nunique() == 50
    assert all(path.exists() for path in _outputs(out))
    data = json.loads(out.with_name("pred.json").read_text())
    assert data["notice"] == RESEARCH_NOTICE
    assert data["columns"] == list(OUTPUT_COLUMNS) and len(data["rows"]) == len(table)
    assert data["summary"]["n_patients"] == 50
    page = out.with_name("pred.html").read_text()
    assert RESEARCH_NOTICE in page and page.count('class="patient"') == 50
    assert "<script" not in page and "http://" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")
    assert load_bundle(saved_models).treatments == ("tramadol", "duloxetine", "physical_therapy")


def test_predict_harm_weight_option_replaces_the_params_default(tmp_path, saved_models,
                                                                new_cohort):
    for folder in ("0", "1.5", "own", "bad"):
        (tmp_path / folder).mkdir()
    runs = {}
    for weight in ("0", "1.5"):
        result, out = _predict(tmp_path / weight, saved_models, new_cohort,
                               extra=["--harm-weight", weight])
        assert result.exit_code == 0, result.output
        runs[weight] = pd.read_csv(out)
        assert json.loads(out.with_name("pred.json").read_text())["meta"]["harm_weight"] == \
            float(weight)
    for weight, table in runs.items():
        assert (table["harm_weight"] == float(weight)).all()
        np.testing.assert_allclose(table["net_benefit"], table["p_response"]
                                   - float(weight) * table["p_adverse_event"], atol=1e-6)
    mine = new_cohort.assign(harm_weight=[2.0] + [None] * (len(new_cohort) - 1))
    result, out = _predict(tmp_path / "own", saved_models, mine, extra=["--harm-weight", "0"])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    first = table["patient_id"] == str(new_cohort["patient_id"].iloc[0])
    assert (table.loc[first, "harm_weight"] == 2.0).all()  # the patient's own weight wins
    assert (table.loc[~first, "harm_weight"] == 0.0).all()
    result, _ = _predict(tmp_path / "bad", saved_models, new_cohort,
                         extra=["--harm-weight", "-1"])
    assert result.exit_code == 2 and "--harm-weight" in result.output


def test_predict_report_caps_patient_sections_and_says_so(tmp_path, saved_models, new_cohort):
    result, out = _predict(tmp_path, saved_models, new_cohort,
                           extra=["--report-max-patients", "7"])
    assert result.exit_code == 0, result.output
    page = out.with_name("pred.html").read_text()
    assert page.count('class="patient"') == 7
    assert "first 7 of 50 patients" in page


def test_predict_streams_parquet_in_chunks(tmp_path, saved_models, new_cohort):
    params = tmp_path / "params.yaml"
    import yaml

    from conftest import ROOT

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["predict"]["chunk_size"] = 16
    params.write_text(yaml.safe_dump(raw))
    result, out = _predict(tmp_path, saved_models, new_cohort, suffix=".parquet",
                           out_suffix=".parquet", extra=["--params", str(params)])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out)
    assert table["patient_id"].tolist()[::3] == new_cohort["patient_id"].tolist()
    assert pd.read_parquet(out.with_name("pred.shap.parquet"))["outcome"].nunique() == 2


def test_predict_bad_row_in_a_later_chunk_names_the_file_row_and_writes_nothing(
        tmp_path, saved_models, new_cohort):
    import yaml

    from conftest import ROOT

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["predict"]["chunk_size"] = 20
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    frame = new_cohort.copy()
    frame.loc[frame.index[44], "age"] = 12
    result, out = _predict(tmp_path, saved_models, frame, extra=["--params", str(params)])
    assert result.exit_code != 0
    assert "age" in result.output and "row 45" in result.output
    assert not any(path.exists() for path in _outputs(out))
    assert not list(out.parent.glob(".*tmp"))


def test_predict_repeated_patient_is_refused(tmp_path, saved_models, new_cohort):
    frame = new_cohort.copy()
    frame.loc[frame.index[9], "patient_id"] = frame["patient_id"].iloc[2]
    result, out = _predict(tmp_path, saved_models, frame)
    assert result.exit_code != 0
    assert "patient_id" in result.output and "rows 10" in result.output
    assert frame["patient_id"].iloc[2] not in result.output  # no identifier value echoed
    assert not out.exists()


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
    assert not out.parent.exists()  # not even the output folder


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


def test_predict_header_only_file(tmp_path, saved_models, new_cohort):
    result, out = _predict(tmp_path, saved_models, ",".join(new_cohort.columns) + "\n")
    assert result.exit_code != 0 and "no data rows" in result.output
    assert not out.exists()


def test_predict_missing_models_says_how_to_train(tmp_path, new_cohort):
    src = tmp_path / "in.csv"
    new_cohort.to_csv(src, index=False)
    result = CliRunner().invoke(main, ["predict", str(src), "--out", str(tmp_path / "o.csv"),
                                       "--models", str(tmp_path / "nowhere")])
    assert result.exit_code != 0 and "dvc repro" in result.output


def test_training_profile_accepts_the_bundle_models_mapping(small_splits, small_bundle):
    profile = training_profile(small_splits["train"], small_splits["valid"],
                               {"tramadol": small_bundle.models["tramadol"]})
    assert set(profile["feature_ranges"]) == {"tramadol"}
    table = profile["response_calibration"]["tramadol"]
    assert len(table["gap_low"]) == len(table["cells"]) + 1
    assert SimpleNamespace(**table).n > 0


def test_every_output_column_is_documented():
    from conftest import ROOT

    doc = (ROOT / "docs" / "predictions.md").read_text()
    assert all(f"`{column}`" in doc for column in OUTPUT_COLUMNS if "p_response_" not in column)
    assert "`p_response_low`, `p_response_high`" in doc


def test_confidence_knows_which_features_are_flags():
    from precision_pain.data import features
    from precision_pain.predict import confidence

    assert confidence._FLAG_NAMES == {f.name for f in features._FLAGS}
