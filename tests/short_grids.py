"""Short hyperparameter grids for end-to-end tests whose assertions do not depend on how
good the models are (the route through DVC, MLflow or a server is under test, not the fit).

Every stage still runs as configured: the pooled learner still searches a grid (two tree
counts, the smaller sliced from the larger booster) and evaluate still picks a propensity
model; only the sizes shrink. params.yaml's own grids run in `dvc repro` and benchmarks/.
"""

from __future__ import annotations


def short_grids(params: dict) -> dict:
    """Shrink ``params`` (params.yaml as a dict) in place and return it."""
    hyper = params["model"]["hyperparameters"]
    hyper["pooled_xgboost"]["response"].update(
        {"max_depth": [3], "n_estimators": [100, 200],
         "default": {"max_depth": 3, "n_estimators": 200}})
    hyper["pooled_xgboost"]["adverse_event"]["n_estimators"] = [50, 100]
    if "nrs_change" in hyper["pooled_xgboost"]:  # the stacked learner (prepare.outcome)
        hyper["pooled_xgboost"]["nrs_change"].update(
            {"max_depth": [2, 3], "n_estimators": [30, 60],
             "default": {"max_depth": 2, "n_estimators": 60}, "stack_folds": 3})
    hyper["propensity"].pop("xgboost")  # the logistic candidate remains
    return params


def in_folder(params: dict, folder) -> dict:
    """Point ``params``' data, model and evaluation outputs into ``folder`` (in place), with
    20 bootstrap replicates: a throwaway project for an end-to-end test."""
    from pathlib import Path

    d = Path(folder)
    params["data"] = {k: (str(d / v) if isinstance(v, str) else v)
                      for k, v in params["data"].items()}
    params["model"].update({"dir": str(d / "models"), "metrics": str(d / "training.json"),
                            "evaluated_dir": str(d / "evaluated")})
    for key in ("metrics", "per_treatment", "policy", "subgroups", "plots_dir", "report"):
        params["evaluate"][key] = str(d / params["evaluate"][key])
    params["evaluate"]["n_bootstrap"] = 20
    return params


def invoke(args: list[str], ok: bool = True) -> str:
    """Run the CLI in process; assert it succeeded (or, with ``ok=False``, failed)."""
    from click.testing import CliRunner

    from precision_pain.cli import main

    result = CliRunner().invoke(main, args)
    assert (result.exit_code == 0) == ok, result.output
    return result.output


def run_pipeline(params: dict, folder) -> list[str]:
    """Write ``params`` to ``folder``/params.yaml and run what ``dvc repro`` runs, in process:
    simulate -> prepare -> split -> train -> evaluate (no MLflow tracking). Returns the
    ``--params`` arguments for further commands."""
    from pathlib import Path

    import yaml

    path = Path(folder) / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    p = ["--params", str(path)]
    invoke(["simulate", *p, "--out", params["data"]["synthetic_cohort"],
            "--truth-out", params["data"]["synthetic_truth"]])
    for stage in (["prepare"], ["split"], ["train", "--no-tracking"],
                  ["evaluate", "--no-tracking"]):
        invoke([stage[0], *p, *stage[1:]])
    return p
