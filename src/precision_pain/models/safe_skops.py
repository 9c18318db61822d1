"""Loading scikit-learn models saved with skops, trusting exactly what this project saves.

skops replaces pickle with a JSON tree of typed nodes, and refuses to build a type that is
not trusted. What it trusts is the caller's choice, and a loose choice is as bad as pickle:
several node types *call* the function a file names while loading (constructor-from-reduce
nodes, loss nodes, arrays whose class is not ``ndarray``), and a method node hands back a
bound method that a fitted ``FunctionTransformer`` will call at predict time. numpy and
scikit-learn expose callables that run code, write files or unpickle bytes, so trusting
"anything under ``numpy.`` or ``sklearn.``" let a crafted file run its payload.

The rule here is an exact allowlist per model kind: the type names that the project's own
save functions produce (what ``skops.io.get_untrusted_types`` reports for a freshly saved
file). A file that names any other type is refused before a single node is built, with the
file and the unexpected names in the message; no function, method or constructor name is
ever trusted. After loading, every object reachable from the model is checked against the
classes that kind of model is made of (:data:`GRAPH_CLASSES`): no callable, no extra step,
no object of a class the project never saves.

skops is pinned in pyproject.toml: which node types call functions can change between its
releases, and a test fails if the installed skops reports another type set for the
project's own files.

What this does not cover: scikit-learn's ``TreePredictor`` (hist_gb) stores raw node and
feature indices that scikit-learn indexes without bounds checks, so a crafted tree can crash
the process or read out of bounds the first time it predicts (skops says so of tree types).
Bundles holding hist_gb models are therefore loaded only from the project's own model
folder or with a pinned manifest hash (:mod:`precision_pain.models.bundle`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

_TREE_PREDICTOR = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"

#: Per kind, the exact non-default types a file the project saved may name.
ALLOWED_TYPES: Mapping[str, frozenset[str]] = {
    "logistic": frozenset({"numpy.dtype"}),
    "hist_gb": frozenset({_TREE_PREDICTOR}),
    "logistic_propensity": frozenset({"numpy.dtype"}),
    "constant": frozenset(),  # a registered constant-rate model: DummyClassifier
}

_PRIMITIVES = frozenset({
    "builtins.NoneType", "builtins.bool", "builtins.int", "builtins.float", "builtins.str",
    "builtins.list", "builtins.tuple", "builtins.dict",
    "numpy.ndarray", "numpy.float64", "numpy.float32", "numpy.int64", "numpy.int32",
    "numpy.uint64", "numpy.bool", "numpy.str_",
})
_LOGISTIC_PIPELINE = frozenset({
    "sklearn.pipeline.Pipeline", "sklearn.impute._base.SimpleImputer",
    "sklearn.impute._base.MissingIndicator", "sklearn.preprocessing._data.StandardScaler",
    "sklearn.linear_model._logistic.LogisticRegression",
})

#: Per kind, every class an object reachable from a loaded model may have.
GRAPH_CLASSES: Mapping[str, frozenset[str]] = {
    "logistic": _LOGISTIC_PIPELINE,
    "logistic_propensity": _LOGISTIC_PIPELINE,
    "hist_gb": frozenset({
        "sklearn.ensemble._hist_gradient_boosting.gradient_boosting."
        "HistGradientBoostingClassifier",
        _TREE_PREDICTOR,
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "sklearn._loss.loss.HalfBinomialLoss", "sklearn._loss._loss.CyHalfBinomialLoss",
        "sklearn._loss.link.LogitLink", "sklearn._loss.link.Interval",
        "sklearn.preprocessing._label.LabelEncoder", "numpy.random._generator.Generator",
    }),
    "constant": frozenset({"sklearn.dummy.DummyClassifier"}),
}

#: The class of the estimator itself, per kind (and the pipeline's step classes, in order).
ESTIMATOR_CLASS: Mapping[str, str] = {
    "logistic": "sklearn.pipeline.Pipeline",
    "logistic_propensity": "sklearn.pipeline.Pipeline",
    "hist_gb": "sklearn.ensemble._hist_gradient_boosting.gradient_boosting."
               "HistGradientBoostingClassifier",
    "constant": "sklearn.dummy.DummyClassifier",
}
PIPELINE_STEPS: tuple[str, ...] = (
    "sklearn.impute._base.SimpleImputer", "sklearn.preprocessing._data.StandardScaler",
    "sklearn.linear_model._logistic.LogisticRegression",
)


class UnsafeModelFileError(ValueError):
    """A model file that names or holds something the project never saves."""


def _qualname(obj: Any) -> str:
    kind = type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


def untrusted_types(path: Path) -> set[str]:
    """The non-default types a skops file names, read without building any object."""
    import skops.io as sio

    try:
        return set(sio.get_untrusted_types(file=path))
    except Exception as exc:  # a zip or JSON that is not a skops file, however broken
        raise UnsafeModelFileError(
            f"{path}: not a readable skops model file ({type(exc).__name__}: {exc}); "
            "retrain to rewrite it (`dvc repro`), or restore the bundle from its source"
        ) from None


def check_skops_file(path: Path, kind: str) -> None:
    """Refuse a file whose types are not a subset of the allowlist of ``kind``."""
    if kind not in ALLOWED_TYPES:
        raise UnsafeModelFileError(f"{path}: no skops allowlist for model kind {kind!r}")
    unexpected = untrusted_types(path) - ALLOWED_TYPES[kind]
    if unexpected:
        raise UnsafeModelFileError(
            f"{path}: refusing to load a {kind} model file that names types this project "
            f"never saves: {', '.join(sorted(unexpected))}. The file may have been crafted "
            "to run code; use a bundle you trained yourself (`dvc repro`)"
        )


def load_skops(path: Path, kind: str) -> Any:
    """Load a skops file of ``kind`` after the allowlist check, then check what it holds."""
    import skops.io as sio

    path = Path(path)
    check_skops_file(path, kind)
    try:
        loaded = sio.load(path, trusted=sorted(ALLOWED_TYPES[kind]))
    except Exception as exc:
        raise UnsafeModelFileError(
            f"{path}: could not be loaded as a {kind} model ({type(exc).__name__}: {exc}); "
            "retrain to rewrite it (`dvc repro`)"
        ) from None
    return loaded


def check_estimator(estimator: Any, kind: str, source: Path | str) -> Any:
    """Check a loaded estimator's class, steps and every object reachable from it."""
    if _qualname(estimator) != ESTIMATOR_CLASS[kind]:
        raise UnsafeModelFileError(
            f"{source}: expected a {ESTIMATOR_CLASS[kind]}, found {_qualname(estimator)}")
    if kind in {"logistic", "logistic_propensity"}:
        steps = tuple(_qualname(step) for _, step in getattr(estimator, "steps", []))
        if steps != PIPELINE_STEPS:
            raise UnsafeModelFileError(
                f"{source}: expected pipeline steps {list(PIPELINE_STEPS)}, found {list(steps)}")
    foreign = _foreign_classes(estimator, GRAPH_CLASSES[kind] | _PRIMITIVES)
    if foreign:
        raise UnsafeModelFileError(
            f"{source}: the {kind} model holds objects of classes this project never saves: "
            f"{', '.join(sorted(foreign))}")
    return estimator


def check_names(values: Any, what: str, source: Path | str) -> list[str]:
    """A list of strings (feature or class names), or an error naming the file."""
    if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
        raise UnsafeModelFileError(f"{source}: {what} must be a list of strings")
    return list(values)


def _foreign_classes(root: Any, allowed: frozenset[str]) -> set[str]:
    """Classes of every object reachable from ``root`` that are not in ``allowed``."""
    foreign: set[str] = set()
    seen: set[int] = set()
    stack = [root]
    while stack:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        name = _qualname(obj)
        if name.startswith("numpy.dtypes."):
            continue
        if name not in allowed:
            foreign.add(name)
            continue
        if isinstance(obj, dict):
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif isinstance(obj, (list, tuple)):
            stack.extend(obj)
        elif isinstance(obj, np.ndarray):
            if obj.dtype == object:
                stack.extend(obj.ravel().tolist())
        elif hasattr(obj, "__dict__"):
            stack.extend(vars(obj).values())
    return foreign
