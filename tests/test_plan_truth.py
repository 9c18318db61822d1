"""The per-plan truth that evaluate scores the plan learner against (data.plan_truth)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from precision_pain.config import DataParams
from precision_pain.data.contract.errors import ContractError
from precision_pain.evaluate.plans import check_plan_truth, plan_truth_path

SYNTHETIC = dict(cohort="data/synthetic/cohort.parquet",
                 ground_truth="data/synthetic/ground_truth.parquet",
                 synthetic_cohort="data/synthetic/cohort.parquet",
                 synthetic_truth="data/synthetic/ground_truth.parquet",
                 synthetic_plan_truth="data/synthetic/plan_truth.parquet",
                 prepared="p.parquet", prepared_truth="t.parquet", splits_dir="s")


def _data(**changes: object) -> DataParams:
    return DataParams(**{**SYNTHETIC, **changes})


@pytest.mark.parametrize(("changes", "has_truth", "expected"), [
    ({}, True, "data/synthetic/plan_truth.parquet"),  # the synthetic cohort, no key set
    ({"plan_truth": "data/synthetic/plan_truth.parquet"}, True,
     "data/synthetic/plan_truth.parquet"),
    ({}, False, None),  # no ground truth: nothing is scored against a truth
    # an extract with the key left at the synthetic default: never the synthetic truth
    ({"cohort": "x.csv", "plan_truth": "data/synthetic/plan_truth.parquet"}, True, None),
    ({"cohort": "x.csv"}, True, None),
    ({"cohort": "x.csv", "plan_truth": "mine.csv"}, True, "mine.csv"),
    ({"cohort": "x.csv", "plan_truth": "mine.csv"}, False, None),
])
def test_plan_truth_path_never_scores_an_extract_against_the_synthetic_truth(
        changes, has_truth, expected):
    got = plan_truth_path(_data(**changes), has_truth)
    assert got == (Path(expected) if expected else None)


def _truth() -> pd.DataFrame:
    return pd.DataFrame({"patient_id": ["a", "a", "b", "b"],
                         "plan": ["duloxetine", "physical_therapy + duloxetine",
                                  "duloxetine", "duloxetine+physical_therapy"],
                         "p_response": [0.4, 0.5, 0.3, 0.45],
                         "p_adverse_event": ["0.02", "0.03", "0.01", "0.02"]})


def test_plan_names_are_made_canonical_and_probabilities_numeric():
    checked = check_plan_truth(_truth(), "truth.csv")
    assert checked["plan"].tolist() == ["duloxetine", "duloxetine+physical_therapy"] * 2
    assert checked["p_adverse_event"].dtype == float


def test_every_problem_is_listed_with_file_column_and_rows():
    bad = _truth()
    bad.loc[0, "plan"] = "duloxetine+aspirin"
    bad.loc[1, "p_response"] = 1.7
    bad.loc[3, "plan"] = "physical_therapy+duloxetine+"  # the same plan as row 2
    bad.loc[2, "plan"] = "duloxetine + physical_therapy"
    with pytest.raises(ContractError) as caught:
        check_plan_truth(bad, "mine.csv")
    text = str(caught.value)
    assert "mine.csv" in text
    assert {p.column for p in caught.value.problems} == {"plan", "p_response"}
    by_message = {p.message: p for p in caught.value.problems}
    assert by_message["name no valid plan"].rows == [1]
    assert by_message["are not probabilities in [0, 1]"].rows == [2]
    assert by_message["repeat a (patient_id, plan) pair"].rows == [3, 4]


def test_missing_columns_are_named():
    with pytest.raises(ContractError, match="missing required columns: plan, p_response"):
        check_plan_truth(pd.DataFrame({"patient_id": ["a"], "p_adverse_event": [0.1]}), "t")


def test_a_null_plan_truth_is_refused_with_the_key(tmp_path):
    """dvc.yaml declares data.plan_truth as evaluate's dependency: null would break `dvc
    repro` with DVC's own unexpected error, so the params are refused first."""
    import yaml

    from precision_pain.config import load_params

    raw = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    raw["data"]["plan_truth"] = None
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(Exception, match=r"data\.plan_truth.*not null"):
        load_params(tmp_path / "params.yaml")
