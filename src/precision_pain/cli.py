"""Command-line interface: load inputs, call a pure core, save outputs.

Each pipeline stage is one command; dvc.yaml calls them with paths from
params.yaml. Heavy libraries are imported inside the commands so that
``precision-pain --help`` answers at once.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any

import click

from precision_pain import RESEARCH_NOTICE, __version__

log = logging.getLogger("precision_pain")

PARAMS_OPTION = click.option(
    "--params", "params_path", type=click.Path(dir_okay=False, path_type=Path),
    default="params.yaml", show_default=True, help="Pipeline parameters file.")


def _friendly_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Turn input and configuration errors into one clear message and exit code 1."""
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from precision_pain.config import ParamsError
        from precision_pain.engine import EngineError

        try:
            return func(*args, **kwargs)
        except (ParamsError, EngineError, OSError, ValueError, KeyError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            raise click.ClickException(str(message)) from None
    return wrapper


def _terminate(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="precision-pain")
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")
@click.option("-q", "--quiet", is_flag=True, help="Log warnings and errors only.")
def main(verbose: bool, quiet: bool) -> None:
    """precision-pain: treatment-response models for chronic-pain research.

    Pipeline stages (run them all with `dvc repro`): simulate, prepare, split,
    train, evaluate. Then `predict` ranks and explains treatments for a new cohort.

    Research software, not a medical device: outputs are not clinical advice.
    """
    from precision_pain.tracking import disable_telemetry

    disable_telemetry()
    # SIGTERM (a job scheduler's stop, `kill`) unwinds like Ctrl-C: every temporary file of
    # an unfinished output is removed on the way out (precision_pain.io).
    signal.signal(signal.SIGTERM, _terminate)
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("mlflow", "alembic", "urllib3", "git", "numba", "shap", "matplotlib",
                  "distributed", "bokeh", "tornado"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
    # MLflow warns on every logged model that a uv-managed venv has no pip; nothing to act on
    logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)


@main.command()
@PARAMS_OPTION
@click.option("--n", "n_patients", type=int, help="Patients to simulate [simulate.n_patients].")
@click.option("--seed", type=int, help="Random seed [simulate.seed].")
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Cohort file to write (.csv or .parquet).")
@click.option("--truth-out", type=click.Path(dir_okay=False, path_type=Path),
              help="Ground-truth file [beside --out as <stem>_ground_truth.<ext>].")
@click.option("--plan-truth-out", type=click.Path(dir_okay=False, path_type=Path),
              help="Per-plan ground truth: written with simulate.plans; given explicitly, also "
                   "without (no rows), so a pipeline can declare it "
                   "[data.synthetic_plan_truth, else beside --out as <stem>_plan_truth.<ext>].")
@_friendly_errors
def simulate(params_path: Path, n_patients: int | None, seed: int | None, out: Path,
             truth_out: Path | None, plan_truth_out: Path | None) -> None:
    """Write a synthetic cohort and, separately, its ground truth (and per-plan truth)."""
    from precision_pain.config import load_params
    from precision_pain.data.simulate import simulate_cohort
    from precision_pain.data.simulate_plans import empty_plan_truth
    from precision_pain.io import check_writable, table_format, write_tables
    from precision_pain.progress import progress_bar

    params = load_params(params_path)
    table_format(out)
    truth_out = truth_out or out.with_name(f"{out.stem}_ground_truth{out.suffix}")
    plan_out = (plan_truth_out or params.data.synthetic_plan_truth
                or out.with_name(f"{out.stem}_plan_truth{out.suffix}"))
    write_plan_truth = params.simulate.plans or plan_truth_out is not None
    check_writable([out, truth_out, *([plan_out] if write_plan_truth else [])])
    log.info("simulating %d patients (seed %d) with %s",
             params.simulate.n_patients if n_patients is None else n_patients,
             params.simulate.seed if seed is None else seed, params_path)
    with progress_bar(total=2, desc="simulate", unit="step") as bar:
        result = simulate_cohort(params.simulate, params.prepare.response_threshold,
                                 n_patients=n_patients, seed=seed)
        bar.update()
        tables = {out: result.cohort, truth_out: result.truth}
        if write_plan_truth:
            tables[plan_out] = (result.plan_truth if result.plan_truth is not None
                                else empty_plan_truth())
        write_tables(tables)  # published together
        bar.update()
    log.info("wrote cohort %s (%d rows x %d columns) and ground truth %s (%d rows)",
             out, *result.cohort.shape, truth_out, len(result.truth))
    if write_plan_truth:
        log.info("wrote per-plan ground truth %s (%d rows)", plan_out,
                 0 if result.plan_truth is None else len(result.plan_truth))


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

    from precision_pain.config import load_params
    from precision_pain.data.contract import iter_table, read_table
    from precision_pain.data.prepare import align_truth, prepare_cohort, prepare_partitions
    from precision_pain.engine import open_engine
    from precision_pain.io import check_writable, write_tables

    params = load_params(params_path)
    cohort = cohort or params.data.cohort
    truth_path = _optional_path(ground_truth, params.data.ground_truth)
    out, truth_out = out or params.data.prepared, truth_out or params.data.prepared_truth
    check_writable([out, truth_out])
    with open_engine(params.engine) as engine:
        if engine.name == "local":
            prepared = prepare_cohort(read_table(cohort), str(cohort),
                                      params.prepare.response_threshold)
        else:
            prepared = prepare_partitions(iter_table(cohort, params.engine.partition_rows),
                                          str(cohort), params.prepare.response_threshold, engine)
    if truth_path is not None:
        truth = align_truth(read_table(truth_path, typed=True), prepared, str(truth_path))
    else:
        log.info("no ground truth: evaluation will report observed-data metrics only")
        truth = pd.DataFrame(columns=["patient_id", "treatment", "eligible", "p_response",
                                      "p_adverse_event"])
    write_tables({out: prepared, truth_out: truth})  # published together
    log.info("wrote ground truth %s (%d rows)", truth_out, len(truth))
    log.info("wrote prepared cohort %s (%d rows); responders %.1f %%",
             out, len(prepared), 100 * prepared["response"].mean())


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
    from precision_pain.config import load_params
    from precision_pain.data.contract import read_pipeline_table
    from precision_pain.data.split import split_cohort
    from precision_pain.io import write_table

    params = load_params(params_path)
    frame = read_pipeline_table(prepared or params.data.prepared)
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
@click.option("--evaluated-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Where to write the bundle that evaluation scores [model.evaluated_dir; "
                   "with --models-dir DIR: DIR-evaluated].")
@click.option("--tracking/--no-tracking", default=True, show_default=True,
              help="Log runs and register models in MLflow.")
@_friendly_errors
def train(params_path: Path, splits_dir: Path | None, models_dir: Path | None,
          evaluated_dir: Path | None, tracking: bool) -> None:
    """Fit the response and adverse-event models; track them in MLflow.

    With the pooled learner's ``refit_on_all`` the bundle fitted without the test split goes
    to model.evaluated_dir (evaluate scores it) and the same models refitted on every split
    go to model.dir (predict, serve and the registry use it); otherwise both hold the same
    bundle."""
    from precision_pain.config import load_params
    from precision_pain.data.contract import read_pipeline_table
    from precision_pain.engine import open_engine
    from precision_pain.io import write_json
    from precision_pain.models.bundle import save_bundle
    from precision_pain.models.estimators import get_model_class
    from precision_pain.models.train import (check_outcome_support, modeled_treatments,
                                             refit_on_all, refits_on_all, train_bundle,
                                             training_summary)
    from precision_pain.outcome import outcome_from_params
    from precision_pain.progress import progress_bar

    params = load_params(params_path)
    get_model_class(params.model.type)
    check_outcome_support(params.model.type, outcome_from_params(params))
    splits_dir = splits_dir or params.data.splits_dir
    from precision_pain.data.prepare import single_treatment_episodes

    train_all = read_pipeline_table(splits_dir / "train.parquet")
    valid_all = read_pipeline_table(splits_dir / "valid.parquet")
    train_df = single_treatment_episodes(train_all, str(splits_dir / "train.parquet"))
    valid_df = single_treatment_episodes(valid_all, str(splits_dir / "valid.parquet"))
    log.info("read %s (%d rows) and %s (%d rows)", splits_dir / "train.parquet", len(train_df),
             splits_dir / "valid.parquet", len(valid_df))
    # which treatments the data supports: decided (and refused) before any MLflow run opens
    treatments, skipped = modeled_treatments(train_df, valid_df, params.model)
    log.info("training %s models for %d treatments on %d rows (validation %d rows)",
             params.model.type, len(treatments), len(train_df), len(valid_df))
    started = time.perf_counter()
    with (open_engine(params.engine) as engine,
          progress_bar(total=len(treatments), desc="train", unit="treatment") as bar):
        if tracking:
            bundle = _train_tracked(params, treatments, skipped, train_df, valid_df, splits_dir,
                                    bar, params_path, engine)
        else:
            bundle = train_bundle(train_df, valid_df, treatments, params.model,
                                  params.prepare.response_threshold,
                                  harm_weight=params.evaluate.harm_weight,
                                  propensity_clip=params.evaluate.propensity_clip,
                                  not_modeled=skipped, on_done=lambda _: bar.update(),
                                  engine=engine, outcome=outcome_from_params(params))
        evaluated = bundle
        test_all = None
        if refits_on_all(params.model):
            test_all = read_pipeline_table(splits_dir / "test.parquet")
            test_df = single_treatment_episodes(test_all, str(splits_dir / "test.parquet"))
            bundle = refit_on_all(evaluated, {"train": train_df, "valid": valid_df,
                                              "test": test_df}, params.model, engine)
        evaluated, bundle = _with_plans(evaluated, bundle, (train_all, valid_all, test_all),
                                        params, engine)
    seconds = time.perf_counter() - started
    evaluated_dir = evaluated_dir or _evaluated_dir(params.model, models_dir)
    if evaluated_dir is not None:
        save_bundle(evaluated, evaluated_dir)
        log.info("wrote the bundle evaluation scores (fitted on %s) to %s",
                 " + ".join(evaluated.metadata["fitted_on"]["splits"]), evaluated_dir)
        if bundle is not evaluated:
            bundle = _refitted_from(bundle, evaluated_dir)
    out = save_bundle(bundle, models_dir or params.model.dir)
    log.info("wrote %d treatments' models (fitted on %s, %d episodes) to %s",
             len(bundle.treatments), " + ".join(bundle.metadata["fitted_on"]["splits"]),
             bundle.metadata["fitted_on"]["n_episodes"], out)
    summary = training_summary(evaluated, valid_df, params.evaluate.harm_weight,
                               params.evaluate.propensity_clip, seconds)
    summary["deployed_fitted_on"] = " + ".join(bundle.metadata["fitted_on"]["splits"])
    summary["deployed_n_episodes"] = bundle.metadata["fitted_on"]["n_episodes"]
    if evaluated.plan_models is not None:
        summary |= dict(evaluated.plan_models.summary)
    if params.model.metrics is not None:
        write_json(summary, params.model.metrics)
    if tracking:
        from precision_pain.predict.recommend import options_from_params
        from precision_pain.predict.serve import model_config
        from precision_pain.tracking import log_recommender, log_training_summary

        parent = bundle.metadata["mlflow_run_ids"]["parent"]
        log_training_summary(params.tracking, parent, summary)
        log_recommender(params.tracking, out, parent,
                        model_config(options_from_params(params),
                                     params.predict.max_request_rows))


def _with_plans(evaluated: Any, deployed: Any, splits: tuple[Any, Any, Any], params: Any,
                engine: Any) -> tuple[Any, Any]:
    """Both bundles with the plan learner when the training episodes hold plans (contract
    v2; models/plan_model.py), on the pooled learner's settings: fitted on train +
    validation for the evaluated bundle, refitted with the same choices on every split for a
    deployed bundle refitted on all (``splits``' test frame given); as they are otherwise."""
    from dataclasses import replace

    import pandas as pd

    from precision_pain.models.estimators import training_threads
    from precision_pain.models.plan_model import (fit_plan_models, has_plan_episodes,
                                                  refit_plan_models)

    train_all, valid_all, test_all = splits
    if not has_plan_episodes(train_all):
        return evaluated, deployed
    if evaluated.outcome.continuous:
        raise ValueError("the training episodes hold treatment plans, which the plan learner "
                         "models with the responder outcome only; prepare.outcome is "
                         "nrs_change. Fix: set prepare.outcome: responder, or train on "
                         "single-treatment episodes")
    settings = params.model.hyperparameters.get("pooled_xgboost")
    if not settings:
        raise ValueError("the training episodes hold treatment plans; the plan learner uses "
                         "model.hyperparameters.pooled_xgboost, which params.yaml lacks")
    with training_threads():
        plans = fit_plan_models(train_all, valid_all, evaluated.treatments, settings,
                                params.model.seed, engine, params.evaluate.harm_weight)
        if test_all is None:  # no refit on every split: one bundle
            with_plans = replace(evaluated, plan_models=plans)
            return with_plans, with_plans
        every = pd.concat([train_all, valid_all, test_all], ignore_index=True)
        refitted = refit_plan_models(plans, every, settings, params.model.seed, engine)
    return replace(evaluated, plan_models=plans), replace(deployed, plan_models=refitted)


def _refitted_from(bundle: Any, evaluated_dir: Path) -> Any:
    """The deployed bundle, recording the SHA-256 of the evaluated bundle it was refitted
    from (every choice kept), so that predict can find that bundle's evaluation
    (:mod:`precision_pain.predict.evidence`)."""
    from dataclasses import replace

    from precision_pain.models.bundle import manifest_sha256
    from precision_pain.predict.evidence import EVALUATED_KEY

    return replace(bundle, metadata={**bundle.metadata,
                                     EVALUATED_KEY: manifest_sha256(evaluated_dir)})


def _evaluated_dir(model: Any, models_dir: Path | None) -> Path | None:
    """Where the bundle evaluation scores goes: params' model.evaluated_dir, or beside a
    --models-dir given on the command line (never over the project's own)."""
    if model.evaluated_dir is None:
        return None
    return model.evaluated_dir if models_dir is None else models_dir.with_name(
        f"{models_dir.name}-evaluated")


def _train_tracked(params: Any, treatments: Any, skipped: Any, train_df: Any, valid_df: Any,
                   splits_dir: Path, bar: Any, params_path: Path, engine: Any) -> Any:
    """train_bundle inside an MLflow parent run, one nested run per treatment as it is done."""
    from dataclasses import replace

    from precision_pain import tracking
    from precision_pain.models.train import train_bundle
    from precision_pain.outcome import outcome_from_params

    run_ids: dict[str, str] = {}
    tags = tracking.provenance_tags([splits_dir / "train.parquet", splits_dir / "valid.parquet"],
                                    params_path)
    tags |= {f"not_modeled.{arm.treatment}": arm.reason for arm in skipped}
    inputs = [tracking.split_input(name, splits_dir / f"{name}.parquet", frame, params.data.cohort)
              for name, frame in (("train", train_df), ("valid", valid_df))]

    def on_done(result: Any) -> None:
        run_ids[result.treatment] = tracking.log_treatment_run(
            params, result.treatment, result.models, result.counts, result.validation, inputs)
        bar.update()

    with tracking.parent_run(params, f"train-{params.model.type}", tags, inputs) as parent_id:
        run_ids["parent"] = parent_id
        tracking.log_provenance_files([params_path, Path("dvc.lock")])
        bundle = train_bundle(train_df, valid_df, treatments, params.model,
                              params.prepare.response_threshold,
                              harm_weight=params.evaluate.harm_weight,
                              propensity_clip=params.evaluate.propensity_clip,
                              not_modeled=skipped, on_done=on_done, engine=engine,
                              outcome=outcome_from_params(params))
    return replace(bundle, metadata={**bundle.metadata, "mlflow_run_ids": run_ids})


@main.command()
@PARAMS_OPTION
@click.option("--splits-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder with the test parquet file [data.splits_dir].")
@click.option("--truth", type=click.Path(dir_okay=False, path_type=Path),
              help="Aligned ground truth [data.prepared_truth].")
@click.option("--models-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Fitted models [model.evaluated_dir, or model.dir without it].")
@click.option("--tracking/--no-tracking", default=True, show_default=True,
              help="Log the metrics into the training's MLflow runs.")
@_friendly_errors
def evaluate(params_path: Path, splits_dir: Path | None, truth: Path | None,
             models_dir: Path | None, tracking: bool) -> None:
    """Score the models on the test split and the recommendations against the truth.

    Writes the metrics files, the plots and the markdown report named in params.yaml
    (``evaluate:``); docs/evaluation.md explains every number.
    """
    from precision_pain.config import load_params
    from precision_pain.data.contract import read_pipeline_table
    from precision_pain.engine import open_engine
    from precision_pain.evaluate.core import evaluate as run_evaluation
    from precision_pain.io import write_json
    from precision_pain.models.bundle import load_bundle

    params = load_params(params_path)
    settings = params.evaluate
    bundle_dir = models_dir or params.model.evaluated_dir or params.model.dir
    bundle = load_bundle(bundle_dir, own_bundle=True)
    if "test" in bundle.metadata.get("fitted_on", {}).get("splits", []):
        custom = models_dir is not None and Path(models_dir).resolve() != Path(
            params.model.dir).resolve()
        evaluated = (_evaluated_dir(params.model, Path(models_dir) if custom else None)
                     or "<the bundle in model.evaluated_dir>")
        raise click.ClickException(
            f"{bundle_dir}: these models were refitted on the test split too (the pooled "
            "learner's refit_on_all), so scoring them on it would flatter them; evaluate the "
            f"bundle fitted without it: --models-dir {evaluated}")
    folder = splits_dir or params.data.splits_dir
    test_path = folder / "test.parquet"
    from precision_pain.data.prepare import single_treatment_episodes
    from precision_pain.evaluate.core import choose_one_size_fits_all

    test_all = read_pipeline_table(test_path)
    test = single_treatment_episodes(test_all, str(test_path))
    truth_frame = read_pipeline_table(truth or params.data.prepared_truth)
    known = truth_frame if len(truth_frame) else None
    training = _training_episodes(folder)
    one_size = choose_one_size_fits_all(training, bundle, settings)
    log.info("evaluating %s models on %d test rows (ground truth: %d rows, %d bootstrap "
             "replicates)", bundle.model_type, len(test), len(truth_frame), settings.n_bootstrap)
    with open_engine(params.engine) as engine:
        result = run_evaluation(test, bundle, known, settings, engine,
                                params.predict.nrs_interval_level, one_size)
        crossed = _cross_fitted(training, test, bundle, params, known, engine)
    if crossed is not None:
        result.summary["off_policy_cross_fitted"] = crossed
    plans = _evaluate_plans(test_all, bundle, params, len(truth_frame) > 0)
    if plans is not None:
        result.summary["plans"] = _plans_headline(plans)
        result.policy["plans"] = plans
    from precision_pain.models.bundle import manifest_sha256
    from precision_pain.predict.evidence import SCORED_KEY

    # which models these figures describe, at which harm weight: predict shows them beside
    # those models' rankings
    result.summary[SCORED_KEY] = manifest_sha256(bundle_dir)
    result.summary["harm_weight"] = settings.harm_weight
    files = {settings.metrics: result.summary, settings.per_treatment: result.per_treatment,
             settings.policy: result.policy, settings.subgroups: result.subgroups}
    for path, content in files.items():
        write_json(content, path)
    plots = _write_plots(result, settings.plots_dir)
    _write_report(result, plots, settings.report, plans)
    log.info("wrote %s, %d plots in %s and %s", ", ".join(map(str, files)), len(plots),
             settings.plots_dir, settings.report)
    _warn_if_no_gain_shown(result.summary)
    run_ids = bundle.metadata.get("mlflow_run_ids")
    if tracking and run_ids:
        from precision_pain.tracking import log_evaluation, split_input

        log_evaluation(run_ids, result.summary, result.per_treatment,
                       [*files, settings.report], params.tracking, plots=plots,
                       detail={"detail": result.policy, "subgroups": result.subgroups},
                       inputs=[split_input("test", test_path, test, params.data.cohort)])


def _evaluate_plans(test_all: Any, bundle: Any, params: Any, has_truth: bool) -> Any:
    """The plan learner against the per-plan truth (evaluate/plans.py), when the bundle has
    the plan learner and the cohort's per-plan truth (data.plan_truth; by default the
    synthetic cohort's, used only for it) has rows; None otherwise."""
    if bundle.plan_models is None:
        return None
    from precision_pain.data.contract import read_table
    from precision_pain.evaluate.plans import check_plan_truth, plan_truth_path

    path = plan_truth_path(params.data, has_truth)
    truth = None
    if path is not None:
        synthetic = params.data.synthetic_plan_truth
        fix = ("run `dvc repro simulate` (simulate.plans: true writes it)"
               if synthetic is not None and path == Path(synthetic) else
               "set data.plan_truth to the cohort's per-plan truth file (docs/data-contract.md)")
        truth = check_plan_truth(read_table(path, typed=True, allow_empty=True,
                                            missing_fix=fix), path)
    if truth is None or truth.empty:
        log.info("the bundle has the plan learner but the cohort has no per-plan ground truth "
                 "(data.plan_truth; the synthetic one is written by simulate with "
                 "simulate.plans: true): plans are not evaluated")
        return None
    from precision_pain.evaluate.plans import evaluate_plans

    settings = params.evaluate
    return evaluate_plans(test_all, bundle, truth, settings.harm_weight,
                          settings.non_opioid_first, settings.n_bootstrap, settings.seed)


def _training_episodes(splits_dir: Path) -> Any:
    """The train and validation splits' single-treatment episodes (empty when the folder has
    neither): where evaluate chooses the one treatment for everyone it compares against."""
    import pandas as pd

    from precision_pain.data.contract import read_pipeline_table
    from precision_pain.data.prepare import single_treatment_episodes

    frames = [single_treatment_episodes(read_pipeline_table(path), str(path))
              for path in (splits_dir / "train.parquet", splits_dir / "valid.parquet")
              if path.exists()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _cross_fitted(training: Any, test: Any, bundle: Any, params: Any, truth: Any,
                  engine: Any) -> dict[str, Any] | None:
    """The DR gains cross-fitted over every split's patients (evaluate/crossfit.py), with a
    progress bar over the folds; None, and the reason in the log, when there are none."""
    if bundle.propensity is None:  # no off-policy estimates at all: nothing to cross-fit
        return None
    import pandas as pd

    from precision_pain.evaluate.crossfit import cross_fitted_gain, not_cross_fitted
    from precision_pain.progress import progress_bar

    episodes = pd.concat([training, test], ignore_index=True)
    n_patients = episodes["patient_id"].nunique()
    skipped = not_cross_fitted(n_patients, params.evaluate)
    if skipped is not None:
        log.info("no cross-fitted gains: %s", skipped)
        return None
    folds = params.evaluate.cross_fitted_folds
    log.info("cross-fitting the doubly robust gains over %d folds of %d patients: the %s "
             "learner is trained %d more times", folds, n_patients, params.model.type, folds)
    with progress_bar(total=folds, desc="cross-fit", unit="fold") as bar:
        return cross_fitted_gain(episodes, params, truth, bundle.outcome, engine, bar.update)


def _warn_if_no_gain_shown(summary: dict[str, Any]) -> None:
    """Say so in the log when the paired DR gain over one-size-fits-all care that answers
    the question (cross-fitted when there is one, else the test split's) has an interval
    that reaches 0 (the report says it too; aggregates only)."""
    from precision_pain.evaluate.core import gain_evidence, gain_not_shown, headline_gain

    source, off_policy = gain_evidence(summary)
    if gain_not_shown(off_policy):
        gain = headline_gain(off_policy, "one_size_fits_all")
        log.warning("the observed outcomes (%s) do not show the recommendations beating %s for "
                    "everyone: doubly robust gain %.3f (95 %% interval %.3f to %.3f)",
                    source.replace("_", " "),
                    off_policy.get("one_size_fits_all_treatment", "one treatment"),
                    gain["estimate"], gain["ci_low"], gain["ci_high"])


def _plans_headline(plans: dict[str, Any]) -> dict[str, float]:
    """evaluation.json's compact view of the plan evaluation (policy.json has it all)."""
    shares = plans["share_of_oracle_gain_over_best_single_for_everyone"]
    values = plans["mean_true_net_benefit"]
    return {**{f"share_of_oracle_gain.{p}": v["estimate"] for p, v in shares.items()},
            **{f"mean_true_net_benefit.{p}": v["estimate"] for p, v in values.items()}}


def _write_plots(result: Any, directory: Path) -> list[Path]:
    """Save every evaluation figure as PNG; the folder is replaced whole."""
    from precision_pain.evaluate.plots import evaluation_figures
    from precision_pain.io import atomic_dir

    figures = evaluation_figures(result)
    with atomic_dir(directory) as tmp:
        tmp.chmod(0o755)
        for name, figure in figures.items():
            figure.savefig(tmp / f"{name}.png", metadata={"Software": None})
    return [directory / f"{name}.png" for name in figures]


def _write_report(result: Any, plots: list[Path], path: Path, plans: Any = None) -> None:
    """Write the markdown report, linking the plots relative to it (and, with ``plans``, its
    section on treatment plans)."""
    import os

    from precision_pain.evaluate.report_md import evaluation_report
    from precision_pain.io import atomic_path

    links = [Path(os.path.relpath(p, path.parent)).as_posix() for p in plots]
    text = evaluation_report(result, RESEARCH_NOTICE, links)
    if plans is not None:
        from precision_pain.evaluate.plans import plans_report

        text += plans_report(plans)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


@main.command()
@PARAMS_OPTION
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True,
              help="Ranked recommendations (.csv or .parquet); <stem>.shap.<ext>, <stem>.json "
                   "and <stem>.html go beside it.")
@click.option("--models", "models_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Model folder [model.dir].")
@click.option("--registry-alias", type=str,
              help="Load the registered recommender at this alias from MLflow instead of "
                   "--models.")
@click.option("--bundle-sha256", "bundle_sha256", type=str,
              help="Refuse the models unless the bundle's manifest.json has this SHA-256 "
                   "(pins a bundle from elsewhere; `precision-pain bundle-hash DIR` prints it).")
@click.option("--top-k", type=int, help="Ranks explained per patient [predict.top_k_explained].")
@click.option("--report-max-patients", type=int,
              help="Patient sections in the HTML report [predict.report_max_patients].")
@click.option("--harm-weight", type=click.FloatRange(min=0), default=None,
              help="Weight of P(serious adverse event) against the response in net benefit "
                   "[evaluate.harm_weight]; a patient's own harm_weight column still wins.")
@_friendly_errors
def predict(params_path: Path, input_path: Path, out: Path, models_dir: Path | None,
            registry_alias: str | None, bundle_sha256: str | None, top_k: int | None,
            report_max_patients: int | None, harm_weight: float | None) -> None:
    """Rank, guideline-check and explain every treatment for each patient of INPUT."""
    from precision_pain.config import load_params
    from precision_pain.data.contract import iter_table
    from precision_pain.engine import open_engine
    from precision_pain.io import check_writable, table_format
    from precision_pain.predict.outputs import output_paths, write_predictions
    from precision_pain.predict.partitioned import predict_partitions
    from precision_pain.predict.recommend import options_from_params, predict_chunks

    params = load_params(params_path)
    table_format(out)
    check_writable(list(output_paths(out).values()))
    bundle = _load_bundle(params, models_dir, registry_alias, bundle_sha256)
    has_plans = getattr(bundle, "plan_models", None) is not None
    check_writable(list(output_paths(out, has_plans).values()))
    options = options_from_params(params, top_k, harm_weight)
    chunks = iter_table(input_path, params.predict.chunk_size)
    meta = {"source": str(input_path), "models": str(registry_alias or models_dir
                                                    or params.model.dir),
            "model_type": bundle.model_type, "harm_weight": options.harm_weight,
            "top_k_explained": options.top_k, "version": __version__,
            "treatments_not_modeled": not_modeled(bundle), "outcome": bundle.outcome.type,
            "adverse_event_nrs_points": bundle.outcome.adverse_event_nrs_points,
            "evaluation": _evidence(params, bundle, None if registry_alias else
                                    models_dir or params.model.dir, options.harm_weight)}
    max_patients = (params.predict.report_max_patients if report_max_patients is None
                    else report_max_patients)
    with open_engine(params.engine) as engine:
        if engine.name == "local":
            results = predict_chunks(chunks, bundle, str(input_path), options)
        else:
            source = _bundle_source(bundle, None if registry_alias else
                                    models_dir or params.model.dir)
            results = predict_partitions(chunks, source, str(input_path), options, engine)
        written = write_predictions(results, out, meta, max_patients, has_plans)
    log.info("wrote %s (%d rows: %d patients x %d treatments), %s", out, written.n_rows,
             written.n_patients, len(bundle.treatments),
             ", ".join(str(p) for k, p in written.paths.items() if k != "table"))
    click.echo(RESEARCH_NOTICE, err=True)


def not_modeled(bundle: Any) -> list[dict[str, str]]:
    """The treatments a bundle does not rank, and why (predict's JSON and HTML say so)."""
    return [{"treatment": a["treatment"], "reason": a["reason"]}
            for a in bundle.metadata.get("not_modeled", [])]


def _bundle_source(bundle: Any, directory: Path | None) -> Any:
    """What Dask workers load the models from: the bundle folder's files, pinned to the
    manifest hash the client has just verified; a registry bundle without a folder goes as
    the loaded objects."""
    from precision_pain.engine import BundleFiles
    from precision_pain.models.bundle import manifest_sha256

    if directory is None:
        return bundle
    return BundleFiles.read(directory, manifest_sha256(directory))


def _evidence(params: Any, bundle: Any, directory: Path | None, harm_weight: float
              ) -> dict[str, Any]:
    """What the evaluation in params' ``evaluate.metrics`` shows about these models
    (:mod:`precision_pain.predict.evidence`), said in the log too when it shows no gain over
    one treatment for everyone, or is not of these models (aggregates only)."""
    import json

    from precision_pain.models.bundle import manifest_sha256
    from precision_pain.predict.evidence import bundle_hashes, evaluation_evidence

    path = Path(params.evaluate.metrics)
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        summary = None
    own = manifest_sha256(directory) if directory is not None else None
    evidence = evaluation_evidence(summary if isinstance(summary, dict) else None,
                                   bundle_hashes(bundle.metadata, own), str(path), harm_weight)
    if evidence["status"] != "evaluated":
        log.warning("no evaluation of these models in %s (%s): the outputs say so",
                    path, evidence["status"].replace("_", " "))
    elif evidence.get("gain_shown") is False:
        log.warning("these models' evaluation (%s) could not show their recommendations "
                    "beating %s for everyone: the outputs say so", path,
                    evidence.get("one_size_fits_all_treatment") or "one treatment")
    return evidence


def _load_bundle(params: Any, models_dir: Path | None, alias: str | None,
                 expected_sha256: str | None = None) -> Any:
    from precision_pain.models.bundle import ModelBundle, load_bundle

    if alias is None:
        own = models_dir is None or Path(models_dir).resolve() == Path(params.model.dir).resolve()
        return load_bundle(models_dir or params.model.dir, expected_sha256=expected_sha256,
                           own_bundle=own)
    from precision_pain.tracking import download_recommender

    downloaded = download_recommender(params.tracking, alias)
    if downloaded is not None:
        bundle_dir, registered_sha256 = downloaded
        return load_bundle(bundle_dir, expected_sha256=expected_sha256 or registered_sha256)
    from precision_pain.data.features import FEATURE_NAMES
    from precision_pain.registry import OUTCOMES, select_treatments
    from precision_pain.tracking import load_registered_models

    names = tuple(t.name for t in select_treatments(params.model.treatments))
    models = load_registered_models(params.tracking, names, OUTCOMES, alias)
    return ModelBundle("registry", FEATURE_NAMES, models, {"alias": alias})


@main.command("bundle-hash")
@click.argument("directory", type=click.Path(file_okay=False, exists=True, path_type=Path))
@_friendly_errors
def bundle_hash(directory: Path) -> None:
    """Verify a model bundle's files and print the SHA-256 that pins it (--bundle-sha256)."""
    from precision_pain.models.bundle import manifest_sha256, read_manifest

    read_manifest(directory)
    click.echo(manifest_sha256(directory))


@main.command()
@PARAMS_OPTION
@click.option("--port", type=int, default=5000, show_default=True,
              help="Port of the UI on 127.0.0.1.")
@click.option("--workers", type=int, default=1, show_default=True,
              help="Server processes (one is enough for one person).")
def ui(params_path: Path, port: int, workers: int) -> None:
    """Open the MLflow UI on the project's tracking store (127.0.0.1 only).

    The store is MLFLOW_TRACKING_URI, else tracking.uri in params.yaml. The address printed
    opens the training runs with the headline metrics as columns; select runs and press
    Compare to see params and metrics side by side (docs/experiments.md).
    """
    import os
    import subprocess

    from precision_pain.config import load_params
    from precision_pain.tracking import experiment_id_of, resolve_uri, workspace_url

    params = load_params(params_path)
    uri = resolve_uri(params.tracking)
    url = workspace_url(f"http://127.0.0.1:{port}", experiment_id_of(params.tracking))
    click.echo(f"MLflow UI for {uri}: open {url} (Ctrl-C to stop)")
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri,
           "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    raise SystemExit(subprocess.call(cmd, env=os.environ.copy()))


@main.command()
@PARAMS_OPTION
@click.option("--source", "source_name", required=True,
              help="Source to extract: a name under extract.sources.")
@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path),
              help="Folder for cohort.parquet and attrition.csv [extract.out_dir/<source>].")
@click.option("--key-out", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the person_id -> study id key (for the data custodian only).")
@_friendly_errors
def extract(params_path: Path, source_name: str, out_dir: Path | None,
            key_out: Path | None) -> None:
    """Build the contract cohort from an OMOP CDM database and PharmCAT outputs."""
    import pandas as pd

    from precision_pain.config import load_params
    from precision_pain.extract.omop.extract import ExtractError, link_truth
    from precision_pain.extract.omop.run import extract_source
    from precision_pain.extract.omop.study import load_study
    from precision_pain.io import check_writable, write_tables

    params = load_params(params_path)
    sources = params.extract.sources
    if source_name not in sources:
        raise click.ClickException(f"unknown source {source_name!r}; extract.sources in "
                                   f"{params_path} has: {', '.join(sources) or 'none'}")
    source, study = sources[source_name], load_study(params.extract.study)
    out_dir = out_dir or params.extract.out_dir / source_name
    outputs = [out_dir / "cohort.parquet", out_dir / "attrition.csv"]
    outputs += [out_dir / "ground_truth.parquet"] if source.truth else []
    check_writable([*outputs, *([key_out] if key_out else [])])
    try:
        result = extract_source(source, study)
    except ExtractError as exc:
        raise click.ClickException(str(exc)) from None
    for row in result.attrition.itertuples(index=False):
        log.info("attrition: %-70s %8d kept %8d removed", row.rule, row.persons, row.removed)
    frames = {outputs[0]: result.cohort, outputs[1]: result.attrition}
    if source.truth:
        frames[outputs[2]] = link_truth(pd.read_parquet(source.truth), result.key)
    if key_out:
        frames[key_out] = result.key
    write_tables(frames)  # published together: nothing half-written
    log.info("wrote cohort %s (%d rows x %d columns) and attrition %s", outputs[0],
             *result.cohort.shape, outputs[1])


@main.command("simulate-omop")
@PARAMS_OPTION
@click.option("--world", "world_name", help="A name under extract.synthetic_worlds.")
@click.option("--n", "n_patients", type=int, help="Patients [the world's n_patients].")
@click.option("--seed", type=int, help="Random seed [the world's seed].")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Folder to write [the world's out].")
@_friendly_errors
def simulate_omop(params_path: Path, world_name: str | None, n_patients: int | None,
                  seed: int | None, out: Path | None) -> None:
    """Write simulated patients as an OMOP CDM (DuckDB) plus PharmCAT outputs."""
    from precision_pain.config import load_params
    from precision_pain.data.simulate import simulate_cohort
    from precision_pain.extract.omop.study import load_study
    from precision_pain.extract.omop.synthetic import save_world, synthetic_world

    params = load_params(params_path)
    world = params.extract.synthetic_worlds.get(world_name) if world_name else None
    if world_name and world is None:
        raise click.ClickException(f"unknown world {world_name!r}; extract.synthetic_worlds "
                                   f"has: {', '.join(params.extract.synthetic_worlds) or 'none'}")
    n = n_patients or (world.n_patients if world else params.simulate.n_patients)
    seed = seed if seed is not None else (world.seed if world else params.simulate.seed)
    out = out or (world.out if world else None)
    if out is None:
        raise click.ClickException("give --out or --world")
    if params.simulate.plans:
        log.warning("simulate-omop writes one-treatment episodes only (OMOP plan episodes are "
                    "not written yet): simulate.plans is ignored here")
    sim = simulate_cohort(params.simulate.model_copy(update={"plans": False}),
                          params.prepare.response_threshold, n, seed)
    result = synthetic_world(sim.cohort, sim.truth, load_study(params.extract.study), seed)
    save_world(result, sim.cohort, out)
    log.info("wrote synthetic OMOP world %s: %s", out,
             ", ".join(f"{k} {len(v)}" for k, v in result.tables.items()))


if __name__ == "__main__":  # pragma: no cover
    main()
