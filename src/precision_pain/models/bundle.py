"""The model bundle: every treatment's fitted models plus a manifest, on disk.

Layout under ``model.dir`` (default ``models/``)::

    manifest.json                      model type, feature names, treatments, files, versions
    <treatment>/response.<kind>.<ext>   e.g. tramadol/response.xgboost.ubj
    <treatment>/adverse_event.<kind>.<ext>
    pooled/response.pooled_xgboost.ubj  instead, for the pooled learner: one model per outcome
    pooled/adverse_event.pooled_xgboost.ubj  that every treatment's manifest entry points at
    propensity.<kind>.<ext>             optional: P(treatment | features), for off-policy evaluation
    plans/<outcome>.pooled_plans.ubj    optional: the plan learner (models/plan_model.py), when
                                        the training episodes held plans (contract v2)

Formats are non-pickle (xgboost UBJSON, skops, JSON); see :mod:`precision_pain.models.estimators`.
The folder is written to a temporary name and swapped in whole, so a failed
training run never leaves a mix of old and new models.

Loading verifies before it reads a model: every path in the manifest must stay inside the
bundle folder, every file must match the SHA-256 the manifest records for it (a truncated,
swapped or edited file is refused before xgboost or skops sees it), and each file's model
kind must be the manifest's model type (or the constant-rate fallback). A checksum inside
the bundle proves integrity, not origin: whoever can write the files can rewrite the
manifest too. To prove origin, pin the manifest's own hash from outside the bundle
(:func:`manifest_sha256`; ``precision-pain predict --bundle-sha256``, or the hash the
registry records with the recommender). Bundles holding hist_gb trees, whose arrays
scikit-learn does not bounds-check (:mod:`precision_pain.models.safe_skops`), load only from the
project's own model folder or with a pinned hash.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from precision_pain import __version__
from precision_pain.data.features import FEATURE_NAMES
from precision_pain.io import atomic_dir, file_digest
from precision_pain.models.estimators import BinaryModel, load_model, model_family
from precision_pain.models.profile import impute_unseen_missing
from precision_pain.models.propensity import STEM as PROPENSITY_STEM
from precision_pain.models.propensity import PropensityModel, load_propensity
from precision_pain.outcome import OutcomeSpec
from precision_pain.registry import OUTCOMES

if TYPE_CHECKING:
    import pandas as pd

    from precision_pain.models.plan_model import PlanModels
    from precision_pain.models.train import TreatmentModels

MANIFEST = "manifest.json"
SHARED_FOLDER = "pooled"  # models every treatment shares (the pooled learner), saved once
_FALLBACK_KIND = "constant"
_UNCHECKED_TREES = "hist_gb"


class BundleError(ValueError):
    """A model bundle that is missing, altered or not safe to load; the message says why."""


@dataclass(frozen=True)
class ModelBundle:
    """Fitted models by treatment and outcome, with what is needed to use them."""

    model_type: str
    feature_names: tuple[str, ...]
    models: Mapping[str, Mapping[str, BinaryModel]]
    metadata: Mapping[str, Any]
    propensity: PropensityModel | None = None
    plan_models: PlanModels | None = None  # the plan learner, when trained on plan episodes

    @property
    def treatments(self) -> tuple[str, ...]:
        """Treatment names in registry order."""
        return tuple(self.models)

    @property
    def outcome(self) -> OutcomeSpec:
        """What the response models predict (:mod:`precision_pain.outcome`): the responder
        flag, or the reduction in NRS pain; bundles from before the setting are responder."""
        return OutcomeSpec.from_metadata(self.metadata)

    def model(self, treatment: str, outcome: str) -> BinaryModel:
        """One fitted model; unknown names list what the bundle holds."""
        if treatment not in self.models:
            raise KeyError(f"no model for treatment {treatment!r}; bundle has {self.treatments}")
        return self.models[treatment][outcome]

    def model_input(self, X: pd.DataFrame) -> pd.DataFrame:
        """X as the models score it: a value missing where training never had that feature
        missing is filled with its training median
        (:func:`~precision_pain.models.profile.impute_unseen_missing`; bundles from before
        the setting: X unchanged)."""
        return impute_unseen_missing(X, self.metadata.get("feature_imputation"))

    def scores(self, X: pd.DataFrame, outcome: str) -> np.ndarray:
        """(n, T) predictions of ``outcome`` (P(y = 1), or E[y] for a regressor) for every
        patient under each treatment, in :attr:`treatments` order. A pooled model that every
        treatment shares scores them all in one pass (its ``scores``); other models one
        treatment at a time (``predict_proba``). Missing values are filled as
        :meth:`model_input` says."""
        X = self.model_input(X)
        pooled = self._shared_model(outcome, "scores")
        if pooled is not None:
            order = [pooled.treatments.index(t) for t in self.treatments]
            return pooled.scores(X)[:, order]
        return np.column_stack([self.model(t, outcome).predict_proba(X)
                                for t in self.treatments])

    def contributions(self, X: pd.DataFrame, outcome: str, names: np.ndarray) -> np.ndarray:
        """(n, k, F + 1) float32 exact SHAP values (bias last) of each patient under the k
        treatments of its row of ``names`` (n, k; no treatment twice in a row), as each
        treatment's model's ``contributions``. A pooled model that every treatment shares
        explains a patient's k rows in one grouped pass (its ``ranked_contributions``: the
        patient's features are explained once for all k); other models one treatment at a
        time. Missing values are filled as :meth:`model_input` says."""
        X = self.model_input(X)
        names = np.asarray(names, dtype=object)
        pooled = self._shared_model(outcome, "ranked_contributions")
        if pooled is not None:
            return pooled.ranked_contributions(X, names)
        out = np.zeros((*names.shape, X.shape[1] + 1), dtype=np.float32)
        for treatment in dict.fromkeys(names.reshape(-1)):
            rows, cols = np.nonzero(names == treatment)
            out[rows, cols] = self.model(treatment, outcome).contributions(X.iloc[rows])
        return out

    def _shared_model(self, outcome: str, method: str) -> Any:
        """The one model behind every treatment's ``outcome`` model when there is one and it
        has ``method`` (a pooled learner); else None."""
        models = [self.model(t, outcome) for t in self.treatments]
        shared = {id(getattr(m, "shared", None)) for m in models}
        pooled = getattr(models[0], "shared", None) if models else None
        return pooled if len(shared) == 1 and hasattr(pooled, method) else None

    def warm_up(self) -> None:
        """Build now what the first prediction would otherwise build: every model's SHAP
        tables, the pooled models' one-walk scorers, the plan learner's, and the compiled
        kernels they use. A served model calls this when it loads, so that its first request
        is answered as fast as the next."""
        import pandas as pd

        one = pd.DataFrame(np.zeros((1, len(self.feature_names)), np.float32),
                           columns=list(self.feature_names))
        for outcome in OUTCOMES:
            self.scores(one, outcome)
            for treatment in self.treatments:
                self.model(treatment, outcome).contributions(one)
        if self.plan_models is not None:
            from precision_pain.predict.plans import predict_eligible

            plans = self.plan_models.plans
            every = np.ones((1, len(plans)), bool)
            for outcome in OUTCOMES:
                predict_eligible(one, self.plan_models, plans, every, outcome)
                self.plan_models.model(outcome).contributions_full(
                    one, np.asarray(plans[:1], dtype=object))


def bundle_from_training(fitted: Mapping[str, TreatmentModels], model_type: str,
                         metadata: Mapping[str, Any],
                         propensity: PropensityModel | None = None) -> ModelBundle:
    """Assemble a bundle from the train stage's results (and, optionally, a propensity model)."""
    models = {name: dict(result.models) for name, result in fitted.items()}
    counts = {name: dict(result.counts) for name, result in fitted.items()}
    return ModelBundle(model_type, FEATURE_NAMES, models, {**metadata, "counts": counts},
                       propensity)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return file_digest(path, "sha256")


def manifest_sha256(directory: str | Path) -> str:
    """The hash that pins a bundle: SHA-256 of its manifest (which holds every file's hash)."""
    return sha256_file(Path(directory) / MANIFEST)


def _save_models(models: Mapping[str, Mapping[str, BinaryModel]], folder: Path
                 ) -> dict[str, dict[str, str]]:
    """Each model's file, relative to ``folder``: ``<treatment>/<outcome>.<kind>.<ext>``, or
    ``pooled/<outcome>.<kind>.<ext>`` written once for a model every treatment shares."""
    files: dict[str, dict[str, str]] = {}
    shared_files: dict[int, str] = {}
    for treatment, by_outcome in models.items():
        files[treatment] = {}
        for outcome, model in by_outcome.items():
            shared = getattr(model, "shared", None)
            if shared is None:
                (folder / treatment).mkdir(exist_ok=True)
                path = model.save(folder / treatment / outcome)
            elif id(shared) not in shared_files:
                (folder / SHARED_FOLDER).mkdir(exist_ok=True)
                path = shared.save(folder / SHARED_FOLDER / outcome)
            else:
                path = folder / shared_files[id(shared)]
            files[treatment][outcome] = path.relative_to(folder).as_posix()
            if shared is not None:
                shared_files[id(shared)] = files[treatment][outcome]
    return files


def save_bundle(bundle: ModelBundle, directory: str | Path) -> Path:
    """Write every model and the manifest (with each file's SHA-256); replaced atomically."""
    directory = Path(directory)
    with atomic_dir(directory) as tmp:
        files = _save_models(bundle.models, tmp)
        manifest = {
            "package_version": __version__,
            "model_type": bundle.model_type,
            "feature_names": list(bundle.feature_names),
            "outcomes": list(OUTCOMES),
            "treatments": list(bundle.models),
            "files": files,
            "metadata": dict(bundle.metadata),
        }
        if bundle.propensity is not None:
            saved = bundle.propensity.save(tmp / PROPENSITY_STEM)
            manifest["propensity"] = saved.relative_to(tmp).as_posix()
        if bundle.plan_models is not None:
            manifest["plan_models"] = _save_plan_models(bundle.plan_models, tmp)
        manifest["sha256"] = {rel: sha256_file(tmp / rel) for rel in _referenced(manifest)}
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return directory


def load_bundle(directory: str | Path, *, expected_sha256: str | None = None,
                own_bundle: bool = False) -> ModelBundle:
    """Read a bundle written by :func:`save_bundle`, verifying it before any model is read.

    ``expected_sha256`` pins the manifest's hash (from outside the bundle); ``own_bundle``
    says the folder is this project's own training output (params' ``model.dir``). One of
    the two is needed for bundles holding hist_gb trees.
    """
    directory = Path(directory)
    manifest = read_manifest(directory, expected_sha256)
    _check_kinds(directory, manifest, pinned=expected_sha256 is not None or own_bundle)
    loaded: dict[str, Any] = {}  # a file shared by every treatment is read once
    models = {
        treatment: {outcome: _model(directory, rel, treatment, loaded)
                    for outcome, rel in manifest["files"][treatment].items()}
        for treatment in manifest["treatments"]
    }
    propensity = (load_propensity(directory / manifest["propensity"])
                  if manifest.get("propensity") else None)
    return ModelBundle(manifest["model_type"], FEATURE_NAMES, models, manifest["metadata"],
                       propensity, _load_plan_models(directory, manifest))


def _save_plan_models(plan_models: PlanModels, folder: Path) -> dict[str, Any]:
    """The plan learner's files (``plans/<outcome>.pooled_plans.ubj``) and what it scores."""
    from precision_pain.models.plan_model import PLAN_FOLDER

    (folder / PLAN_FOLDER).mkdir()
    files = {o: plan_models.model(o).save(folder / PLAN_FOLDER / o).relative_to(folder)
             .as_posix() for o in OUTCOMES}
    return {"files": files, "plans": list(plan_models.plans),
            "summary": dict(plan_models.summary), "episodes": dict(plan_models.episodes)}


def _load_plan_models(directory: Path, manifest: Mapping[str, Any]) -> PlanModels | None:
    """The plan learner of a verified manifest, if it has one."""
    entry = manifest.get("plan_models")
    if not entry:
        return None
    from precision_pain.models.plan_model import PlanModel, PlanModels

    models = {o: PlanModel.load(directory / entry["files"][o]) for o in OUTCOMES}
    return PlanModels(models["response"], models["adverse_event"], tuple(entry["plans"]),
                      entry.get("summary", {}), entry.get("episodes", {}))


def _model(directory: Path, relative: str, treatment: str, loaded: dict[str, Any]
           ) -> BinaryModel:
    """The model of ``treatment`` in a file: the file's model, or its view for ``treatment``
    when every treatment shares it (the pooled learner)."""
    if relative not in loaded:
        loaded[relative] = load_model(directory / relative)
    model = loaded[relative]
    return model.view(treatment) if hasattr(model, "view") else model


def read_manifest(directory: Path, expected_sha256: str | None = None) -> dict[str, Any]:
    """The manifest, after checking its hash (if pinned), its paths and every file's hash."""
    path = directory / MANIFEST
    if not path.is_file():
        raise BundleError(
            f"{path}: no trained models here; run `dvc repro` (or "
            "`precision-pain train`) first, or pass --models DIR")
    if expected_sha256 is not None and sha256_file(path) != expected_sha256.strip().lower():
        raise BundleError(
            f"{path}: SHA-256 {sha256_file(path)} is not the pinned {expected_sha256}; this "
            "is not the bundle you pinned (or it was altered): get it again from its source")
    manifest = _parse_manifest(path)
    if tuple(manifest["feature_names"]) != FEATURE_NAMES:
        raise BundleError(
            f"{path}: models were trained with different features than this version "
            "of precision-pain builds; retrain with `dvc repro`")
    _verify_files(directory, manifest)
    return manifest


def _parse_manifest(path: Path) -> dict[str, Any]:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: not a readable bundle manifest ({exc}); retrain with "
                          "`dvc repro` or restore the bundle from its source") from None
    required = ("model_type", "feature_names", "treatments", "files", "metadata", "sha256")
    missing = [key for key in required if not isinstance(manifest, dict) or key not in manifest]
    if missing:
        hint = (" (bundles written before file checksums: retrain with `dvc repro`)"
                if missing == ["sha256"] else "")
        raise BundleError(f"{path}: manifest lacks {', '.join(missing)}{hint}")
    if set(manifest["treatments"]) - set(manifest["files"]):
        raise BundleError(f"{path}: treatments without files: "
                          f"{sorted(set(manifest['treatments']) - set(manifest['files']))}")
    return manifest


def _model_files(manifest: Mapping[str, Any]) -> list[str]:
    """The outcome models' files, as relative POSIX paths."""
    return [rel for treatment in manifest["treatments"]
            for rel in manifest["files"][treatment].values()]


def _referenced(manifest: Mapping[str, Any]) -> list[str]:
    """Every file the manifest points at: the outcome models, the propensity model and the
    plan learner's."""
    plans = list((manifest.get("plan_models") or {}).get("files", {}).values())
    return _model_files(manifest) + ([manifest["propensity"]] if manifest.get("propensity")
                                     else []) + plans


def _verify_files(directory: Path, manifest: Mapping[str, Any]) -> None:
    """Every referenced file inside the bundle, present, and with its recorded SHA-256."""
    root = directory.resolve()
    problems = []
    for rel in dict.fromkeys(_referenced(manifest)):
        target = (directory / str(rel)).resolve()
        if not isinstance(rel, str) or root not in target.parents:
            problems.append(f"{rel!r} points outside the bundle folder")
        elif not target.is_file():
            problems.append(f"{rel} is missing")
        elif manifest["sha256"].get(rel) is None:
            problems.append(f"{rel} has no recorded SHA-256")
        elif sha256_file(target) != manifest["sha256"][rel]:
            problems.append(f"{rel} does not match its recorded SHA-256 (truncated, "
                            "corrupted or replaced)")
    if problems:
        raise BundleError(f"{directory / MANIFEST}: refusing to load the bundle: "
                          + "; ".join(problems)
                          + ". Retrain with `dvc repro` or restore the bundle from its source")


def _check_kinds(directory: Path, manifest: Mapping[str, Any], pinned: bool) -> None:
    """Each file's kind is the manifest's model type (or constant); hist_gb only if pinned."""
    model_type = manifest["model_type"]
    model_files = _model_files(manifest)
    wrong = [rel for rel in model_files
             if model_family(model_kind(rel)) not in {model_type, _FALLBACK_KIND}]
    if wrong:
        raise BundleError(f"{directory / MANIFEST}: model type is {model_type!r} but "
                          f"{', '.join(wrong)} are of another kind")
    if not pinned and any(model_kind(rel) == _UNCHECKED_TREES for rel in model_files):
        raise BundleError(
            f"{directory / MANIFEST}: hist_gb models are loaded only from this project's own "
            "model folder or with a pinned hash: scikit-learn does not bounds-check their tree "
            "arrays, so a crafted file could crash or misread memory. Pass --bundle-sha256 "
            f"with the hash its trainer published (this manifest's is "
            f"{manifest_sha256(directory)}), or retrain here")


def model_kind(relative: str) -> str:
    """``tramadol/response.xgboost.ubj`` -> ``xgboost``."""
    parts = Path(relative).name.split(".")
    return parts[-2] if len(parts) >= 3 else ""
