"""params.yaml validation and never-half-written output."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import yaml

from precision_pain.config import ParamsError, load_params
from precision_pain.io import atomic_dir, atomic_path, write_table
from precision_pain.registry import UnknownTreatmentError, select_treatments

ROOT = Path(__file__).resolve().parents[1]


def _params_with(tmp_path: Path, edit) -> Path:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    edit(raw)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_project_params_are_valid():
    params = load_params(ROOT / "params.yaml")
    assert params.model.type in params.model.hyperparameters


@pytest.mark.parametrize("edit, named", [
    (lambda r: r["model"].update(typo_key=1), "model.typo_key"),
    (lambda r: r["split"].pop("seed"), "split.seed"),
    (lambda r: r["prepare"].update(response_threshold=1.5), "prepare.response_threshold"),
    (lambda r: r["simulate"]["ancestry_mix"].update(european=0.9), "simulate.ancestry_mix"),
])
def test_bad_params_name_the_key(tmp_path, edit, named):
    with pytest.raises(ParamsError, match=named.replace(".", r"\.")):
        load_params(_params_with(tmp_path, edit))


def test_refit_on_all_needs_an_evaluated_bundle_apart(tmp_path):
    # without model.evaluated_dir, evaluation would score models fitted on its test split
    with pytest.raises(ParamsError, match=r"refit_on_all.*model\.evaluated_dir"):
        load_params(_params_with(tmp_path, lambda r: r["model"].pop("evaluated_dir")))
    off = lambda r: (r["model"].pop("evaluated_dir"),  # noqa: E731
                     r["model"]["hyperparameters"]["pooled_xgboost"].update(refit_on_all=False))
    assert load_params(_params_with(tmp_path, off)).model.evaluated_dir is None


@pytest.mark.parametrize("folds", [1, -2, 2.5, "five", True])
def test_companion_folds_are_zero_or_at_least_two(tmp_path, folds):
    def edit(raw):
        raw["model"]["hyperparameters"]["pooled_xgboost"]["pain_companion_folds"] = folds
    with pytest.raises(ParamsError, match=r"pain_companion_folds is .*give 0"):
        load_params(_params_with(tmp_path, edit))


def test_overrides_use_dotted_keys():
    params = load_params(ROOT / "params.yaml", {"model.type": "logistic", "split.seed": 3})
    assert (params.model.type, params.split.seed) == ("logistic", 3)


def test_missing_params_file_says_where(tmp_path):
    with pytest.raises(ParamsError, match="not found"):
        load_params(tmp_path / "nope.yaml")


def test_unknown_treatment_lists_valid_names():
    with pytest.raises(UnknownTreatmentError, match="tramadol"):
        select_treatments(["tramadole"])


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.csv"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_keeps_old_folder_on_failure(tmp_path):
    target = tmp_path / "models"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "new.txt").write_text("new")
            raise RuntimeError("boom")
    assert [p.name for p in tmp_path.iterdir()] == ["models"]
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    with atomic_dir(target) as tmp:
        (tmp / "new.txt").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new.txt"]


def test_write_table_by_suffix(tmp_path):
    frame = pd.DataFrame({"a": [1, 2]})
    pd.testing.assert_frame_equal(pd.read_parquet(write_table(frame, tmp_path / "x.parquet")),
                                  frame)
    pd.testing.assert_frame_equal(pd.read_csv(write_table(frame, tmp_path / "x.csv")), frame)
    with pytest.raises(ValueError, match=r"\.xlsx"):
        write_table(frame, tmp_path / "x.xlsx")


def test_atomic_outputs_get_the_umask_mode_not_mkstemp_0600(tmp_path):
    import os
    import stat

    from precision_pain.io import atomic_dir, write_json

    old = os.umask(0o022)
    try:
        out = write_json({"a": 1}, tmp_path / "m.json")
        with atomic_dir(tmp_path / "bundle") as tmp:
            (tmp / "x.txt").write_text("x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "bundle").stat().st_mode) == 0o755


def test_mlflow_registry_chatter_is_dropped_and_anything_else_passed_on(capsys):
    import sys

    from precision_pain.tracking import _without_registry_chatter

    with _without_registry_chatter():
        print("Successfully registered model 'precision-pain-cbt-response'.", file=sys.stderr)
        print("Registered model 'precision-pain-cbt-response' already exists. Creating a new "
              "version of this model...", file=sys.stderr)
        print("Created version '3' of model 'precision-pain-cbt-response'.", file=sys.stderr)
        print("WARNING something MLflow wants the user to see", file=sys.stderr)
    err = capsys.readouterr().err
    assert err == "WARNING something MLflow wants the user to see\n"
