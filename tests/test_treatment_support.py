"""A real extract rarely holds every treatment: model what the data supports, say what not.

Unit tests of the support rule, then extracts with 1, 3 and 9 of the 10 treatments, and
one with a small arm and an arm without adverse events, through `dvc repro` in a temporary
repo (each `dvc repro` starts four stage processes: one run per scenario, short grids).
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

from precision_pain.models.train import arm_support, modeled_treatments
from precision_pain.registry import TREATMENT_NAMES, select_treatments
from short_grids import short_grids

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _arm(name: str, n: int, responders: int, n_valid: int = 5) -> tuple[pd.DataFrame, ...]:
    train = pd.DataFrame({"treatment": [name] * n, "response": [1] * responders
                          + [0] * (n - responders), "adverse_event": 0})
    valid = pd.DataFrame({"treatment": [name] * n_valid})
    return train, valid


@pytest.mark.parametrize("n, responders, supported", [
    (49, 20, False),  # one patient below model.min_patients = 50
    (50, 20, True),   # exactly the minimum
    (51, 20, True),
    (60, 9, False),   # nine responders: fewer than min_events = 10
    (60, 10, True),
    (60, 51, False),  # nine non-responders
])
def test_support_threshold_is_exact(n, responders, supported):
    train, valid = _arm("cbt", n, responders)
    (arm,) = arm_support(train, valid, select_treatments(["cbt"]), 50, 10)
    assert arm.supported is supported
    assert (arm.n_train, arm.n_train_responders) == (n, responders)
    if not supported:
        assert "model.min_" in arm.reason


def test_no_validation_patient_is_not_supported():
    train, valid = _arm("cbt", 80, 30, n_valid=0)
    (arm,) = arm_support(train, valid, select_treatments(["cbt"]), 50, 10)
    assert not arm.supported and "validation" in arm.reason


def test_zero_adverse_events_do_not_block_a_treatment():
    train, valid = _arm("cbt", 80, 30)
    (arm,) = arm_support(train, valid, select_treatments(["cbt"]), 50, 10)
    assert arm.supported and arm.n_train_adverse_events == 0


def _frames(counts: dict[str, int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    train = pd.concat([_arm(t, n, n // 2)[0] for t, n in counts.items()], ignore_index=True)
    valid = pd.DataFrame({"treatment": list(counts)})
    return train, valid


def test_null_treatments_skip_what_the_data_cannot_support(params):
    train, valid = _frames({"nsaid": 200, "oxycodone": 12, "cbt": 300})
    modeled, skipped = modeled_treatments(train, valid, params.model)
    assert [t.name for t in modeled] == ["nsaid", "cbt"]
    by_name = {a.treatment: a for a in skipped}
    assert by_name["oxycodone"].n_train == 12 and "fewer than model.min_patients" in \
        by_name["oxycodone"].reason
    assert by_name["tramadol"].n_train == 0  # absent from the extract altogether


def test_naming_an_unsupported_treatment_is_an_error(params):
    train, valid = _frames({"nsaid": 200, "oxycodone": 12})
    model = params.model.model_copy(update={"treatments": ["nsaid", "oxycodone"]})
    with pytest.raises(ValueError, match=r"oxycodone: 12 training patients.*Fix: drop them"):
        modeled_treatments(train, valid, model)


def test_no_supported_treatment_is_an_error(params):
    train, valid = _frames({"nsaid": 10})
    with pytest.raises(ValueError, match="no treatment has enough training data"):
        modeled_treatments(train, valid, params.model)


# ------------------------------------------------------------------ through dvc repro

OUTCOMES = ["treatment", "pain_followup", "adverse_event"]


def _run(args: list[str], cwd: Path, env: dict[str, str], ok: bool = True
         ) -> subprocess.CompletedProcess:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if ok:
        assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def repo(tmp_path_factory, small_synthetic):
    """A git + DVC repo of the project, with a cohort per scenario in data/external/."""
    repo = tmp_path_factory.mktemp("extracts")
    for name in ("dvc.yaml", "pyproject.toml", ".dvcignore"):
        shutil.copy(ROOT / name, repo / name)
    shutil.copytree(ROOT / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["ground_truth"] = None
    params["evaluate"]["n_bootstrap"] = 10
    short_grids(params)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    cohort = small_synthetic.cohort
    external = repo / "data" / "external"
    external.mkdir(parents=True)
    keep = {"one": ["physical_therapy"], "three": ["nsaid", "oxycodone", "cbt"],
            "nine": [t for t in cohort["treatment"].unique() if t != "epidural_steroid"]}
    for name, treatments in keep.items():
        cohort[cohort["treatment"].isin(treatments)].to_csv(external / f"{name}.csv",
                                                             index=False)
    # one extract, two independent defects: 30 tramadol patients, no adverse event under cbt
    small = cohort[cohort["treatment"] != "tramadol"]
    small = pd.concat([small, cohort[cohort["treatment"] == "tramadol"].head(30)])
    small.loc[small["treatment"] == "cbt", "adverse_event"] = False
    small.to_csv(external / "small_arm_no_adverse_events.csv", index=False)
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "MLFLOW_TRACKING_URI": f"sqlite:///{repo / 'mlflow.db'}", "DVC_NO_ANALYTICS": "1",
           "MLFLOW_DISABLE_TELEMETRY": "true", "CI": "true"}
    for args in (["git", "init", "-q"], ["git", "config", "user.email", "ci@example.org"],
                 ["git", "config", "user.name", "ci"], [str(BIN / "dvc"), "init", "-q"],
                 ["git", "add", "-A"], ["git", "commit", "-qm", "extracts"]):
        _run(args, repo, env)
    return repo, env


def _repro(repo: Path, env: dict[str, str], cohort: str) -> dict:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"]["cohort"] = f"data/external/{cohort}.csv"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run([str(BIN / "dvc"), "repro", "evaluate"], repo, env)
    manifest = json.loads((repo / "models/bundle/manifest.json").read_text())
    report = (repo / "reports/evaluation.md").read_text()
    summary = json.loads((repo / "metrics/evaluation.json").read_text())
    return {"manifest": manifest, "report": report, "summary": summary}


def _predict(repo: Path, env: dict[str, str], cohort: str) -> dict:
    frame = pd.read_csv(repo / f"data/external/{cohort}.csv").drop(columns=OUTCOMES).head(20)
    frame.to_csv(repo / "new.csv", index=False)
    _run([str(BIN / "precision-pain"), "predict", "new.csv", "--out", "out/pred.csv"], repo, env)
    return {"table": pd.read_csv(repo / "out/pred.csv"),
            "json": json.loads((repo / "out/pred.json").read_text()),
            "html": (repo / "out/pred.html").read_text()}


@pytest.mark.slow
@pytest.mark.parametrize("cohort, n_modeled", [("one", 1), ("three", 3), ("nine", 9)])
def test_extract_with_some_treatments_runs_and_says_what_is_not_modeled(repo, cohort,
                                                                         n_modeled):
    repo_dir, env = repo
    out = _repro(repo_dir, env, cohort)
    assert len(out["manifest"]["treatments"]) == n_modeled
    skipped = {a["treatment"] for a in out["manifest"]["metadata"]["not_modeled"]}
    assert len(skipped) == len(TREATMENT_NAMES) - n_modeled  # neurofeedback included
    assert out["summary"]["n_treatments_modeled"] == n_modeled
    assert "## Treatments not modeled" in out["report"]
    assert all(f"**{t}**" in out["report"] for t in skipped)
    predicted = _predict(repo_dir, env, cohort)
    assert set(predicted["table"]["treatment"]) == set(out["manifest"]["treatments"])
    listed = {a["treatment"] for a in predicted["json"]["meta"]["treatments_not_modeled"]}
    assert listed == skipped
    assert 'id="not-modeled"' in predicted["html"]


@pytest.mark.slow
def test_a_small_arm_is_skipped_and_an_arm_without_adverse_events_is_modeled(repo):
    repo_dir, env = repo
    out = _repro(repo_dir, env, "small_arm_no_adverse_events")
    (arm,) = [a for a in out["manifest"]["metadata"]["not_modeled"]
              if a["treatment"] == "tramadol"]
    assert 0 < arm["n_train"] < 50 and "model.min_patients = 50" in arm["reason"]
    assert "cbt" in out["manifest"]["treatments"]
    per_treatment = json.loads((repo_dir / "metrics/per_treatment.json").read_text())
    assert per_treatment["cbt"]["training"]["adverse_events"] == 0


@pytest.mark.slow
def test_naming_an_absent_treatment_fails_before_any_mlflow_run(repo):
    repo_dir, env = repo
    params = yaml.safe_load((repo_dir / "params.yaml").read_text())
    params["data"]["cohort"] = "data/external/three.csv"
    params["model"]["treatments"] = ["nsaid", "tramadol"]
    (repo_dir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    runs_before = _mlflow_runs(repo_dir)
    failed = _run([str(BIN / "dvc"), "repro", "train"], repo_dir, env, ok=False)
    assert failed.returncode != 0
    assert "tramadol: 0 training patients" in failed.stderr + failed.stdout
    assert _mlflow_runs(repo_dir) == runs_before
    params["model"]["treatments"] = None
    (repo_dir / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def _mlflow_runs(repo: Path) -> int:
    import sqlite3

    db = repo / "mlflow.db"
    if not db.exists():
        return 0
    with sqlite3.connect(db) as connection:
        return connection.execute("select count(*) from runs").fetchone()[0]
