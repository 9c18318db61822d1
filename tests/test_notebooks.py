"""Notebooks, their helpers, and what a person at a terminal sees.

Fast: notebooks are stored without outputs and hold glue only; the notebook helpers on tiny
frames; provenance tags and the tracking store's location; progress bars; every command's
``--help``; ``import precision_pain.cli`` stays light (so ``--help`` answers at once).
Slow: a small project (git, DVC, MLflow's default SQLite store) reproduced in a temporary
folder, one more model type run as a temporary DVC experiment, then every notebook executed
against it; any cell error fails the test.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import nbformat
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from precision_pain import notebook_utils as nbu
from precision_pain import tracking
from precision_pain.cli import main
from precision_pain.config import load_params
from precision_pain.progress import progress_enabled, track

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
HEAVY = ("mlflow", "xgboost", "shap", "sklearn", "pandas", "numpy", "matplotlib", "dvc",
         "pyarrow", "scipy")


# ------------------------------------------------------------------ notebooks as stored

def test_there_are_the_three_notebooks():
    names = {p.name for p in NOTEBOOKS}
    assert {"01_explore_cohort.ipynb", "02_compare_models.ipynb",
            "03_explain_patient.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"
             and (c.get("outputs") or c.get("execution_count") is not None)]
    assert not dirty, (f"{path.name}: cells {dirty} hold outputs or execution counts; clear "
                       "them (Jupyter: Edit > Clear outputs of all cells) before committing")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_glue_over_the_package(path):
    code = [c.source for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    assert any("from precision_pain" in src for src in code), f"{path.name} imports no package"
    assert not [s for s in code if "def " in s or "class " in s], (
        f"{path.name} defines functions or classes: move them to precision_pain.notebook_utils")
    assert max(len(s.splitlines()) for s in code) <= 8, f"{path.name}: a code cell is long"


# ------------------------------------------------------------------ notebook helpers

@pytest.fixture
def cohort() -> pd.DataFrame:
    return pd.DataFrame({
        "patient_id": ["P1", "P2", "P3", "P4"],
        "ancestry": ["european", "european", "east_asian", "east_asian"],
        "cyp2d6_phenotype": ["NM", "PM", "IM", "NM"],
        "treatment": ["tramadol", "nsaid", "tramadol", "cbt"],
        "response": [True, False, False, True],
        "adverse_event": [False, False, True, False],
        "pain_baseline": [8.0, 6.0, 5.0, 7.0],
        "pain_followup": [4.0, 6.0, 5.0, 3.0],
        "ort_score": [0, 0, 3, 8],
    })


def test_find_project_from_env_var_folder_or_file(tmp_path, monkeypatch):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    for pointer in (tmp_path, tmp_path / "params.yaml"):
        monkeypatch.setenv(nbu.PROJECT_ENV, str(pointer))
        project = nbu.find_project()
        assert project.root == tmp_path.resolve()
        assert project.path("data/x.parquet") == tmp_path.resolve() / "data/x.parquet"


def test_find_project_searches_upwards_and_explains_when_absent(tmp_path, monkeypatch):
    monkeypatch.delenv(nbu.PROJECT_ENV, raising=False)
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "notebooks").mkdir()
    assert nbu.find_project(tmp_path / "notebooks").root == tmp_path.resolve()
    with pytest.raises(FileNotFoundError, match=nbu.PROJECT_ENV):
        nbu.find_project(Path("/"))


def test_missing_outputs_say_run_dvc_repro(tmp_path, monkeypatch):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    monkeypatch.setenv(nbu.PROJECT_ENV, str(tmp_path))
    with pytest.raises(FileNotFoundError, match="dvc repro"):
        nbu.load_cohort(nbu.find_project())


def test_phenotype_shares_sum_to_one_per_ancestry(cohort):
    shares = nbu.phenotype_shares(cohort, "CYP2D6")
    assert list(shares.columns) == ["PM", "IM", "NM"]  # CPIC order, not alphabetical
    assert shares.sum(axis=1).round(9).eq(1).all()
    with pytest.raises(KeyError, match="CYP2C19"):
        nbu.phenotype_shares(cohort, "CYP3A4")


def test_outcomes_by_treatment_compares_treated_with_all_eligible(cohort):
    truth = pd.DataFrame({"patient_id": ["P1", "P2", "P3", "P4"] * 2,
                          "treatment": ["tramadol"] * 4 + ["nsaid"] * 4,
                          "eligible": [True] * 8, "p_response": [0.8, 0.2, 0.6, 0.2] * 2,
                          "p_adverse_event": [0.1] * 8})
    table = nbu.outcomes_by_treatment(cohort, truth)
    assert table.loc["tramadol", "patients"] == 2
    assert table.loc["tramadol", "response_rate"] == 0.5
    assert table.loc["tramadol", "true_response_if_treated"] == pytest.approx(0.7)
    assert table.loc["tramadol", "true_response_if_all_eligible"] == pytest.approx(0.45)
    assert "true_response_if_treated" not in nbu.outcomes_by_treatment(cohort)


def test_treatment_shares_by_keeps_tied_values_together(cohort):
    shares = nbu.treatment_shares_by(cohort, "ort_score", bins=3)
    assert shares.sum(axis=1).round(9).eq(1).all()
    assert shares.index[0] == "ort_score 0-0"  # both zeros in one group


def test_propensity_spread_needs_a_synthetic_truth():
    truth = pd.DataFrame({"patient_id": ["P1", "P2"], "treatment": ["cbt", "cbt"],
                          "eligible": [True, True], "p_usual_care": [0.01, 0.3]})
    spread = nbu.propensity_spread(truth)
    assert spread.loc["cbt", "share_below_floor"] == 0.5
    with pytest.raises(KeyError, match="p_usual_care"):
        nbu.propensity_spread(truth.drop(columns="p_usual_care"))


def _runs_frame() -> pd.DataFrame:
    """What mlflow.search_runs returns for one training run with two treatments."""
    parent = {"run_id": "aaaaaaa111", "tags.mlflow.runName": "train-xgboost",
              "tags.mlflow.parentRunId": None, "params.model.type": "xgboost",
              "start_time": pd.Timestamp("2026-01-01"), "tags.git_commit": "abc",
              "tags.dvc_exp_name": None, "tags.params_md5": "p1",
              "metrics.test.mean_response_auc": 0.6, "metrics.valid_response_auc": None}
    children = [{"run_id": f"c{t}", "tags.mlflow.runName": t, "tags.treatment": t,
                 "tags.mlflow.parentRunId": "aaaaaaa111", "metrics.valid_response_auc": auc}
                for t, auc in (("cbt", 0.55), ("nsaid", 0.65))]
    return pd.DataFrame([parent, *children])


def test_training_runs_and_per_treatment_metrics_from_search_runs():
    runs = _runs_frame()
    table = nbu.training_runs(runs)
    assert list(table.index) == ["xgboost · aaaaaaa"]
    assert nbu.headline_metrics(table) == ["test.mean_response_auc"]
    per_treatment = nbu.treatment_metric(runs, "valid_response_auc")
    assert per_treatment.loc["nsaid", "xgboost · aaaaaaa"] == 0.65
    assert nbu.training_runs(pd.DataFrame()).empty


# ------------------------------------------------------------------ tracking provenance

def test_relative_sqlite_store_is_anchored_at_the_project(tmp_path, monkeypatch, params):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    assert tracking.resolve_uri(params.tracking) == "sqlite:///mlflow.db"
    anchored = f"sqlite:///{tmp_path.resolve().as_posix()}/mlflow.db"
    assert tracking.resolve_uri(params.tracking, root=tmp_path) == anchored
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))  # DVC sets it, also for queued experiments
    assert tracking.resolve_uri(params.tracking) == anchored
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert tracking.resolve_uri(params.tracking) == "http://127.0.0.1:5000"


def test_provenance_tags_hash_data_params_and_upstream_dvc_stages(tmp_path, monkeypatch):
    data, params_file = tmp_path / "train.parquet", tmp_path / "params.yaml"
    data.write_bytes(b"rows")
    params_file.write_text("a: 1\n")
    lock = {"schema": "2.0", "stages": {
        "simulate": {"outs": [{"path": "data/cohort.parquet", "md5": "s1"}]},
        "split": {"outs": [{"path": "data/splits", "md5": "d1.dir"}]},
        "train": {"outs": [{"path": "models/bundle", "md5": "stale.dir"}]}}}
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump(lock))
    monkeypatch.setenv("DVC_STAGE", "train")
    monkeypatch.setenv("DVC_EXP_NAME", "tiny-grid")
    tags = tracking.provenance_tags([data], params_file, tmp_path / "dvc.lock")
    assert tags["data_md5.train.parquet"] == tracking.file_md5(data)
    assert tags["params_md5"] == tracking.file_md5(params_file)
    assert tags["dvc.simulate.data/cohort.parquet"] == "s1"
    assert tags["dvc.split.data/splits"] == "d1.dir"
    assert "dvc.train.models/bundle" not in tags  # this stage's own entry is the previous run's
    assert tags["dvc_exp_name"] == "tiny-grid" and tags["dvc_stage"] == "train"
    assert tags["git_commit"]


# ------------------------------------------------------------------ terminal behaviour

@pytest.mark.parametrize(("forced", "expected"), [("1", True), ("0", False), ("off", False)])
def test_progress_can_be_forced(monkeypatch, forced, expected):
    monkeypatch.setenv("PRECISION_PAIN_PROGRESS", forced)
    assert progress_enabled() is expected


def test_progress_is_off_in_ci(monkeypatch):
    monkeypatch.delenv("PRECISION_PAIN_PROGRESS", raising=False)
    monkeypatch.setenv("CI", "true")
    assert progress_enabled() is False
    assert list(track(range(3), "chunks")) == [0, 1, 2]


def test_importing_the_cli_stays_light():
    """`precision-pain --help` answers at once because the CLI imports heavy libraries lazily."""
    code = ("import sys, precision_pain.cli; "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout.strip()
    assert out == "", f"importing precision_pain.cli imports {out}: import them inside commands"


@pytest.mark.parametrize("command", sorted(main.commands))
def test_every_command_has_a_useful_help(command):
    result = CliRunner().invoke(main, [command, "--help"])
    assert result.exit_code == 0, result.output
    cmd = main.commands[command]
    assert cmd.help and len(cmd.help) > 20, f"`precision-pain {command}` has no description"
    undocumented = [p.name for p in cmd.params if isinstance(p, click.Option) and not p.help]
    assert not undocumented, f"`precision-pain {command}` options without help: {undocumented}"


# ------------------------------------------------------------------ notebooks, executed

def _run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def small_project(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A 3,000-patient project reproduced with the default learner, plus a logistic
    `dvc exp run --temp`.

    MLflow uses params.yaml's own relative SQLite store (the default): the experiment that
    runs in DVC's temporary copy must still land in the project's mlflow.db.
    """
    repo = tmp_path_factory.mktemp("nbproject")
    shutil.copy(ROOT / "dvc.yaml", repo / "dvc.yaml")
    shutil.copytree(ROOT / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["simulate"]["n_patients"] = 3000
    params["evaluate"]["n_bootstrap"] = 20
    params["model"]["hyperparameters"]["xgboost"]["n_estimators"] = 150
    params["model"]["hyperparameters"]["pooled_xgboost"]["response"].update(  # quicker
        {"max_depth": [3], "n_estimators": [200, 400],
         "default": {"max_depth": 3, "n_estimators": 400}})
    params["model"]["hyperparameters"].get("propensity", {}).pop("xgboost", None)  # quicker
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (repo / ".gitignore").write_text("mlflow.db\nmlartifacts/\n")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "CI": "true",
           "DVC_NO_ANALYTICS": "1", "MLFLOW_DISABLE_TELEMETRY": "true",
           "GIT_AUTHOR_NAME": "ci", "GIT_AUTHOR_EMAIL": "ci@example.org",
           "GIT_COMMITTER_NAME": "ci", "GIT_COMMITTER_EMAIL": "ci@example.org"}
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "DVC_ROOT", "DVC_STAGE"):
        env.pop(var, None)
    dvc = str(BIN / "dvc")
    for args in (["git", "init", "-q"], [dvc, "init", "-q"], ["git", "add", "-A"],
                 ["git", "commit", "-qm", "pipeline"], [dvc, "repro"],
                 [dvc, "exp", "run", "--temp", "-n", "logistic-baseline",
                  "-S", "model.type=logistic"]):
        _run(args, repo, env)
    return repo, env


def _training_runs(repo: Path) -> pd.DataFrame:
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["precision-pain"])
    return runs[runs["tags.mlflow.runName"].str.startswith("train-")]


@pytest.mark.slow
def test_every_run_is_traceable_to_code_params_and_data(small_project):
    repo, _ = small_project
    runs = _training_runs(repo).set_index("params.model.type")
    assert set(runs.index) == {"pooled_xgboost", "logistic"}, (
        "the temporary experiment's run is lost")
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    xgb = runs.loc["pooled_xgboost"]
    assert xgb["tags.dvc.split.data/splits"] == lock["split"]["outs"][0]["md5"]
    assert xgb["tags.params_md5"] == tracking.file_md5(repo / "params.yaml")
    for tag in ("git_commit", "data_md5.train.parquet", "data_md5.valid.parquet",
                "dvc.simulate.data/synthetic/cohort.parquet"):
        assert runs[f"tags.{tag}"].notna().all(), tag
    assert runs.loc["logistic", "tags.dvc_exp_name"] == "logistic-baseline"
    assert runs.loc["logistic", "params.simulate.n_patients"] == "3000"
    import mlflow

    files = {f.path for f in mlflow.MlflowClient().list_artifacts(xgb["run_id"], "provenance")}
    assert files == {"provenance/params.yaml", "provenance/dvc.lock"}


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_against_the_pipeline_outputs(small_project, path, monkeypatch):
    from nbclient import NotebookClient

    repo, env = small_project
    for var in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", "DVC_ROOT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(nbu.PROJECT_ENV, str(repo))
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3",
                   resources={"metadata": {"path": str(repo)}}).execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    streams = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", [])
                      if o.output_type == "stream")
    assert "Traceback" not in streams
    assert load_params(repo / "params.yaml").simulate.n_patients == 3000
