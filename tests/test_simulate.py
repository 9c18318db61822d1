"""Synthetic cohort: determinism, contract, published frequencies, effects, overlap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from precision_pain.data import pgx
from precision_pain.config import SimulateParams
from precision_pain.registry import CONDITIONS, TREATMENTS
from precision_pain.data.simulate import (
    ANCESTRIES,
    COHORT_COLUMNS,
    TRUTH_COLUMNS,
    SyntheticCohort,
    best_treatment_shares,
    draw_genotypes,
    mask_genotypes,
    simulate_cohort,
    simulated_treatments,
)

PARAMS = SimulateParams(
    n_patients=1000, seed=11,
    ancestry_mix={"european": 0.6, "african_american": 0.13, "latino": 0.15,
                  "east_asian": 0.06, "south_asian": 0.04, "other": 0.02},
)
# The default cohort's treatments: the registry without the opt-in ones.
TREATMENT_NAMES = simulated_treatments()
K = len(TREATMENT_NAMES)

# CPIC CYP2D6 frequency table (Gaedigk 2017, Genet Med 19:69; docs/domain.md section 2):
# phenotype mix (%), PM / IM / NM / UM; the rest indeterminate.
PUBLISHED_CYP2D6 = {
    "european": (6.5, 38, 49, 2.3),
    "african_american": (2.3, 36, 54, 4.1),
    "east_asian": (0.8, 38, 54, 0.9),
    "latino": (3.1, 29, 60, 4.1),
    "south_asian": (2.4, 28, 58, 1.5),
}


@pytest.fixture(scope="module")
def sim() -> SyntheticCohort:
    return simulate_cohort(PARAMS, 0.3, n_patients=20_000, seed=5)


def _wide(truth: pd.DataFrame, column: str) -> np.ndarray:
    return truth[column].to_numpy().reshape(-1, K)


def _annotated(sim: SyntheticCohort, treatment: str) -> pd.DataFrame:
    truth = sim.truth[sim.truth["treatment"] == treatment].reset_index(drop=True)
    cohort = pgx.annotate_pgx(sim.cohort).reset_index(drop=True)
    assert (truth["patient_id"] == cohort["patient_id"]).all()
    return pd.concat([cohort, truth.drop(columns=["patient_id", "treatment"])], axis=1)


# --- determinism and shape ---------------------------------------------------------------

def test_same_seed_same_frames() -> None:
    a = simulate_cohort(PARAMS, 0.3, n_patients=500, seed=3)
    b = simulate_cohort(PARAMS, 0.3, n_patients=500, seed=3)
    pd.testing.assert_frame_equal(a.cohort, b.cohort)
    pd.testing.assert_frame_equal(a.truth, b.truth)
    c = simulate_cohort(PARAMS, 0.3, n_patients=500, seed=4)
    assert not a.cohort.equals(c.cohort)


def test_params_defaults_used_without_overrides() -> None:
    result = simulate_cohort(PARAMS, 0.3)
    assert len(result.cohort) == PARAMS.n_patients
    pd.testing.assert_frame_equal(result.cohort,
                                  simulate_cohort(PARAMS, 0.3, seed=PARAMS.seed).cohort)


def test_truth_shape_and_eligibility(sim: SyntheticCohort) -> None:
    truth, cohort = sim.truth, sim.cohort
    assert list(truth.columns) == list(TRUTH_COLUMNS)
    assert len(truth) == len(cohort) * K
    assert (_wide(truth, "treatment") == np.array(TREATMENT_NAMES)).all()
    assert (_wide(truth, "patient_id") == cohort["patient_id"].to_numpy()[:, None]).all()
    condition = np.repeat(cohort["condition"].to_numpy(), K)
    expected = [TREATMENTS[t].eligible(c) for t, c in zip(truth["treatment"], condition)]
    assert truth["eligible"].tolist() == expected
    for column in ("p_response", "p_adverse_event", "p_usual_care"):
        assert truth[column].between(0, 1).all()


def test_bad_threshold_is_refused() -> None:
    with pytest.raises(ValueError, match="response_threshold"):
        simulate_cohort(PARAMS, 1.5, n_patients=10)


# --- data contract ---------------------------------------------------------------------

def test_contract_columns_and_ranges(sim: SyntheticCohort) -> None:
    c = sim.cohort
    assert list(c.columns) == list(COHORT_COLUMNS)
    assert c["patient_id"].str.fullmatch(r"P\d{7}").all() and c["patient_id"].is_unique
    ranges = {"age": (18, 90), "bmi": (12, 70), "pain_duration_months": (3, 600),
              "pain_baseline": (0, 10), "pcs": (0, 52), "phq9": (0, 27), "gad7": (0, 21),
              "ort_score": (0, 26), "egfr": (5, 150), "pain_followup": (0, 10)}
    for column, (lo, hi) in ranges.items():
        assert c[column].between(lo, hi).all(), column
    assert (c["baseline_mme"] >= 0).all() and (c["pain_baseline"] > 0).all()
    categories = {"sex": {"F", "M"}, "ancestry": set(ANCESTRIES), "condition": set(CONDITIONS),
                  "activity_level": {"low", "moderate", "high"},
                  "treatment": set(TREATMENT_NAMES)}
    for column, allowed in categories.items():
        assert set(c[column]) <= allowed, column
    for column in ("smoker", "prior_spine_surgery", "prior_gi_ulcer", "anticoagulant",
                   "cyp2d6_inhibitor", "adverse_event"):
        assert c[column].dtype == bool, column
    assert (c["age"] == 90).any()  # top-coding exercised


def test_contract_validator_accepts_cohort(sim: SyntheticCohort) -> None:
    contract = pytest.importorskip("precision_pain.data.contract")
    validated = contract.validate_cohort(sim.cohort, "synthetic", require_outcomes=True)
    assert len(validated) == len(sim.cohort)


def test_genotype_spelling_and_missing(sim: SyntheticCohort) -> None:
    c = sim.cohort
    assert c["CYP2D6"].isin(["", "unknown"]).mean() == pytest.approx(0.02, abs=0.006)
    assert c["CYP2D6"].str.contains("x2").any() and c["CYP2D6"].eq("*4/*5").any()
    assert set(c["OPRM1_rs1799971"]) <= {"A/A", "A/G", "G/G", ""}
    assert set(c["COMT_rs4680"]) <= {"G/G", "G/A", "A/A", ""}
    annotated = pgx.annotate_pgx(c)
    assert (annotated["cyp2d6_phenotype"] == "indeterminate").any()


def test_inhibitor_follows_depression(sim: SyntheticCohort) -> None:
    c = sim.cohort
    inhibitor_share = c.groupby(c["phq9"] >= 10)["cyp2d6_inhibitor"].mean()
    assert inhibitor_share[True] > inhibitor_share[False]


def test_feature_correlations(sim: SyntheticCohort) -> None:
    c = sim.cohort
    assert c["phq9"].corr(c["pcs"]) > 0.3 and c["phq9"].corr(c["gad7"]) > 0.3
    assert c["age"].corr(c["egfr"]) < -0.4
    assert c["ort_score"].corr(c["baseline_mme"]) > 0.1
    fbss = c["condition"] == "failed_back_surgery"
    assert c.loc[fbss, "prior_spine_surgery"].all()


# --- published frequencies ---------------------------------------------------------------

def test_cyp2d6_phenotype_mix_matches_published() -> None:
    n = 200_000
    rng = np.random.default_rng(2024)
    codes = np.repeat(np.arange(len(PUBLISHED_CYP2D6)), n)
    genotypes = mask_genotypes(draw_genotypes(codes, rng), PARAMS.missing_genotype_rate, rng)
    frame = genotypes.assign(cyp2d6_inhibitor=False)
    phenotype = pgx.annotate_pgx(frame)["cyp2d6_phenotype"].to_numpy()
    for i, (ancestry, published) in enumerate(PUBLISHED_CYP2D6.items()):
        block = phenotype[i * n:(i + 1) * n]
        measured = [100 * np.mean(block == p) for p in ("PM", "IM", "NM", "UM")]
        assert np.allclose(measured, published, atol=3.0), (ancestry, measured, published)


def test_other_ancestry_blends_the_rest() -> None:
    rng = np.random.default_rng(1)
    codes = np.full(50_000, ANCESTRIES.index("other"))
    ph = pgx.annotate_pgx(draw_genotypes(codes, rng).assign(cyp2d6_inhibitor=False))
    pm = 100 * (ph["cyp2d6_phenotype"] == "PM").mean()
    assert 0.8 < pm < 6.5  # between the lowest and highest reference ancestry


# --- structural effects ------------------------------------------------------------------

def test_tramadol_needs_cyp2d6(sim: SyntheticCohort) -> None:
    d = _annotated(sim, "tramadol")
    by = d.groupby("cyp2d6_effective_phenotype")
    assert by["p_response"].mean()["PM"] < by["p_response"].mean()["NM"] - 0.08
    assert by["p_adverse_event"].mean()["UM"] > 2 * by["p_adverse_event"].mean()["NM"]
    phenoconverted = (d["cyp2d6_phenotype"] == "NM") & d["cyp2d6_inhibitor"]
    assert d.loc[phenoconverted, "p_response"].mean() < \
        d.loc[(d["cyp2d6_phenotype"] == "NM") & ~d["cyp2d6_inhibitor"], "p_response"].mean()


def test_nsaid_harm_modifiers(sim: SyntheticCohort) -> None:
    d = _annotated(sim, "nsaid")
    harm = d["p_adverse_event"]
    assert harm[d["prior_gi_ulcer"]].mean() > 2 * harm[~d["prior_gi_ulcer"]].mean()
    assert harm[d["anticoagulant"]].mean() > harm[~d["anticoagulant"]].mean()
    assert harm[d["cyp2c9_phenotype"] == "PM"].mean() > harm[d["cyp2c9_phenotype"] == "NM"].mean()
    assert harm[d["egfr"] < 30].mean() > harm[d["egfr"] >= 60].mean()


def test_amitriptyline_harm_with_poor_metabolism(sim: SyntheticCohort) -> None:
    d = _annotated(sim, "amitriptyline")
    harm = d["p_adverse_event"]
    assert harm[d["cyp2d6_effective_phenotype"] == "PM"].mean() > \
        harm[d["cyp2d6_effective_phenotype"] == "NM"].mean()
    assert harm[d["cyp2c19_phenotype"] == "PM"].mean() > harm[d["cyp2c19_phenotype"] == "NM"].mean()


def test_opioid_modifiers(sim: SyntheticCohort) -> None:
    d = _annotated(sim, "oxycodone")
    assert d.loc[d["ort_score"] >= 8, "p_adverse_event"].mean() > \
        d.loc[d["ort_score"] <= 3, "p_adverse_event"].mean()
    assert d.loc[d["comt_met_count"] == 2, "p_response"].mean() > \
        d.loc[d["comt_met_count"] == 0, "p_response"].mean()
    assert d.loc[d["oprm1_g_count"] == 2, "p_response"].mean() < \
        d.loc[d["oprm1_g_count"] == 0, "p_response"].mean()


@pytest.mark.parametrize(
    ("treatment", "column", "better", "worse"),
    [
        ("spinal_cord_stimulation", "condition", "failed_back_surgery", "chronic_low_back_pain"),
        ("epidural_steroid", "condition", "lumbar_radiculopathy", "chronic_low_back_pain"),
        ("duloxetine", "condition", "diabetic_neuropathy", "chronic_low_back_pain"),
        ("pregabalin", "condition", "fibromyalgia", "lumbar_radiculopathy"),
        ("physical_therapy", "activity_level", "high", "low"),
    ],
)
def test_benefit_by_group(sim: SyntheticCohort, treatment: str, column: str, better: str,
                          worse: str) -> None:
    d = _annotated(sim, treatment)
    means = d.groupby(column)["p_response"].mean()
    assert means[better] > means[worse]


def test_cbt_helps_catastrophizers_most(sim: SyntheticCohort) -> None:
    cbt, pt = _annotated(sim, "cbt"), _annotated(sim, "physical_therapy")
    gain = cbt["p_response"] - pt["p_response"]
    assert gain[cbt["pcs"] > 30].mean() > gain[cbt["pcs"] <= 30].mean() + 0.1


def test_placebo_like_response_larger_when_young_and_in_more_pain(sim: SyntheticCohort) -> None:
    d = _annotated(sim, "cbt")
    assert d.loc[d["age"] < 40, "p_response"].mean() > d.loc[d["age"] > 65, "p_response"].mean()
    assert d.loc[d["pain_baseline"] >= 8, "p_response"].mean() > \
        d.loc[d["pain_baseline"] <= 5, "p_response"].mean()


# --- outcome draws agree with the analytic truth -----------------------------------------

def test_observed_response_matches_truth(sim: SyntheticCohort) -> None:
    c = sim.cohort
    observed = (c["pain_baseline"] - c["pain_followup"]) / c["pain_baseline"] >= 0.3
    p = _wide(sim.truth, "p_response")
    assigned = pd.Categorical(c["treatment"], categories=TREATMENT_NAMES).codes
    expected = p[np.arange(len(c)), assigned]
    assert observed.mean() == pytest.approx(expected.mean(), abs=0.012)
    ae = _wide(sim.truth, "p_adverse_event")[np.arange(len(c)), assigned]
    assert c["adverse_event"].mean() == pytest.approx(ae.mean(), abs=0.006)


def test_threshold_changes_truth_not_features() -> None:
    a = simulate_cohort(PARAMS, 0.3, n_patients=300, seed=9)
    b = simulate_cohort(PARAMS, 0.5, n_patients=300, seed=9)
    pd.testing.assert_frame_equal(a.cohort, b.cohort)
    assert (b.truth["p_response"] < a.truth["p_response"]).all()


# --- usual care, overlap and heterogeneity -------------------------------------------------

def test_usual_care_overlap(sim: SyntheticCohort) -> None:
    p, eligible = _wide(sim.truth, "p_usual_care"), _wide(sim.truth, "eligible").astype(bool)
    assert np.allclose(p.sum(axis=1), 1.0)
    assert (p[~eligible] == 0).all()
    assert p[eligible].min() >= PARAMS.usual_care_floor - 1e-12
    assigned_eligible = sim.truth.merge(sim.cohort[["patient_id", "treatment"]])["eligible"]
    assert assigned_eligible.all()


def test_usual_care_is_confounded(sim: SyntheticCohort) -> None:
    c = sim.cohort
    opioid = c["treatment"].isin(["tramadol", "oxycodone"])
    assert c.loc[opioid, "pain_baseline"].mean() > c.loc[~opioid, "pain_baseline"].mean() + 0.2
    nsaid = c["treatment"] == "nsaid"
    assert nsaid[c["prior_gi_ulcer"]].mean() < nsaid[~c["prior_gi_ulcer"]].mean()


@pytest.mark.parametrize("harm_weight", [0.0, 0.5])
def test_best_treatment_differs_across_patients(sim: SyntheticCohort, harm_weight: float
                                                 ) -> None:
    shares = best_treatment_shares(sim.truth, harm_weight)
    assert shares.sum() == pytest.approx(1.0)
    assert list(shares.index) == list(TREATMENT_NAMES)
    assert (shares >= 0.03).sum() >= 4


def test_oracle_beats_one_size_fits_all(sim: SyntheticCohort) -> None:
    p, eligible = _wide(sim.truth, "p_response"), _wide(sim.truth, "eligible").astype(bool)
    oracle = np.where(eligible, p, -np.inf).max(axis=1).mean()
    universal = eligible.all(axis=0)
    best_single = p[:, universal].mean(axis=0).max()
    usual = (p * _wide(sim.truth, "p_usual_care")).sum(axis=1).mean()
    assert oracle > best_single + 0.04
    assert oracle > usual + 0.04


def test_neurofeedback_is_simulated_only_when_enabled():
    assert "neurofeedback" in TREATMENTS and "neurofeedback" not in TREATMENT_NAMES
    default = simulate_cohort(PARAMS, 0.3, n_patients=3000, seed=5)
    enabled = simulate_cohort(PARAMS.model_copy(update={"optional_treatments": ["neurofeedback"]}),
                              0.3, n_patients=3000, seed=5)
    assert "neurofeedback" not in set(default.truth["treatment"])
    nf = enabled.truth[enabled.truth["treatment"] == "neurofeedback"]
    assert len(nf) == 3000
    fibro = enabled.cohort["condition"] == "fibromyalgia"
    received = enabled.cohort["treatment"] == "neurofeedback"
    assert received.any() and not (received & ~fibro).any()
    assert nf["eligible"].to_numpy().sum() == fibro.sum()
    # neurofeedback's truth: better than nothing, below duloxetine in fibromyalgia on average
    wide = enabled.truth.pivot(index="patient_id", columns="treatment", values="p_response")
    fib_ids = enabled.cohort.loc[fibro, "patient_id"]
    assert (wide.loc[fib_ids, "neurofeedback"].mean() < wide.loc[fib_ids, "duloxetine"].mean())
    with pytest.raises(ValueError, match="not opt-in; valid: neurofeedback"):
        simulated_treatments(["cbt"])


@pytest.mark.parametrize("baseline, mu", [(7.0, 0.3), (9.5, -0.4), (4.0, 1.1), (6.0, 0.0),
                                          (0.0, 0.5)])
def test_expected_nrs_change_matches_clipped_draws(baseline, mu):
    from precision_pain.data.simulate import expected_clipped_change

    sd = 0.3
    r = np.random.default_rng(0).normal(mu, sd, 400_000)
    empirical = np.mean(np.clip(baseline * (1 - r), 0, 10)) - baseline
    exact = expected_clipped_change(np.array([baseline]), np.array([[mu]]), sd)[0, 0]
    assert exact == pytest.approx(empirical, abs=0.01)


def test_expected_nrs_change_agrees_with_the_cohort(small_synthetic):
    """The assigned treatment's expected change averages to the observed change."""
    cohort, truth = small_synthetic.cohort, small_synthetic.truth
    got = truth.merge(cohort[["patient_id", "treatment"]], on=["patient_id", "treatment"])
    observed = cohort["pain_followup"] - cohort["pain_baseline"]
    se = observed.std() / np.sqrt(len(observed))
    assert len(got) == len(cohort)
    assert got["expected_nrs_change"].mean() == pytest.approx(observed.mean(), abs=3 * se)
    assert truth["expected_nrs_change"].between(-10, 10).all()
