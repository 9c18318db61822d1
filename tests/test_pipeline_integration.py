"""One full pipeline run on a small cohort: real git, real DVC, real MLflow (SQLite).

Checks what a user would check: models beat chance on the test split, every
patient of a new cohort gets every treatment ranked, a second `dvc repro`
changes nothing, MLflow holds one run per treatment, and the registered
models resolve by alias.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from short_grids import short_grids

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
N_NEW = 300  # patients in the new cohort predicted

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A fresh git+DVC repo with the project's pipeline on 6,000 patients (short grids),
    reproduced once."""
    repo = tmp_path_factory.mktemp("repo")
    for name in ("dvc.yaml", "pyproject.toml", ".dvcignore"):
        shutil.copy(ROOT / name, repo / name)
    shutil.copytree(ROOT / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["simulate"]["n_patients"] = 6000
    params["evaluate"]["n_bootstrap"] = 20
    short_grids(params)
    # test_models_beat_chance_on_test_split needs a real fit: params.yaml's default response
    # model (depth 4, 1,000 trees), against a sliced 300-tree candidate
    params["model"]["hyperparameters"]["pooled_xgboost"]["response"].update(
        {"max_depth": [4], "n_estimators": [300, 1000],
         "default": {"max_depth": 4, "n_estimators": 1000}})
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}",
           "DVC_NO_ANALYTICS": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "CI": "true"}
    env.pop("MLFLOW_REGISTRY_URI", None)
    _run(["git", "init", "-q"], repo, env)
    _run(["git", "config", "user.email", "ci@example.org"], repo, env)
    _run(["git", "config", "user.name", "ci"], repo, env)
    _run([str(BIN / "dvc"), "init", "-q"], repo, env)
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "pipeline"], repo, env)
    _run([str(BIN / "dvc"), "repro"], repo, env)
    return repo, env


def test_models_beat_chance_on_test_split(project):
    repo, _ = project
    import numpy as np
    from sklearn.metrics import roc_auc_score

    from precision_pain.models.bundle import load_bundle
    from precision_pain.data.features import build_features

    bundle = load_bundle(repo / "models/evaluated")  # the bundle that never saw the test split
    test = pd.read_parquet(repo / "data/splits/test.parquet")
    truth = pd.read_parquet(repo / "data/prepared/ground_truth.parquet")
    X = build_features(test)
    # outcome AUC, pooled over treatments (each row scored by its own treatment's model)
    predicted = np.empty(len(test))
    for t, rows in test.groupby("treatment"):
        predicted[test.index.get_indexer(rows.index)] = bundle.model(t, "response").predict_proba(
            X.loc[rows.index])
    assert roc_auc_score(test["response"], predicted) > 0.5
    # the signal that ranking needs: for every test patient (treated or not), predicted and
    # true P(response) agree, for the treatments with enough training patients
    counts = bundle.metadata["counts"]
    correlations = {}
    for t in bundle.treatments:
        if counts[t]["n_train"] < 300:
            continue
        true_p = truth[truth["treatment"] == t].set_index("patient_id").loc[
            test["patient_id"], "p_response"]
        correlations[t] = np.corrcoef(bundle.model(t, "response").predict_proba(X), true_p)[0, 1]
    assert len(correlations) >= 5, counts
    # at 6,000 patients the arms hold 300-700 training rows and the outcome is binary, so
    # agreement is modest (~0.28 measured); a model that learned nothing scores ~0
    assert np.mean(list(correlations.values())) > 0.15, correlations
    per_treatment = json.loads((repo / "metrics/per_treatment.json").read_text())
    assert set(per_treatment) == set(bundle.treatments)


def test_deployed_bundle_is_the_evaluated_one_refitted_on_every_split(project):
    repo, env = project
    from precision_pain.models.bundle import load_bundle

    evaluated = load_bundle(repo / "models/evaluated")
    deployed = load_bundle(repo / "models/bundle")
    splits = {name: pd.read_parquet(repo / f"data/splits/{name}.parquet")
              for name in ("train", "valid", "test")}
    assert evaluated.metadata["fitted_on"] == {
        "splits": ["train", "valid"],
        "n_episodes": len(splits["train"]) + len(splits["valid"])}
    assert deployed.metadata["fitted_on"] == {
        "splits": ["train", "valid", "test"], "n_episodes": sum(map(len, splits.values()))}
    # every choice is evaluation's; only the data differ
    chosen = {k: v for k, v in deployed.metadata["selection"].items() if k != "refit_on_all"}
    assert chosen == evaluated.metadata["selection"]
    assert deployed.metadata["selection"]["refit_on_all"] == 1.0
    # evaluation refuses the bundle that saw the test split, and says which one to score
    refused = subprocess.run([str(BIN / "precision-pain"), "evaluate", "--no-tracking",
                              "--models-dir", "models/bundle"], cwd=repo, env=env,
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode != 0
    assert "refitted on the test split" in refused.stderr
    assert "--models-dir models/evaluated" in refused.stderr


def test_policy_values_are_reported_against_the_truth(project):
    repo, _ = project
    policy = json.loads((repo / "metrics/evaluation.json").read_text())["policy"]
    oracle = policy["oracle"]["mean_true_net_benefit"]
    assert oracle >= policy["model"]["mean_true_net_benefit"]
    assert oracle >= policy["one_size_fits_all"]["mean_true_net_benefit"]


def test_dvc_metrics_show_and_second_repro_is_noop(project):
    repo, env = project
    shown = _run([str(BIN / "dvc"), "metrics", "show"], repo, env).stdout
    assert "response_auc" in shown and "mean_true_response" in shown
    assert "train_seconds" in shown and "valid_dr_net_benefit" in shown
    training = json.loads((repo / "metrics/training.json").read_text())
    assert training["model_type"] == "pooled_xgboost" and training["train_seconds"] > 0
    assert training["valid_dr_standard_error"] > 0
    again = _run([str(BIN / "dvc"), "repro"], repo, env)
    assert "up to date" in again.stdout.lower(), again.stdout
    status = _run([str(BIN / "dvc"), "status"], repo, env).stdout
    assert "up to date" in status.lower(), status


def test_mlflow_has_one_run_per_treatment_and_aliases_resolve(project):
    repo, env = project
    import mlflow

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    mlflow.set_registry_uri(env["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(experiment_names=["precision-pain"], output_format="list")
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parents[0].info.run_id]
    assert len(parents) == 1
    assert sorted(r.data.tags["treatment"] for r in children) == sorted(
        json.loads((repo / "models/bundle/manifest.json").read_text())["files"])
    assert "test.mean_response_auc" in parents[0].data.metrics
    assert {"headline/train_seconds", "headline/valid_dr_net_benefit",
            "headline/share_of_oracle_gain"} <= set(parents[0].data.metrics)
    assert all("test_response_auc" in r.data.metrics for r in children)
    # the default learner is pooled: one model shared by every treatment, registered inside
    # the recommender, whose version records the bundle's manifest hash
    client = mlflow.MlflowClient()
    version = client.get_model_version_by_alias("precision-pain-recommender", "newest")
    from precision_pain.models.bundle import manifest_sha256

    assert version.tags["bundle_manifest_sha256"] == manifest_sha256(repo / "models/bundle")
    assert all(r.data.tags.get("models", "").startswith("shared by every treatment")
               for r in children)


@pytest.fixture(scope="module")
def predicted(project) -> tuple[Path, dict[str, str]]:
    """``precision-pain predict`` on a new cohort, with the deployed bundle's folder
    (out/pred.*) and from the registry by alias (out/reg.*)."""
    repo, env = project
    cli = str(BIN / "precision-pain")
    _run([cli, "simulate", "--n", str(N_NEW), "--seed", "99", "--out", "new.csv"], repo, env)
    new = pd.read_csv(repo / "new.csv").drop(columns=["treatment", "pain_followup",
                                                      "adverse_event"])
    new.to_csv(repo / "new_patients.csv", index=False)
    _run([cli, "predict", "new_patients.csv", "--out", "out/pred.parquet"], repo, env)
    _run([cli, "predict", "new_patients.csv", "--out", "out/reg.csv",
          "--registry-alias", "newest"], repo, env)
    return repo, env


def test_predict_new_cohort_ranks_every_treatment(predicted):
    repo, _ = predicted
    pred = pd.read_parquet(repo / "out/pred.parquet")
    shap = pd.read_parquet(repo / "out/pred.shap.parquet")
    assert pred["patient_id"].nunique() == N_NEW
    ranks = pred.groupby("patient_id")["rank"].apply(sorted)
    assert all(r == list(range(1, 11)) for r in ranks)
    explained = pred["rank"] <= 3  # predict.top_k_explained
    assert pred.loc[explained, "explanation"].str.len().min() > 20
    assert len(shap) == 2 * explained.sum()  # response and adverse-event rows
    for suffix in (".json", ".html"):
        assert (repo / f"out/pred{suffix}").stat().st_size > 1000
    from_registry = pd.read_csv(repo / "out/reg.csv")
    merged = pred.merge(from_registry, on=["patient_id", "treatment"])
    assert (merged["p_response_x"] - merged["p_response_y"]).abs().max() < 1e-5


def test_predict_shows_the_evaluation_of_the_models_it_ranks_with(predicted):
    """evaluate records the bundle it scored; the deployed bundle, refitted from it, records
    it too; so predict's outputs carry that evaluation's gain, from a folder or the
    registry, and say so when the evaluation is of other models."""
    from precision_pain.models.bundle import manifest_sha256

    repo, env = predicted
    evaluated = manifest_sha256(repo / "models/evaluated")
    evaluation = json.loads((repo / "metrics/evaluation.json").read_text())
    assert evaluation["bundle_sha256"] == evaluated
    deployed = json.loads((repo / "models/bundle/manifest.json").read_text())
    assert deployed["metadata"]["evaluated_bundle_sha256"] == evaluated
    # the single treatment the gain is measured against was chosen before the test split
    assert evaluation["off_policy"]["one_size_fits_all_chosen_on"] == "training"
    # params.yaml's evaluate.cross_fitted_folds: the gain over every patient is the evidence
    off = evaluation["off_policy_cross_fitted"]
    assert off["folds"] == 5 and off["n_patients"] > evaluation["n_test_patients"]
    # the synthetic truth records usual care's probabilities: the propensity model's share
    # of the error is shown beside the estimate
    assert "model_dr_gain_over_one_size_fits_all_with_true_propensity_ci_low" in off
    assert ("the truth's usual-care probabilities in place of the propensity model"
            in (repo / "reports/evaluation.md").read_text())
    for name in ("pred", "reg"):
        meta = json.loads((repo / f"out/{name}.json").read_text())["meta"]
        shown = meta["evaluation"]
        assert shown["status"] == "evaluated", name
        assert shown["gain_from"] == "cross_fitted"
        assert shown["dr_gain_over_one_size_fits_all"] == pytest.approx(
            off["model_dr_gain_over_one_size_fits_all"])
        assert shown["gain_shown"] == (off["model_dr_gain_over_one_size_fits_all_ci_low"] > 0)
    html = (repo / "out/pred.html").read_text()
    assert 'id="evaluation-evidence"' in html and "cross-fitted over all" in html
    # an evaluation of other models is not shown as evidence about these
    stale = repo / "stale_evaluation.json"
    stale.write_text(json.dumps({**evaluation, "bundle_sha256": "0" * 64}))
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["evaluate"]["metrics"] = str(stale)
    (repo / "stale_params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = _run([str(BIN / "precision-pain"), "predict", "--params", "stale_params.yaml",
                   "new_patients.csv", "--out", "out/stale.csv"], repo, env)
    meta = json.loads((repo / "out/stale.json").read_text())["meta"]
    assert meta["evaluation"]["status"] == "other_models"
    assert "no evaluation of these models" in result.stderr
    assert "evaluates other models than these" in (repo / "out/stale.html").read_text()


def test_no_patient_rows_reach_mlflow(project):
    """Patient ids never appear in the tracking store or its artifacts (only aggregates)."""
    repo, _ = project
    cohort_ids = pd.read_parquet(repo / "data/prepared/cohort.parquet")["patient_id"]
    sample = [pid.encode() for pid in cohort_ids.sample(200, random_state=0)]
    stores = [repo / "mlflow.db", *(p for p in (repo / "mlartifacts").rglob("*") if p.is_file())]
    assert len(stores) > 10
    for path in stores:
        blob = path.read_bytes()
        leaked = [pid for pid in sample if pid in blob]
        assert not leaked, f"{path} contains patient ids {leaked[:3]}"


def test_changing_baked_in_settings_reruns_train_and_the_served_model_follows(project):
    """Runs last: it changes params.yaml. The harm weight and the predict settings are baked
    into the registered recommender, so they must make the train stage stale."""
    repo, env = project
    import mlflow

    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["evaluate"]["harm_weight"] = 3.0
    params["predict"]["top_k_explained"] = 2
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    status = _run([str(BIN / "dvc"), "status"], repo, env).stdout
    stale = {line.strip().rstrip(":") for line in status.splitlines()
             if line and not line.startswith((" ", "\t"))}
    assert {"train", "evaluate"} <= stale, status
    _run([str(BIN / "dvc"), "repro"], repo, env)
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    mlflow.set_registry_uri(env["MLFLOW_TRACKING_URI"])
    served = mlflow.pyfunc.load_model("models:/precision-pain-recommender@newest")
    patients = pd.read_csv(repo / "new_patients.csv").head(20)
    ranked = served.predict(patients)
    expected = ranked["p_response"] - 3.0 * ranked["p_adverse_event"]
    assert (ranked["net_benefit"] - expected).abs().max() < 1e-9
    assert ranked.loc[ranked["rank"] == 3, "explanation"].eq("").all()
    assert ranked.loc[ranked["rank"] == 2, "explanation"].str.len().min() > 20
