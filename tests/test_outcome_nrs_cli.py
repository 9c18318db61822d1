"""prepare.outcome: nrs_change end to end through the CLI, in process: simulate -> prepare ->
split -> train -> evaluate -> predict, and the recommender served by MLflow, on a small cohort
with short grids (the route is under test, not the fit)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from short_grids import in_folder, invoke, run_pipeline, short_grids

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _params(d: Path, **simulate) -> tuple[dict, Path]:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["simulate"].update({"n_patients": 2500, **simulate})
    raw["prepare"]["outcome"] = "nrs_change"
    in_folder(raw, d)
    short_grids(raw)
    path = d / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return raw, path


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("nrs")
    raw, _ = _params(d)
    p = run_pipeline(raw, d)
    cohort = pd.read_parquet(raw["data"]["synthetic_cohort"]).head(40)
    cohort.drop(columns=["treatment", "pain_followup", "adverse_event"]).to_csv(
        d / "new.csv", index=False)
    invoke(["predict", *p, str(d / "new.csv"), "--out", str(d / "out" / "pred.csv")])
    return d


def test_train_and_evaluate_work_on_the_change_in_pain(run):
    training = json.loads((run / "training.json").read_text())
    assert training["model_type"] == "pooled_xgboost"
    manifest = json.loads((run / "models" / "manifest.json").read_text())
    assert manifest["metadata"]["outcome"] == {"type": "nrs_change",
                                               "adverse_event_nrs_points": 2.0}
    summary = json.loads((run / "metrics" / "evaluation.json").read_text())
    assert summary["outcome"] == "nrs_change" and "trials" not in summary
    assert summary["policy"]["sqrt_pehe"] > 0 and summary["mean_response_rmse"] > 0
    report = (run / "reports" / "evaluation.md").read_text()
    assert "NRS points" in report and "sqrt-PEHE" in report
    assert "Research use only" in report


def test_predict_writes_expected_change_and_says_so(run):
    table = pd.read_csv(run / "out" / "pred.csv")
    assert table["p_response"].isna().all()
    assert table["expected_nrs_change"].between(-10, 10).all()
    low, high = table["expected_nrs_change_low"], table["expected_nrs_change_high"]
    assert low.notna().all() and (low < high).all() and low.ge(-10).all() and high.le(10).all()
    first = table[table["rank"] == 1]
    assert first["explanation"].str.contains("NRS points").all()
    doc = json.loads((run / "out" / "pred.json").read_text())
    assert doc["meta"]["outcome"] == "nrs_change" and doc["meta"]["adverse_event_nrs_points"] == 2
    html = (run / "out" / "pred.html").read_text()
    assert "expected NRS change [prediction interval]" in html
    assert "expected NRS reduction" in html and "split-conformal prediction interval" in html
    shown = first.iloc[0]
    assert (f"{shown['expected_nrs_change']:+.2f} [{shown['expected_nrs_change_low']:+.1f}"
            f"&ndash;{shown['expected_nrs_change_high']:+.1f}]") in " ".join(html.split())
    assert ">nan<" not in html


def test_the_served_recommender_answers_in_nrs_points(run, tmp_path, monkeypatch):
    import mlflow

    from precision_pain import tracking
    from precision_pain.config import load_params
    from precision_pain.predict.recommend import options_from_params
    from precision_pain.predict.serve import model_config

    params = load_params(run / "params.yaml")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    track = params.tracking.model_copy(update={"uri": uri,
                                               "artifact_location": tmp_path / "artifacts"})
    with mlflow.start_run(experiment_id=tracking.start(track)) as active:
        run_id = active.info.run_id
    model_uri = tracking.log_recommender(track, run / "models", run_id,
                                         model_config(options_from_params(params), 50))
    served = mlflow.pyfunc.load_model(model_uri).predict(
        pd.read_csv(run / "new.csv", keep_default_na=False).head(5))
    written = pd.read_csv(run / "out" / "pred.csv")
    written = written[written["patient_id"].isin(served["patient_id"].astype(str))]
    np.testing.assert_allclose(served["expected_nrs_change"].to_numpy(float),
                               written["expected_nrs_change"].to_numpy(float), atol=1e-5)
    assert served["treatment"].tolist() == written["treatment"].tolist()


def test_plan_episodes_with_the_change_in_pain_are_refused(tmp_path):
    raw, params = _params(tmp_path, plans=True, n_patients=1500)
    p = ["--params", str(params)]
    invoke(["simulate", *p, "--out", raw["data"]["synthetic_cohort"],
            "--truth-out", raw["data"]["synthetic_truth"]])
    for stage in ("prepare", "split"):
        invoke([stage, *p])
    output = invoke(["train", *p, "--no-tracking"], ok=False)
    assert "plan learner" in output and "prepare.outcome: responder" in output
    assert not (tmp_path / "models").exists() and not (tmp_path / "evaluated").exists()


def test_a_model_type_without_a_regressor_is_refused_before_training(tmp_path):
    raw, params = _params(tmp_path)
    raw["model"]["type"] = "hist_gb"
    params.write_text(yaml.safe_dump(raw))
    output = invoke(["train", "--params", str(params), "--no-tracking"], ok=False)
    assert "hist_gb" in output and "no regressor" in output and "Fix" in output
