"""MLflow at the edge: the only module that talks to the tracking store.

- Tracking URI: ``MLFLOW_TRACKING_URI`` when set (e.g. a tracking server),
  else ``tracking.uri`` from params.yaml (embedded SQLite by default).
- One parent run per training run, one nested run per treatment with its
  params, validation metrics and both models (xgboost UBJSON or skops; never
  pickle), each registered as ``<prefix>-<treatment>-<outcome>`` with the
  alias from params.yaml pointing at the newest version.
- Evaluation metrics are logged back into the same runs; the parent run also carries the
  headline ones under stable ``headline/<name>`` names (:data:`HEADLINE_METRICS`), which the
  UI's Compare and chart views plot across runs.
- Each run records the splits it read as MLflow datasets (name, source, content digest,
  schema, row count; never rows), in the contexts ``training``, ``validation`` and ``test``.
- The experiment is tagged as model development and carries a saved view of its training
  runs with the headline metrics as columns; :func:`workspace_url` opens it.
- Only aggregates are logged: no patient rows, no input examples.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, redirect_stderr
from pathlib import Path
from typing import Any

from precision_pain.config import Params, TrackingParams
from precision_pain.models.estimators import BinaryModel

log = logging.getLogger(__name__)


def disable_telemetry() -> None:
    """Opt out of MLflow's and DVC's telemetry (this process and its children); quiet MLflow."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    from precision_pain.progress import progress_enabled

    if not progress_enabled():  # MLflow's own artifact bars, like ours, stay out of CI logs
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def resolve_uri(params: TrackingParams, root: str | Path | None = None) -> str:
    """The tracking URI in force: the environment's, else params.yaml's.

    A relative SQLite path is taken from ``root``, else from ``DVC_ROOT`` (DVC sets it for
    every stage; for a queued ``dvc exp run`` in a temporary copy it names the project), else
    from the working directory: every experiment then lands in the project's one store.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI") or params.uri
    base = root or os.environ.get("DVC_ROOT")
    path = uri.removeprefix("sqlite:///")
    if base is None or path == uri or path.startswith("/") or path in {"", ":memory:"}:
        return uri
    return "sqlite:///" + (Path(base) / path).resolve().as_posix()


def _project_path(path: Path) -> Path:
    """A params.yaml path, anchored at ``DVC_ROOT`` when DVC runs the command."""
    return Path(os.environ.get("DVC_ROOT", ".")) / path


def registered_name(params: TrackingParams, treatment: str, outcome: str) -> str:
    """Registry name of one treatment's outcome model."""
    return f"{params.registered_model_prefix}-{treatment}-{outcome}".replace("_", "-")


def start(params: TrackingParams) -> str:
    """Point MLflow at the store and make sure the experiment exists; returns its id."""
    import mlflow

    disable_telemetry()
    uri = resolve_uri(params)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    experiment = mlflow.get_experiment_by_name(params.experiment)
    if experiment is not None:
        experiment_id = experiment.experiment_id
    else:
        artifact_location = _project_path(params.artifact_location).resolve().as_uri()
        experiment_id = mlflow.create_experiment(
            params.experiment, tags=workspace_tags(),
            artifact_location=None if uri.startswith("http") else artifact_location)
    mlflow.set_experiment(experiment_id=experiment_id)
    log.info("MLflow tracking at %s, experiment %r", uri, params.experiment)
    return experiment_id


# The experiment's kind as MLflow reads it: its UI lists the experiment among model-training
# ones and stops asking which kind it is. (MLflow 3.17's UI still takes its GenAI or
# model-training view from the address: workspace_url.)
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
# The parent run's headline evaluation metrics: stable name -> key of the flattened summary
# (metrics/evaluation.json). Values a cohort lacks (no ground truth, no propensity model)
# are not logged.
HEADLINE_METRICS = {
    "headline/share_of_oracle_gain": "policy.share_of_oracle_gain_captured",
    "headline/dr_net_benefit": "off_policy.model_dr_net_benefit",
    "headline/dr_gain_over_one_size_fits_all": "off_policy.model_dr_gain_over_one_size_fits_all",
    # evaluate.cross_fitted_folds: the same gain over every patient (evaluate/crossfit.py)
    "headline/cross_fitted_dr_gain_over_one_size_fits_all":
        "off_policy_cross_fitted.model_dr_gain_over_one_size_fits_all",
    "headline/true_net_benefit": "policy.model.mean_true_net_benefit",
    "headline/mean_response_auc": "mean_response_auc",
    "headline/mean_adverse_event_auc": "mean_adverse_event_auc",
    "headline/mean_response_brier": "mean_response_brier",
    "headline/calibration_slope_within_0.8_1.2": "response_calibration_slope.share_within_0.8_1.2",
    "headline/calibration_slope_vs_truth_within_0.8_1.2":
        "response_calibration_slope_against_truth.share_within_0.8_1.2",
}
# Training's own figures (metrics/training.json), under the same stable prefix.
TRAINING_HEADLINE = {
    "headline/train_seconds": "train_seconds",
    "headline/valid_dr_net_benefit": "valid_dr_net_benefit",
}
# The saved view (an experiment tag MLflow's UI reads for ?viewStateShareKey=...): training
# runs only, the dataset, model type and headline metrics as columns, best share first.
VIEW_KEY = "training-runs"
_VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"


def _training_view() -> dict[str, Any]:
    metrics = [f"metrics.`{name}`" for name in (*HEADLINE_METRICS, *TRAINING_HEADLINE)]
    columns = ["params.`model.type`", "attributes.`Dataset`", *metrics]
    return {"searchFilter": "attributes.run_name LIKE 'train-%'",
            "orderByKey": metrics[0], "orderByAsc": False, "selectedColumns": columns,
            "columnOrder": ["attributes.`Run Name`", *columns],
            "columnWidths": {"attributes.`Dataset`": 200, **dict.fromkeys(metrics, 240)}}


def workspace_tags() -> dict[str, str]:
    """Experiment tags: model development kind and the saved training-runs view."""
    import json

    return {**EXPERIMENT_KIND, _VIEW_TAG: json.dumps(_training_view())}


def mark_workspace(experiment_id: str) -> None:
    """Set the workspace tags on an experiment that lacks them or holds older values."""
    import mlflow

    client = mlflow.MlflowClient()
    present = client.get_experiment(experiment_id).tags
    for key, value in workspace_tags().items():
        if present.get(key) != value:
            client.set_experiment_tag(experiment_id, key, value)


def workspace_url(base_url: str, experiment_id: str | None) -> str:
    """The UI page of the experiment's training runs (model-training view, saved columns).

    MLflow 3.17's UI chooses between its GenAI and model-training views from the address (or
    the browser's last choice), not from the experiment's kind, so the address names it.
    """
    base = base_url.rstrip("/")
    if experiment_id is None:
        return f"{base}/#/experiments?workflowType=machine_learning"
    return (f"{base}/#/experiments/{experiment_id}/runs"
            f"?viewStateShareKey={VIEW_KEY}&workflowType=machine_learning")


def experiment_id_of(params: TrackingParams) -> str | None:
    """The id of the project's experiment in the store in force, or None if it has none yet."""
    import mlflow

    disable_telemetry()
    mlflow.set_tracking_uri(resolve_uri(params))
    experiment = mlflow.get_experiment_by_name(params.experiment)
    return None if experiment is None else experiment.experiment_id


def headline_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """The headline metrics of an evaluation summary under their stable names."""
    flat = flatten(summary)
    values = {name: _number(flat[key]) for name, key in HEADLINE_METRICS.items() if key in flat}
    return {name: value for name, value in values.items() if value is not None}


# Which split each MLflow dataset context names.
CONTEXTS = {"train": "training", "valid": "validation", "test": "test"}


def split_input(split: str, path: Path, frame: Any, cohort: Path) -> Any:
    """An MLflow dataset input for one split: never its rows.

    Name ``<cohort file stem>.<split>``; source the cohort file (the synthetic cohort or your
    extract: its path, no data); digest the split file's MD5 (DVC's hash of it); schema the
    column names and types; profile the numbers of rows, columns and patients.
    """
    from mlflow.data.sources import LocalArtifactDatasetSource
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    dataset = _split_dataset(
        source=LocalArtifactDatasetSource(_project_path(cohort).resolve().as_uri()),
        name=f"{Path(cohort).stem}.{split}", digest=file_md5(path), schema=_schema(frame),
        profile={"num_rows": len(frame), "num_columns": frame.shape[1],
                 "num_patients": int(frame["patient_id"].nunique()),
                 "file": Path(path).as_posix()})
    return DatasetInput(dataset._to_mlflow_entity(),
                        tags=[InputTag(MLFLOW_DATASET_CONTEXT, CONTEXTS[split])])


def _schema(frame: Any) -> Any:
    """Column names and types from the dtypes alone (no value is read)."""
    from mlflow.types import ColSpec, DataType, Schema

    kinds = {"b": DataType.boolean, "i": DataType.long, "u": DataType.long,
             "f": DataType.double, "M": DataType.datetime}
    return Schema([ColSpec(kinds.get(dtype.kind, DataType.string), str(name))
                   for name, dtype in frame.dtypes.items()])


def _split_dataset(**kwargs: Any) -> Any:
    """A metadata-only dataset; its class is built here so that importing this module
    does not import MLflow."""
    from mlflow.data.meta_dataset import MetaDataset

    class SplitDataset(MetaDataset):
        """A metadata-only dataset (MLflow's MetaDataset) with a row-count profile."""

        def __init__(self, *, profile: Mapping[str, Any], **kwargs: Any) -> None:
            self._profile = dict(profile)
            super().__init__(**kwargs)

        @property
        def profile(self) -> dict[str, Any]:
            return self._profile

        def to_dict(self) -> dict[str, str]:
            import json

            return {**super().to_dict(), "profile": json.dumps(self._profile)}

    return SplitDataset(**kwargs)


def log_inputs(run_id: str, inputs: Sequence[Any]) -> None:
    """Record dataset inputs (:func:`split_input`) on a run."""
    import mlflow

    if inputs:
        mlflow.MlflowClient().log_inputs(run_id, datasets=list(inputs))


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested params as ``section.key`` -> string, the form MLflow stores."""
    flat: dict[str, str] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)
    return flat


def provenance_tags(data_files: list[Path], params_file: Path | None = None,
                    lock_file: Path = Path("dvc.lock")) -> dict[str, str]:
    """Git commit, data, params and DVC stage hashes, so a run traces back to what produced it.

    Under ``dvc repro`` / ``dvc exp run`` (``DVC_STAGE`` is set) it adds the experiment's name
    and baseline commit, and the output hashes dvc.lock records for the stages before this one
    (``dvc.<stage>.<path>``: the same md5 DVC caches them under).
    """
    commit = _git_commit()
    tags = {"git_commit": commit, "mlflow.source.git.commit": commit.removesuffix("-dirty")}
    for path in data_files:
        tags[f"data_md5.{path.name}"] = file_md5(path)
    if params_file is not None and Path(params_file).exists():
        tags["params_md5"] = file_md5(Path(params_file))
    env_tags = {"DVC_STAGE": "dvc_stage", "DVC_EXP_NAME": "dvc_exp_name",
                "DVC_EXP_BASELINE_REV": "dvc_exp_baseline_rev"}
    tags |= {tag: os.environ[var] for var, tag in env_tags.items() if os.environ.get(var)}
    if os.environ.get("DVC_STAGE"):
        tags |= _upstream_out_hashes(lock_file, os.environ["DVC_STAGE"])
    return tags


def _upstream_out_hashes(lock_file: Path, stage: str) -> dict[str, str]:
    """``dvc.<stage>.<out path>`` -> md5 for the stages dvc.lock lists before ``stage``."""
    import yaml

    if not lock_file.exists():
        return {}
    stages = (yaml.safe_load(lock_file.read_text(encoding="utf-8")) or {}).get("stages", {})
    tags: dict[str, str] = {}
    for name, entry in stages.items():
        if name == stage:
            break
        for out in entry.get("outs", []):
            if "md5" in out:
                tags[f"dvc.{name}.{out['path']}"] = out["md5"]
    return tags


def log_provenance_files(paths: list[Path]) -> None:
    """Attach small provenance files (params.yaml, dvc.lock) to the active run."""
    import mlflow

    for path in paths:
        if Path(path).exists():
            mlflow.log_artifact(str(path), "provenance")


def file_md5(path: Path) -> str:
    """MD5 of a file's bytes (the same hash DVC records for it)."""
    from precision_pain.io import file_digest

    return file_digest(path, "md5")


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             check=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


@contextmanager
def parent_run(params: Params, run_name: str, tags: Mapping[str, str],
               inputs: Sequence[Any] = ()) -> Iterator[str]:
    """A parent run for one training run, with every param and its datasets; yields its id."""
    import mlflow

    experiment_id = start(params.tracking)
    mark_workspace(experiment_id)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=dict(tags)) as run:
        mlflow.log_params(flatten(params.model_dump(mode="json", exclude={"tracking"})))
        log_inputs(run.info.run_id, inputs)
        yield run.info.run_id


def log_treatment_run(params: Params, treatment: str, models: Mapping[str, BinaryModel],
                      counts: Mapping[str, int], validation: Mapping[str, float],
                      inputs: Sequence[Any] = ()) -> str:
    """A nested run for one treatment: params, metrics, datasets, models; registers each model."""
    import mlflow

    with mlflow.start_run(run_name=treatment, nested=True) as run:
        log_inputs(run.info.run_id, inputs)
        mlflow.set_tag("treatment", treatment)
        mlflow.log_params({"treatment": treatment,
                           **{f"model_kind.{o}": m.kind for o, m in models.items()}})
        mlflow.log_metrics({**{k: float(v) for k, v in counts.items()},
                            **{k: v for k, v in validation.items() if v == v}})
        artifacts = {o: (m, a) for o, m in models.items()
                     if (a := m.mlflow_artifact()) is not None}  # skops types found once
        if len(artifacts) < len(models):  # the pooled learner: one model for every treatment
            mlflow.set_tag("models", "shared by every treatment; registered inside the "
                                     "recommender (precision-pain predict --registry-alias)")
        versions = {outcome: _log_model(params.tracking, treatment, outcome, model, artifact)
                    for outcome, (model, artifact) in artifacts.items()}
        if versions:
            log.info("registered %s (alias %r)", ", ".join(
                f"{registered_name(params.tracking, treatment, o)} v{v}"
                for o, v in versions.items()), params.tracking.alias)
        return run.info.run_id


# What MLflow prints (not logs) to stderr for every registered model version: 2-3 lines per
# model, 60 per training run.
_REGISTRY_CHATTER = re.compile(
    r"^(Successfully registered model '|Registered model '.*' already exists\. |Created version ')")


@contextmanager
def _without_registry_chatter() -> Iterator[None]:
    """Drop MLflow's per-version registry announcements; pass on anything else it prints."""
    buffer = io.StringIO()
    try:
        with redirect_stderr(buffer):
            yield
    finally:
        kept = [line for line in buffer.getvalue().splitlines()
                if line.strip() and not _REGISTRY_CHATTER.match(line)]
        if kept:
            sys.stderr.write("\n".join(kept) + "\n")


def _signature(model: BinaryModel) -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = Schema([ColSpec("float", name) for name in model.feature_names_])
    return ModelSignature(inputs=inputs, outputs=Schema([ColSpec("double")]))


def _log_model(params: TrackingParams, treatment: str, outcome: str, model: BinaryModel,
               artifact: Any) -> str:
    """Log one model in a safe format and move the registry alias to it; its version."""
    with _without_registry_chatter():
        return _log_and_register(params, treatment, outcome, model, artifact)


def _log_and_register(params: TrackingParams, treatment: str, outcome: str,
                      model: BinaryModel, artifact: Any) -> str:
    import mlflow

    name = registered_name(params, treatment, outcome)
    info = getattr(mlflow, artifact.flavor).log_model(
        artifact.obj, name=outcome, signature=_signature(model), registered_model_name=name,
        **artifact.options)
    if artifact.note:
        mlflow.set_tag(f"{outcome}.model", artifact.note)
    version = str(info.registered_model_version)
    mlflow.MlflowClient().set_registered_model_alias(name, params.alias, version)
    return version


def log_evaluation(run_ids: Mapping[str, str], summary: Mapping[str, Any],
                   per_treatment: Mapping[str, Mapping[str, Any]],
                   artifacts: list[Path], params: TrackingParams,
                   plots: Sequence[Path] = (), detail: Mapping[str, Any] | None = None,
                   inputs: Sequence[Any] = ()) -> None:
    """Log test metrics, datasets, files and plots into the training runs in ``run_ids``.

    Nested metrics are flattened to dotted names: ``summary`` as ``test.<key>`` and each
    ``detail`` tree as ``test.<name>.<key>`` in the parent run, which also gets
    :data:`HEADLINE_METRICS`; each treatment's metrics as
    ``test_<outcome>_<metric>[_ci_low|_ci_high]`` in its own run. ``inputs`` (the test
    split) go to every run; ``plots`` to the parent run's ``evaluation/plots`` artifacts.
    """
    import mlflow

    start(params)
    client = mlflow.MlflowClient()
    for run_id in run_ids.values():
        log_inputs(run_id, inputs)
    _log_metrics(client, run_ids["parent"], headline_metrics(summary))
    _log_metrics(client, run_ids["parent"], {f"test.{k}": v for k, v in flatten(summary).items()})
    for name, tree in (detail or {}).items():
        _log_metrics(client, run_ids["parent"],
                     {f"test.{name}.{k}": v for k, v in flatten(tree).items()})
    for treatment, metrics in per_treatment.items():
        if treatment in run_ids:
            _log_metrics(client, run_ids[treatment],
                         {"test_" + k.replace(".estimate", "").replace(".", "_"): v
                          for k, v in flatten(metrics).items()})
    for folder, paths in (("evaluation", artifacts), ("evaluation/plots", plots)):
        for path in paths:
            if Path(path).exists():
                client.log_artifact(run_ids["parent"], str(path), folder)


def log_training_summary(params: TrackingParams, run_id: str, summary: Mapping[str, Any]
                         ) -> None:
    """Training's figures into its parent run: ``train.<key>`` and the headline names."""
    import mlflow

    start(params)
    client = mlflow.MlflowClient()
    _log_metrics(client, run_id, {f"train.{k}": v for k, v in summary.items()})
    _log_metrics(client, run_id, {name: summary[key] for name, key in TRAINING_HEADLINE.items()
                                  if key in summary})


_BATCH = 1000  # MLflow's limit of metrics per log_batch call


def _log_metrics(client: Any, run_id: str, values: Mapping[str, Any]) -> None:
    """Log every numeric, finite value in one batch call per 1,000 metrics."""
    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    metrics = [Metric(re.sub(r"[^\w\-./ ]", "_", key), number, stamp, 0)
               for key, value in values.items()
               if (number := _number(value)) is not None]
    for start_at in range(0, len(metrics), _BATCH):
        client.log_batch(run_id, metrics=metrics[start_at:start_at + _BATCH])


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number else None


def load_registered_models(params: TrackingParams, treatments: tuple[str, ...],
                           outcomes: tuple[str, ...], alias: str) -> dict[str, dict[str, Any]]:
    """Load each treatment's registered models at ``alias`` as pipeline model objects."""
    import mlflow

    from precision_pain.models.estimators import get_model_class

    start(params)
    client = mlflow.MlflowClient()
    loaded: dict[str, dict[str, Any]] = {}
    for treatment in treatments:
        loaded[treatment] = {}
        for outcome in outcomes:
            name = registered_name(params, treatment, outcome)
            try:
                version = client.get_model_version_by_alias(name, alias)
            except mlflow.exceptions.MlflowException as exc:
                raise ValueError(
                    f"{resolve_uri(params)}: no registered model {name!r} at alias {alias!r} "
                    f"({exc.message.splitlines()[0]}); train with tracking on (`dvc repro`) "
                    "or predict from files with --models"
                ) from None
            uri = f"models:/{name}@{alias}"
            info = mlflow.models.get_model_info(uri)
            names = [c.name for c in info.signature.inputs]
            if "xgboost" in info.flavors:
                model = get_model_class("xgboost").from_mlflow(mlflow.xgboost.load_model(uri),
                                                               names)
            else:
                model = _load_registered_sklearn(uri, names)
            log.info("loaded %s version %s", name, version.version)
            loaded[treatment][outcome] = model
    return loaded


def _load_registered_sklearn(uri: str, names: list[str]) -> BinaryModel:
    """A registered scikit-learn model, read with the project's own skops allowlist.

    ``mlflow.sklearn.load_model`` would trust the types listed in the model's own MLmodel
    file, which whoever wrote the model chose; this reads the skops file itself.
    """
    import mlflow

    from precision_pain.models.estimators import get_model_class

    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    path = local / "model.skops"
    if not path.is_file():
        raise ValueError(f"{uri}: no skops file in the registered model; only skops-format "
                         "scikit-learn models are loaded (retrain with `dvc repro`)")
    estimator, kind = _load_checked(path, uri)
    return get_model_class(kind).from_mlflow(estimator, names)


def _load_checked(path: Path, uri: str) -> tuple[Any, str]:
    """The estimator of a registered skops file and its kind (logistic or constant).

    hist_gb trees are not loaded this way: their arrays are not bounds-checked, so they are
    served only inside the registered recommender, whose bundle hash is pinned.
    """
    from precision_pain.models.safe_skops import (UnsafeModelFileError, check_estimator,
                                                  check_skops_file, load_skops)

    errors = []
    for kind in ("logistic", "constant"):
        try:
            check_skops_file(path, kind)
            return check_estimator(load_skops(path, kind), kind, uri), kind
        except UnsafeModelFileError as exc:
            errors.append(str(exc))
    raise UnsafeModelFileError(
        f"{uri}: not a logistic or constant-rate model this project saves ({errors[0]}); "
        "load the registered recommender instead (it pins its bundle's hash)")


def recommender_name(params: TrackingParams) -> str:
    """Registry name of the served recommender (every treatment, checks and explanations)."""
    return f"{params.registered_model_prefix}-recommender"


BUNDLE_SHA256_TAG = "bundle_manifest_sha256"


def log_recommender(params: TrackingParams, models_dir: Path, run_id: str,
                    model_config: Mapping[str, Any]) -> str:
    """Log the bundle as one pyfunc model (models-from-code) in ``run_id``; register, alias it.

    The bundle's manifest hash goes into the model's config (the served model refuses a
    bundle that does not match it) and onto the registered version as the tag
    ``bundle_manifest_sha256`` (``predict --registry-alias`` pins the download with it).
    """
    import mlflow

    from precision_pain.models.bundle import manifest_sha256
    from precision_pain.predict.serve import (ARTIFACT, MODEL_CODE, PACKAGE_DIR,
                                              pip_requirements, signature)

    start(params)
    name = recommender_name(params)
    pinned = manifest_sha256(models_dir)
    # The recommender takes and returns DataFrames that the data contract validates (its own
    # errors name column, rows and fix): the signature declares only the `output` parameter
    # (predict/serve.py). MLflow would still warn on every training run that it cannot infer
    # one from a DataFrame type hint.
    pyfunc_log = logging.getLogger("mlflow.pyfunc")
    level = pyfunc_log.level
    pyfunc_log.setLevel(logging.ERROR)
    try:
        with (mlflow.start_run(run_id=run_id), _without_registry_chatter(),
              warnings.catch_warnings()):
            # an input example would copy patient rows into the tracking store: never given
            warnings.filterwarnings("ignore", message=".*input example was not provided")
            info = mlflow.pyfunc.log_model(
                name="recommender", python_model=str(MODEL_CODE),
                artifacts={ARTIFACT: str(Path(models_dir).resolve())},
                code_paths=[str(PACKAGE_DIR)],
                model_config={**dict(model_config), "bundle_sha256": pinned},
                signature=signature(), pip_requirements=pip_requirements(),
                registered_model_name=name)
            mlflow.set_tag(BUNDLE_SHA256_TAG, pinned)
    finally:
        pyfunc_log.setLevel(level)
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    client.set_model_version_tag(name, version, BUNDLE_SHA256_TAG, pinned)
    not_modeled = json.loads((Path(models_dir) / "manifest.json").read_text())["metadata"].get(
        "not_modeled", [])
    if not_modeled:  # the served model ranks only the treatments its data supported
        client.set_model_version_tag(name, version, "treatments_not_modeled", "; ".join(
            f"{a['treatment']}: {a['reason']}" for a in not_modeled))
    client.set_registered_model_alias(name, params.alias, version)
    log.info("registered %s version %s (alias %r), bundle sha256 %s", name, version,
             params.alias, pinned)
    return f"models:/{name}@{params.alias}"


def download_recommender(params: TrackingParams, alias: str) -> tuple[Path, str | None] | None:
    """The registered recommender's bundle at ``alias`` and its recorded manifest hash.

    None when no recommender is registered at ``alias``.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    from precision_pain.predict.serve import ARTIFACT

    start(params)
    name = recommender_name(params)
    try:
        version = mlflow.MlflowClient().get_model_version_by_alias(name, alias)
    except MlflowException:
        log.info("no %s@%s in the registry; loading the per-treatment models", name, alias)
        return None
    local = mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}@{alias}")
    return Path(local) / "artifacts" / ARTIFACT, (version.tags or {}).get(BUNDLE_SHA256_TAG)
