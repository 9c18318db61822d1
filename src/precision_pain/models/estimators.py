"""Model-type registry: binary classifiers with exact SHAP and safe formats.

Every model type follows one small contract, in the spirit of scikit-learn's:
``__init__`` stores hyperparameters; ``fit(X, y, X_val, y_val)`` learns and
returns self; ``predict_proba(X)`` gives P(y = 1); ``contributions(X)`` gives
exact SHAP values in log-odds, one column per feature plus the bias last (so a
row sums to the logit); ``save(stem)``/``load(path)`` use non-pickle formats. A type may name one
*sliceable* hyperparameter (``sliceable(hyperparameters)``): a model fitted at
the largest value, cut with ``sliced(value)``, predicts exactly as a model
fitted at that value, so a grid over it is fitted once (:mod:`precision_pain.models.train`):


- ``xgboost``: xgboost's own UBJSON format; SHAP = xgboost's exact TreeSHAP
  (``pred_contribs``).
- ``logistic``: imputer + scaler + logistic regression, saved with skops;
  SHAP = exact linear SHAP, w_j * (z_j - E[z_j]), with missing-value indicator
  contributions folded back into their source feature.
- ``hist_gb``: scikit-learn HistGradientBoosting, saved with skops; SHAP =
  ``shap.TreeExplainer`` (exact path-dependent TreeSHAP).
- ``constant``: used automatically when a training subset has a single class
  or too few events to learn from; predicts the smoothed event rate, JSON.

With ``prepare.outcome: nrs_change`` (:mod:`precision_pain.outcome`) the response models are
regressors of the reduction in NRS pain and ``predict_proba`` returns E[y] (the contract keeps
the classifier's name; SHAP values are then in NRS points): ``xgboost`` fits squared error in
the same booster format, and ``logistic`` fits its linear counterpart, ``ridge`` (the same
imputation and scaling, L2 penalty 1 / C, stored as JSON).

Early stopping always uses the validation split, never the test split.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
import pandas as pd

MIN_EVENTS = 5  # fewer events (or non-events) than this: fall back to a constant-rate model


# Distributions that provide `import xgboost`: the CPU-only build (the default install, no
# CUDA libraries) and the full build (README's GPU route). A logged model asks for the one
# installed, so serving it does not pull CUDA into a CPU install.
_XGBOOST_BUILDS = ("xgboost-cpu", "xgboost")


def pinned_requirement(name: str) -> str:
    """``<distribution>==<installed version>``; ``xgboost`` names whichever build is installed.

    >>> pinned_requirement("xgboost")  # doctest: +SKIP
    'xgboost-cpu==3.2.0'
    """
    from importlib.metadata import PackageNotFoundError, version

    for candidate in _XGBOOST_BUILDS if name == "xgboost" else (name,):
        try:
            return f"{candidate}=={version(candidate)}"
        except PackageNotFoundError:
            continue
    raise PackageNotFoundError(name)


@dataclass(frozen=True)
class MlflowArtifact:
    """How a model type is logged to MLflow: the flavor, the object it logs, the options of
    ``mlflow.<flavor>.log_model`` (formats are never pickle) and an optional run tag."""

    flavor: str
    obj: Any
    options: Mapping[str, Any]
    note: str | None = None


class BinaryModel(Protocol):
    """What the pipeline needs from a fitted model."""

    kind: ClassVar[str]
    feature_names_: list[str]

    def fit(self, X: pd.DataFrame, y: np.ndarray, X_val: pd.DataFrame,
            y_val: np.ndarray) -> BinaryModel: ...
    def predict_proba(self, X: pd.DataFrame) -> np.ndarray: ...
    def contributions(self, X: pd.DataFrame) -> np.ndarray: ...
    def save(self, stem: Path) -> Path: ...
    def summary(self) -> dict[str, Any]: ...
    def mlflow_artifact(self) -> MlflowArtifact: ...


def sliceable(kind: str, hyperparameters: Mapping[str, Any]) -> str | None:
    """The hyperparameter of ``kind`` whose grid is scored by slicing one fit, if any."""
    return getattr(get_model_class(kind), "sliceable", lambda _: None)(hyperparameters)


def sliced(model: BinaryModel, value: Any) -> BinaryModel:
    """``model`` as if fitted with its sliceable hyperparameter at ``value``; a constant-rate
    fallback stays as it is.

    fit_binary falls back to a constant-rate model from the data alone, whatever the
    hyperparameters, so that fallback is the same model at every grid point.
    """
    if model.kind == ConstantModel.kind:
        return model
    return model.sliced(value)  # type: ignore[attr-defined]


def _check_columns(model: Any, X: pd.DataFrame) -> None:
    if not hasattr(model, "feature_names_"):
        raise RuntimeError(f"{type(model).__name__} is not fitted yet; call fit first")
    if list(X.columns) != model.feature_names_:
        missing = sorted(set(model.feature_names_) - set(X.columns))
        extra = sorted(set(X.columns) - set(model.feature_names_))
        raise ValueError(f"feature columns differ from training: missing {missing}, extra {extra}")


def artifact_path(stem: Path, kind: str, suffix: str) -> Path:
    """``models/tramadol/response`` -> ``models/tramadol/response.xgboost.ubj``."""
    return Path(stem).parent / f"{Path(stem).name}.{kind}{suffix}"


# Training runs on one thread: xgboost's, and the BLAS under scikit-learn's solvers. A treatment
# arm holds hundreds to a few thousand rows, where OpenMP threads cost about as much in
# synchronisation as they save (train stage, default cohort: 17 s on 2 threads, 19 s on 1); two
# trainings at once on this 2-core machine (`dvc exp run --run-all -j 2`, a test run beside
# `dvc repro`) with 2 spin-waiting threads each took 253 s instead of 26 s; and OpenBLAS's two
# threads made the logistic propensity fit 25 s instead of 0.5 s on a busy machine (same
# coefficients: its 12,000 x 43 products are too small to split). Loaded models predict on
# every core (predict, evaluate).
TRAIN_THREADS = 1


@contextmanager
def training_threads() -> Iterator[None]:
    """Limit BLAS/OpenMP pools to TRAIN_THREADS while fitting (xgboost takes n_jobs itself)."""
    from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

    with threadpool_limits(TRAIN_THREADS):
        yield


def fit_booster(objective: str, eval_metric: str, seed: int, early_stopping_rounds: int | None,
                hyperparameters: Mapping[str, Any], X: pd.DataFrame, y: np.ndarray,
                X_val: pd.DataFrame, y_val: np.ndarray, regressor: bool = False) -> Any:
    """An xgboost booster cut at its best round (early-stopped on validation if asked to).

    The fit sees bare arrays and the feature names are attached afterwards: with names,
    xgboost reads them back from its C library on every boosting round (the larger part of
    a small fit's time); the trees are the same either way. Without early stopping there is
    no validation set to evaluate each round on.
    """
    import xgboost as xgb

    estimator = xgb.XGBRegressor if regressor else xgb.XGBClassifier
    clf = estimator(
        objective=objective, eval_metric=eval_metric, tree_method="hist", random_state=seed,
        n_jobs=TRAIN_THREADS, early_stopping_rounds=early_stopping_rounds or None,
        **hyperparameters)
    evals = ({"eval_set": [(X_val.to_numpy(), y_val)]} if early_stopping_rounds else {})
    clf.fit(X.to_numpy(), y, verbose=False, **evals)
    booster = clf.get_booster()
    booster.feature_names = list(X.columns)
    booster.feature_types = ["float"] * X.shape[1]
    rounds = int(clf.best_iteration) + 1 if early_stopping_rounds else booster.num_boosted_rounds()
    return booster[:rounds]


class XGBoostModel:
    """Gradient-boosted trees (xgboost); the number of trees is chosen on the validation split.

    With ``early_stopping_rounds`` set, each model stops early on its own validation rows.
    With ``None`` it keeps all ``n_estimators`` trees, and a list of ``n_estimators`` in
    params.yaml makes the number of trees one value shared by all treatments, chosen on the
    validation split pooled over them (train.choose_shared): a treatment arm's own validation
    rows (75 for the smallest arm of the default cohort) are too few to stop on, and early
    stopping on them kept as few as 5 trees.
    """

    kind: ClassVar[str] = "xgboost"
    suffix: ClassVar[str] = ".ubj"
    EARLY_STOPPING_ROUNDS: ClassVar[int] = 40

    def __init__(self, seed: int = 0, early_stopping_rounds: int | None = EARLY_STOPPING_ROUNDS,
                 outcome_type: str = "binary", **hyperparameters: Any):
        if outcome_type not in ("binary", "continuous"):
            raise ValueError(f"outcome_type {outcome_type!r}; valid: binary, continuous")
        self.seed = seed
        self.early_stopping_rounds = early_stopping_rounds
        self.outcome_type = outcome_type
        self.hyperparameters = hyperparameters

    def fit(self, X: pd.DataFrame, y: np.ndarray, X_val: pd.DataFrame,
            y_val: np.ndarray) -> XGBoostModel:
        """Fit on (X, y), stopping early on the validation log-loss (or RMSE) if asked to."""
        continuous = self.outcome_type == "continuous"
        objective, metric = (("reg:squarederror", "rmse") if continuous
                             else ("binary:logistic", "logloss"))
        self.booster_ = fit_booster(objective, metric, self.seed, self.early_stopping_rounds,
                                    self.hyperparameters, X, y, X_val, y_val, continuous)
        self.best_iteration_ = self.booster_.num_boosted_rounds() - 1
        self.feature_names_ = list(X.columns)
        return self

    @classmethod
    def sliceable(cls, hyperparameters: Mapping[str, Any]) -> str | None:
        """``n_estimators``, unless early stopping makes the tree count depend on the fit.

        Boosting adds trees one at a time from the same seeded draws, so the first k trees
        of a 400-tree fit are the trees of a k-tree fit (subsample and colsample included):
        the same bytes, the same predictions and SHAP values.
        """
        stops = hyperparameters.get("early_stopping_rounds", cls.EARLY_STOPPING_ROUNDS)
        return None if stops else "n_estimators"

    def sliced(self, n_estimators: int) -> XGBoostModel:
        """A copy holding the first ``n_estimators`` trees: the model a fit with that many makes."""
        n_trees = self.booster_.num_boosted_rounds()
        if not 1 <= n_estimators <= n_trees:
            raise ValueError(f"cannot cut {n_estimators} trees from a model of {n_trees}")
        model = XGBoostModel(self.seed, self.early_stopping_rounds, self.outcome_type,
                             **{**self.hyperparameters, "n_estimators": n_estimators})
        model.booster_ = self.booster_[:n_estimators]
        model.best_iteration_ = n_estimators - 1
        model.feature_names_ = list(self.feature_names_)
        return model

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """P(y = 1) for each row (E[y] for a regressor)."""
        _check_columns(self, X)
        return self.booster_.inplace_predict(X.to_numpy(np.float32), validate_features=False)

    def contributions(self, X: pd.DataFrame) -> np.ndarray:
        """Exact TreeSHAP values (log-odds), bias in the last column (:mod:`.treeshap`: the
        values of xgboost's ``pred_contribs``, table-driven)."""
        from precision_pain.models.treeshap import Explainer

        _check_columns(self, X)
        cached = getattr(self, "_explainer", None)
        if cached is None or cached.boosters[0] is not self.booster_:
            cached = self._explainer = Explainer([self.booster_])
        return cached(X.to_numpy(np.float32)).astype(np.float32)

    def save(self, stem: Path) -> Path:
        """Write the booster in xgboost's UBJSON format."""
        return save_booster(self.booster_, artifact_path(stem, self.kind, self.suffix))

    @classmethod
    def load(cls, path: Path) -> XGBoostModel:
        """Read a booster saved by :meth:`save`."""
        return cls.from_mlflow(load_booster(path), [])

    def summary(self) -> dict[str, Any]:
        """Facts worth logging about the fitted model."""
        return {"n_trees": self.best_iteration_ + 1}

    def mlflow_artifact(self) -> MlflowArtifact:
        """The booster, in xgboost's UBJSON format."""
        return MlflowArtifact("xgboost", self.booster_, {
            "model_format": "ubj", "pip_requirements": [pinned_requirement("xgboost")]})

    @classmethod
    def from_mlflow(cls, booster: Any, feature_names: list[str]) -> XGBoostModel:
        """The model around a booster MLflow loaded."""
        model = cls()
        model.booster_ = booster
        model.feature_names_ = list(booster.feature_names or feature_names)
        model.best_iteration_ = booster.num_boosted_rounds() - 1
        return model


def save_skops(path: Path, state: Mapping[str, Any]) -> Path:
    """Write a fitted estimator and its name lists with skops (no pickle)."""
    import skops.io as sio

    sio.dump(dict(state), path)
    return path


def load_skops_state(path: Path, trust: str, names: tuple[str, ...]) -> dict[str, Any]:
    """Read a :func:`save_skops` file, trusting exactly the types ``trust`` saves: the checked
    estimator under ``estimator`` and each of ``names`` as a list of strings."""
    from precision_pain.models.safe_skops import check_estimator, check_names, load_skops

    state = load_skops(path, trust)
    if not isinstance(state, dict) or set(state) != {"estimator", *names}:
        raise ValueError(f"{path}: not a {trust} model file written by precision-pain")
    return {"estimator": check_estimator(state["estimator"], trust, path),
            **{name: check_names(state[name], name, path) for name in names}}


def logistic_pipeline(seed: int, hyperparameters: Mapping[str, Any]) -> Any:
    """Median imputation (with missing indicators) + scaling + logistic regression, unfitted."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
        StandardScaler(), LogisticRegression(random_state=seed, **hyperparameters))


def save_booster(booster: Any, path: Path) -> Path:
    """Write an xgboost booster in its own UBJSON format."""
    booster.save_model(path)
    return path


def load_booster(path: Path) -> Any:
    """Read a booster written by :func:`save_booster`."""
    import xgboost as xgb

    return xgb.Booster(model_file=str(path))


class _SkopsModel:
    """Shared save/load for scikit-learn estimators stored with skops."""

    suffix: ClassVar[str] = ".skops"
    estimator_: Any

    def save(self, stem: Path) -> Path:
        """Write the fitted estimator with skops (no pickle)."""
        return save_skops(artifact_path(stem, self.kind, self.suffix),
                          {"estimator": self.estimator_, "feature_names": self.feature_names_})

    @classmethod
    def load(cls, path: Path) -> Any:
        """Read an estimator saved by :meth:`save`, trusting exactly what :meth:`save` writes."""
        state = load_skops_state(path, cls.kind, ("feature_names",))
        model = cls()
        model.estimator_, model.feature_names_ = state["estimator"], state["feature_names"]
        return model

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """P(y = 1) for each row."""
        _check_columns(self, X)
        return self.estimator_.predict_proba(X.to_numpy(np.float64))[:, 1]

    def mlflow_artifact(self) -> MlflowArtifact:
        """The estimator, in skops format, trusting exactly the types it holds."""
        return _skops_artifact(self.estimator_)

    @classmethod
    def from_mlflow(cls, estimator: Any, feature_names: list[str]) -> Any:
        """The model around an estimator read (and allowlist-checked) from MLflow."""
        model = cls()
        model.estimator_ = estimator
        model.feature_names_ = list(feature_names)
        return model


def _skops_artifact(estimator: Any, note: str | None = None) -> MlflowArtifact:
    """An MLflow sklearn-flavor artifact in skops format, trusting the types ``estimator`` holds."""
    import tempfile

    import skops.io as sio

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "m.skops"
        sio.dump(estimator, path)
        trusted = sio.get_untrusted_types(file=path)
    return MlflowArtifact("sklearn", estimator, {
        "serialization_format": "skops", "skops_trusted_types": trusted,
        "pip_requirements": [pinned_requirement("scikit-learn")]}, note)


class LogisticModel(_SkopsModel):
    """Median imputation (with missing indicators) + scaling + logistic regression."""

    kind: ClassVar[str] = "logistic"

    def __init__(self, seed: int = 0, **hyperparameters: Any):
        self.seed = seed
        self.hyperparameters = hyperparameters

    def fit(self, X: pd.DataFrame, y: np.ndarray, X_val: pd.DataFrame,
            y_val: np.ndarray) -> LogisticModel:
        """Fit the pipeline; the validation split is not needed (no early stopping)."""
        self.estimator_ = logistic_pipeline(self.seed, self.hyperparameters).fit(
            X.to_numpy(np.float64), y)
        self.feature_names_ = list(X.columns)
        return self

    def contributions(self, X: pd.DataFrame) -> np.ndarray:
        """Exact linear SHAP (log-odds): w_j * standardized value, bias last."""
        _check_columns(self, X)
        imputer, scaler, logreg = (step for _, step in self.estimator_.steps)
        z = scaler.transform(imputer.transform(X.to_numpy(np.float64)))
        phi = z * logreg.coef_[0]  # E[z] = 0 on the training data after scaling
        n = len(self.feature_names_)
        out = np.zeros((len(X), n + 1))
        out[:, :n] = phi[:, :n]
        if imputer.indicator_ is not None:
            for k, source in enumerate(imputer.indicator_.features_):
                out[:, source] += phi[:, n + k]
        out[:, n] = logreg.intercept_[0]
        return out

    def summary(self) -> dict[str, Any]:
        """Facts worth logging about the fitted model."""
        return {"n_coefficients": int(self.estimator_[-1].coef_.size)}


class HistGBModel(_SkopsModel):
    """scikit-learn HistGradientBoosting, early-stopped on the validation split."""

    kind: ClassVar[str] = "hist_gb"

    def __init__(self, seed: int = 0, early_stopping_rounds: int = 40, **hyperparameters: Any):
        self.seed = seed
        self.early_stopping_rounds = early_stopping_rounds
        self.hyperparameters = hyperparameters

    def fit(self, X: pd.DataFrame, y: np.ndarray, X_val: pd.DataFrame,
            y_val: np.ndarray) -> HistGBModel:
        """Fit, stopping when validation log-loss stops improving."""
        from sklearn.ensemble import HistGradientBoostingClassifier

        self.estimator_ = HistGradientBoostingClassifier(
            early_stopping=True, n_iter_no_change=self.early_stopping_rounds,
            scoring="loss", random_state=self.seed, **self.hyperparameters,
        ).fit(X.to_numpy(np.float64), y, X_val=X_val.to_numpy(np.float64), y_val=y_val)
        self.feature_names_ = list(X.columns)
        return self

    def contributions(self, X: pd.DataFrame) -> np.ndarray:
        """Exact TreeSHAP (log-odds) via shap.TreeExplainer, bias last."""
        import shap

        _check_columns(self, X)
        explainer = shap.TreeExplainer(self.estimator_)
        values = explainer.shap_values(X.to_numpy(np.float64), check_additivity=False)
        values = np.asarray(values).reshape(len(X), -1)
        bias = np.full((len(X), 1), float(np.ravel(explainer.expected_value)[0]))
        return np.hstack([values, bias])

    def summary(self) -> dict[str, Any]:
        """Facts worth logging about the fitted model."""
        return {"n_iter": int(self.estimator_.n_iter_)}


class RidgeModel:
    """The linear baseline for a continuous outcome: median imputation with missing-value
    indicators, standardization and ridge regression (penalty ``1 / C``, so params'
    logistic grid of C serves both), solved in closed form and stored as JSON (no pickle)."""

    kind: ClassVar[str] = "ridge"
    suffix: ClassVar[str] = ".json"

    def __init__(self, seed: int = 0, C: float = 1.0, **_: Any):
        if not C > 0:
            raise ValueError(f"C must be > 0, got {C}")
        self.seed = seed
        self.C = float(C)

    def fit(self, X: pd.DataFrame, y: np.ndarray, X_val: pd.DataFrame | None = None,
            y_val: np.ndarray | None = None) -> RidgeModel:
        """Closed-form ridge on the standardized, imputed design (intercept unpenalized)."""
        values = X.to_numpy(np.float64)
        missing = np.isnan(values)
        with np.errstate(all="ignore"):
            medians = np.nanmedian(np.where(missing.all(axis=0), 0.0, values), axis=0)
        self.medians_ = np.nan_to_num(medians)
        self.indicators_ = np.flatnonzero(missing.any(axis=0))
        design = self._raw_design(values)
        self.mean_ = design.mean(axis=0)
        scale = design.std(axis=0)
        self.scale_ = np.where(scale > 0, scale, 1.0)
        z = (design - self.mean_) / self.scale_
        target = np.asarray(y, dtype=np.float64)
        self.intercept_ = float(target.mean())
        gram = z.T @ z + np.eye(z.shape[1]) / self.C
        self.coef_ = np.linalg.solve(gram, z.T @ (target - self.intercept_))
        self.feature_names_ = list(X.columns)
        return self

    def _raw_design(self, values: np.ndarray) -> np.ndarray:
        missing = np.isnan(values)
        filled = np.where(missing, self.medians_[None, :], values)
        return np.hstack([filled, missing[:, self.indicators_].astype(np.float64)])

    def _z(self, X: pd.DataFrame) -> np.ndarray:
        _check_columns(self, X)
        return (self._raw_design(X.to_numpy(np.float64)) - self.mean_) / self.scale_

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """E[y] for each row (the contract's name for the model's prediction)."""
        return self.intercept_ + self._z(X) @ self.coef_

    def contributions(self, X: pd.DataFrame) -> np.ndarray:
        """Exact linear SHAP in the outcome's units: w_j * standardized value (E[z] = 0 on
        the training rows), missing-value indicators folded into their feature, bias last."""
        phi = self._z(X) * self.coef_
        n = len(self.feature_names_)
        out = np.zeros((len(X), n + 1))
        out[:, :n] = phi[:, :n]
        for k, source in enumerate(self.indicators_):
            out[:, source] += phi[:, n + k]
        out[:, n] = self.intercept_
        return out

    def save(self, stem: Path) -> Path:
        """Write every coefficient as JSON."""
        path = artifact_path(stem, self.kind, self.suffix)
        state = {"C": self.C, "feature_names": self.feature_names_,
                 "medians": self.medians_.tolist(), "indicators": self.indicators_.tolist(),
                 "mean": self.mean_.tolist(), "scale": self.scale_.tolist(),
                 "coef": self.coef_.tolist(), "intercept": self.intercept_}
        path.write_text(json.dumps(state))
        return path

    @classmethod
    def load(cls, path: Path) -> RidgeModel:
        """Read a model saved by :meth:`save`, checking every array's length."""
        from precision_pain.models.safe_skops import check_names

        state = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(state, dict):
            raise ValueError(f"{path}: not a ridge model file written by precision-pain")
        model = cls(C=float(state.get("C", 1.0)))
        model.feature_names_ = check_names(state.get("feature_names"), "feature_names", path)
        n = len(model.feature_names_)
        try:
            model.medians_ = np.asarray(state["medians"], dtype=np.float64).reshape(n)
            model.indicators_ = np.asarray(state["indicators"], dtype=np.int64).ravel()
            width = n + len(model.indicators_)
            model.mean_ = np.asarray(state["mean"], dtype=np.float64).reshape(width)
            model.scale_ = np.asarray(state["scale"], dtype=np.float64).reshape(width)
            model.coef_ = np.asarray(state["coef"], dtype=np.float64).reshape(width)
            model.intercept_ = float(state["intercept"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: a ridge model file's arrays are missing or of the "
                             f"wrong size ({exc})") from None
        if ((model.indicators_ < 0) | (model.indicators_ >= n)).any():
            raise ValueError(f"{path}: a ridge model's indicator indices are out of range")
        return model

    def summary(self) -> dict[str, Any]:
        """Facts worth logging about the fitted model."""
        return {"n_coefficients": int(self.coef_.size)}

    def mlflow_artifact(self) -> MlflowArtifact | None:
        """None: its JSON file travels inside the registered recommender's bundle."""
        return None


class ConstantModel:
    """Smoothed event rate, for subsets too small or too one-sided to learn from."""

    kind: ClassVar[str] = "constant"
    suffix: ClassVar[str] = ".json"

    def __init__(self, seed: int = 0, **_: Any):
        self.seed = seed

    def fit(self, X: pd.DataFrame, y: np.ndarray, X_val: pd.DataFrame | None = None,
            y_val: np.ndarray | None = None) -> ConstantModel:
        """Learn the event rate with a Jeffreys (+0.5) correction."""
        self.rate_ = float((np.sum(y) + 0.5) / (len(y) + 1.0))
        self.feature_names_ = list(X.columns)
        return self

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """The same rate for every row."""
        _check_columns(self, X)
        return np.full(len(X), self.rate_)

    def contributions(self, X: pd.DataFrame) -> np.ndarray:
        """No feature moves a constant: zeros, and the logit as bias."""
        _check_columns(self, X)
        out = np.zeros((len(X), len(self.feature_names_) + 1))
        out[:, -1] = np.log(self.rate_ / (1.0 - self.rate_))
        return out

    def save(self, stem: Path) -> Path:
        """Write rate and feature names as JSON."""
        path = artifact_path(stem, self.kind, self.suffix)
        path.write_text(json.dumps({"rate": self.rate_, "feature_names": self.feature_names_}))
        return path

    @classmethod
    def load(cls, path: Path) -> ConstantModel:
        """Read a model saved by :meth:`save`."""
        from precision_pain.models.safe_skops import check_names

        state = json.loads(Path(path).read_text(encoding="utf-8"))
        rate = state.get("rate") if isinstance(state, dict) else None
        if not isinstance(rate, float) or not 0.0 < rate < 1.0:
            raise ValueError(f"{path}: a constant model's rate must be a number in (0, 1)")
        model = cls()
        model.rate_ = rate
        model.feature_names_ = check_names(state.get("feature_names"), "feature_names", path)
        return model

    def summary(self) -> dict[str, Any]:
        """Facts worth logging about the fitted model."""
        return {"rate": self.rate_}

    def mlflow_artifact(self) -> MlflowArtifact:
        """A prior-only scikit-learn DummyClassifier predicting the rate (skops)."""
        from sklearn.dummy import DummyClassifier

        dummy = DummyClassifier(strategy="prior").fit(
            np.zeros((2, 1)), np.array([0, 1]), sample_weight=np.array([1.0 - self.rate_,
                                                                        self.rate_]))
        return _skops_artifact(dummy, "constant rate (too few events to learn from)")

    @classmethod
    def from_mlflow(cls, dummy: Any, feature_names: list[str]) -> ConstantModel:
        """The model from the DummyClassifier :meth:`mlflow_artifact` logs."""
        model = cls()
        model.rate_ = float(dummy.class_prior_[1])
        model.feature_names_ = list(feature_names)
        return model


MODEL_TYPES: Mapping[str, type] = {
    cls.kind: cls for cls in (XGBoostModel, LogisticModel, HistGBModel, ConstantModel,
                              RidgeModel)
}
# A continuous outcome's model kind per model type (prepare.outcome: nrs_change); a type
# missing here has no regressor (hist_gb).
CONTINUOUS_KINDS: Mapping[str, str] = {"xgboost": "xgboost", "logistic": "ridge"}
# The model type a file kind belongs to (a bundle's files must be of its type).
_FAMILY: Mapping[str, str] = {"ridge": "logistic", "stacked": "pooled_xgboost"}


def model_family(kind: str) -> str:
    """The model type of a model file's kind: ``ridge`` -> ``logistic``, else the kind."""
    return _FAMILY.get(kind, kind)
SELECTABLE_MODEL_TYPES = ("xgboost", "logistic", "hist_gb")
# Learners with one model per outcome shared by every treatment (models/pooled.py), chosen
# with model.type like the per-treatment types above.
POOLED_MODEL_TYPES = ("pooled_xgboost",)


def get_model_class(kind: str) -> type:
    """The class for a model type (or file kind); unknown names list the valid ones."""
    if kind in POOLED_MODEL_TYPES:
        from precision_pain.models.pooled import PooledModel

        return PooledModel
    if kind == "stacked":  # the pooled learner's stacked response model (nrs_change)
        from precision_pain.models.stacked import StackedModel

        return StackedModel
    if kind not in MODEL_TYPES:
        valid = ", ".join((*SELECTABLE_MODEL_TYPES, *POOLED_MODEL_TYPES))
        raise ValueError(f"unknown model type {kind!r}; valid: {valid}")
    return MODEL_TYPES[kind]


def make_model(kind: str, hyperparameters: Mapping[str, Any], seed: int) -> BinaryModel:
    """An unfitted model of ``kind`` with its hyperparameters."""
    return get_model_class(kind)(seed=seed, **dict(hyperparameters))


def load_model(path: Path) -> BinaryModel:
    """Load any saved model, dispatching on the file name ``<name>.<kind><suffix>``."""
    path = Path(path)
    parts = path.name.split(".")
    kind = parts[-2] if len(parts) >= 3 else ""
    cls = get_model_class(kind)
    if path.suffix != cls.suffix:
        raise ValueError(f"{path}: a {kind} model file must end in {cls.suffix}")
    return cls.load(path)


def fit_binary(kind: str, hyperparameters: Mapping[str, Any], seed: int, X: pd.DataFrame,
               y: np.ndarray, X_val: pd.DataFrame, y_val: np.ndarray) -> BinaryModel:
    """Fit ``kind``, or a constant-rate model when either class has < MIN_EVENTS rows."""
    y, y_val = np.asarray(y, dtype=np.int8), np.asarray(y_val, dtype=np.int8)
    too_few = min(int(y.sum()), int(len(y) - y.sum())) < MIN_EVENTS
    too_few_val = min(int(y_val.sum()), int(len(y_val) - y_val.sum())) < 1
    chosen = "constant" if too_few or too_few_val else kind
    model = make_model(chosen, hyperparameters if chosen == kind else {}, seed)
    return model.fit(X, y, X_val, y_val)


def fit_continuous(kind: str, hyperparameters: Mapping[str, Any], seed: int, X: pd.DataFrame,
                   y: np.ndarray, X_val: pd.DataFrame, y_val: np.ndarray) -> BinaryModel:
    """Fit model type ``kind``'s regressor (:data:`CONTINUOUS_KINDS`) of a continuous outcome."""
    if kind not in CONTINUOUS_KINDS:
        raise ValueError(f"model type {kind!r} has no regressor for prepare.outcome: "
                         f"nrs_change; use one of {', '.join(CONTINUOUS_KINDS)} or "
                         f"{', '.join(POOLED_MODEL_TYPES)}")
    y, y_val = np.asarray(y, dtype=np.float64), np.asarray(y_val, dtype=np.float64)
    settings = dict(hyperparameters)
    if CONTINUOUS_KINDS[kind] == "xgboost":
        settings["outcome_type"] = "continuous"
    return make_model(CONTINUOUS_KINDS[kind], settings, seed).fit(X, y, X_val, y_val)

