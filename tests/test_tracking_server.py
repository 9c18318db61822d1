"""A team's route: a real `mlflow server` (SQLite, artifacts proxied) on 127.0.0.1.

Trains and evaluates a small cohort with the project's commands against the server, then loads
the registered recommender back from it with pickle deserialization off.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from servers import free_port, stop, wait_for
from short_grids import short_grids

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """`mlflow server` on a free loopback port; stopped (with its workers) at the end."""
    folder = tmp_path_factory.mktemp("server")
    port = free_port()
    process = subprocess.Popen(
        [str(BIN / "mlflow"), "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
         "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1"],
        cwd=folder, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_for(f"http://127.0.0.1:{port}/health", process)
        yield f"http://127.0.0.1:{port}", folder
    finally:
        stop(process)


@pytest.fixture(scope="module")
def project(server, tmp_path_factory):
    """A small cohort simulated, prepared, split, trained and evaluated against the server."""
    uri, _ = server
    repo = tmp_path_factory.mktemp("project")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["simulate"]["n_patients"] = 3000
    params["evaluate"]["n_bootstrap"] = 10
    short_grids(params)  # the route to the server is under test, not the models
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "MLFLOW_DISABLE_TELEMETRY": "true",
           "PRECISION_PAIN_PROGRESS": "0"}
    env.pop("MLFLOW_REGISTRY_URI", None)
    cli = str(BIN / "precision-pain")
    _run([cli, "simulate", "--out", params["data"]["cohort"], "--truth-out",
          params["data"]["ground_truth"]], repo, env)
    for command in ("prepare", "split", "train", "evaluate"):
        _run([cli, command], repo, env)
    return repo, env


def test_runs_on_the_server_carry_datasets_and_headline_metrics(project):
    import mlflow

    _, env = project
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    experiment = mlflow.get_experiment_by_name("precision-pain")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # proxied
    runs = mlflow.search_runs([experiment.experiment_id], output_format="list")
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    assert {"headline/mean_response_auc", "headline/share_of_oracle_gain",
            "headline/dr_net_benefit"} <= set(parent.data.metrics)
    contexts = {d.tags[0].value: d.dataset for d in parent.inputs.dataset_inputs}
    assert set(contexts) == {"training", "validation", "test"}
    assert contexts["test"].name == "cohort.test"


def test_registered_recommender_loads_from_the_server_without_pickle(project):
    repo, env = project
    cli = str(BIN / "precision-pain")
    _run([cli, "simulate", "--n", "30", "--seed", "5", "--out", "new.csv"], repo, env)
    new = pd.read_csv(repo / "new.csv").drop(columns=["treatment", "pain_followup",
                                                      "adverse_event"])
    new.to_csv(repo / "new_patients.csv", index=False)
    script = ("import mlflow, pandas as pd\n"
              "model = mlflow.pyfunc.load_model('models:/precision-pain-recommender@newest')\n"
              "ranked = model.predict(pd.read_csv('new_patients.csv'))\n"
              "print(ranked['patient_id'].nunique(), ranked['rank'].max())\n")
    done = _run([sys.executable, "-c", script], repo,
                {**env, "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false"})
    assert done.stdout.split()[-2:] == ["30", "10"]


def test_no_patient_rows_reach_the_server(project, server):
    repo, _ = project
    _, folder = server
    ids = pd.read_parquet(repo / "data/prepared/cohort.parquet")["patient_id"]
    sample = [pid.encode() for pid in ids.sample(200, random_state=0)]
    stores = [folder / "mlflow.db", *(p for p in (folder / "artifacts").rglob("*") if p.is_file())]
    assert len(stores) > 10
    for path in stores:
        blob = path.read_bytes()
        assert not [pid for pid in sample if pid in blob], path
