"""Plans end to end, in process: simulate (plans on) -> prepare -> split -> train -> evaluate
-> predict, on a small cohort with short grids (the route is under test, not the fit)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from precision_pain.plans import parse_plan
from precision_pain.predict.plans import PLAN_COLUMNS
from precision_pain.predict.recommend import OUTPUT_COLUMNS
from precision_pain.registry import MODALITIES, TREATMENTS
from short_grids import in_folder, invoke, run_pipeline, short_grids

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("plans")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["simulate"].update({"plans": True, "n_patients": 2500})
    in_folder(raw, d)
    short_grids(raw)
    raw["model"]["hyperparameters"]["pooled_xgboost"]["response"]["default"] = {
        "max_depth": 3, "n_estimators": 100}
    p = run_pipeline(raw, d)
    cohort = pd.read_parquet(raw["data"]["synthetic_cohort"]).head(60)
    new = cohort.drop(columns=["treatment", "plan", "contract_version", "pain_followup",
                               "adverse_event"])
    new["exclude_modalities"] = ["procedure;opioid" if i % 2 else "" for i in range(len(new))]
    new.to_csv(d / "new.csv", index=False)
    invoke(["predict", *p, str(d / "new.csv"), "--out", str(d / "out" / "pred.csv")])
    return d


def test_training_and_evaluation_report_the_plan_learner(run):
    training = json.loads((run / "training.json").read_text())
    assert training["plan_train_multi_component_episodes"] > 0
    from precision_pain.models.bundle import load_bundle

    deployed = load_bundle(run / "models").plan_models
    evaluated = load_bundle(run / "evaluated").plan_models
    assert evaluated.plans == deployed.plans
    assert deployed.summary.get("plan_refit_on_all") == 1.0  # refitted on every split
    assert "plan_refit_on_all" not in evaluated.summary
    plans = json.loads((run / "metrics/evaluation.json").read_text())["plans"]
    values = json.loads((run / "metrics/policy.json").read_text())["plans"][
        "mean_true_net_benefit"]
    oracle = values["oracle"]["estimate"]
    assert all(v["estimate"] <= oracle + 1e-12 for v in values.values())
    assert {"share_of_oracle_gain.model", "share_of_oracle_gain.best_plan_for_everyone",
            "share_of_oracle_gain.single_recommender"} <= set(plans)
    assert "## Treatment plans" in (run / "reports/evaluation.md").read_text()


def test_predict_lists_checked_plans_and_keeps_the_single_table(run):
    out = run / "out"
    single = pd.read_csv(out / "pred.csv")
    assert tuple(single.columns) == OUTPUT_COLUMNS
    plans = pd.read_csv(out / "pred.plans.csv", keep_default_na=False)
    assert tuple(plans.columns) == PLAN_COLUMNS
    assert plans.groupby("patient_id").size().eq(3).all()  # predict.top_k_explained
    declined = {t for m in ("procedure", "opioid") for t in MODALITIES[m]}
    new = pd.read_csv(run / "new.csv", keep_default_na=False).set_index("patient_id")
    for row in plans[plans["rank"] == 1].itertuples():
        parts = parse_plan(row.plan)
        assert sum(TREATMENTS[t].opioid for t in parts) <= 1
        assert row.action != "avoid"
        if new.loc[row.patient_id, "exclude_modalities"]:
            assert not set(parts) & declined
        assert row.explanation.startswith("components, by how much")
    assert plans["net_benefit_over_best_single"].to_numpy(float) == pytest.approx(
        (plans["net_benefit"] - plans["best_single_net_benefit"]).to_numpy(float))
    doc = json.loads((out / "pred.plans.json").read_text())
    assert doc["columns"] == list(PLAN_COLUMNS) and len(doc["rows"]) == len(plans)
    shap = pd.read_csv(out / "pred.plans.shap.csv")
    assert len(shap) == 2 * len(plans)
    assert "Treatment plans" in (out / "pred.html").read_text()


def test_the_served_model_answers_with_plans_on_request(run, tmp_path, monkeypatch):
    import mlflow

    from precision_pain import tracking
    from precision_pain.config import load_params
    from precision_pain.predict.recommend import options_from_params
    from precision_pain.predict.serve import model_config

    params = load_params(run / "params.yaml")
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
    track = params.tracking.model_copy(update={"uri": uri,
                                               "artifact_location": tmp_path / "artifacts"})
    with mlflow.start_run(experiment_id=tracking.start(track)) as active:
        run_id = active.info.run_id
    model_uri = tracking.log_recommender(track, run / "models", run_id,
                                         model_config(options_from_params(params), 50))
    model = mlflow.pyfunc.load_model(model_uri)
    new = pd.read_csv(run / "new.csv", keep_default_na=False).head(4)
    plans = model.predict(new, params={"output": "plans"})
    assert tuple(plans.columns) == PLAN_COLUMNS and len(plans) == 4 * 3
    expected = pd.read_csv(run / "out" / "pred.plans.csv", keep_default_na=False)
    first = expected[expected["patient_id"].isin(new["patient_id"].astype(str))]
    # the same plans, in the same order, as `precision-pain predict` wrote
    assert plans["plan"].tolist() == first["plan"].tolist()
    assert tuple(model.predict(new).columns) == OUTPUT_COLUMNS


def test_predict_on_a_dask_cluster_writes_the_local_plans(run, tmp_path):
    """predict with the plan learner on a LocalCluster of 2 worker processes, 3 partitions:
    the same plan and treatment files as the local engine's run."""
    raw = yaml.safe_load((run / "params.yaml").read_text())
    raw["engine"] |= {"type": "dask", "n_workers": 2, "threads_per_worker": 1,
                      "dashboard_address": None}
    raw["predict"]["chunk_size"] = 25
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    invoke(["predict", "--params", str(params), str(run / "new.csv"), "--out",
            str(tmp_path / "pred.csv")])
    for name in ("pred.plans.csv", "pred.csv", "pred.plans.shap.csv", "pred.shap.csv"):
        local = pd.read_csv(run / "out" / name, keep_default_na=False)
        dask = pd.read_csv(tmp_path / name, keep_default_na=False)
        if ".shap." in name:  # rows are grouped by outcome within each chunk of patients
            keys = [c for c in ("patient_id", "outcome", "rank", "plan", "treatment")
                    if c in local.columns]
            local, dask = (f.sort_values(keys, kind="stable").reset_index(drop=True)
                           for f in (local, dask))
        assert len(dask) == len(local), name
        pd.testing.assert_frame_equal(dask, local, check_exact=False, rtol=1e-6, obj=name)


def test_the_explain_notebook_shows_a_patients_plans(run, monkeypatch):
    """notebooks/03 against the plan project: the plan section lists ranked plans and the
    SHAP part of each component; the helpers agree with predict's plan file."""
    import nbformat
    from nbclient import NotebookClient

    from precision_pain import notebook_utils as nbu

    monkeypatch.setenv(nbu.PROJECT_ENV, str(run / "params.yaml"))
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    project = nbu.find_project()
    bundle = nbu.load_models(project)
    patient = nbu.pick_patient(nbu.load_split(project, "test"))
    recs = nbu.recommend_patient(project, patient, bundle)
    plans = nbu.ranked_plans(recs)
    assert list(plans.index) == [1, 2, 3] and plans["plan"].str.len().gt(0).all()
    parts = nbu.plan_component_parts(recs, bundle)
    first = plans.loc[1, "plan"]
    assert set(parts.loc[(1, first)].index) == {*parse_plan(first), "n_components"}
    assert set(parts.columns) == {"response", "adverse_event"}
    nb = nbformat.read(ROOT / "notebooks" / "03_explain_patient.ipynb", as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(run)}}).execute()
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    html = "".join(o.get("data", {}).get("text/html", "") for o in outputs)
    assert "ranking_score" in html and "n_components" in html


def test_plan_rows_carry_their_training_support(run):
    from precision_pain.models.bundle import load_bundle

    from precision_pain.models.plan_model import modelable

    learner = load_bundle(run / "models").plan_models
    episodes = learner.episodes
    splits = sorted((run / "data").rglob("splits/*.parquet"))
    every = pd.concat([pd.read_parquet(f) for f in splits])
    assert len(every) == 2500
    # the deployed learner: every split's episodes whose components are all modeled
    assert sum(episodes.values()) == len(modelable(every, learner.treatments))
    plans = pd.read_csv(run / "out" / "pred.plans.csv", keep_default_na=False)
    assert plans["training_episodes"].tolist() == [episodes.get(p, 0) for p in plans["plan"]]
    few = plans["training_episodes"] < 20  # predict.min_plan_episodes
    assert few.any() and plans.loc[few, "low_confidence"].all()
    assert plans.loc[few, "confidence_reason"].str.contains(
        "training patients received this plan").all()
    assert (plans["low_confidence"] == plans["confidence_reason"].ne("")).all()


def test_a_bring_your_own_extract_is_scored_against_its_own_plan_truth(run, tmp_path):
    """data.plan_truth on the bring-your-own route: the same patients as a contract CSV with
    their per-plan truth (components written in another order) give the synthetic run's plan
    evaluation; left at the synthetic default, the extract's plans are not evaluated."""
    raw = yaml.safe_load((run / "params.yaml").read_text())
    data = raw["data"]
    pd.read_parquet(data["synthetic_cohort"]).to_csv(tmp_path / "extract.csv", index=False)
    truth = pd.read_parquet(data["synthetic_plan_truth"])
    truth["plan"] = truth["plan"].str.split("+").map(lambda parts: " + ".join(parts[::-1]))
    truth.to_csv(tmp_path / "plan_truth.csv", index=False)
    expected = json.loads((run / "metrics/evaluation.json").read_text())["plans"]
    for plan_truth, evaluated in ((str(tmp_path / "plan_truth.csv"), True),
                                  (data["synthetic_plan_truth"], False)):
        out = tmp_path / ("own" if evaluated else "default")
        raw["data"] = {**data, "cohort": str(tmp_path / "extract.csv"),
                       "ground_truth": data["synthetic_truth"], "plan_truth": plan_truth,
                       "prepared": str(out / "prepared.parquet"),
                       "prepared_truth": str(out / "prepared_truth.parquet"),
                       "splits_dir": str(out / "splits")}
        raw["evaluate"] = {**raw["evaluate"], **{
            k: str(out / Path(raw["evaluate"][k]).name)
            for k in ("metrics", "per_treatment", "policy", "subgroups", "plots_dir", "report")}}
        params = out / "params.yaml"
        out.mkdir()
        params.write_text(yaml.safe_dump(raw))
        for stage in ("prepare", "split", "evaluate"):
            invoke([stage, "--params", str(params),
                    *(["--no-tracking", "--models-dir", str(run / "evaluated")]
                      if stage == "evaluate" else [])])
        got = json.loads((out / "evaluation.json").read_text())
        if evaluated:
            assert got["plans"] == pytest.approx(expected, rel=1e-9)
        else:
            assert "plans" not in got


def test_the_plan_scoring_benchmark_compares_with_xgboost(run, capsys):
    """benchmarks/plans.py's side-by-side timing of the plan scorer runs on a plan bundle and
    reports margins that agree with xgboost's."""
    import re

    from benchmark_modules import load_benchmark
    from precision_pain.models.bundle import load_bundle

    module = load_benchmark("plans", "plans_benchmark")
    raw = pd.read_csv(run / "new.csv", keep_default_na=False).drop(
        columns=["exclude_modalities"])
    module.time_plan_scoring(load_bundle(run / "models"), raw, repeat=1)
    line = capsys.readouterr().out
    assert "plan scoring" in line and "xgboost inplace_predict" in line
    assert float(re.search(r"largest margin difference ([0-9.e+-]+)", line).group(1)) < 1e-4
