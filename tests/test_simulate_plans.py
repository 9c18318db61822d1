"""Synthetic plan episodes (simulate.plans): sub-additive effects, interactions, the plan truth."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from precision_pain.data.prepare import prepare_cohort, single_treatment_episodes
from precision_pain.data.simulate import COHORT_COLUMNS, simulate_cohort
from precision_pain.data.simulate_plans import (
    PLAN_ADDED_SHARE,
    PLAN_HARM_INTERACTIONS,
    PLAN_TRUTH_COLUMNS,
    combine_gains,
    combine_harms,
)
from precision_pain.plans import PLAN_RULES, parse_plan, valid_plans


@pytest.fixture(scope="module")
def planned(params):
    return simulate_cohort(params.simulate.model_copy(update={"plans": True}), 0.3,
                           n_patients=600, seed=11)


def test_default_cohort_has_no_plans(small_synthetic):
    assert tuple(small_synthetic.cohort.columns) == COHORT_COLUMNS
    assert small_synthetic.plan_truth is None


def test_plan_cohort_follows_contract_v2(planned, params):
    cohort = planned.cohort
    multi = cohort["plan"].str.contains("+", regex=False)
    assert 0.2 < multi.mean() < 0.4  # plan_share 0.3
    assert (cohort.loc[multi, "treatment"] == "").all()
    assert (cohort.loc[~multi, "treatment"] == cohort.loc[~multi, "plan"]).all()
    assert (cohort["contract_version"] == 2).all()
    for plan, condition in zip(cohort["plan"], cohort["condition"]):
        assert parse_plan(plan) in valid_plans(condition)
    prepared = prepare_cohort(cohort, "plans", 0.3)
    assert len(prepared) == len(cohort)
    assert len(single_treatment_episodes(prepared, "plans")) == int((~multi).sum())


def test_plan_truth_covers_every_valid_plan(planned):
    truth = planned.plan_truth
    assert tuple(truth.columns) == PLAN_TRUTH_COLUMNS
    n_plans = len(valid_plans(None, [t for t in pd.unique(planned.truth["treatment"])]))
    assert len(truth) == len(planned.cohort) * n_plans
    by_patient = truth.groupby("patient_id", sort=False)
    np.testing.assert_allclose(by_patient["p_usual_care"].sum(), 1.0, atol=1e-12)
    ineligible = ~truth["eligible"]
    assert (truth.loc[ineligible, "p_usual_care"] == 0).all()
    assert (truth.loc[truth["eligible"], "p_usual_care"] > 0).all()
    conditions = planned.cohort.set_index("patient_id")["condition"]
    counts = truth[truth["eligible"]].groupby("patient_id").size()
    expected = conditions.map(lambda c: len(valid_plans(c, pd.unique(planned.truth["treatment"]))))
    assert counts.reindex(expected.index).tolist() == expected.tolist()


def test_one_component_plans_are_the_single_treatments(planned):
    single = planned.plan_truth[planned.plan_truth["n_components"] == 1]
    merged = single.merge(planned.truth, left_on=["patient_id", "plan"],
                          right_on=["patient_id", "treatment"], suffixes=("", "_single"))
    assert len(merged) == len(planned.truth)
    for column in ("p_response", "p_adverse_event", "expected_nrs_change", "eligible"):
        assert (merged[column] == merged[f"{column}_single"]).all(), column
    # per-treatment truth: usual care given a one-component episode; plan truth: unconditional
    np.testing.assert_allclose(merged["p_usual_care"], 0.7 * merged["p_usual_care_single"])
    np.testing.assert_allclose(planned.truth.groupby("patient_id")["p_usual_care"].sum(), 1.0)


def test_sub_additive_gains():
    gains = np.array([[0.10, 0.06], [0.06, 0.10], [0.10, -0.02]])
    same = combine_gains(gains, ["drug", "drug"])
    other = combine_gains(gains, ["drug", "behavioural"])
    np.testing.assert_allclose(same, [0.10 + 0.35 * 0.06, 0.10 + 0.35 * 0.06, 0.10 - 0.35 * 0.02])
    np.testing.assert_allclose(other, [0.10 + 0.6 * 0.06] * 2 + [0.10 - 0.6 * 0.02])
    assert PLAN_ADDED_SHARE["same_kind"] < PLAN_ADDED_SHARE["other_kind"] < 1
    assert (same < gains.clip(0).sum(axis=1) + 1e-12).all()


def test_harms_combine_and_interactions_raise_them():
    logits = np.log(np.array([[0.03 / 0.97, 0.02 / 0.98]]))
    independent = combine_harms(logits, 0.0)
    np.testing.assert_allclose(independent, 1 - 0.97 * 0.98)
    raised = combine_harms(logits, np.log(1.5))
    odds = independent / (1 - independent) * 1.5
    np.testing.assert_allclose(raised, odds / (1 + odds))
    assert set(PLAN_HARM_INTERACTIONS) <= {r.name for r in PLAN_RULES}


def test_serotonergic_plan_is_riskier_than_its_parts_combined(planned):
    truth = planned.plan_truth.set_index(["patient_id", "plan"])
    pid = planned.cohort["patient_id"].iloc[0]
    t, d = (truth.loc[(pid, p), "p_adverse_event"] for p in ("tramadol", "duloxetine"))
    both = truth.loc[(pid, "tramadol+duloxetine"), "p_adverse_event"]
    assert both > 1 - (1 - t) * (1 - d)


def test_duloxetine_phenoconverts_tramadol_in_the_truth(params):
    # tramadol's efficacy falls in the plan for normal metabolizers who become intermediate
    sim = simulate_cohort(params.simulate.model_copy(update={"plans": True}), 0.3,
                          n_patients=300, seed=3)
    truth = sim.plan_truth.set_index(["patient_id", "plan"])["p_response"]
    nm = sim.cohort.loc[sim.cohort["CYP2D6"].isin(["*1/*1", "*1/*2", "*2/*2"])
                        & ~sim.cohort["cyp2d6_inhibitor"], "patient_id"]
    pid = nm.iloc[0]
    plain = truth[(pid, "tramadol+physical_therapy")] - truth[(pid, "physical_therapy")]
    converted = truth[(pid, "tramadol+duloxetine+physical_therapy")] \
        - truth[(pid, "duloxetine+physical_therapy")]
    assert converted < plain


def test_cli_writes_a_plan_truth_with_rows_only_with_plans(tmp_path):
    import yaml
    from conftest import ROOT

    from precision_pain.cli import main

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    for plans in (False, True):
        raw["simulate"]["plans"] = plans
        path = tmp_path / f"params_{plans}.yaml"
        path.write_text(yaml.safe_dump(raw))
        out = tmp_path / f"c_{plans}.parquet"
        plan_out = tmp_path / f"p_{plans}.parquet"
        result = CliRunner().invoke(main, ["simulate", "--params", str(path), "--n", "50",
                                           "--out", str(out), "--plan-truth-out",
                                           str(plan_out)])
        assert result.exit_code == 0, result.output
        # given explicitly (as dvc.yaml does), the file is always written: no rows without plans
        written = pd.read_parquet(plan_out)
        assert tuple(written.columns) == PLAN_TRUTH_COLUMNS
        assert written["patient_id"].nunique() == (50 if plans else 0)


@pytest.mark.slow
def test_single_treatment_models_train_on_a_plan_cohort(params):
    from precision_pain.data.split import split_cohort
    from precision_pain.models.train import train_bundle
    from precision_pain.registry import select_treatments

    sim = simulate_cohort(params.simulate.model_copy(update={"plans": True}), 0.3,
                          n_patients=2000, seed=2)
    prepared = single_treatment_episodes(prepare_cohort(sim.cohort, "plans", 0.3), "plans")
    splits = split_cohort(prepared, 0.15, 0.25, seed=1)
    model = params.model.model_copy(update={"type": "xgboost", "seed": 0, "hyperparameters": {
        "xgboost": {"n_estimators": 30, "max_depth": 2, "learning_rate": 0.1},
        "propensity": {"logistic": {"C": 1.0, "max_iter": 500}}}})
    bundle = train_bundle(splits["train"], splits["valid"],
                          select_treatments(["tramadol", "physical_therapy"]), model,
                          response_threshold=0.3, harm_weight=0.5, propensity_clip=0.01)
    assert set(bundle.treatments) == {"tramadol", "physical_therapy"}


def test_simulate_omop_writes_single_treatment_episodes_with_plans_on(tmp_path, caplog):
    import yaml
    from conftest import ROOT

    from precision_pain.cli import main

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["simulate"]["plans"] = True
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with caplog.at_level(logging.WARNING):
        result = CliRunner().invoke(main, ["simulate-omop", "--params", str(path), "--n", "40",
                                           "--out", str(tmp_path / "world")])
    assert result.exit_code == 0, result.output
    assert "simulate.plans is ignored here" in caplog.text
