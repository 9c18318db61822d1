"""The independent second generator (benchmarks/alt_cohort.py) keeps producing valid data.

The learning-curve and DR-coverage benchmarks score every model type on it; a registry change
that breaks it (as adding an opt-in treatment once did) must fail here, not in a benchmark run.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from precision_pain.data.prepare import align_truth, prepare_cohort
from precision_pain.registry import TREATMENTS

ROOT = Path(__file__).resolve().parents[1]


def _alt_cohort():
    spec = importlib.util.spec_from_file_location("alt_cohort", ROOT / "benchmarks" / "alt_cohort.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_alt_cohort_passes_the_contract_and_its_truth_covers_every_eligible_pair():
    alt = _alt_cohort()
    raw, truth = alt.generate(600, seed=3)
    prepared = prepare_cohort(raw, "alt_cohort", 0.30)
    aligned = align_truth(truth, prepared, "alt_cohort")
    assert len(prepared) == 600
    assert set(prepared["treatment"]) <= set(alt.SIMULATED)
    eligible = aligned[aligned["eligible"]]
    for condition, rows in prepared.groupby("condition"):
        wanted = {t for t in alt.SIMULATED if TREATMENTS[t].eligible(condition)}
        got = eligible[eligible["patient_id"].isin(rows["patient_id"])]
        assert set(got["treatment"]) == wanted, condition
        assert len(got) == len(rows) * len(wanted)
    assert np.all((eligible["p_response"] > 0) & (eligible["p_response"] < 1))


def test_alt_cohort_is_deterministic():
    alt = _alt_cohort()
    a, _ = alt.generate(200, seed=5)
    b, _ = alt.generate(200, seed=5)
    assert a.equals(b)
