"""DVC wiring of the OMOP route, with real DVC in a fresh git repo (slow).

With the default params (no sources, no synthetic worlds) the pipeline has no extract stage.
With a synthetic world and a source, `dvc repro prepare` runs simulate_omop@w, extract@w and
prepare on the extracted cohort, and a second `dvc status` finds everything up to date.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, f"{' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_dvc_runs_the_omop_route_only_when_configured(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("dvc.yaml", "pyproject.toml", ".dvcignore"):
        shutil.copy(ROOT / name, repo / name)
    for folder in ("src", "studies"):
        shutil.copytree(ROOT / folder, repo / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1"}
    dvc = str(BIN / "dvc")
    for args in (["git", "init", "-q"], ["git", "config", "user.email", "ci@example.org"],
                 ["git", "config", "user.name", "ci"], [dvc, "init", "-q"]):
        _run(args, repo, env)
    stages = _run([dvc, "stage", "list"], repo, env)
    assert "extract" not in stages and "simulate_omop" not in stages

    params["extract"]["synthetic_worlds"] = {
        "w": {"out": "data/omop_world", "n_patients": 400, "seed": 2}}
    params["extract"]["sources"] = {"w": {
        "database": "data/omop_world/cdm.duckdb", "pharmcat_dir": "data/omop_world/pharmcat",
        "truth": "data/omop_world/ground_truth_by_person.parquet", "inputs": "data/omop_world"}}
    params["data"] |= {"cohort": "data/omop/w/cohort.parquet",
                       "ground_truth": "data/omop/w/ground_truth.parquet"}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    _run(["git", "add", "-A"], repo, env)
    _run(["git", "commit", "-qm", "omop route"], repo, env)
    _run([dvc, "repro", "prepare"], repo, env)
    assert len(pd.read_parquet(repo / "data/prepared/cohort.parquet")) == 400
    status = _run([dvc, "status", "prepare"], repo, env)
    assert "up to date" in status

