"""The stateless feature encoding and its words."""

from __future__ import annotations

import numpy as np
import pytest

from precision_pain.data.features import FEATURE_NAMES, build_features, describe, describe_cells


def test_features_are_stable_and_complete(small_splits):
    prepared = small_splits["train"].head(100)
    X = build_features(prepared)
    assert tuple(X.columns) == FEATURE_NAMES
    assert X.dtypes.eq(np.float32).all()
    assert "ancestry" not in " ".join(FEATURE_NAMES)  # ancestry is for subgroup checks only
    # one-hot blocks sum to one per row
    for prefix in ("condition=", "cyp2d6_effective_phenotype=", "cyp2c19_phenotype="):
        block = X[[c for c in X.columns if c.startswith(prefix)]]
        assert (block.sum(axis=1) == 1).all(), prefix


def test_a_single_row_gets_every_column(small_splits):
    one = small_splits["test"].head(1)
    assert build_features(one).shape == (1, len(FEATURE_NAMES))


def test_build_features_does_not_mutate(small_splits):
    frame = small_splits["valid"].head(20)
    before = frame.copy()
    build_features(frame)
    assert frame.equals(before)


def test_missing_source_column_is_named(small_splits):
    with pytest.raises(KeyError, match="phq9"):
        build_features(small_splits["test"].head(5).drop(columns=["phq9"]))


@pytest.mark.parametrize("name, value, words", [
    ("cyp2d6_effective_phenotype=PM", 1.0, "CYP2D6 poor metabolizer"),
    ("pcs", 38.0, "pain catastrophizing (PCS) 38"),
    ("smoker", 0.0, "no smoking"),
    ("cyp2c9_activity_score", float("nan"), "CYP2C9 activity score unknown"),
    ("egfr", float("nan"), "kidney function (eGFR) not recorded"),
    ("phq9", float("nan"), "depression (PHQ-9) not recorded"),
    ("activity_level", float("nan"), "physical activity level not recorded"),
    ("activity_level", 0.0, "low physical activity"),
    ("female", 1.0, "female sex"),
    ("female", 0.0, "male sex"),
    ("cyp2d6_effective_phenotype=PM", 0.0, "not a CYP2D6 poor metabolizer"),
    ("condition=fibromyalgia", 0.0, "condition other than fibromyalgia"),
    ("condition=fibromyalgia", 1.0, "condition: fibromyalgia"),
    ("age", 67.0, "age 67 years"),
])
def test_describe(name, value, words):
    assert describe(name, value) == words


def test_describe_cells_matches_describe_cell_by_cell():
    rng = np.random.default_rng(0)
    features = rng.integers(0, len(FEATURE_NAMES), 200)
    values = rng.choice([0.0, 1.0, 2.0, 38.0, 0.25, np.nan], 200)
    expected = [describe(FEATURE_NAMES[j], v) for j, v in zip(features, values)]
    assert describe_cells(features, values).tolist() == expected


def test_one_phenotype_list():
    from precision_pain.data.pgx import PHENOTYPE_ORDER, PHENOTYPES

    for gene, phenotypes in PHENOTYPES.items():
        assert [p for p in PHENOTYPE_ORDER if p in phenotypes] == list(phenotypes), gene
        column = "cyp2d6_effective_phenotype" if gene == "CYP2D6" else f"{gene.lower()}_phenotype"
        encoded = [f.split("=", 1)[1] for f in FEATURE_NAMES if f.startswith(column + "=")]
        assert encoded == list(phenotypes), gene
