"""MLflow at the edge: the only module that talks to the tracking store.

- Tracking URI: ``MLFLOW_TRACKING_URI`` when set (e.g. a tracking server),
  else ``tracking.uri`` from params.yaml (embedded SQLite by default).
- One parent run per training run, one nested run per treatment with its
  params, validation metrics and both models (xgboost UBJSON or skops; never
  pickle), each registered as ``<prefix>-<treatment>-<outcome>`` with the
  alias from params.yaml pointing at the newest version.
- Evaluation metrics are logged back into the same runs.
- Only aggregates are logged: no patient rows, no input examples.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .config import Params, TrackingParams
from .models import BinaryModel

log = logging.getLogger(__name__)


def disable_telemetry() -> None:
    """Opt out of MLflow's and DVC's usage telemetry (this process and its children); quiet MLflow."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")


def resolve_uri(params: TrackingParams) -> str:
    """The tracking URI in force: the environment's, else params.yaml's."""
    return os.environ.get("MLFLOW_TRACKING_URI") or params.uri


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
        artifact_location = Path(params.artifact_location).resolve().as_uri()
        experiment_id = mlflow.create_experiment(
            params.experiment,
            artifact_location=None if uri.startswith("http") else artifact_location)
    mlflow.set_experiment(experiment_id=experiment_id)
    log.info("MLflow tracking at %s, experiment %r", uri, params.experiment)
    return experiment_id


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


def provenance_tags(data_files: list[Path]) -> dict[str, str]:
    """Git commit and data hashes, so a run traces back to what produced it."""
    tags = {"git_commit": _git_commit()}
    for path in data_files:
        tags[f"data_md5.{path.name}"] = file_md5(path)
    return tags


def file_md5(path: Path) -> str:
    """MD5 of a file's bytes (the same hash DVC records for it)."""
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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
def parent_run(params: Params, run_name: str, tags: Mapping[str, str]) -> Iterator[str]:
    """A parent run for one training run, with every param logged; yields its id."""
    import mlflow

    experiment_id = start(params.tracking)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=dict(tags)) as run:
        mlflow.log_params(flatten(params.model_dump(mode="json", exclude={"tracking"})))
        yield run.info.run_id


def log_treatment_run(params: Params, treatment: str, models: Mapping[str, BinaryModel],
                      counts: Mapping[str, int], validation: Mapping[str, float]) -> str:
    """A nested run for one treatment: params, metrics, models; registers each model."""
    import mlflow

    with mlflow.start_run(run_name=treatment, nested=True) as run:
        mlflow.set_tag("treatment", treatment)
        mlflow.log_params({"treatment": treatment,
                           **{f"model_kind.{o}": m.kind for o, m in models.items()}})
        mlflow.log_metrics({**{k: float(v) for k, v in counts.items()},
                            **{k: v for k, v in validation.items() if v == v}})
        for outcome, model in models.items():
            _log_model(params.tracking, treatment, outcome, model)
        return run.info.run_id


def _signature(model: BinaryModel) -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    inputs = Schema([ColSpec("float", name) for name in model.feature_names_])
    return ModelSignature(inputs=inputs, outputs=Schema([ColSpec("double")]))


def _log_model(params: TrackingParams, treatment: str, outcome: str, model: BinaryModel) -> None:
    """Log one model in a safe format and move the registry alias to it."""
    import mlflow

    name = registered_name(params, treatment, outcome)
    if model.kind == "xgboost":
        import xgboost

        info = mlflow.xgboost.log_model(
            model.booster_, name=outcome, signature=_signature(model), model_format="ubj",
            pip_requirements=[f"xgboost=={xgboost.__version__}"], registered_model_name=name)
    elif model.kind in {"logistic", "hist_gb"}:
        import sklearn

        info = mlflow.sklearn.log_model(
            model.estimator_, name=outcome, signature=_signature(model),
            serialization_format="skops", skops_trusted_types=_skops_types(model),
            pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
            registered_model_name=name)
    else:  # constant-rate model: registered as a prior-only DummyClassifier (skops)
        import sklearn

        info = mlflow.sklearn.log_model(
            _as_dummy_classifier(model.rate_), name=outcome, signature=_signature(model),
            serialization_format="skops",
            skops_trusted_types=["sklearn.dummy.DummyClassifier"],
            pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
            registered_model_name=name)
        mlflow.set_tag(f"{outcome}.model", "constant rate (too few events to learn from)")
    version = info.registered_model_version
    mlflow.MlflowClient().set_registered_model_alias(name, params.alias, str(version))


def _as_dummy_classifier(rate: float) -> Any:
    """A scikit-learn classifier whose predict_proba is ``rate`` for every row."""
    import numpy as np
    from sklearn.dummy import DummyClassifier

    return DummyClassifier(strategy="prior").fit(
        np.zeros((2, 1)), np.array([0, 1]), sample_weight=np.array([1.0 - rate, rate]))


def _skops_types(model: BinaryModel) -> list[str]:
    import tempfile

    import skops.io as sio

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.skops"
        sio.dump(model.estimator_, path)
        return sio.get_untrusted_types(file=path)


def log_evaluation(run_ids: Mapping[str, str], summary: Mapping[str, Any],
                   per_treatment: Mapping[str, Mapping[str, float]],
                   artifacts: list[Path], params: TrackingParams) -> None:
    """Log test metrics into the training runs recorded in ``run_ids``."""
    import mlflow

    start(params)
    client = mlflow.MlflowClient()
    for key, value in flatten(summary).items():
        number = _number(value)
        if number is not None:
            client.log_metric(run_ids["parent"], f"test.{key}", number)
    for treatment, metrics in per_treatment.items():
        if treatment in run_ids:
            for key, value in metrics.items():
                if value == value:
                    client.log_metric(run_ids[treatment], f"test_{key}", float(value))
    for path in artifacts:
        if path.exists():
            client.log_artifact(run_ids["parent"], str(path), "evaluation")


def _number(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if number == number else None


def load_registered_models(params: TrackingParams, treatments: tuple[str, ...],
                           outcomes: tuple[str, ...], alias: str) -> dict[str, dict[str, Any]]:
    """Load each treatment's registered models at ``alias`` as pipeline model objects."""
    import mlflow

    from .models import XGBoostModel

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
            flavors = mlflow.models.get_model_info(uri).flavors
            if "xgboost" in flavors:
                model = XGBoostModel()
                model.booster_ = mlflow.xgboost.load_model(uri)
                model.feature_names_ = list(model.booster_.feature_names or [])
            else:
                model = _wrap_sklearn(mlflow.sklearn.load_model(uri), uri)
            log.info("loaded %s version %s", name, version.version)
            loaded[treatment][outcome] = model
    return loaded


def _wrap_sklearn(estimator: Any, uri: str) -> BinaryModel:
    """A registered scikit-learn estimator as the pipeline's model object."""
    import mlflow

    from .models import ConstantModel, HistGBModel, LogisticModel

    names = [c.name for c in mlflow.models.get_model_info(uri).signature.inputs]
    if type(estimator).__name__ == "DummyClassifier":
        model = ConstantModel()
        model.rate_ = float(estimator.class_prior_[1])
    else:
        model = LogisticModel() if hasattr(estimator, "steps") else HistGBModel()
        model.estimator_ = estimator
    model.feature_names_ = names
    return model
