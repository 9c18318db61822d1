"""Treatment plans: slots, compatibility rules as data, in-plan phenoconversion, property tests."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from precision_pain.data import pgx
from precision_pain.plans import (
    EXCLUDE,
    MAX_COMPONENTS,
    PLAN_RULES,
    SLOTS,
    is_valid_plan,
    parse_plan,
    plan_eligibility,
    plan_name,
    valid_plans,
)
from precision_pain.predict.guidelines import ACTIONS, SEVERITY, check_guidelines
from precision_pain.predict.plan_checks import check_plans, enumerate_plans
from precision_pain.registry import CONDITIONS, TREATMENT_NAMES, TREATMENTS

# ------------------------------------------------------------------------------ the data


def test_rules_are_data_with_sources_and_known_names():
    assert len({r.name for r in PLAN_RULES}) == len(PLAN_RULES)
    for rule in PLAN_RULES:
        assert rule.action in (EXCLUDE, *ACTIONS), rule.name
        assert rule.source and rule.finding and rule.advice, rule.name
        assert set(rule.members) | set(rule.partners) <= set(TREATMENT_NAMES), rule.name


def test_slots_follow_registry_kinds():
    assert set(SLOTS) == {t.kind for t in TREATMENTS.values()}
    assert MAX_COMPONENTS == 3


@pytest.mark.parametrize("condition, expected", [
    ("chronic_low_back_pain", 98), ("lumbar_radiculopathy", 132), ("failed_back_surgery", 132),
    ("fibromyalgia", 43), ("diabetic_neuropathy", 71), ("knee_osteoarthritis", 29)])
def test_valid_plan_counts(condition, expected):
    plans = valid_plans(condition)
    assert len(plans) == expected
    singles = tuple((t,) for t in TREATMENT_NAMES if TREATMENTS[t].eligible(condition))
    assert plans[:len(singles)] == singles


def test_plan_names_are_canonical():
    assert parse_plan(" physical_therapy + duloxetine") == ("duloxetine", "physical_therapy")
    assert plan_name(["physical_therapy", "duloxetine"]) == "duloxetine+physical_therapy"
    assert plan_name(["nsaid"]) == "nsaid"


@pytest.mark.parametrize("text, message", [
    ("nsaid+aspirin", "unknown treatment 'aspirin'; valid treatments: nsaid"),
    ("nsaid+nsaid", "repeats nsaid"), (" + ", "empty plan")])
def test_parse_plan_errors(text, message):
    with pytest.raises(ValueError, match=message):
        parse_plan(text)


@pytest.mark.parametrize("plan, valid", [
    (("tramadol", "oxycodone"), False),  # two opioids
    (("nsaid", "duloxetine", "pregabalin"), False),  # three drugs
    (("physical_therapy", "cbt"), False),  # two behavioural therapies
    (("spinal_cord_stimulation", "epidural_steroid"), False),  # two procedures
    (("tramadol", "duloxetine", "physical_therapy"), True),  # flagged, not excluded
    (("nsaid", "physical_therapy", "epidural_steroid"), True),
])
def test_examples(plan, valid):
    assert is_valid_plan(plan) is valid


def test_plan_eligibility_by_condition():
    table = plan_eligibility(["fibromyalgia", "knee_osteoarthritis", "unknown"],
                             [("neurofeedback",), ("nsaid", "physical_therapy")])
    assert table.tolist() == [[True, False], [False, True], [False, False]]


# ------------------------------------------------------------------------------ properties

def _independent_valid(plan: tuple[str, ...], condition: str) -> bool:
    """The rules written out again, without the rule table: the oracle for enumeration."""
    ts = [TREATMENTS[t] for t in plan]
    drug_classes = [t.drug_class for t in ts if t.kind == "drug"]
    return (1 <= len(plan) <= 3 and all(t.eligible(condition) for t in ts)
            and sum(t.opioid for t in ts) <= 1 and len(set(drug_classes)) == len(drug_classes)
            and sum(t.kind == "drug" for t in ts) <= 2
            and sum(t.kind == "behavioural" for t in ts) <= 1
            and sum(t.kind == "procedure" for t in ts) <= 1)


@pytest.mark.parametrize("condition", CONDITIONS)
def test_enumeration_is_exactly_the_valid_sets(condition):
    everything = [p for k in range(1, len(TREATMENT_NAMES) + 1)
                  for p in combinations(TREATMENT_NAMES, k)]
    expected = {p for p in everything if _independent_valid(p, condition)}
    assert set(valid_plans(condition)) == expected


_D6 = ["*1/*1", "*1/*4", "*4/*4", "*1/*1x2", "*1x≥3/*4", "*10/*41", "*1/*10", "*1/*41",
       "*4/*10", "*2/*2", "*1/*22", ""]
_C9 = ["*1/*1", "*1/*2", "*1/*3", "*3/*3", ""]
_C19 = ["*1/*1", "*1/*17", "*17/*17", "*2/*2", "*1/*2", ""]
_INHIBITORS = ["", "duloxetine", "paroxetine", "cinacalcet", "bupropion;mirabegron"]

patients_strategy = st.lists(st.fixed_dictionaries({
    "patient_id": st.just("P"), "condition": st.sampled_from(CONDITIONS),
    "CYP2D6": st.sampled_from(_D6), "CYP2C9": st.sampled_from(_C9),
    "CYP2C19": st.sampled_from(_C19), "OPRM1_rs1799971": st.sampled_from(["A/A", "A/G", ""]),
    "COMT_rs4680": st.sampled_from(["G/G", "A/A", ""]),
    "cyp2d6_inhibitor": st.booleans(), "cyp2d6_inhibitor_drugs": st.sampled_from(_INHIBITORS),
    "egfr": st.sampled_from([15.0, 45.0, 90.0]), "age": st.sampled_from([40, 70]),
    "baseline_mme": st.sampled_from([0.0, 45.0, 120.0]), "ort_score": st.sampled_from([0, 5, 9]),
    "prior_gi_ulcer": st.booleans(), "anticoagulant": st.booleans(),
}), min_size=1, max_size=6)


def _prepared(rows: list[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    return pgx.annotate_pgx(frame.assign(patient_id=[f"P{i}" for i in range(len(frame))]))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(patients_strategy)
def test_no_enumerated_plan_breaks_a_rule(rows):
    patients = _prepared(rows)
    table = enumerate_plans(patients)
    assert table.groupby("row").size().to_dict() == {
        i: len(valid_plans(c)) for i, c in enumerate(patients["condition"])}
    for plan_text, condition, action, rules in zip(
            table["plan"], patients["condition"].to_numpy()[table["row"]], table["action"],
            table["rules"]):
        plan = parse_plan(plan_text)
        assert _independent_valid(plan, condition), plan_text
        fired = [r for r in PLAN_RULES if r.fires(plan)]
        assert all(r.action != EXCLUDE for r in fired)
        assert rules == ";".join(r.name for r in fired)
        assert all(SEVERITY[action] >= SEVERITY[r.action] for r in fired)
        serotonergic = "tramadol" in plan and {"duloxetine", "amitriptyline"} & set(plan)
        assert not serotonergic or SEVERITY[action] >= SEVERITY["caution"]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(patients_strategy)
def test_cpic_action_follows_the_plans_effective_phenotype(rows):
    patients = _prepared(rows)
    plans = ["tramadol", "tramadol+duloxetine", "duloxetine+amitriptyline", "amitriptyline",
             "tramadol+physical_therapy"]
    checks = check_plans(patients, plans)
    alone = check_guidelines(patients, ["tramadol", "amitriptyline"])
    with_duloxetine = pgx.with_inhibitor_drugs(patients, ("duloxetine",))
    in_plan = check_guidelines(with_duloxetine, ["tramadol", "amitriptyline"])
    for i, (diplotype, flag, drugs) in enumerate(zip(
            patients["CYP2D6"], patients["cyp2d6_inhibitor"], patients["cyp2d6_inhibitor_drugs"])):
        factor = min(pgx.inhibitor_drug_factor(drugs), 0.5, 0.0 if flag else 1.0)
        strength = {0.0: "strong", 0.5: "moderate"}[factor]
        assert checks.cyp2d6_effective_phenotype[i, 1] == pgx.cyp2d6_phenotype(diplotype, strength)
        # no inhibitor in the plan: the single-treatment check, unchanged
        assert checks.action[i, 0] == alone.action[i, 0]
        assert checks.action[i, 4] == alone.action[i, 0]
        assert checks.action[i, 3] == alone.action[i, 1]
        # an inhibitor in the plan: the components' checks on the effective phenotype
        effective = checks.cyp2d6_effective_phenotype[i, 1]
        assert SEVERITY[checks.action[i, 1]] >= SEVERITY[in_plan.action[i, 0]]
        assert SEVERITY[checks.action[i, 2]] >= SEVERITY[in_plan.action[i, 1]]
        if effective in ("UM", "PM"):
            assert checks.action[i, 1] == "avoid"
        if effective == "IM":
            assert "CYP2D6 intermediate metabolizer" in checks.note[i, 1]


# ------------------------------------------------------------------------------ examples

def _one(diplotype: str, drugs: str = "") -> pd.DataFrame:
    return _prepared([{"condition": "chronic_low_back_pain", "CYP2D6": diplotype,
                       "CYP2C9": "*1/*1", "CYP2C19": "*1/*1", "OPRM1_rs1799971": "A/A",
                       "COMT_rs4680": "G/G", "cyp2d6_inhibitor": False,
                       "cyp2d6_inhibitor_drugs": drugs, "egfr": 90.0, "age": 40,
                       "baseline_mme": 0.0, "ort_score": 0, "prior_gi_ulcer": False,
                       "anticoagulant": False}])


def test_duloxetine_makes_a_normal_metabolizer_intermediate_for_tramadol():
    checks = check_plans(_one("*1/*1"), ["tramadol", "tramadol+duloxetine",
                                         "amitriptyline+duloxetine"])
    assert checks.cyp2d6_effective_phenotype[0].tolist() == ["NM", "IM", "IM"]
    assert checks.action[0].tolist() == ["none", "caution", "adjust_dose"]
    note = checks.note[0, 1]
    assert "CYP2D6 intermediate metabolizer by phenoconversion (genotype: normal metabolizer; " \
           "moderate CYP2D6 inhibitor" in note
    assert "serotonin syndrome" in note and "Ultram" in note
    assert "25% reduction" in checks.dose[0, 2]
    assert checks.rules[1] == ("serotonergic_tramadol_snri", "cyp2d6_inhibitor_in_plan")


def test_duloxetine_in_a_plan_lifts_an_ultrarapid_avoid():
    # *1/*1x2: activity 3.0 (UM, tramadol avoided); with duloxetine 1.5 (NM)
    checks = check_plans(_one("*1/*1x2"), ["tramadol", "tramadol+duloxetine"])
    assert checks.cyp2d6_effective_phenotype[0].tolist() == ["UM", "NM"]
    assert checks.action[0].tolist() == ["avoid", "caution"]


def test_a_stronger_inhibitor_the_patient_takes_wins():
    checks = check_plans(_one("*1/*1", drugs="paroxetine"), ["tramadol+duloxetine"])
    assert checks.cyp2d6_effective_phenotype[0, 0] == "PM"
    assert checks.action[0, 0] == "avoid"


def test_enumerate_plans_columns_and_empty():
    table = enumerate_plans(_one("*1/*1"))
    assert list(table.columns) == ["row", "patient_id", "plan", "n_components", "action",
                                   "rules", "note", "dose", "cyp2d6_effective_phenotype"]
    assert len(table) == 98 and set(table["n_components"]) == {1, 2, 3}
    empty = enumerate_plans(_one("*1/*1").iloc[:0])
    assert empty.empty and "plan" in empty.columns
    assert np.array_equal(check_plans(_one("*1/*1"), []).action.shape, (1, 0))


def test_a_duplicate_class_rule_excludes_its_pairs():
    from precision_pain.plans import PlanRule

    # the registry holds one drug per class today; a class of two must still be refused
    rule = PlanRule("duplicate_class_antidepressant", ("duloxetine", "amitriptyline"), EXCLUDE,
                    "two antidepressants", "one per plan", "test")
    plans = valid_plans("fibromyalgia", rules=(*PLAN_RULES, rule))
    assert not [p for p in plans if {"duloxetine", "amitriptyline"} <= set(p)]
    assert [p for p in valid_plans("fibromyalgia") if {"duloxetine", "amitriptyline"} <= set(p)]
