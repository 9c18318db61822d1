"""Command-line interface: load inputs, call a pure core, save outputs.

Each pipeline stage is one command; dvc.yaml calls them with paths from
params.yaml. Heavy libraries are imported inside the commands so that
``precision-pain --help`` answers at once.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click

from . import RESEARCH_NOTICE, __version__

log = logging.getLogger("precision_pain")

PARAMS_OPTION = click.option(
    "--params", "params_path", type=click.Path(dir_okay=False, path_type=Path),
    default="params.yaml", show_default=True, help="Pipeline parameters file.")


def _friendly_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn input and configuration errors into one clear message and exit code 1."""
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from .config import ParamsError

        try:
            return func(*args, **kwargs)
        except (ParamsError, FileNotFoundError, ValueError, KeyError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            raise click.ClickException(str(message)) from None
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="precision-pain")
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")
@click.option("-q", "--quiet", is_flag=True, help="Log warnings and errors only.")
def main(verbose: bool, quiet: bool) -> None:
    """precision-pain: treatment-response models for chronic-pain research.

    Pipeline stages (run them all with `dvc repro`): simulate, prepare, split,
    train, evaluate. Then `predict` ranks and explains treatments for a new cohort.

    Research software, not a medical device: outputs are not clinical advice.
    """
    from .tracking import disable_telemetry

    disable_telemetry()
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("mlflow", "alembic", "urllib3", "git", "numba", "shap", "matplotlib"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


@main.command()
@PARAMS_OPTION
@click.option("--n", "n_patients", type=int, help="Patients to simulate [simulate.n_patients].")
@click.option("--seed", type=int, help="Random seed [simulate.seed].")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Cohort file to write (.csv or .parquet).")
@click.option("--truth-out", type=click.Path(dir_okay=False, path_type=Path),
              help="Ground-truth file [beside --out as <stem>_ground_truth.<ext>].")
@_friendly_errors
def simulate(params_path: Path, n_patients: int | None, seed: int | None, out: Path,
             truth_out: Path | None) -> None:
    """Write a synthetic cohort and, separately, its ground truth."""
    from .config import load_params
    from .io import table_format, write_table
    from .simulate import simulate_cohort

    params = load_params(params_path)
    table_format(out)
    truth_out = truth_out or out.with_name(f"{out.stem}_ground_truth{out.suffix}")
    result = simulate_cohort(params.simulate, params.prepare.response_threshold,
                             n_patients=n_patients, seed=seed)
    write_table(result.truth, truth_out)
    write_table(result.cohort, out)
    log.info("wrote cohort %s (%d rows x %d columns) and ground truth %s (%d rows)",
             out, *result.cohort.shape, truth_out, len(result.truth))


@main.command()
@PARAMS_OPTION
@click.option("--cohort", type=click.Path(dir_okay=False, path_type=Path),
              help="Cohort to prepare [data.cohort].")
@click.option("--ground-truth", type=str,
              help="Ground-truth file, or 'none' [data.ground_truth].")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              help="Prepared cohort [data.prepared].")
@click.option("--truth-out", type=click.Path(dir_okay=False, path_type=Path),
              help="Ground truth aligned to the cohort [data.prepared_truth].")
@_friendly_errors
def prepare(params_path: Path, cohort: Path | None, ground_truth: str | None, out: Path | None,
            truth_out: Path | None) -> None:
    """Validate a cohort against the data contract, add PGx phenotypes and the outcome."""
    import pandas as pd

    from .config import load_params
    from .contract import read_table
    from .io import write_table
    from .prepare import align_truth, prepare_cohort

    params = load_params(params_path)
    cohort = cohort or params.data.cohort
    truth_path = _optional_path(ground_truth, params.data.ground_truth)
    raw = read_table(cohort)
    log.info("read cohort %s: %d rows x %d columns", cohort, *raw.shape)
    prepared = prepare_cohort(raw, str(cohort), params.prepare.response_threshold)
    if truth_path is not None:
        truth = align_truth(read_table_any(truth_path), prepared, str(truth_path))
    else:
        log.info("no ground truth: evaluation will report observed-data metrics only")
        truth = pd.DataFrame(columns=["patient_id", "treatment", "eligible", "p_response",
                                      "p_adverse_event"])
    write_table(truth, truth_out or params.data.prepared_truth)
    write_table(prepared, out or params.data.prepared)
    log.info("wrote prepared cohort %s (%d rows); responders %.1f %%",
             out or params.data.prepared, len(prepared), 100 * prepared["response"].mean())


def read_table_any(path: Path) -> Any:
    """Read a CSV or Parquet table the pipeline or generator wrote."""
    import pandas as pd

    from .io import table_format

    return pd.read_csv(path) if table_format(path) == "csv" else pd.read_parquet(path)


def _optional_path(cli_value: str | None, default: Path | None) -> Path | None:
    if cli_value is None:
        return default
    return None if cli_value.lower() in {"", "none", "null"} else Path(cli_value)


@main.command()
@PARAMS_OPTION
@click.option("--prepared", type=click.Path(dir_okay=False, path_type=Path),
              help="Prepared cohort [data.prepared].")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for train/valid/test files [data.splits_dir].")
@_friendly_errors
def split(params_path: Path, prepared: Path | None, out_dir: Path | None) -> None:
    """Split the prepared cohort into train / validation / test, grouped by patient."""
    from .config import load_params
    from .io import read_parquet, write_table
    from .split import split_cohort

    params = load_params(params_path)
    frame = read_parquet(prepared or params.data.prepared)
    parts = split_cohort(frame, params.split.valid_fraction, params.split.test_fraction,
                         params.split.seed)
    out_dir = out_dir or params.data.splits_dir
    for name, part in parts.items():
        write_table(part, out_dir / f"{name}.parquet")
        log.info("wrote %s split: %d rows, %d patients", name, len(part),
                 part["patient_id"].nunique())


@main.command()
@PARAMS_OPTION
@click.option("--splits-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder with train/valid parquet files [data.splits_dir].")
@click.option("--models-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write the fitted models [model.dir].")
@click.option("--tracking/--no-tracking", default=True, show_default=True,
              help="Log runs and register models in MLflow.")
@_friendly_errors
def train(params_path: Path, splits_dir: Path | None, models_dir: Path | None,
          tracking: bool) -> None:
    """Fit one response and one adverse-event model per treatment; track them in MLflow."""
    from .bundle import bundle_from_training, save_bundle
    from .config import load_params
    from .io import read_parquet
    from .models import get_model_class
    from .progress import progress_bar
    from .registry import select_treatments

    params = load_params(params_path)
    get_model_class(params.model.type)
    hyper = params.model.hyperparameters.get(params.model.type, {})
    splits_dir = splits_dir or params.data.splits_dir
    train_df = read_parquet(splits_dir / "train.parquet")
    valid_df = read_parquet(splits_dir / "valid.parquet")
    treatments = select_treatments(params.model.treatments)
    log.info("training %s models for %d treatments on %d rows (validation %d rows)",
             params.model.type, len(treatments), len(train_df), len(valid_df))
    metadata: dict[str, Any] = {"response_threshold": params.prepare.response_threshold,
                                "hyperparameters": hyper}
    with progress_bar(total=len(treatments), desc="train", unit="treatment") as bar:
        if tracking:
            fitted, run_ids = _train_tracked(params, treatments, train_df, valid_df, hyper,
                                             splits_dir, bar)
            metadata["mlflow_run_ids"] = run_ids
        else:
            from .train import train_all

            fitted = train_all(treatments, train_df, valid_df, params.model.type, hyper,
                               params.model.seed, on_done=lambda _: bar.update())
    out = save_bundle(bundle_from_training(fitted, params.model.type, metadata),
                      models_dir or params.model.dir)
    log.info("wrote %d treatments' models to %s", len(fitted), out)


def _train_tracked(params: Any, treatments: Any, train_df: Any, valid_df: Any, hyper: Any,
                   splits_dir: Path, bar: Any) -> tuple[Any, dict[str, str]]:
    from . import tracking
    from .train import train_all

    run_ids: dict[str, str] = {}
    tags = tracking.provenance_tags([splits_dir / "train.parquet", splits_dir / "valid.parquet"])

    def on_done(result: Any) -> None:
        run_ids[result.treatment] = tracking.log_treatment_run(
            params, result.treatment, result.models, result.counts, result.validation)
        bar.update()

    with tracking.parent_run(params, f"train-{params.model.type}", tags) as parent_id:
        run_ids["parent"] = parent_id
        fitted = train_all(treatments, train_df, valid_df, params.model.type, hyper,
                           params.model.seed, on_done=on_done)
    return fitted, run_ids


@main.command()
@PARAMS_OPTION
@click.option("--splits-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder with the test parquet file [data.splits_dir].")
@click.option("--truth", type=click.Path(dir_okay=False, path_type=Path),
              help="Aligned ground truth [data.prepared_truth].")
@click.option("--models-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Fitted models [model.dir].")
@click.option("--tracking/--no-tracking", default=True, show_default=True,
              help="Log the metrics into the training's MLflow runs.")
@_friendly_errors
def evaluate(params_path: Path, splits_dir: Path | None, truth: Path | None,
             models_dir: Path | None, tracking: bool) -> None:
    """Score the models on the test split and the recommendations against the truth."""
    from .bundle import load_bundle
    from .config import load_params
    from .evaluate import evaluate as run_evaluation
    from .io import read_parquet, write_json

    params = load_params(params_path)
    bundle = load_bundle(models_dir or params.model.dir)
    test = read_parquet((splits_dir or params.data.splits_dir) / "test.parquet")
    truth_frame = read_parquet(truth or params.data.prepared_truth)
    result = run_evaluation(test, bundle, truth_frame if len(truth_frame) else None,
                            params.evaluate.harm_weight)
    write_json(result.summary, params.evaluate.metrics)
    write_json(result.per_treatment, params.evaluate.per_treatment)
    log.info("wrote %s and %s", params.evaluate.metrics, params.evaluate.per_treatment)
    run_ids = bundle.metadata.get("mlflow_run_ids")
    if tracking and run_ids:
        from .tracking import log_evaluation

        log_evaluation(run_ids, result.summary, result.per_treatment,
                       [params.evaluate.metrics, params.evaluate.per_treatment], params.tracking)


@main.command()
@PARAMS_OPTION
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Ranked recommendations (.csv or .parquet); SHAP values go beside it.")
@click.option("--models", "models_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Model folder [model.dir].")
@click.option("--registry-alias", type=str,
              help="Load the registered models at this alias from MLflow instead of --models.")
@_friendly_errors
def predict(params_path: Path, input_path: Path, out: Path, models_dir: Path | None,
            registry_alias: str | None) -> None:
    """Rank and explain every treatment for each patient of a new cohort (INPUT)."""
    from .config import load_params
    from .contract import read_table
    from .io import table_format, write_table
    from .predict import recommend
    from .prepare import prepare_cohort

    params = load_params(params_path)
    table_format(out)
    shap_out = out.with_name(f"{out.stem}.shap{out.suffix}")
    bundle = _load_bundle(params, models_dir, registry_alias)
    raw = read_table(input_path)
    log.info("read %s: %d rows", input_path, len(raw))
    prepared = prepare_cohort(raw, str(input_path), None, require_outcomes=False)
    result = recommend(prepared, bundle, params.evaluate.harm_weight,
                       params.predict.n_explanation_features)
    write_table(result.shap, shap_out)
    write_table(result.table, out)
    log.info("wrote %s (%d rows: %d patients x %d treatments) and SHAP values %s", out,
             len(result.table), prepared["patient_id"].nunique(), len(bundle.treatments),
             shap_out)
    click.echo(RESEARCH_NOTICE, err=True)


def _load_bundle(params: Any, models_dir: Path | None, alias: str | None) -> Any:
    from .bundle import ModelBundle, load_bundle

    if alias is None:
        return load_bundle(models_dir or params.model.dir)
    from .features import FEATURE_NAMES
    from .registry import select_treatments
    from .tracking import load_registered_models
    from .train import OUTCOMES

    names = tuple(t.name for t in select_treatments(params.model.treatments))
    models = load_registered_models(params.tracking, names, OUTCOMES, alias)
    return ModelBundle("registry", FEATURE_NAMES, models, {"alias": alias})


@main.command()
@PARAMS_OPTION
@click.option("--port", type=int, default=5000, show_default=True)
def ui(params_path: Path, port: int) -> None:
    """Open the MLflow UI on the project's tracking store (127.0.0.1 only)."""
    import os
    import subprocess

    from .config import load_params
    from .tracking import resolve_uri

    params = load_params(params_path)
    uri = resolve_uri(params.tracking)
    click.echo(f"MLflow UI for {uri} at http://127.0.0.1:{port} (Ctrl-C to stop)")
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
           "--host", "127.0.0.1", "--port", str(port)]
    raise SystemExit(subprocess.call(cmd, env=os.environ.copy()))


if __name__ == "__main__":  # pragma: no cover
    main()
