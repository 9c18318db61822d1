"""The fourth generator (benchmarks/shift_cohort.py) writes an extract the pipeline accepts,
with an exact truth its outcomes are drawn from.

It was written from the data contract, the registry and docs/domain.md only, with other
functional forms (thresholds, gene-gene interaction, Student-t noise, an unrecorded
confounder) and the file spellings another team might use; the release route scores the
default learner on it, so its file must pass the contract as ``precision-pain prepare``
reads it, and its truth must be the true distribution of what it draws.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, stats

from benchmark_modules import assert_truth_covers_eligible, load_benchmark
from precision_pain.data.contract import read_table
from precision_pain.data.contract.schema import measurement_columns
from precision_pain.data.prepare import align_truth, prepare_cohort
from precision_pain.registry import TREATMENTS, eligibility

N = 2000
TRUTH_COLUMNS = ["patient_id", "treatment", "eligible", "p_response", "p_adverse_event",
                 "p_usual_care", "expected_nrs_change"]


@pytest.fixture(scope="module")
def shift():
    return load_benchmark("shift_cohort")


@pytest.fixture(scope="module")
def made(shift, tmp_path_factory):
    """The extract written as release_route writes data.cohort (CSV) and read back as the
    prepare stage reads it (read_table, then prepare_cohort)."""
    raw, truth = shift.generate(N, seed=20261202)
    path = tmp_path_factory.mktemp("shift") / "extract.csv"
    raw.to_csv(path, index=False)
    prepared = prepare_cohort(read_table(path), str(path), 0.30)
    return raw, truth, prepared


@pytest.fixture(scope="module")
def episodes(made, shift):
    """Each episode with the truth of the treatment it received."""
    _, truth, prepared = made
    got = prepared[["patient_id", "treatment", "response", "adverse_event"]].merge(
        truth, on=["patient_id", "treatment"], how="left", validate="one_to_one")
    assert got["p_response"].notna().all()
    return got


def test_the_extract_passes_the_contract_as_the_pipeline_reads_it(made, shift):
    raw, truth, prepared = made
    assert len(prepared) == N and prepared["patient_id"].is_unique
    assert (prepared["age"] <= 90).all() and (raw["age"] > 90).any()  # top-coded, not refused
    assert (prepared["treatment"] != "").all()  # filled from the plan column where left empty
    assert raw["treatment"].isna().any() and raw["plan"].notna().any()
    assert set(prepared["treatment"]) <= set(shift.SIMULATED)
    assert (raw["pain_baseline"] > 0).all()
    # the in-memory frame (learning_curve's route) validates to the same episodes
    in_memory = prepare_cohort(raw, "shift_cohort", 0.30)
    assert in_memory["treatment"].tolist() == prepared["treatment"].tolist()
    assert (in_memory["response"] == prepared["response"]).mean() == 1.0
    aligned = align_truth(truth, prepared, "shift_cohort")
    assert_truth_covers_eligible(prepared, aligned, shift.SIMULATED)


def test_the_extract_uses_the_contracts_optional_parts(made):
    raw, _, prepared = made
    for name in measurement_columns():  # every "empty allowed" measurement has gaps
        share = raw[name].isna().mean()
        assert 0.02 < share < 0.8, (name, share)
    young = raw["age"] < 50
    assert raw.loc[young, "egfr"].isna().mean() > 2 * raw.loc[~young, "egfr"].isna().mean()
    for gene in ("CYP2D6", "CYP2C9", "CYP2C19", "OPRM1_rs1799971", "COMT_rs4680"):
        cells = raw[gene]
        assert cells.isna().any() and (cells == "").any() and (cells == "unknown").any(), gene
    assert {"A/G", "G/A"} <= set(raw["OPRM1_rs1799971"]) and {"A/G", "G/A"} <= set(
        raw["COMT_rs4680"])
    assert (raw["CYP2D6"] == "*4/*1").any() and raw["CYP2D6"].str.contains("xN").any()
    assert (prepared["cyp2d6_phenotype"] == "indeterminate").any()
    assert raw["cyp2d6_inhibitor_drugs"].notna().any()


def test_the_truth_has_one_row_per_patient_and_treatment_and_the_registrys_eligibility(
        made, shift):
    raw, truth, prepared = made
    k = len(shift.SIMULATED)
    assert list(truth.columns) == TRUTH_COLUMNS and len(truth) == N * k
    assert truth["eligible"].dtype == bool
    for c in TRUTH_COLUMNS[3:]:
        assert truth[c].dtype == np.float64 and truth[c].notna().all(), c
    assert set(shift.SIMULATED) == set(TREATMENTS) - {"neurofeedback"}
    assert (truth.groupby("patient_id")["treatment"].apply(tuple)
            == tuple(shift.SIMULATED)).all()
    assert truth["patient_id"].iloc[::k].tolist() == raw["patient_id"].tolist()
    conditions = prepared.set_index("patient_id").loc[raw["patient_id"], "condition"]
    registry = eligibility(conditions, shift.SIMULATED)
    np.testing.assert_array_equal(truth["eligible"].to_numpy().reshape(-1, k), registry)


def test_probabilities_lie_in_0_1_and_usual_care_keeps_positivity(made, shift):
    _, truth, _ = made
    k = len(shift.SIMULATED)
    for c in ("p_response", "p_adverse_event", "p_usual_care"):
        assert truth[c].between(0, 1).all(), c
    care = truth["p_usual_care"].to_numpy().reshape(-1, k)
    eligible = truth["eligible"].to_numpy().reshape(-1, k)
    np.testing.assert_allclose(np.where(eligible, care, 0).sum(axis=1), 1.0, atol=1e-12)
    assert (care[eligible] >= 0.01).all()
    assert (care[~eligible] == 0).all()


def test_every_observed_treatment_is_eligible(episodes):
    assert episodes["eligible"].all()
    assert (episodes["p_usual_care"] >= 0.01).all()


def _within_sampling_error(outcome: pd.Series, p: pd.Series, label: str) -> None:
    """Observed rate within 4 standard errors of the mean true probability."""
    se = np.sqrt((p * (1 - p)).sum()) / len(p)
    assert abs(outcome.mean() - p.mean()) < 4 * se, (label, outcome.mean(), p.mean(), se)


def test_outcomes_are_drawn_from_the_truth(episodes):
    """Per treatment and per quartile of the true probability: outcomes drawn from other
    probabilities (e.g. another treatment's, or shuffled between patients) fail here."""
    for treatment, rows in episodes.groupby("treatment"):
        assert len(rows) >= 20, treatment
        _within_sampling_error(rows["response"], rows["p_response"], treatment)
        _within_sampling_error(rows["adverse_event"], rows["p_adverse_event"], treatment)
    quartile = pd.qcut(episodes["p_response"], 4, labels=False)
    for q, rows in episodes.groupby(quartile):
        _within_sampling_error(rows["response"], rows["p_response"], f"response quartile {q}")
    top, bottom = (episodes[quartile == 3], episodes[quartile == 0])
    assert top["response"].mean() - bottom["response"].mean() > 0.1  # the truth separates
    harm = pd.qcut(episodes["p_adverse_event"], 2, labels=False)
    for q, rows in episodes.groupby(harm):
        _within_sampling_error(rows["adverse_event"], rows["p_adverse_event"], f"harm half {q}")


def test_expected_nrs_change_is_the_mean_of_the_clipped_follow_up(shift):
    """The closed form against a numerical integral over the Student-t noise."""
    m = np.array([[0.05, 0.2, 0.45, -0.1, 0.9]])
    s = np.array([[0.21, 0.27, 0.23, 0.3, 0.2]])
    for b in (3.0, 7.5, 10.0):
        got = shift.expected_nrs_change(m, s, np.array([b]))[0]
        for j in range(m.shape[1]):
            mu, sd = m[0, j], s[0, j]

            def integrand(r, mu=mu, sd=sd, b=b):
                return np.clip(b * (1 - r), 0, 10) * stats.t.pdf((r - mu) / sd, shift.NU) / sd

            want, _ = integrate.quad(integrand, mu - 300 * sd, mu + 300 * sd, limit=500,
                                     points=[1 - 10 / b, 1.0, mu])
            assert got[j] == pytest.approx(want - b, abs=1e-6)


def test_generate_is_deterministic_from_the_seed(shift):
    a, ta = shift.generate(300, seed=5)
    b, tb = shift.generate(300, seed=5)
    c, _ = shift.generate(300, seed=6)
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(ta, tb)
    assert not a["pain_followup"].equals(c["pain_followup"])
