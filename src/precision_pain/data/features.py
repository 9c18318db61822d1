"""Model features: a stateless encoding of a prepared cohort.

The encoding is fixed by the data contract (known category lists) rather than
fitted, so training, prediction and SHAP explanations always see the same
columns in the same order, and a new cohort with fewer categories still gets
every column. Missing genotype-derived values stay NaN (xgboost and
HistGradientBoosting route them natively; the logistic baseline imputes).

Ancestry is deliberately *not* a model feature: genotypes carry the
pharmacogenomic signal, and ancestry is used only to check in evaluation that
no group is worse off.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from precision_pain.data.contract.schema import measurement_columns
from precision_pain.data.pgx import PHENOTYPES
from precision_pain.registry import CONDITIONS

PHENOTYPE_WORDS = {
    "PM": "poor metabolizer", "IM": "intermediate metabolizer", "NM": "normal metabolizer",
    "RM": "rapid metabolizer", "UM": "ultrarapid metabolizer",
    "indeterminate": "indeterminate phenotype",
}
ACTIVITY_LEVELS = {"low": 0.0, "moderate": 1.0, "high": 2.0}


@dataclass(frozen=True)
class Feature:
    """One model column: where it comes from and how to say it in words."""

    name: str
    label: str
    source: str
    unit: str = ""
    category: str | None = None  # set for one-hot indicators


_NUMERIC: tuple[Feature, ...] = (
    Feature("age", "age", "age", "years"),
    Feature("bmi", "BMI", "bmi", "kg/m2"),
    Feature("pain_duration_months", "pain duration", "pain_duration_months", "months"),
    Feature("pain_baseline", "baseline pain", "pain_baseline", "NRS"),
    Feature("pcs", "pain catastrophizing (PCS)", "pcs"),
    Feature("phq9", "depression (PHQ-9)", "phq9"),
    Feature("gad7", "anxiety (GAD-7)", "gad7"),
    Feature("baseline_mme", "current opioid dose", "baseline_mme", "MME/day"),
    Feature("ort_score", "Opioid Risk Tool score", "ort_score"),
    Feature("egfr", "kidney function (eGFR)", "egfr", "mL/min/1.73m2"),
    Feature("activity_level", "physical activity level", "activity_level"),
    Feature("cyp2d6_activity_score", "CYP2D6 activity score (genotype)", "cyp2d6_activity_score"),
    Feature("cyp2d6_effective_activity", "CYP2D6 effective activity (with co-medication)",
            "cyp2d6_effective_activity"),
    Feature("cyp2c9_activity_score", "CYP2C9 activity score", "cyp2c9_activity_score"),
    Feature("oprm1_g_count", "OPRM1 118G alleles", "oprm1_g_count"),
    Feature("comt_met_count", "COMT Met158 alleles", "comt_met_count"),
)
_FLAGS: tuple[Feature, ...] = (
    Feature("female", "female sex", "sex"),
    Feature("smoker", "smoking", "smoker"),
    Feature("prior_spine_surgery", "prior spine surgery", "prior_spine_surgery"),
    Feature("prior_gi_ulcer", "prior GI ulcer", "prior_gi_ulcer"),
    Feature("anticoagulant", "anticoagulant use", "anticoagulant"),
    Feature("cyp2d6_inhibitor", "strong CYP2D6 inhibitor co-medication", "cyp2d6_inhibitor"),
)


def _one_hot(source: str, values: tuple[str, ...], label: str) -> tuple[Feature, ...]:
    return tuple(Feature(f"{source}={v}", label.format(v.replace("_", " ")), source, category=v)
                 for v in values)


def _phenotype_one_hot(source: str, gene: str, values: tuple[str, ...]) -> tuple[Feature, ...]:
    return tuple(Feature(f"{source}={v}", f"{gene} {PHENOTYPE_WORDS[v]}", source, category=v)
                 for v in values)


FEATURES: tuple[Feature, ...] = (
    _NUMERIC + _FLAGS
    + _one_hot("condition", CONDITIONS, "condition: {}")
    + _phenotype_one_hot("cyp2d6_effective_phenotype", "CYP2D6", PHENOTYPES["CYP2D6"])
    + _phenotype_one_hot("cyp2c9_phenotype", "CYP2C9", PHENOTYPES["CYP2C9"])
    + _phenotype_one_hot("cyp2c19_phenotype", "CYP2C19", PHENOTYPES["CYP2C19"])
)
FEATURE_NAMES: tuple[str, ...] = tuple(f.name for f in FEATURES)
FEATURES_BY_NAME = {f.name: f for f in FEATURES}
SOURCE_COLUMNS: tuple[str, ...] = tuple(dict.fromkeys(f.source for f in FEATURES))


def build_features(prepared: pd.DataFrame) -> pd.DataFrame:
    """Encode a prepared cohort (contract + PGx columns) as the model matrix."""
    missing = [c for c in SOURCE_COLUMNS if c not in prepared.columns]
    if missing:
        raise KeyError(f"prepared cohort lacks columns needed for features: {', '.join(missing)}")
    columns = {f.name: _encode(prepared, f) for f in FEATURES}
    return pd.DataFrame(columns, index=prepared.index, dtype=np.float32)


def _encode(frame: pd.DataFrame, feature: Feature) -> np.ndarray:
    values = frame[feature.source]
    if feature.category is not None:
        return (values.astype(str) == feature.category).to_numpy(np.float32)
    if feature.name == "female":
        return (values.astype(str) == "F").to_numpy(np.float32)
    if feature.name == "activity_level":
        return values.map(ACTIVITY_LEVELS).to_numpy(np.float32)
    return pd.to_numeric(values, errors="raise").to_numpy(np.float32)


def describe(feature_name: str, value: float) -> str:
    """A feature and its value in words: the one phrasebook of the project.

    E.g. 'CYP2D6 poor metabolizer', 'not a CYP2D6 poor metabolizer', 'condition other than
    fibromyalgia', 'male sex', 'no smoking', 'age 67 years', 'CYP2C9 activity score
    unknown', 'kidney function (eGFR) not recorded'.
    """
    feature = FEATURES_BY_NAME[feature_name]
    if feature.category is not None:
        return feature.label if value >= 0.5 else _absent(feature)
    if feature.name == "female":
        return "female sex" if value >= 0.5 else "male sex"
    if feature.name in _FLAG_NAMES:
        return feature.label if value >= 0.5 else f"no {feature.label}"
    if np.isnan(value):  # a measurement left empty was not recorded; a genotype is unknown
        return f"{feature.label} {'not recorded' if feature.source in _MEASURED else 'unknown'}"
    if feature.name == "activity_level":
        word = {0: "low", 1: "moderate", 2: "high"}.get(int(round(value)), "?")
        return f"{word} physical activity"
    shown = f"{value:.0f}" if abs(value) >= 10 or float(value).is_integer() else f"{value:.2g}"
    return f"{feature.label} {shown}{(' ' + feature.unit) if feature.unit else ''}"


_FLAG_NAMES = frozenset(f.name for f in _FLAGS)
_MEASURED = frozenset(measurement_columns())


def _absent(feature: Feature) -> str:
    """An indicator that is 0: 'condition other than X', 'not a CYP2D6 poor metabolizer'."""
    if feature.source == "condition":
        return f"condition other than {str(feature.category).replace('_', ' ')}"
    article = "a " if feature.label.endswith("metabolizer") else ""
    return f"not {article}{feature.label}"


def describe_cells(features: np.ndarray, values: np.ndarray) -> np.ndarray:
    """:func:`describe` for many (feature index, value) cells, computed once per distinct pair."""
    value_codes, uniques = pd.factorize(np.asarray(values, dtype=float), use_na_sentinel=False)
    keys = np.asarray(features).astype(np.int64) * (len(uniques) + 1) + value_codes
    inverse, distinct = pd.factorize(keys)
    texts = [describe(FEATURE_NAMES[key // (len(uniques) + 1)],
                      float(uniques[key % (len(uniques) + 1)])) for key in distinct]
    return np.array(texts, dtype=object)[inverse]
