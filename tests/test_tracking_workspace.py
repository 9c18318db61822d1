"""The MLflow workspace: experiment kind, saved view, dataset inputs, headline metrics."""

from __future__ import annotations

import sqlite3

import pytest

from precision_pain import tracking
from precision_pain.io import write_table

SUMMARY = {"mean_response_auc": 0.61, "mean_adverse_event_auc": 0.55,
           "mean_response_brier": 0.22, "response_calibration_slope": {"share_within_0.8_1.2": 0.4},
           "policy": {"share_of_oracle_gain_captured": 0.35,
                      "model": {"mean_true_net_benefit": 0.38}},
           "off_policy": {"model_dr_net_benefit": 0.36,
                          "model_dr_gain_over_one_size_fits_all": 0.03}}


@pytest.fixture()
def store(tmp_path, monkeypatch, params, small_splits):
    """A fresh SQLite store, the small cohort's splits written as files, and test params."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    for name, frame in small_splits.items():
        write_table(frame, tmp_path / f"{name}.parquet")
    tracking_params = params.tracking.model_copy(
        update={"artifact_location": tmp_path / "mlartifacts"})
    return tmp_path, params.model_copy(update={"tracking": tracking_params})


def _inputs(folder, small_splits, names=("train", "valid")):
    return [tracking.split_input(name, folder / f"{name}.parquet", small_splits[name],
                                 folder / "extract.csv") for name in names]


def test_split_input_describes_the_split_without_its_rows(tmp_path, small_splits):
    write_table(small_splits["train"], tmp_path / "train.parquet")
    entry = _inputs(tmp_path, small_splits, ("train",))[0]
    dataset = entry.dataset
    assert dataset.name == "extract.train"
    assert dataset.digest == tracking.file_md5(tmp_path / "train.parquet")
    assert (tmp_path / "extract.csv").as_uri() in dataset.source
    assert '"num_rows": %d' % len(small_splits["train"]) in dataset.profile
    assert '"name": "patient_id"' in dataset.schema
    assert [(t.key, t.value) for t in entry.tags] == [("mlflow.data.context", "training")]
    text = dataset.source + dataset.schema + dataset.profile
    assert not [pid for pid in small_splits["train"]["patient_id"].head(50) if pid in text]


def test_headline_metrics_take_stable_names_and_skip_what_is_missing():
    assert tracking.headline_metrics(SUMMARY) == {
        "headline/share_of_oracle_gain": 0.35, "headline/dr_net_benefit": 0.36,
        "headline/dr_gain_over_one_size_fits_all": 0.03,
        "headline/true_net_benefit": 0.38, "headline/mean_response_auc": 0.61,
        "headline/mean_adverse_event_auc": 0.55, "headline/mean_response_brier": 0.22,
        "headline/calibration_slope_within_0.8_1.2": 0.4}
    observed_only = {"mean_response_auc": 0.6, "mean_adverse_event_auc": float("nan")}
    assert tracking.headline_metrics(observed_only) == {"headline/mean_response_auc": 0.6}


def test_workspace_url_opens_the_training_view():
    url = tracking.workspace_url("http://127.0.0.1:5123/", "7")
    assert url == ("http://127.0.0.1:5123/#/experiments/7/runs"
                   "?viewStateShareKey=training-runs&workflowType=machine_learning")


def test_runs_carry_kind_view_datasets_and_headline_metrics(store, small_splits):
    import mlflow

    folder, params = store
    with tracking.parent_run(params, "train-xgboost", {}, _inputs(folder, small_splits)) as pid:
        pass
    test_input = _inputs(folder, small_splits, ("test",))
    tracking.log_evaluation({"parent": pid}, SUMMARY, {}, [], params.tracking,
                            inputs=test_input)
    experiment = mlflow.get_experiment_by_name(params.tracking.experiment)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert "headline/dr_net_benefit" in experiment.tags[
        "mlflow.sharedViewState.training-runs"]
    run = mlflow.get_run(pid)
    contexts = {(d.dataset.name, d.tags[0].value) for d in run.inputs.dataset_inputs}
    assert contexts == {("extract.train", "training"), ("extract.valid", "validation"),
                        ("extract.test", "test")}
    assert run.data.metrics["headline/share_of_oracle_gain"] == 0.35
    assert tracking.experiment_id_of(params.tracking) == experiment.experiment_id
    ids = [pid.encode() for pid in small_splits["train"]["patient_id"].sample(100, random_state=0)]
    blob = (folder / "mlflow.db").read_bytes()
    assert not [pid for pid in ids if pid in blob]


def test_an_older_experiment_gets_the_workspace_tags(store):
    import mlflow

    _, params = store
    mlflow.set_tracking_uri(tracking.resolve_uri(params.tracking))
    experiment_id = mlflow.create_experiment(params.tracking.experiment)
    tracking.mark_workspace(experiment_id)
    tags = mlflow.get_experiment(experiment_id).tags
    assert tags["mlflow.experimentKind"] == "custom_model_development"
    with sqlite3.connect(str(store[0] / "mlflow.db")) as db:
        assert db.execute("select count(*) from experiment_tags").fetchone()[0] >= 2
