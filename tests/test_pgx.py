"""CPIC diplotype translation: worked examples and properties over the allele tables."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from precision_pain.data import pgx

D6 = sorted(pgx.CYP2D6_ALLELE_ACTIVITY)
C9 = sorted(pgx.CYP2C9_ALLELE_ACTIVITY)
C19 = sorted(pgx.CYP2C19_ALLELE_FUNCTION)
# CPIC "uncertain function" alleles and odd spellings: none may get a guess.
_ODD = ["*22", "*43", "*999", "*4A", "*2.001", "foo", "*1xN"]


def _unknown(table: object) -> st.SearchStrategy[str]:
    return st.sampled_from([a for a in _ODD if a not in table])  # type: ignore[operator]

PHENO_RANK = {"PM": 0, "IM": 1, "NM": 2, "UM": 3}


def test_table_version_is_pinned() -> None:
    assert "2024" in pgx.CPIC_TABLE_VERSION


@pytest.mark.parametrize(
    ("diplotype", "score", "phenotype"),
    [
        ("*1/*4", 1.0, "IM"),
        ("*1/*41", 1.25, "NM"),
        ("*1/*1x2", 3.0, "UM"),
        ("*1/*2x2", 3.0, "UM"),
        ("*5/*5", 0.0, "PM"),
        ("*4/*5", 0.0, "PM"),
        ("*10/*41", 0.5, "IM"),
        ("*10/*10", 0.5, "IM"),
        ("*1/*10", 1.25, "NM"),
        ("*1/*17", 1.5, "NM"),
        ("*17/*29", 1.0, "IM"),
        ("*1/*1", 2.0, "NM"),
        ("*2/*35", 2.0, "NM"),
        ("*1/*4x2", 1.0, "IM"),
        ("*4x2/*4", 0.0, "PM"),
        ("*1/*10x2", 1.5, "NM"),
        ("*41x2/*41", 0.75, "IM"),
        ("*41/*1x2", 2.25, "NM"),
        ("*1x3/*4", 3.0, "UM"),
        ("*1x2/*1x2", 4.0, "UM"),
        ("*3/*36", 0.0, "PM"),
        ("*6/*9", 0.25, "IM"),
    ],
)
def test_cyp2d6_examples(diplotype: str, score: float, phenotype: str) -> None:
    assert pgx.cyp2d6_activity_score(diplotype) == score
    assert pgx.cyp2d6_phenotype_from_score(score) == phenotype


@pytest.mark.parametrize(
    "messy", [" *1/*4 ", "*4/*1", "*1 / *4", "1/4", "4/1", "*1/4", "*4/ *1"]
)
def test_normalize_messy_spellings(messy: str) -> None:
    assert pgx.normalize_diplotype(messy) == ("*1", "*4")


@pytest.mark.parametrize("messy", ["*1/*1X2", "*1x2/*1", "*1 x2/*1", "1x2/1"])
def test_normalize_duplication_case(messy: str) -> None:
    assert pgx.normalize_diplotype(messy) == ("*1", "*1x2")


@pytest.mark.parametrize("missing", ["", "  ", "unknown", "UNKNOWN", "n/a", None, math.nan,
                                     pd.NA, "*1", "*1/*2/*3", "/*1"])
def test_missing_or_malformed_is_none(missing: object) -> None:
    assert pgx.normalize_diplotype(missing) is None
    assert math.isnan(pgx.cyp2d6_activity_score(missing))
    assert pgx.cyp2c19_phenotype(missing) == "indeterminate"


@pytest.mark.parametrize(
    ("diplotype", "score", "phenotype"),
    [("*1/*1", 2.0, "NM"), ("*1/*2", 1.5, "IM"), ("*1/*3", 1.0, "IM"), ("*2/*2", 1.0, "IM"),
     ("*2/*3", 0.5, "PM"), ("*3/*3", 0.0, "PM"), ("*1/*5", 1.5, "IM"), ("*1/*9", 2.0, "NM")],
)
def test_cyp2c9_examples(diplotype: str, score: float, phenotype: str) -> None:
    assert pgx.cyp2c9_activity_score(diplotype) == score
    assert pgx.cyp2c9_phenotype(diplotype) == phenotype


@pytest.mark.parametrize(
    ("diplotype", "phenotype"),
    [("*1/*1", "NM"), ("*1/*17", "RM"), ("*17/*17", "UM"), ("*1/*2", "IM"), ("*2/*17", "IM"),
     ("*2/*2", "PM"), ("*2/*3", "PM"), ("*3/*3", "PM"), ("*1/*3", "IM"), ("*1/*9", "IM"),
     ("*2/*9", "PM"), ("*1/*12", "indeterminate"), ("*1/*17x2", "indeterminate")],
)
def test_cyp2c19_examples(diplotype: str, phenotype: str) -> None:
    assert pgx.cyp2c19_phenotype(diplotype) == phenotype


@pytest.mark.parametrize(
    ("genotype", "g", "met"),
    [("A/A", 0, 2), ("A/G", 1, 1), ("G/A", 1, 1), ("G/G", 2, 0), (" a/g ", 1, 1), ("AG", 1, 1)],
)
def test_snp_counts(genotype: str, g: float, met: float) -> None:
    assert pgx.oprm1_g_count(genotype) == g
    assert pgx.comt_met_count(genotype) == met


@pytest.mark.parametrize("bad", ["", None, math.nan, "A/T", "A", "A/G/G", "unknown"])
def test_snp_counts_invalid_is_nan(bad: object) -> None:
    assert math.isnan(pgx.oprm1_g_count(bad))
    assert math.isnan(pgx.comt_met_count(bad))


def test_phenoconversion() -> None:
    assert pgx.cyp2d6_phenotype("*1/*1") == "NM"
    assert pgx.cyp2d6_phenotype("*1/*1", inhibitor=True) == "PM"
    assert pgx.cyp2d6_phenotype("*1/*1x2", inhibitor=True) == "PM"
    assert pgx.cyp2d6_effective_activity(2.0, "moderate") == 1.0
    assert pgx.cyp2d6_effective_activity(2.0, False) == 2.0
    assert pgx.cyp2d6_effective_activity(2.0, np.bool_(True)) == 0.0
    assert pgx.cyp2d6_effective_activity(math.nan, True) == 0.0  # x0 whatever the genotype
    with pytest.raises(ValueError, match="moderate"):
        pgx.cyp2d6_effective_activity(2.0, "weak")


# --- properties over the whole allele tables -------------------------------------------

def _spell(allele: str, draw_upper: bool, pad: str) -> str:
    text = allele.upper() if draw_upper else allele
    return f"{pad}{text}{pad}"


@given(st.sampled_from(D6), st.sampled_from(D6))
def test_cyp2d6_order_invariance_and_sum(a: str, b: str) -> None:
    forward = pgx.cyp2d6_activity_score(f"{a}/{b}")
    assert forward == pgx.cyp2d6_activity_score(f"{b}/{a}")
    assert forward == pgx.CYP2D6_ALLELE_ACTIVITY[a] + pgx.CYP2D6_ALLELE_ACTIVITY[b]


@given(st.sampled_from(D6), st.sampled_from(D6), st.integers(2, 5), st.booleans(),
       st.sampled_from(["", " ", "  "]))
def test_cyp2d6_duplication_and_spelling(a: str, b: str, copies: int, upper: bool,
                                         pad: str) -> None:
    canonical = f"{a}x{copies}/{b}"
    messy = f"{_spell(f'{a}X{copies}' if upper else f'{a}x{copies}', False, pad)}/{pad}{b}"
    expected = pgx.CYP2D6_ALLELE_ACTIVITY[a] * copies + pgx.CYP2D6_ALLELE_ACTIVITY[b]
    assert pgx.cyp2d6_activity_score(canonical) == expected
    assert pgx.cyp2d6_activity_score(messy) == expected
    assert pgx.normalize_diplotype(messy) == pgx.normalize_diplotype(canonical)


@given(st.sampled_from(D6), _unknown(pgx.CYP2D6_ALLELE_ACTIVITY))
def test_cyp2d6_unknown_allele_is_indeterminate(known: str, unknown: str) -> None:
    if unknown.endswith("xN"):
        return  # a known allele with an open copy number: the lower-bound tests below
    score = pgx.cyp2d6_activity_score(f"{known}/{unknown}")
    assert math.isnan(score)
    assert pgx.cyp2d6_phenotype_from_score(score) == "indeterminate"


@given(st.sampled_from(D6))
def test_cyp2d6_deletion_pairs_with_allele_value(allele: str) -> None:
    assert pgx.cyp2d6_activity_score(f"*5/{allele}") == pgx.CYP2D6_ALLELE_ACTIVITY[allele]


@given(st.floats(0, 10, allow_nan=False), st.floats(0, 10, allow_nan=False))
def test_cyp2d6_phenotype_monotone(x: float, y: float) -> None:
    lo, hi = sorted((x, y))
    assert PHENO_RANK[pgx.cyp2d6_phenotype_from_score(lo)] <= \
        PHENO_RANK[pgx.cyp2d6_phenotype_from_score(hi)]


@given(st.sampled_from(C9), st.sampled_from(C9))
def test_cyp2c9_properties(a: str, b: str) -> None:
    score = pgx.cyp2c9_activity_score(f"{a}/{b}")
    assert score == pgx.cyp2c9_activity_score(f" {b.lower()} / {a} ")
    assert score == pgx.CYP2C9_ALLELE_ACTIVITY[a] + pgx.CYP2C9_ALLELE_ACTIVITY[b]
    assert pgx.cyp2c9_phenotype(f"{a}/{b}") in {"NM", "IM", "PM"}


@given(st.sampled_from(C9), _unknown(pgx.CYP2C9_ALLELE_ACTIVITY))
def test_cyp2c9_unknown_is_indeterminate(known: str, unknown: str) -> None:
    assert pgx.cyp2c9_phenotype(f"{known}/{unknown}") == "indeterminate"


@given(st.sampled_from(C19), st.sampled_from(C19))
def test_cyp2c19_properties(a: str, b: str) -> None:
    phenotype = pgx.cyp2c19_phenotype(f"{a}/{b}")
    assert phenotype == pgx.cyp2c19_phenotype(f"{b} /{a}")
    assert phenotype in {"UM", "RM", "NM", "IM", "PM"}
    functions = {pgx.CYP2C19_ALLELE_FUNCTION[a], pgx.CYP2C19_ALLELE_FUNCTION[b]}
    if functions == {"none"}:
        assert phenotype == "PM"


@given(st.sampled_from(C19), _unknown(pgx.CYP2C19_ALLELE_FUNCTION))
def test_cyp2c19_unknown_is_indeterminate(known: str, unknown: str) -> None:
    assert pgx.cyp2c19_phenotype(f"{known}/{unknown}") == "indeterminate"


# --- annotate_pgx ------------------------------------------------------------------------

def _frame() -> pd.DataFrame:
    return pd.DataFrame({
        "patient_id": ["P1", "P2", "P3", "P4"],
        "CYP2D6": ["*1/*4", " *1/*1X2", "unknown", "*1/*1"],
        "CYP2C9": ["*1/*1", "*2/*3", "", "*1/*22"],
        "CYP2C19": ["*1/*17", "*2/*2", None, "*17/*17"],
        "OPRM1_rs1799971": ["A/A", "A/G", "", "G/G"],
        "COMT_rs4680": ["G/G", "G/A", "A/A", None],
        "cyp2d6_inhibitor": [False, False, True, True],
    })


def test_annotate_pgx_values_and_columns() -> None:
    df = _frame()
    out = pgx.annotate_pgx(df)
    assert list(out.columns) == list(df.columns) + list(pgx.PGX_COLUMNS)
    assert out["cyp2d6_phenotype"].tolist() == ["IM", "UM", "indeterminate", "NM"]
    assert out["cyp2d6_effective_phenotype"].tolist() == ["IM", "UM", "PM", "PM"]
    assert out["cyp2c9_phenotype"].tolist() == ["NM", "PM", "indeterminate", "indeterminate"]
    assert out["cyp2c19_phenotype"].tolist() == ["RM", "PM", "indeterminate", "UM"]
    np.testing.assert_array_equal(out["oprm1_g_count"], [0, 1, np.nan, 2])
    np.testing.assert_array_equal(out["comt_met_count"], [0, 1, 2, np.nan])
    for column in ("cyp2d6_activity_score", "cyp2c9_activity_score", "oprm1_g_count"):
        assert out[column].dtype == float


def test_annotate_pgx_does_not_mutate_input() -> None:
    df = _frame()
    before = df.copy(deep=True)
    out = pgx.annotate_pgx(df)
    pd.testing.assert_frame_equal(df, before)
    assert out is not df


def test_annotate_pgx_missing_column_names_it() -> None:
    with pytest.raises(KeyError, match="CYP2C19"):
        pgx.annotate_pgx(_frame().drop(columns="CYP2C19"))


def test_annotate_pgx_agrees_with_scalar_functions() -> None:
    rng = np.random.default_rng(0)
    pairs = [f"{a}/{b}" for a, b in rng.choice(D6 + ["*22", "*1x2", "*4x2"], (200, 2))]
    df = _frame().iloc[[0] * 200].reset_index(drop=True).assign(CYP2D6=pairs)
    out = pgx.annotate_pgx(df)
    expected = [pgx.cyp2d6_phenotype(p) for p in pairs]
    assert out["cyp2d6_phenotype"].tolist() == expected


# --- lower-bound copy numbers (x≥3, xN) and phenoconversion by named inhibitors ---------

NORMAL = [a for a in D6 if pgx.CYP2D6_ALLELE_ACTIVITY[a] == 1.0]


@pytest.mark.parametrize(
    ("diplotype", "score", "phenotype"),
    [
        ("*1/*1x≥3", 4.0, "UM"),  # CPIC diplotype-phenotype table: ">= 4.0", UM
        ("*1x≥3/*4", 3.0, "UM"),  # ">= 3.0", UM whatever the other allele
        ("*2x>=3/*4", 3.0, "UM"),
        ("*2X≥3/*5", 3.0, "UM"),
        ("*1xN/*1", 3.0, "UM"),  # two or more copies: >= 3.0
        ("*1xN/*4", math.nan, "indeterminate"),  # >= 2.0: NM or UM
        ("*41x≥3/*4", math.nan, "indeterminate"),  # >= 0.75: IM, NM or UM
        ("*4x≥3/*4", 0.0, "PM"),  # no function x any copies = 0
        ("*10x≥3/*1", 1.75, "indeterminate"),
    ],
)
def test_cyp2d6_lower_bound_copy_numbers(diplotype: str, score: float, phenotype: str) -> None:
    got = pgx.cyp2d6_activity_score(diplotype)
    if phenotype == "indeterminate":
        assert math.isnan(got)
    else:
        assert got == score
    assert pgx.cyp2d6_phenotype(diplotype) == phenotype


@given(st.sampled_from(NORMAL), st.sampled_from(D6), st.sampled_from(["x≥3", "x>=3", "X≥3"]))
def test_three_or_more_normal_copies_are_ultrarapid_whatever_the_other_allele(
        normal: str, other: str, copies: str) -> None:
    diplotype = f"{normal}{copies}/{other}"
    assert pgx.cyp2d6_phenotype(diplotype) == "UM"
    assert pgx.cyp2d6_activity_score(diplotype) >= 3.0


@given(st.sampled_from(D6), st.sampled_from(D6), st.sampled_from(["x≥3", "xN"]))
def test_a_lower_bound_phenotype_is_the_phenotype_of_every_exact_copy_number(
        a: str, b: str, copies: str) -> None:
    """Called only when every exact copy number (3+, or 2+ for xN) agrees; never a guess."""
    called = pgx.cyp2d6_phenotype(f"{a}{copies}/{b}")
    first = 3 if copies == "x≥3" else 2
    exact = {pgx.cyp2d6_phenotype(f"{a}x{n}/{b}") for n in range(first, 13)}  # 12 x 0.25 = 3
    if called != "indeterminate":
        assert exact == {called}
    else:
        assert len(exact) > 1


@given(st.sampled_from(D6), st.sampled_from(D6))
def test_every_known_diplotype_follows_the_cpic_activity_score_cut_points(a: str, b: str) -> None:
    """CPIC 2020 consensus (Caudle et al.): PM 0; IM 0.25-1.0; NM 1.25-2.25; UM > 2.25."""
    score = pgx.CYP2D6_ALLELE_ACTIVITY[a] + pgx.CYP2D6_ALLELE_ACTIVITY[b]
    expected = ("PM" if score == 0 else "IM" if score < 1.25 else "NM" if score <= 2.25
                else "UM")
    assert pgx.cyp2d6_phenotype(f"{a}/{b}") == expected


@pytest.mark.parametrize(
    ("diplotype", "drugs", "effective"),
    [
        ("*1/*1", "duloxetine", "IM"),  # 2.0 x 0.5 = 1.0
        ("*1/*1x2", "duloxetine", "NM"),  # 3.0 x 0.5 = 1.5
        ("*1/*1", "fluoxetine", "PM"),
        ("*1/*1", "Duloxetine; PAROXETINE", "PM"),  # the strongest inhibitor counts
        ("*1/*1", "", "NM"),
        ("*1x≥3/*4", "duloxetine", "indeterminate"),  # >= 1.5: NM or UM
        ("unknown", "bupropion", "PM"),
    ],
)
def test_phenoconversion_by_named_inhibitors(diplotype: str, drugs: str, effective: str) -> None:
    frame = _frame().iloc[[0]].assign(CYP2D6=diplotype, cyp2d6_inhibitor_drugs=drugs)
    out = pgx.annotate_pgx(frame)
    assert out["cyp2d6_effective_phenotype"].tolist() == [effective]
    assert out["cyp2d6_phenotype"].tolist() == [pgx.cyp2d6_phenotype(diplotype)]


@given(st.sampled_from(D6), st.sampled_from(D6),
       st.sampled_from(sorted(pgx.CYP2D6_INHIBITORS)))
def test_named_inhibitor_scales_the_activity_score(a: str, b: str, drug: str) -> None:
    frame = _frame().iloc[[0]].assign(CYP2D6=f"{a}/{b}", cyp2d6_inhibitor_drugs=drug)
    out = pgx.annotate_pgx(frame).iloc[0]
    factor = pgx.CYP2D6_INHIBITOR_FACTOR[pgx.CYP2D6_INHIBITORS[drug]]
    assert out["cyp2d6_effective_activity"] == out["cyp2d6_activity_score"] * factor
    assert PHENO_RANK[out["cyp2d6_effective_phenotype"]] <= PHENO_RANK[out["cyp2d6_phenotype"]]


def test_unknown_inhibitor_name_is_an_error_listing_the_table() -> None:
    with pytest.raises(ValueError, match="sertraline.*valid: bupropion"):
        pgx.inhibitor_drug_factor("sertraline")
