"""The model bundle: every treatment's fitted models plus a manifest, on disk.

Layout under ``model.dir`` (default ``models/``)::

    manifest.json                      model type, feature names, treatments, files, versions
    <treatment>/response.<kind>.<ext>   e.g. tramadol/response.xgboost.ubj
    <treatment>/adverse_event.<kind>.<ext>
    propensity.<kind>.<ext>             optional: P(treatment | features), for off-policy evaluation

Formats are non-pickle (xgboost UBJSON, skops, JSON); see :mod:`precision_pain.models`.
The folder is written to a temporary name and swapped in whole, so a failed
training run never leaves a mix of old and new models.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__
from .features import FEATURE_NAMES
from .io import atomic_dir
from .models import BinaryModel, load_model
from .propensity import STEM as PROPENSITY_STEM
from .propensity import PropensityModel, load_propensity
from .train import OUTCOMES, TreatmentModels

MANIFEST = "manifest.json"


@dataclass(frozen=True)
class ModelBundle:
    """Fitted models by treatment and outcome, with what is needed to use them."""

    model_type: str
    feature_names: tuple[str, ...]
    models: Mapping[str, Mapping[str, BinaryModel]]
    metadata: Mapping[str, Any]
    propensity: PropensityModel | None = None

    @property
    def treatments(self) -> tuple[str, ...]:
        """Treatment names in registry order."""
        return tuple(self.models)

    def model(self, treatment: str, outcome: str) -> BinaryModel:
        """One fitted model; unknown names list what the bundle holds."""
        if treatment not in self.models:
            raise KeyError(f"no model for treatment {treatment!r}; bundle has {self.treatments}")
        return self.models[treatment][outcome]


def bundle_from_training(fitted: Mapping[str, TreatmentModels], model_type: str,
                         metadata: Mapping[str, Any],
                         propensity: PropensityModel | None = None) -> ModelBundle:
    """Assemble a bundle from the train stage's results (and, optionally, a propensity model)."""
    models = {name: dict(result.models) for name, result in fitted.items()}
    counts = {name: dict(result.counts) for name, result in fitted.items()}
    return ModelBundle(model_type, FEATURE_NAMES, models, {**metadata, "counts": counts},
                       propensity)


def save_bundle(bundle: ModelBundle, directory: str | Path) -> Path:
    """Write every model and the manifest; the folder is replaced atomically."""
    directory = Path(directory)
    with atomic_dir(directory) as tmp:
        files: dict[str, dict[str, str]] = {}
        for treatment, by_outcome in bundle.models.items():
            (tmp / treatment).mkdir()
            files[treatment] = {
                outcome: str(model.save(tmp / treatment / outcome).relative_to(tmp))
                for outcome, model in by_outcome.items()
            }
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
            manifest["propensity"] = str(saved.relative_to(tmp))
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return directory


def load_bundle(directory: str | Path) -> ModelBundle:
    """Read a bundle written by :func:`save_bundle`, checking it matches this code."""
    directory = Path(directory)
    manifest_path = directory / MANIFEST
    if not manifest_path.exists():
        raise FileNotFoundError(
            f"{manifest_path}: no trained models here; run `dvc repro` (or "
            "`precision-pain train`) first, or pass --models DIR"
        )
    manifest = json.loads(manifest_path.read_text())
    if tuple(manifest["feature_names"]) != FEATURE_NAMES:
        raise ValueError(
            f"{manifest_path}: models were trained with different features than this version "
            "of precision-pain builds; retrain with `dvc repro`"
        )
    models = {
        treatment: {outcome: load_model(directory / rel) for outcome, rel in by_outcome.items()}
        for treatment in manifest["treatments"]
        for by_outcome in [manifest["files"][treatment]]
    }
    propensity = (load_propensity(directory / manifest["propensity"])
                  if manifest.get("propensity") else None)
    return ModelBundle(manifest["model_type"], FEATURE_NAMES, models, manifest["metadata"],
                       propensity)
