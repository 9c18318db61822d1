"""Served model: the whole recommender as one MLflow pyfunc model.

Every treatment's response and adverse-event models, the guideline checks, the
confidence flags and the explanations are served together, so a client gets the
same ranked, checked and explained table as ``precision-pain predict``. The
model is logged with MLflow's models-from-code (``serve_model_code.py`` is the
file MLflow runs; nothing is pickled): the model bundle folder is its artifact
(xgboost UBJSON / skops / JSON files, loaded by :func:`precision_pain.models.bundle.load_bundle`),
the package source travels in ``code_paths``, and the prediction settings in
``model_config``. It therefore loads with ``MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false``.

Request: rows of the data contract (docs/data-contract.md) without outcome
columns, e.g. ``{"dataframe_records": [{"patient_id": "P1", "age": 54, ...}]}``, at most
``predict.max_request_rows`` patients. Response: the ranked rows (columns in
docs/predictions.md). With ``"params": {"output": "plans"}`` (the model's signature declares
this one parameter), a bundle with the plan learner answers with the ranked plans instead
(``<stem>.plans.<ext>``'s columns); ``"treatments"`` is the default. A request goes through
exactly the code path of ``precision-pain predict``
(:func:`precision_pain.predict.recommend.predict_chunks`: the contract, the
one-row-per-patient rule, ranking, checks, explanations). Anything refused is
answered with HTTP 400 and the contract's message only: no stack trace, and none of the
request's rows (MLflow's scoring server would prefix a printout of them, identifiers
included; :class:`RequestRefused` keeps its message as written).

Logging and registration live in :func:`precision_pain.tracking.log_recommender`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow.pyfunc
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import BAD_REQUEST

log = logging.getLogger(__name__)

MODEL_CODE = Path(__file__).with_name("serve_model_code.py")
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # the whole package travels with the model
ARTIFACT = "bundle"
# numba: the exact TreeSHAP kernels (models/treeshap_kernels.py) that explain each answer.
_REQUIREMENTS = ("numpy", "pandas", "pyarrow", "scipy", "scikit-learn", "xgboost", "skops",
                 "mlflow", "numba")
# The served model's one inference parameter: which table to answer with.
OUTPUT_PARAM = "output"
OUTPUTS: tuple[str, ...] = ("treatments", "plans")


def signature() -> Any:
    """The served model's signature: no input schema (the data contract validates the rows,
    with errors that name column, rows and fix) and the ``output`` parameter."""
    from mlflow.models import ModelSignature
    from mlflow.types import ParamSchema, ParamSpec

    return ModelSignature(params=ParamSchema([ParamSpec(OUTPUT_PARAM, "string", OUTPUTS[0])]))


def pip_requirements() -> list[str]:
    """Pinned requirements of the served model (the versions installed now)."""
    from precision_pain.models.estimators import pinned_requirement

    return [pinned_requirement(name) for name in _REQUIREMENTS]


class RequestRefused(MlflowException):
    """HTTP 400 with exactly this message: MLflow cannot prepend the request's rows to it."""

    def __init__(self, message: str):
        self._text = message
        super().__init__(message, error_code=BAD_REQUEST)

    @property  # type: ignore[override]
    def message(self) -> str:
        """The message as written."""
        return self._text

    @message.setter
    def message(self, value: str) -> None:
        """MLflow's scoring server rewrites the message with a printout of the rows: ignored."""


def model_config(options: Any, max_request_rows: int) -> dict[str, Any]:
    """The prediction settings stored with the served model."""
    return {"max_request_rows": int(max_request_rows),
            "harm_weight": options.harm_weight, "n_features": options.n_features,
            "top_k": options.top_k, "shap_rows": options.shap_rows,
            "min_propensity": options.confidence.min_propensity,
            "max_interval_width": options.confidence.max_interval_width,
            "calibration_tolerance": options.confidence.calibration_tolerance,
            "min_plan_episodes": int(options.confidence.min_plan_episodes),
            "nrs_interval_level": float(options.confidence.nrs_interval_level),
            "non_opioid_first": bool(options.non_opioid_first)}


_CONFIDENCE_KEYS = ("min_propensity", "max_interval_width", "calibration_tolerance")


def options_from_config(config: Mapping[str, Any]) -> Any:
    """PredictOptions from a served model's ``model_config`` (written by :func:`model_config`)."""
    from precision_pain.predict.confidence import ConfidenceSettings
    from precision_pain.predict.recommend import PredictOptions

    keys = ("harm_weight", "n_features", "top_k", "shap_rows", *_CONFIDENCE_KEYS)
    missing = [key for key in keys if key not in config]
    if missing:
        raise ValueError(f"the served model's config lacks {', '.join(missing)}; register it "
                         "again with `dvc repro` (train logs every prediction setting)")
    # models registered before plan confidence flags existed use the params default (20)
    confidence = ConfidenceSettings(**{key: float(config[key]) for key in _CONFIDENCE_KEYS},
                                    min_plan_episodes=int(config.get("min_plan_episodes", 20)),
                                    # models registered before the interval existed: the
                                    # settings' default level
                                    **({"nrs_interval_level": float(config["nrs_interval_level"])}
                                       if "nrs_interval_level" in config else {}))
    # Models registered before non_opioid_first existed rank with the CDC 2022 default (on).
    return PredictOptions(float(config["harm_weight"]), int(config["n_features"]),
                          int(config["top_k"]), str(config["shap_rows"]), confidence,
                          bool(config.get("non_opioid_first", True)))


class RecommenderModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: contract rows in, ranked and explained treatments out."""

    def load_context(self, context: Any) -> None:
        """Load the bundle from the model's artifacts and the settings from its config."""
        from precision_pain.models.bundle import load_bundle

        self.config_ = dict(getattr(context, "model_config", None) or {})
        self.bundle_ = load_bundle(context.artifacts[ARTIFACT],
                                   expected_sha256=self.config_.get("bundle_sha256"))
        self.options_ = options_from_config(self.config_)
        self.bundle_.warm_up()  # tables, scorers and kernels now, not on the first request

    def predict(self, context: Any, model_input: pd.DataFrame,
                params: dict[str, Any] | None = None) -> pd.DataFrame:
        """Validate the rows exactly as the CLI does, then rank, check and explain
        (``params["output"]``: ``"treatments"``, the default, or ``"plans"``)."""
        from precision_pain.predict.recommend import predict_chunks

        output = str((params or {}).get(OUTPUT_PARAM) or OUTPUTS[0])
        if output not in OUTPUTS:
            raise RequestRefused(f"params: output {output!r} is not known. Fix: send "
                                 f"{' or '.join(map(repr, OUTPUTS))}")
        if output == "plans" and self.bundle_.plan_models is None:
            raise RequestRefused(
                "params: output 'plans' needs a bundle with the plan learner, which this model "
                "lacks (it was trained on single-treatment episodes). Fix: ask for "
                "'treatments', or train on a cohort with plan episodes (contract v2)")
        frame = pd.DataFrame(model_input)
        limit = int(self.config_.get("max_request_rows", 1000))
        if len(frame) > limit:
            raise RequestRefused(
                f"request: {len(frame)} patients; the served model takes at most {limit} per "
                "request (predict.max_request_rows). Fix: send smaller batches, or score a "
                "file with `precision-pain predict`")
        try:
            results = list(predict_chunks([frame], self.bundle_, "request", self.options_))
        except ValueError as exc:  # the contract's errors (ContractError is a ValueError)
            raise RequestRefused(str(exc)) from None
        except Exception as exc:  # cells that are not single values, and anything else
            log.warning("refused a request that could not be read (%s)", type(exc).__name__)
            raise RequestRefused(
                "request: could not be read as rows of the data contract (every cell must be "
                "a single value: a number, a text or empty). Fix: send one flat record per "
                "patient with the contract's columns (docs/data-contract.md)") from None
        if output == "plans":
            return pd.concat([r.plans.table for r in results], ignore_index=True)
        return pd.concat([r.table for r in results], ignore_index=True)
