"""benchmarks/release_route.py: the bring-your-own route as releases are scored (a contract
CSV in data.cohort, no ground truth, dvc repro, then precision-pain predict on new patients)
runs end to end with the real commands, and its score is the share the truth gives."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from short_grids import short_grids

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import release_route  # noqa: E402

sys.path.remove(str(ROOT / "benchmarks"))


def test_share_is_zero_for_the_best_single_treatment_and_one_for_the_oracle():
    """The score's two anchors, on a hand-made truth of three patients and two treatments
    (the second ineligible for the third patient)."""
    truth = pd.DataFrame({
        "patient_id": ["a", "a", "b", "b", "c", "c"],
        "treatment": ["cbt", "duloxetine"] * 3,
        "eligible": [True, True, True, True, True, False],
        "p_response": [0.5, 0.3, 0.2, 0.6, 0.4, 0.9],
        "p_adverse_event": [0.0, 0.1, 0.0, 0.1, 0.0, 0.0]})
    treatments = ["duloxetine", "cbt"]
    oracle = pd.Series(["cbt", "duloxetine", "cbt"], index=["a", "b", "c"])
    single = pd.Series(["cbt"] * 3, index=["a", "b", "c"])  # cbt: the one eligible for all
    got = release_route.share_captured(oracle, truth, 1.0, treatments, 20, 0)
    assert got["share"] == pytest.approx(1.0) and got["best_single"] == "cbt"
    assert release_route.share_captured(single, truth, 1.0, treatments, 0, 0)[
        "share"] == pytest.approx(0.0)
    # duloxetine for a (0.2 lost) and b (0.4 gained) at harm weight 0: half the oracle's
    # gain of 0.4 over cbt for everyone
    mixed = pd.Series(["duloxetine", "duloxetine", "cbt"], index=["a", "b", "c"])
    assert release_route.share_captured(mixed, truth, 0.0, treatments, 0, 0)[
        "share"] == pytest.approx(0.5)
    # an ineligible first choice (duloxetine for c) is counted and scored as the worst
    # eligible option, not at its value in the truth (0.9)
    wrong = pd.Series(["cbt", "duloxetine", "duloxetine"], index=["a", "b", "c"])
    got = release_route.share_captured(wrong, truth, 0.0, treatments, 0, 0)
    assert got["ineligible_first"] == 1 and got["share"] == pytest.approx(1.0)


@pytest.mark.slow
def test_the_route_runs_with_the_real_commands(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["simulate"]["n_patients"] = 1000  # the pipeline's simulate stage still runs
    params["evaluate"]["n_bootstrap"] = 10
    short_grids(params)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "release_route.py"), "--generators", "alt",
         "--n", "2500", "--unseen", "400", "--harm-weights", "0", "1", "--n-bootstrap", "10",
         "--params", str(tmp_path / "params.yaml"), "--keep", str(tmp_path / "repo")],
        capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(io.StringIO(done.stdout[done.stdout.index("generator,"):]))
    assert list(table["harm_weight"]) == [0.0, 1.0]
    assert np.isfinite(table["share"]).all() and (table["ineligible_first"] == 0).all()
    assert (table["low"] <= table["high"]).all()
    repo = tmp_path / "repo" / "alt-20261202"
    kept = yaml.safe_load((repo / "params.yaml").read_text())
    assert kept["data"]["cohort"] == "data/external/extract.csv"
    assert kept["data"]["ground_truth"] is None
    predictions = pd.read_csv(repo / "predictions_hw1.csv")
    assert predictions["patient_id"].nunique() == 400
    assert set(predictions["harm_weight"]) == {1.0}
