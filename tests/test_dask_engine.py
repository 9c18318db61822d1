"""The Dask engine gives the local engine's answers, and fails cleanly when workers die.

Every stage runs through the real CLI on a small cohort, once with ``engine.type: local``
and once on a real Dask cluster: a LocalCluster of 2 worker processes the run starts, and a
``dask scheduler`` with ``dask worker`` processes started here on 127.0.0.1 (free ports,
always stopped). Faults are real: a worker process kills itself (SIGKILL) at a fault point
in the middle of predict (``PRECISION_PAIN_FAILPOINT=predict.partition:1``).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from servers import free_port, stop

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
N_PATIENTS = 2000
N_NEW = 600
CHUNK = 150  # predict partitions: 4 of them for the new cohort
METRIC_TOLERANCE = 1e-6

pytestmark = pytest.mark.slow


def _params(engine: dict, **model: object) -> dict:
    """The project's params with a small cohort, a short grid and the given engine."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["simulate"]["n_patients"] = N_PATIENTS
    params["evaluate"]["n_bootstrap"] = 20
    params["predict"]["chunk_size"] = CHUNK
    pooled = params["model"]["hyperparameters"]["pooled_xgboost"]
    pooled["response"] |= {"max_depth": [2, 3], "n_estimators": [50, 100],
                           "default": {"max_depth": 3, "n_estimators": 100}}
    pooled["adverse_event"]["n_estimators"] = [25, 50]
    params["model"] |= model
    params["engine"] |= {"partition_rows": 700, **engine}
    return params


@contextmanager
def _inside(folder: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(before)


def _cli(folder: Path, *args: str, ok: bool = True):
    from precision_pain.cli import main

    with _inside(folder):
        result = CliRunner().invoke(main, ["-q", *args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


def _project(tmp: Path, name: str, cohort: Path, params: dict) -> Path:
    folder = tmp / name
    (folder / "data/synthetic").mkdir(parents=True)
    for file in cohort.parent.iterdir():
        shutil.copy(file, folder / "data/synthetic" / file.name)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return folder


def _pipeline(folder: Path, new_cohort: Path, train: bool = True) -> None:
    """prepare, split, train, evaluate (no MLflow: the engine is what is compared), predict."""
    _cli(folder, "prepare")
    _cli(folder, "split")
    if train:
        _cli(folder, "train", "--no-tracking")
        _cli(folder, "evaluate", "--no-tracking")
    _cli(folder, "predict", str(new_cohort), "--out", "predictions/new.csv")


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory) -> tuple[Path, Path]:
    """The training cohort (with truth) and a new cohort to predict, written once."""
    tmp = tmp_path_factory.mktemp("cohorts")
    (tmp / "train").mkdir()
    (tmp / "params.yaml").write_text(yaml.safe_dump(_params({})))
    _cli(tmp, "simulate", "--out", "train/cohort.parquet",
         "--truth-out", "train/ground_truth.parquet")
    _cli(tmp, "simulate", "--n", str(N_NEW), "--seed", "5", "--out", "new.csv")
    return tmp / "train" / "cohort.parquet", tmp / "new.csv"


@pytest.fixture(scope="module")
def local_run(cohorts, tmp_path_factory) -> Path:
    """The whole pipeline on the local engine (the reference)."""
    folder = _project(tmp_path_factory.mktemp("local"), "p", cohorts[0],
                      _params({"type": "local"}))
    _pipeline(folder, cohorts[1])
    return folder


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory) -> Iterator[tuple[str, list[subprocess.Popen]]]:
    """`dask scheduler` and `dask worker` (2 processes) on 127.0.0.1, stopped afterwards."""
    with _scheduler(tmp_path_factory.mktemp("scheduler")) as (address, processes, log):
        processes.append(_worker(address, log, "--nworkers", "2"))
        _wait_for_workers(address, 2)
        yield address, processes


def _env(**extra: str) -> dict[str, str]:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **extra}
    return env


@contextmanager
def _scheduler(folder: Path, **env: str):
    port = free_port()
    log = open(folder / "dask.log", "w")
    scheduler = subprocess.Popen(
        [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port),
         "--no-dashboard"], stdout=log, stderr=subprocess.STDOUT, env=_env(**env),
        start_new_session=True)
    processes = [scheduler]
    try:
        yield f"tcp://127.0.0.1:{port}", processes, log
    finally:
        for process in reversed(processes):
            stop(process)
        log.close()


def _worker(address: str, log, *args: str, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "dask"), "worker", address, "--host", "127.0.0.1", "--nthreads", "1",
         "--no-dashboard", *args], stdout=log, stderr=subprocess.STDOUT,
        env=_env(**env), start_new_session=True)


def _wait_for_workers(address: str, n: int) -> None:
    from distributed import Client

    with Client(address, timeout=120) as client:
        client.wait_for_workers(n, timeout=180)


def _same_predictions(a: Path, b: Path) -> None:
    left, right = pd.read_csv(a), pd.read_csv(b)
    assert len(left) == N_NEW * left["rank"].max()
    assert left[["patient_id", "rank", "treatment"]].equals(right[["patient_id", "rank",
                                                                   "treatment"]])
    for column in ("p_response", "p_adverse_event", "net_benefit"):
        assert np.abs(left[column] - right[column]).max() <= 1e-6, column
    text = ["guideline_action", "low_confidence", "explanation", "contrast"]
    assert left[text].fillna("").equals(right[text].fillna(""))


def _numbers(tree, prefix: str = "") -> dict[str, float]:
    if isinstance(tree, dict):
        return {k: v for key, value in tree.items()
                for k, v in _numbers(value, f"{prefix}{key}.").items()}
    return {prefix: float(tree)} if isinstance(tree, (int, float)) else {}


def test_local_cluster_gives_the_local_answers(local_run, cohorts, tmp_path):
    """The default pipeline on a LocalCluster of 2 worker processes: same prepared data,
    same models, same predictions (identical ranks, probabilities within 1e-6) and the same
    metrics (within METRIC_TOLERANCE)."""
    folder = _project(tmp_path, "p", cohorts[0], _params({"type": "dask", "n_workers": 2}))
    _pipeline(folder, cohorts[1])
    for table in ("data/prepared/cohort.parquet", "data/splits/train.parquet"):
        pd.testing.assert_frame_equal(pd.read_parquet(folder / table),
                                      pd.read_parquet(local_run / table))
    manifest = json.loads((folder / "models/bundle/manifest.json").read_text())
    assert manifest["sha256"] == json.loads(
        (local_run / "models/bundle/manifest.json").read_text())["sha256"]
    _same_predictions(folder / "predictions/new.csv", local_run / "predictions/new.csv")
    for name in ("evaluation", "per_treatment", "policy", "subgroups"):
        ours = _numbers(json.loads((folder / f"metrics/{name}.json").read_text()))
        ref = _numbers(json.loads((local_run / f"metrics/{name}.json").read_text()))
        assert ours.keys() == ref.keys()
        assert all(np.isclose(ours[k], ref[k], atol=METRIC_TOLERANCE, equal_nan=True)
                   for k in ref), name


def test_scheduler_and_workers_give_the_local_answers(local_run, cohorts, dask_cluster,
                                                      tmp_path):
    """prepare and predict against a running `dask scheduler` with `dask worker` processes
    (the bundle shipped to workers that share no folder with it), and a per-treatment model
    type whose arms train as independent tasks."""
    address, _ = dask_cluster
    folder = _project(tmp_path, "p", cohorts[0], _params({"type": "dask",
                                                          "scheduler": address}))
    shutil.copytree(local_run / "models", folder / "models")
    # and their evaluation, which predict's outputs cite (predict/evidence.py)
    shutil.copytree(local_run / "metrics", folder / "metrics", dirs_exist_ok=True)
    _pipeline(folder, cohorts[1], train=False)
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "data/prepared/cohort.parquet"),
                                  pd.read_parquet(local_run / "data/prepared/cohort.parquet"))
    _same_predictions(folder / "predictions/new.csv", local_run / "predictions/new.csv")
    for name in ("new.shap.csv", "new.json", "new.html"):
        assert (folder / "predictions" / name).read_bytes() == (
            local_run / "predictions" / name).read_bytes()
    arms = {"type": "logistic", "hyperparameters": {
        "logistic": {"C": [0.01, 1.0], "max_iter": 2000},
        "propensity": {"logistic": {"C": 1.0, "max_iter": 3000}}}}
    for engine in ({"type": "local"}, {"type": "dask", "scheduler": address}):
        (folder / "params.yaml").write_text(yaml.safe_dump(_params(engine, **arms)))
        _cli(folder, "train", "--no-tracking", "--models-dir", f"arms-{engine['type']}")
    _same_models(folder / "arms-local", folder / "arms-dask",
                 pd.read_parquet(folder / "data/splits/test.parquet"))


def _same_models(a: Path, b: Path, frame: pd.DataFrame) -> None:
    """Two bundles predict the same probabilities (within 1e-6) for every model."""
    from precision_pain.data.features import build_features
    from precision_pain.models.bundle import load_bundle

    left, right = load_bundle(a, own_bundle=True), load_bundle(b, own_bundle=True)
    assert left.treatments == right.treatments
    X = build_features(frame)
    for treatment in left.treatments:
        for outcome in ("response", "adverse_event"):
            assert np.abs(left.model(treatment, outcome).predict_proba(X)
                          - right.model(treatment, outcome).predict_proba(X)).max() <= 1e-6


def _outputs_left(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_a_worker_killed_mid_predict_is_replaced_and_its_partition_retried(
        local_run, cohorts, tmp_path):
    """One of two workers SIGKILLs itself on its first partition: Dask re-runs that partition
    on the other worker, and the outputs are the local engine's."""
    with _scheduler(tmp_path) as (address, processes, log):
        doomed = _worker(address, log, "--no-nanny", PRECISION_PAIN_FAILPOINT="predict.partition:1")
        processes += [doomed, _worker(address, log)]
        _wait_for_workers(address, 2)
        folder = _project(tmp_path, "p", cohorts[0], _params({"type": "dask",
                                                              "scheduler": address}))
        shutil.copytree(local_run / "models", folder / "models")
        _cli(folder, "predict", str(cohorts[1]), "--out", "predictions/new.csv")
        assert doomed.wait(timeout=60) != 0  # it really died mid-predict
    _same_predictions(folder / "predictions/new.csv", local_run / "predictions/new.csv")
    assert not [n for n in _outputs_left(folder / "predictions") if n.endswith(".tmp")]


def test_workers_dying_on_every_try_fail_the_run_and_write_nothing(local_run, cohorts,
                                                                    tmp_path):
    """A worker that dies on every partition (its nanny restarts it each time): the run
    stops with a message naming the cause and the fix, and no output, not even a temporary
    file, is left behind."""
    with _scheduler(tmp_path, DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="1") as (
            address, processes, log):
        processes.append(_worker(address, log, PRECISION_PAIN_FAILPOINT="predict.partition:1"))
        _wait_for_workers(address, 1)
        folder = _project(tmp_path, "p", cohorts[0], _params({"type": "dask",
                                                              "scheduler": address}))
        shutil.copytree(local_run / "models", folder / "models")
        started = time.monotonic()
        result = _cli(folder, "predict", str(cohorts[1]), "--out", "predictions/new.csv",
                      ok=False)
        assert time.monotonic() - started < 300
    assert result.exit_code == 1
    assert "every Dask worker that ran it died" in result.output
    assert "Nothing was written" in result.output
    assert _outputs_left(folder / "predictions") == []


def test_pooled_learner_trains_with_xgboost_dask_above_the_row_limit(small_splits, params):
    """Above engine.distributed_training_rows the pooled learner's boosters train with
    xgboost.dask over the workers (rows split between them), predicting as the
    single-process fit does."""
    from distributed import Client, LocalCluster

    from precision_pain.data.features import build_features
    from precision_pain.engine import LOCAL, DaskEngine
    from precision_pain.models.pooled import (Candidate, adverse_event_candidate,
                                              fit_candidates)

    settings = params.engine.model_copy(update={"distributed_training_rows": 100})
    treatments = ("duloxetine", "tramadol", "physical_therapy")
    candidates: list[Candidate] = [adverse_event_candidate(
        {"n_estimators": [20], "max_depth": 2, "learning_rate": 0.1}, seed=3)]
    valid = small_splits["valid"][small_splits["valid"]["treatment"].isin(treatments)]
    X = build_features(valid)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address="127.0.0.1:0") as cluster, Client(cluster) as client:
        engine = DaskEngine(client, settings)
        assert engine.distributes(len(small_splits["train"]))
        (spread,) = fit_candidates(candidates, small_splits["train"], treatments, engine)
    (single,) = fit_candidates(candidates, small_splits["train"], treatments, LOCAL)
    assert spread.n_trees == single.n_trees == 20
    p_spread = spread.predict_matrix(X)
    p_single = single.predict_matrix(X)
    assert np.isfinite(p_spread).all()
    # identical on this data (measured: 0.0); xgboost does not promise it in general
    assert np.abs(p_spread - p_single).max() < 1e-3
