"""Opioid stewardship, dose guidance, phenoconversion by named inhibitors and patient
preferences, end to end through the contract, prepare and recommend (small bundle)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from precision_pain.data.contract import ContractError, validate_cohort
from precision_pain.data.contract.schema import optional_columns
from precision_pain.data.prepare import prepare_cohort
from precision_pain.predict.recommend import recommend
from test_contract import valid_cohort_frame


def _raw(small_synthetic, n: int = 60) -> pd.DataFrame:
    cohort = small_synthetic.cohort.drop_duplicates("patient_id").head(n)
    return cohort.drop(columns=["treatment", "pain_followup", "adverse_event"]).reset_index(
        drop=True)


# --------------------------------------------------------------------------- the contract

def test_files_without_the_optional_columns_validate_as_before():
    out = validate_cohort(valid_cohort_frame(6), "cohort.csv", require_outcomes=True)
    assert not set(optional_columns()) & set(out.columns)


def test_optional_columns_are_checked_and_written_canonically():
    frame = valid_cohort_frame(3).assign(
        cyp2d6_inhibitor_drugs=["Duloxetine; fluoxetine", "", "PAROXETINE"],
        exclude_modalities=["opioid;Procedure", " ", "cbt"],
        harm_weight=["1.5", "", "0"], benzodiazepine=["yes", "no", "false"])
    out = validate_cohort(frame, "cohort.csv", require_outcomes=True)
    assert out["cyp2d6_inhibitor_drugs"].tolist() == ["fluoxetine;duloxetine", "", "paroxetine"]
    assert out["exclude_modalities"].tolist() == ["opioid;procedure", "", "cbt"]
    np.testing.assert_array_equal(out["harm_weight"], [1.5, np.nan, 0.0])
    assert out["benzodiazepine"].tolist() == [True, False, False]


def test_bad_optional_values_are_named_with_rows_and_the_fix():
    frame = valid_cohort_frame(4).assign(
        cyp2d6_inhibitor_drugs=["sertraline", "", "duloxetine", "fluoxetin"],
        exclude_modalities=["surgery", "opioid", "", ""], harm_weight=[0.5, -1, 11, ""],
        overdose_history=["true", "", "maybe", "false"])
    with pytest.raises(ContractError) as info:
        validate_cohort(frame, "cohort.csv", require_outcomes=False)
    text = str(info.value)
    for expected in ("cyp2d6_inhibitor_drugs", "rows 1, 4", "'sertraline'", "bupropion",
                     "exclude_modalities", "'surgery'", "procedure", "harm_weight",
                     "below the minimum 0", "above the maximum 10", "overdose_history",
                     "missing a value", "not true/false"):
        assert expected in text, expected


# --------------------------------------------------------------------------- recommend

def test_opioid_never_first_with_a_non_opioid_option_unless_switched_off(small_synthetic,
                                                                          small_bundle, options):
    prepared = prepare_cohort(_raw(small_synthetic, 300), "new.csv", None,
                              require_outcomes=False)
    on = recommend(prepared, small_bundle, options).table
    assert not on[(on["rank"] == 1)]["treatment"].eq("tramadol").any()
    demoted = on["stewardship_note"].str.contains("CDC 2022, recommendation 2")
    assert demoted.any() and on.loc[demoted, "treatment"].eq("tramadol").all()
    off = recommend(prepared, small_bundle, replace(options, non_opioid_first=False)).table
    assert off["stewardship_note"].str.contains("recommendation 2").sum() == 0
    assert off[(off["rank"] == 1)]["treatment"].eq("tramadol").any(), \
        "the small bundle never ranks tramadol first on its own: the test proves nothing"


def test_stewardship_columns(small_synthetic, small_bundle, options):
    raw = _raw(small_synthetic, 4).assign(
        baseline_mme=[0.0, 15.0, 0.0, 0.0], benzodiazepine=[False, False, True, False])
    table = recommend(prepare_cohort(raw, "new.csv", None, require_outcomes=False),
                      small_bundle, options).table
    tramadol = table[table["treatment"] == "tramadol"].set_index("patient_id")
    ids = raw["patient_id"].astype(str)
    np.testing.assert_allclose(tramadol.loc[ids, "projected_mme"], [40.0, 55.0, 40.0, 40.0])
    assert tramadol.loc[ids, "offer_naloxone"].tolist() == [False, True, True, False]
    assert "concurrent benzodiazepine" in tramadol.loc[ids[2], "stewardship_note"]
    others = table[table["treatment"] != "tramadol"]
    assert others["projected_mme"].isna().all() and not others["offer_naloxone"].any()


def test_preferences_change_the_ranking_and_say_so(small_synthetic, small_bundle, options):
    raw = _raw(small_synthetic, 40)
    base = recommend(prepare_cohort(raw, "new.csv", None, require_outcomes=False),
                     small_bundle, options).table
    declines = raw.assign(exclude_modalities="behavioural", harm_weight=4.0)
    table = recommend(prepare_cohort(declines, "new.csv", None, require_outcomes=False),
                      small_bundle, options).table
    pt = table[table["treatment"] == "physical_therapy"]
    assert pt["excluded_by_preference"].all() and pt["rank"].eq(3).all()
    assert not table.loc[table["treatment"] != "physical_therapy",
                         "excluded_by_preference"].any()
    np.testing.assert_allclose(table["net_benefit"],
                               table["p_response"] - 4.0 * table["p_adverse_event"])
    assert table["harm_weight"].eq(4.0).all() and base["harm_weight"].eq(0.5).all()
    first = base[base["rank"] == 1]
    was_pt = first.loc[first["treatment"] == "physical_therapy", "patient_id"]
    assert len(was_pt), "no patient had physical therapy first: the test proves nothing"
    now_first = table[(table["rank"] == 1) & table["patient_id"].isin(was_pt)]
    assert not now_first["treatment"].eq("physical_therapy").any()


def test_the_contrast_names_a_declined_second_choice(small_synthetic, small_bundle, options):
    raw = _raw(small_synthetic, 40).assign(exclude_modalities="duloxetine;tramadol")
    table = recommend(prepare_cohort(raw, "new.csv", None, require_outcomes=False),
                      small_bundle, options).table
    first = table[table["rank"] == 1]
    assert first["treatment"].eq("physical_therapy").all()
    assert first["contrast"].str.contains("the patient declines").all()


def test_moderate_inhibitor_phenoconverts_tramadol_and_the_note_says_so(
        small_synthetic, small_bundle, options):
    raw = _raw(small_synthetic, 2).assign(CYP2D6=["*1/*1", "*1/*1"], cyp2d6_inhibitor=False,
                                          cyp2d6_inhibitor_drugs=["duloxetine", ""],
                                          baseline_mme=0.0, ort_score=0)
    prepared = prepare_cohort(raw, "new.csv", None, require_outcomes=False)
    assert prepared["cyp2d6_effective_phenotype"].tolist() == ["IM", "NM"]
    table = recommend(prepared, small_bundle, options).table
    tramadol = table[table["treatment"] == "tramadol"].set_index("patient_id")
    ids = raw["patient_id"].astype(str)
    assert tramadol.loc[ids, "guideline_action"].tolist() == ["monitor", "none"]
    assert "by phenoconversion (genotype: normal metabolizer; moderate CYP2D6 inhibitor" in \
        tramadol.loc[ids[0], "guideline_note"]


def test_three_normal_copies_avoid_tramadol_end_to_end(small_synthetic, small_bundle, options):
    raw = _raw(small_synthetic, 1).assign(CYP2D6="*2x≥3/*4", cyp2d6_inhibitor=False)
    table = recommend(prepare_cohort(raw, "new.csv", None, require_outcomes=False),
                      small_bundle, options).table
    row = table[table["treatment"] == "tramadol"].iloc[0]
    assert row["guideline_action"] == "avoid" and "ultrarapid" in row["guideline_note"]
    assert row["rank"] == 3


def test_the_report_shows_dose_guidance_naloxone_and_declined(small_synthetic, small_bundle,
                                                              options):
    from test_report import META

    from precision_pain.predict.report_html import patient_sections, render_report, summarize

    raw = _raw(small_synthetic, 3).assign(
        CYP2D6="*1/*4", cyp2d6_inhibitor=False, baseline_mme=20.0, ort_score=0,
        exclude_modalities=["cbt", "physical_therapy", ""])
    result = recommend(prepare_cohort(raw, "new.csv", None, require_outcomes=False),
                       small_bundle, options)
    sections = patient_sections(result.table, result.shap, result.features, 3)
    page = render_report(summarize(result.table), sections, 3, META)
    assert "offer naloxone" in page and "60 MME/day with the typical dose" in page
    assert "declined by the patient" in page
    assert "CDC 2022, recommendation 2" in page
