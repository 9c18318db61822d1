"""Data contract v2: the plan column, the contract version, and v1 files read unchanged."""

from __future__ import annotations

import logging

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_contract import valid_cohort_frame

from precision_pain.data.contract import (
    CONTRACT_VERSION,
    ContractError,
    read_table,
    validate_cohort,
)
from precision_pain.data.prepare import prepare_cohort
from precision_pain.plans import parse_plan, plan_name
from precision_pain.registry import TREATMENT_NAMES


def _v2(plans: list[str], treatments: list[str], **extra) -> pd.DataFrame:
    frame = valid_cohort_frame(len(plans))
    return frame.assign(plan=plans, treatment=treatments, **extra)


def test_version_two_is_current():
    assert CONTRACT_VERSION == 2


def test_a_v1_file_reads_unchanged():
    v1 = valid_cohort_frame(8)
    out = validate_cohort(v1, "v1.csv", require_outcomes=True)
    assert "plan" not in out.columns and "contract_version" not in out.columns
    prepared = prepare_cohort(v1, "v1.csv", 0.3)
    same_as_plans = prepare_cohort(v1.assign(plan=v1["treatment"]), "v2.csv", 0.3)
    pd.testing.assert_frame_equal(prepared, same_as_plans.drop(columns="plan"))
    assert (same_as_plans["plan"] == same_as_plans["treatment"]).all()


def test_plans_are_written_canonically_and_treatment_filled():
    out = validate_cohort(_v2(["Physical_Therapy + duloxetine", "", "nsaid", " cbt "],
                              ["", "tramadol", "NSAID", ""]), "v2.csv", True)
    assert out["plan"].tolist() == ["duloxetine+physical_therapy", "tramadol", "nsaid", "cbt"]
    assert out["treatment"].tolist() == ["", "tramadol", "nsaid", "cbt"]


def test_every_plan_problem_at_once_with_rows_and_fix():
    frame = _v2(["aspirin+nsaid", "tramadol+Tramadol", "pregabalin", "", "nsaid+cbt"],
                ["", "", "cbt", "", ""])
    with pytest.raises(ContractError) as info:
        validate_cohort(frame, "cohort_v2.csv", True)
    report = str(info.value)
    assert report.startswith("cohort_v2.csv: 4 problems")
    assert ("plan: 1 row with an unknown treatment (row 1); values: 'aspirin+nsaid'; allowed: "
            "nsaid, tramadol") in report
    assert "plan: 1 row naming a component twice (row 2)" in report
    assert ("plan: 1 row disagreeing with the row's treatment (row 3); values: 'pregabalin'. "
            "Fix: leave treatment empty where plan is given") in report
    assert ("plan: 1 row with neither a plan nor a treatment (row 4). Fix: give the episode's "
            "plan") in report


def test_the_contract_version_is_recorded_and_checked():
    ok = validate_cohort(_v2(["nsaid+cbt", "cbt"], ["", ""], contract_version=[2, 2]),
                         "v2.csv", True)
    assert ok["contract_version"].tolist() == [2, 2]
    cases = [
        (_v2(["nsaid", "cbt"], ["", ""], contract_version=[1, 1]),
         ("contract_version: 2 rows say version 1, but the file has a plan column (contract v2)"
          " (rows 1, 2); values: '1'. Fix: set contract_version to 2, or remove the plan column")),
        (valid_cohort_frame(2).assign(contract_version=[3, 3]),
         ("contract_version: 2 rows name a newer contract version than this pipeline reads "
          "(versions 1, 2) (rows 1, 2); values: '3'. Fix: upgrade precision-pain")),
        (valid_cohort_frame(3).assign(contract_version=[1, 2, 2]),
         "contract_version: 2 rows differ from the first row's version 1 (rows 2, 3)"),
    ]
    for frame, message in cases:
        with pytest.raises(ContractError, match="contract_version") as info:
            validate_cohort(frame, "f.csv", True)
        assert message in str(info.value)


def test_csv_round_trip(tmp_path):
    frame = _v2(["duloxetine+physical_therapy", "tramadol"], ["", "tramadol"])
    path = tmp_path / "cohort.csv"
    frame.to_csv(path, index=False)
    out = validate_cohort(read_table(path), str(path), True)
    assert out["plan"].tolist() == ["duloxetine+physical_therapy", "tramadol"]


def test_prepare_keeps_plan_episodes_and_single_models_set_them_aside(caplog):
    from precision_pain.data.prepare import single_treatment_episodes

    frame = _v2(["duloxetine+physical_therapy", "tramadol", "nsaid+cbt+epidural_steroid", "cbt"],
                ["", "", "", "cbt"])
    prepared = prepare_cohort(frame, "v2.csv", 0.3)
    assert prepared["plan"].tolist() == ["duloxetine+physical_therapy", "tramadol",
                                         "nsaid+cbt+epidural_steroid", "cbt"]
    with caplog.at_level(logging.WARNING):
        single = single_treatment_episodes(prepared, "v2.csv")
    assert single["treatment"].tolist() == ["tramadol", "cbt"]
    assert "v2.csv: 2 of 4 episodes are plans of two or more components" in caplog.text


def test_prediction_ignores_the_plan_column():
    frame = _v2(["duloxetine+physical_therapy", "bogus+name"], ["", ""])
    out = validate_cohort(frame.drop(columns=["pain_followup", "adverse_event"]), "p.csv",
                          require_outcomes=False)
    assert "plan" not in out.columns and "treatment" not in out.columns


@settings(max_examples=60, deadline=None)
@given(st.lists(st.sampled_from(TREATMENT_NAMES), min_size=1, max_size=4, unique=True),
       st.randoms(use_true_random=False))
def test_any_spelling_of_a_plan_reads_as_its_canonical_name(names, rnd):
    spelled = [rnd.choice([n, n.upper(), f" {n} ", n.replace("_", " ")]) for n in names]
    frame = _v2([" + ".join(spelled)], [""])
    out = validate_cohort(frame, "v2.csv", True)
    assert out["plan"].iloc[0] == plan_name(names)
    assert parse_plan(out["plan"].iloc[0]) == tuple(sorted(names, key=TREATMENT_NAMES.index))
    assert out["treatment"].iloc[0] == (names[0] if len(names) == 1 else "")
