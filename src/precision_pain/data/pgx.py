"""CPIC translation of pharmacogene diplotypes into activity scores and phenotypes.

Sources (numbers and full references: docs/domain.md, section 2):

* Allele function / activity values: the CPIC allele functionality tables as
  distributed in PharmCAT's ``base_data/phenotype/cpic/{CYP2D6,CYP2C9,CYP2C19}.json``
  (PharmGKB/PharmCAT, commit 1cd37900). CYP2D6 uses the 2024 values in which
  *9, *10 and *41 carry 0.25 (older CPIC tables: 0.5).
* CYP2D6 activity score -> phenotype: CPIC 2021 opioid guideline (Crews et al.,
  Clin Pharmacol Ther 110:888), Tables 3-4, after the Caudle 2020 consensus:
  PM = 0; IM > 0 and < 1.25; NM 1.25-2.25; UM > 2.25.
* Duplications: the activity value of a duplicated allele is its value times the
  copy number (*1x2 = 2.0, *4x2 = 0, *10x2 = *41x2 = 0.5; PharmCAT's *41x3 = 0.75).
  A copy number written as a lower bound (``x≥3``, three or more copies; ``xN``, two or
  more, number not determined) gives an activity range [copies x value, unbounded): the
  phenotype is called when every score in the range has the same one, as CPIC's
  diplotype-phenotype table does (Caudle et al., Clin Transl Sci 2020;13:116, and the
  CPIC CYP2D6 diplotype-phenotype table: *1x≥3/*4 has activity score ">= 3.0",
  ultrarapid, whatever the other allele). So three or more copies of a normal-function
  allele are always UM; *1xN/*4 (>= 2.0) and *41x≥3/*4 (>= 0.75) are indeterminate.
  The activity score column then holds the range's lower bound (3.0 for *1x≥3/*4).
* CYP2C9 score -> phenotype: CPIC 2020 NSAID guideline (Theken et al., Clin Pharmacol
  Ther 108:191): 2 = NM; 1.5 and 1.0 = IM; 0.5 and 0 = PM.
* CYP2C19 function pairs -> phenotype: CPIC 2022 clopidogrel guideline (Lee et al.,
  Clin Pharmacol Ther 112:959), Table 1. CPIC's "likely IM" / "likely PM" (pairs with
  a decreased-function allele) carry the same recommendations as IM / PM and are
  reported as such.
* Phenoconversion: a strong CYP2D6 inhibitor multiplies the CYP2D6 activity score by
  0, a moderate one by 0.5 (Cicali et al., Clin Pharmacol Ther 2021;110:677; the practice
  the CPIC opioid guideline's supplement describes, Crews 2021). Any score times 0 is 0,
  so a patient on a strong inhibitor is an effective PM even when the genotype is
  indeterminate. Inhibitor strengths (:data:`CYP2D6_INHIBITORS`): FDA, "Drug Development
  and Drug Interactions: Table of Substrates, Inhibitors and Inducers", CYP2D6 clinical
  index inhibitors (strong: bupropion, fluoxetine, paroxetine, quinidine, terbinafine;
  moderate: abiraterone, cinacalcet, duloxetine, lorcaserin, mirabegron), as in the
  Flockhart table. Weak inhibitors are not adjusted (Cicali 2021) and are not listed.

An allele the tables do not know (or CPIC lists as "uncertain function") gives
``indeterminate``; the module never guesses.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType

import numpy as np
import pandas as pd

CPIC_TABLE_VERSION = "CPIC allele functionality 2024 (PharmGKB/PharmCAT base_data commit 1cd37900)"

INDETERMINATE = "indeterminate"

# CYP2D6 activity value per single-copy allele (CPIC 2024 via PharmCAT). Alleles CPIC
# lists with "n/a" (uncertain function, e.g. *22-*26, *28, *30, *37, *43) are absent on
# purpose: they translate to "indeterminate".
CYP2D6_ALLELE_ACTIVITY: Mapping[str, float] = MappingProxyType({
    # normal function
    "*1": 1.0, "*2": 1.0, "*27": 1.0, "*33": 1.0, "*34": 1.0, "*35": 1.0, "*39": 1.0,
    "*45": 1.0, "*46": 1.0, "*48": 1.0, "*53": 1.0,
    # decreased function, 0.5
    "*14": 0.5, "*17": 0.5, "*29": 0.5, "*49": 0.5, "*50": 0.5, "*54": 0.5, "*55": 0.5,
    "*59": 0.5,
    # decreased function, 0.25 (2024: *9, *10, *41 moved from 0.5 to 0.25)
    "*9": 0.25, "*10": 0.25, "*32": 0.25, "*41": 0.25, "*52": 0.25, "*91": 0.25,
    "*109": 0.25, "*119": 0.25, "*132": 0.25,
    # no function (*5 = whole-gene deletion)
    "*3": 0.0, "*4": 0.0, "*5": 0.0, "*6": 0.0, "*7": 0.0, "*8": 0.0, "*11": 0.0,
    "*12": 0.0, "*13": 0.0, "*15": 0.0, "*18": 0.0, "*19": 0.0, "*20": 0.0, "*21": 0.0,
    "*31": 0.0, "*36": 0.0, "*38": 0.0, "*40": 0.0, "*42": 0.0, "*44": 0.0, "*47": 0.0,
    "*51": 0.0, "*56": 0.0, "*60": 0.0, "*62": 0.0, "*68": 0.0, "*69": 0.0, "*81": 0.0,
    "*92": 0.0, "*96": 0.0, "*99": 0.0, "*100": 0.0, "*101": 0.0, "*114": 0.0,
    "*120": 0.0, "*124": 0.0, "*129": 0.0, "*143": 0.0, "*144": 0.0, "*156": 0.0,
    "*161": 0.0,
})

# CYP2C9 activity value per allele (CPIC via PharmCAT; "n/a" alleles left out).
CYP2C9_ALLELE_ACTIVITY: Mapping[str, float] = MappingProxyType({
    "*1": 1.0, "*9": 1.0,
    "*2": 0.5, "*4": 0.5, "*5": 0.5, "*8": 0.5, "*11": 0.5, "*12": 0.5, "*14": 0.5,
    "*16": 0.5, "*23": 0.5, "*26": 0.5, "*28": 0.5, "*29": 0.5, "*30": 0.5, "*31": 0.5,
    "*37": 0.5, "*38": 0.5, "*44": 0.5, "*46": 0.5, "*50": 0.5, "*55": 0.5, "*61": 0.5,
    "*3": 0.0, "*6": 0.0, "*13": 0.0, "*15": 0.0, "*24": 0.0, "*25": 0.0, "*33": 0.0,
    "*35": 0.0, "*39": 0.0, "*42": 0.0, "*43": 0.0, "*45": 0.0, "*52": 0.0,
})

# CYP2C19 allele function (CPIC via PharmCAT; "uncertain function" alleles left out).
CYP2C19_ALLELE_FUNCTION: Mapping[str, str] = MappingProxyType({
    "*1": "normal", "*11": "normal", "*13": "normal", "*15": "normal", "*18": "normal",
    "*28": "normal", "*38": "normal",
    "*17": "increased",
    "*9": "decreased", "*10": "decreased", "*16": "decreased", "*19": "decreased",
    "*25": "decreased", "*26": "decreased",
    "*2": "none", "*3": "none", "*4": "none", "*5": "none", "*6": "none", "*7": "none",
    "*8": "none", "*22": "none", "*24": "none", "*35": "none", "*36": "none", "*37": "none",
})

# CYP2C19 phenotype by (sorted) pair of allele functions; CPIC 2022 Table 1. Pairs with
# a decreased allele are CPIC's "likely IM" / "likely PM", reported as IM / PM.
CYP2C19_FUNCTION_PAIR_PHENOTYPE: Mapping[tuple[str, str], str] = MappingProxyType({
    ("increased", "increased"): "UM",
    ("increased", "normal"): "RM",
    ("normal", "normal"): "NM",
    ("none", "normal"): "IM",
    ("increased", "none"): "IM",
    ("decreased", "normal"): "IM",
    ("decreased", "increased"): "IM",
    ("decreased", "decreased"): "IM",
    ("none", "none"): "PM",
    ("decreased", "none"): "PM",
})

# CYP2C9 activity score -> phenotype (CPIC 2020, Theken et al.).
CYP2C9_SCORE_PHENOTYPE: Mapping[float, str] = MappingProxyType(
    {2.0: "NM", 1.5: "IM", 1.0: "IM", 0.5: "PM", 0.0: "PM"}
)

# CYP2D6 activity score -> phenotype cut points (CPIC 2021 opioids, Crews et al.).
CYP2D6_IM_MIN_EXCLUSIVE = 0.0
CYP2D6_NM_MIN = 1.25
CYP2D6_NM_MAX = 2.25

# Multiplier on the CYP2D6 activity score by inhibitor strength (Cicali 2021).
CYP2D6_INHIBITOR_FACTOR: Mapping[str, float] = MappingProxyType({"strong": 0.0, "moderate": 0.5})

# CYP2D6 inhibitors by strength: FDA Drug Development and Drug Interactions table (clinical
# index inhibitors; Flockhart table). The optional contract column cyp2d6_inhibitor_drugs
# takes these names; weak inhibitors need no entry (no adjustment, Cicali 2021).
CYP2D6_INHIBITORS: Mapping[str, str] = MappingProxyType({
    "bupropion": "strong", "fluoxetine": "strong", "paroxetine": "strong",
    "quinidine": "strong", "terbinafine": "strong",
    "abiraterone": "moderate", "cinacalcet": "moderate", "duloxetine": "moderate",
    "lorcaserin": "moderate", "mirabegron": "moderate",
})
# Optional contract column: ';'-separated CYP2D6 inhibitors the patient takes now.
INHIBITOR_DRUGS_COLUMN = "cyp2d6_inhibitor_drugs"

# Every phenotype, in CPIC order (no activity to the most), then indeterminate; and the ones
# each gene can take here (CPIC defines RM only for CYP2C19; CYP2C9 has no increased function).
PHENOTYPE_ORDER: tuple[str, ...] = ("PM", "IM", "NM", "RM", "UM", INDETERMINATE)
PHENOTYPES: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "CYP2D6": ("PM", "IM", "NM", "UM", INDETERMINATE),
    "CYP2C9": ("PM", "IM", "NM", INDETERMINATE),
    "CYP2C19": PHENOTYPE_ORDER,
})
# The genotype phenotype column annotate_pgx writes per gene (CYP2D6 before phenoconversion).
PHENOTYPE_COLUMNS: Mapping[str, str] = MappingProxyType(
    {gene: f"{gene.lower()}_phenotype" for gene in PHENOTYPES})

PGX_COLUMNS: tuple[str, ...] = (
    "cyp2d6_activity_score", "cyp2d6_phenotype", "cyp2d6_effective_activity",
    "cyp2d6_effective_phenotype", "cyp2c9_activity_score", "cyp2c9_phenotype",
    "cyp2c19_phenotype", "oprm1_g_count", "comt_met_count",
)
GENOTYPE_COLUMNS: tuple[str, ...] = (
    "CYP2D6", "CYP2C9", "CYP2C19", "OPRM1_rs1799971", "COMT_rs4680",
)

_MISSING_TOKENS = frozenset({"", "unknown", "na", "n/a", "nan", "none", "null", "-", "?"})
# '*4', '4', '*1x2', '*1 X 2', '*1x≥3', '*1xN' (xN = copy number not determined).
_STAR_ALLELE = re.compile(r"^\*?(\d+)(?:[x×](\d+|n|≥3|>=3))?$")
_UNKNOWN_COPIES = "N"


def _is_missing(value: object) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and value.strip().lower() in _MISSING_TOKENS


def _canonical_allele(part: str) -> str:
    compact = re.sub(r"\s+", "", part)
    match = _STAR_ALLELE.match(compact.lower())
    if match is None:
        return compact  # kept as written: an allele the tables will not know
    number, copies = match.groups()
    if copies is None:
        return f"*{int(number)}"
    if copies.isdigit():
        n = int(copies)
        if n == 0:
            return compact  # "x0" is not a copy number
        return f"*{int(number)}" if n == 1 else f"*{int(number)}x{n}"
    return f"*{int(number)}x{'≥3' if '3' in copies else _UNKNOWN_COPIES}"


def _allele_sort_key(allele: str) -> tuple[int, int, str]:
    match = _STAR_ALLELE.match(allele.lower())
    if match is None:
        return (1, 0, allele)
    return (0, int(match.group(1)), allele)


def normalize_diplotype(value: object) -> tuple[str, str] | None:
    """Canonical ordered allele pair of a diplotype string; None when missing or malformed."""
    if isinstance(value, tuple) and len(value) == 2:
        value = f"{value[0]}/{value[1]}"
    if _is_missing(value) or not isinstance(value, str):
        return None
    parts = value.strip().split("/")
    if len(parts) != 2 or not all(p.strip() for p in parts):
        return None
    a, b = sorted((_canonical_allele(p) for p in parts), key=_allele_sort_key)
    return (a, b)


def _split_copies(allele: str) -> tuple[str, str | None]:
    base, sep, copies = allele.partition("x")
    return (base, copies) if sep else (allele, None)


# Fewest copies a lower-bound copy number stands for: x≥3 = three or more, xN = two or more.
_MIN_COPIES: Mapping[str, int] = MappingProxyType({"≥3": 3, _UNKNOWN_COPIES: 2})
_NAN_BOUNDS = (math.nan, math.nan)


def _allele_bounds(allele: str, table: Mapping[str, float], duplications: bool
                   ) -> tuple[float, float]:
    """(lowest, highest) activity of one allele; NaN when unknown, inf when unbounded."""
    base, copies = _split_copies(allele)
    value = table.get(base)
    if value is None:
        return _NAN_BOUNDS
    if copies is None:
        return (value, value)
    if not duplications:
        return _NAN_BOUNDS
    if copies.isdigit():
        return (value * int(copies),) * 2 if int(copies) >= 2 else _NAN_BOUNDS
    if copies in _MIN_COPIES:
        low = value * _MIN_COPIES[copies]
        return (low, math.inf if value > 0 else 0.0)  # 0 x any copies = 0
    return _NAN_BOUNDS


def _activity_bounds(diplotype: object, table: Mapping[str, float], duplications: bool
                     ) -> tuple[float, float]:
    pair = normalize_diplotype(diplotype)
    if pair is None:
        return _NAN_BOUNDS
    bounds = [_allele_bounds(a, table, duplications) for a in pair]
    return (bounds[0][0] + bounds[1][0], bounds[0][1] + bounds[1][1])


def _activity_score(diplotype: object, table: Mapping[str, float], duplications: bool) -> float:
    low, high = _activity_bounds(diplotype, table, duplications)
    return low if low == high else math.nan


def cyp2d6_activity_bounds(diplotype: object) -> tuple[float, float]:
    """CYP2D6 activity range (low, high) of a diplotype; high is inf for x≥3 / xN copies."""
    return _activity_bounds(diplotype, CYP2D6_ALLELE_ACTIVITY, duplications=True)


def cyp2d6_activity_score(diplotype: object) -> float:
    """CYP2D6 activity score (sum of allele values); NaN if unknown or the phenotype is open.

    With a lower-bound copy number (x≥3, xN) it is the range's lower bound when every score
    in the range gives the same phenotype (``*1x≥3/*4``: 3.0, UM), else NaN (``*1xN/*4``).
    """
    low, high = cyp2d6_activity_bounds(diplotype)
    phenotype = _cyp2d6_phenotype_bounds(np.array([low]), np.array([high]))[0]
    return low if phenotype != INDETERMINATE else math.nan


def cyp2d6_phenotype_from_score(score: float) -> str:
    """CYP2D6 phenotype (PM/IM/NM/UM/indeterminate) for an activity score."""
    return str(_cyp2d6_phenotypes(np.array([score], dtype=float))[0])


def _cyp2d6_phenotypes(scores: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        conditions = [
            scores == 0.0,
            (scores > CYP2D6_IM_MIN_EXCLUSIVE) & (scores < CYP2D6_NM_MIN),
            (scores >= CYP2D6_NM_MIN) & (scores <= CYP2D6_NM_MAX),
            scores > CYP2D6_NM_MAX,
        ]
    return np.select(conditions, ["PM", "IM", "NM", "UM"], default=INDETERMINATE).astype(object)


def _cyp2d6_phenotype_bounds(low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Phenotype every score in [low, high] shares (phenotype is monotone in the score)."""
    at_low = _cyp2d6_phenotypes(low)
    at_high = np.where(np.isinf(high), "UM", _cyp2d6_phenotypes(np.where(np.isinf(high), 0, high)))
    return np.where(at_low == at_high, at_low, INDETERMINATE).astype(object)


def _scaled(bounds: np.ndarray, factor: np.ndarray) -> np.ndarray:
    """Activity bounds times a phenoconversion factor; factor 0 gives 0 even for inf or NaN."""
    with np.errstate(invalid="ignore"):
        return np.where(factor == 0.0, 0.0, bounds * factor)


def cyp2d6_effective_activity(score: float, inhibitor: str | bool | None) -> float:
    """CYP2D6 activity after phenoconversion; inhibitor True/'strong' = x0, 'moderate' = x0.5."""
    if isinstance(inhibitor, str):
        try:
            factor = CYP2D6_INHIBITOR_FACTOR[inhibitor]
        except KeyError:
            raise ValueError(f"inhibitor strength {inhibitor!r}; valid: "
                             f"{', '.join(CYP2D6_INHIBITOR_FACTOR)} or a bool") from None
    elif _truthy(inhibitor):
        factor = CYP2D6_INHIBITOR_FACTOR["strong"]
    else:
        return score
    return 0.0 if factor == 0.0 else score * factor


def cyp2d6_phenotype(diplotype: object, inhibitor: str | bool = False) -> str:
    """CYP2D6 phenotype of a diplotype, phenoconverted by an inhibitor (True = strong)."""
    factor = np.array([cyp2d6_effective_activity(1.0, inhibitor)])
    low, high = (_scaled(np.array([b]), factor) for b in cyp2d6_activity_bounds(diplotype))
    return str(_cyp2d6_phenotype_bounds(low, high)[0])


def cyp2c9_activity_score(diplotype: object) -> float:
    """CYP2C9 activity score of a diplotype; NaN if any allele unknown (no CNV rule)."""
    return _activity_score(diplotype, CYP2C9_ALLELE_ACTIVITY, duplications=False)


def cyp2c9_phenotype_from_score(score: float) -> str:
    """CYP2C9 phenotype (NM/IM/PM/indeterminate) for an activity score."""
    if score is None or math.isnan(score):
        return INDETERMINATE
    return CYP2C9_SCORE_PHENOTYPE.get(float(score), INDETERMINATE)


def cyp2c9_phenotype(diplotype: object) -> str:
    """CYP2C9 phenotype of a diplotype."""
    return cyp2c9_phenotype_from_score(cyp2c9_activity_score(diplotype))


def cyp2c19_phenotype(diplotype: object) -> str:
    """CYP2C19 phenotype (UM/RM/NM/IM/PM/indeterminate) of a diplotype."""
    pair = normalize_diplotype(diplotype)
    if pair is None:
        return INDETERMINATE
    functions = [CYP2C19_ALLELE_FUNCTION.get(a) for a in pair]
    if None in functions:
        return INDETERMINATE
    key = tuple(sorted(functions))
    return CYP2C19_FUNCTION_PAIR_PHENOTYPE.get(key, INDETERMINATE)  # type: ignore[arg-type]


def _allele_count(genotype: object, counted: str, alleles: frozenset[str]) -> float:
    if _is_missing(genotype) or not isinstance(genotype, str):
        return math.nan
    parts = [p for p in re.split(r"[/|\s]+", genotype.strip().upper()) if p]
    if len(parts) == 1 and len(parts[0]) == 2:
        parts = list(parts[0])
    if len(parts) != 2 or not set(parts) <= alleles:
        return math.nan
    return float(parts.count(counted))


def oprm1_g_count(genotype: object) -> float:
    """Number of OPRM1 rs1799971 (A118G) G alleles in a genotype like 'A/G'; NaN if invalid."""
    return _allele_count(genotype, "G", frozenset("AG"))


def comt_met_count(genotype: object) -> float:
    """Number of COMT rs4680 Met (A) alleles in a genotype like 'G/A'; NaN if invalid."""
    return _allele_count(genotype, "A", frozenset("AG"))


def _translate(values: pd.Series, fn: Callable[[object], object], dtype: object) -> np.ndarray:
    """Apply ``fn`` once per distinct value, then broadcast (fast on millions of rows)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    table = np.array([fn(u) for u in uniques] + [fn(None)], dtype=dtype)
    return table[codes]  # code -1 (missing) picks the trailing fn(None)


def _truthy(value: object) -> bool:
    if _is_missing(value):
        return False  # no recorded inhibitor
    if isinstance(value, str):
        return value.strip().lower() in {"true", "1", "yes", "y", "t"}
    return bool(value)


def _as_bool(values: pd.Series) -> np.ndarray:
    if values.dtype == bool:
        return values.to_numpy()
    return _translate(values, _truthy, bool)


def _check_columns(df: pd.DataFrame) -> None:
    missing = [c for c in (*GENOTYPE_COLUMNS, "cyp2d6_inhibitor") if c not in df.columns]
    if missing:
        raise KeyError(f"annotate_pgx: missing column(s) {', '.join(missing)}; "
                       "the data contract (docs/data-contract.md) lists them as required")


def inhibitor_drug_factor(drugs: object) -> float:
    """Smallest phenoconversion factor of a ';'-separated list of CYP2D6 inhibitors (1: none).

    Names not in :data:`CYP2D6_INHIBITORS` are a ``ValueError`` (the contract refuses them
    first, with rows and the fix).
    """
    if _is_missing(drugs) or not isinstance(drugs, str):
        return 1.0
    names = [d.strip().lower() for d in drugs.split(";") if d.strip()]
    unknown = [d for d in names if d not in CYP2D6_INHIBITORS]
    if unknown:
        raise ValueError(f"not CYP2D6 inhibitors in the table: {', '.join(unknown)}; "
                         f"valid: {', '.join(CYP2D6_INHIBITORS)}")
    return min((CYP2D6_INHIBITOR_FACTOR[CYP2D6_INHIBITORS[d]] for d in names), default=1.0)


def _inhibitor_factor(df: pd.DataFrame) -> np.ndarray:
    """Per row: 0 with a strong inhibitor (flag or drug), 0.5 with a moderate one, else 1."""
    strong_flag = _as_bool(df["cyp2d6_inhibitor"])
    drugs = (_translate(df[INHIBITOR_DRUGS_COLUMN], inhibitor_drug_factor, float)
             if INHIBITOR_DRUGS_COLUMN in df.columns else np.ones(len(df)))
    return np.where(strong_flag, CYP2D6_INHIBITOR_FACTOR["strong"], drugs)


def _cyp2d6_columns(df: pd.DataFrame) -> dict[str, np.ndarray]:
    """Genotype and effective (phenoconverted) CYP2D6 activity scores and phenotypes."""
    bounds = _translate(df["CYP2D6"], cyp2d6_activity_bounds, float)  # (n, 2): low, high
    low, high = bounds[:, 0], bounds[:, 1]
    factor = _inhibitor_factor(df)
    eff_low, eff_high = _scaled(low, factor), _scaled(high, factor)
    phenotype = _cyp2d6_phenotype_bounds(low, high)
    effective = _cyp2d6_phenotype_bounds(eff_low, eff_high)
    return {
        "cyp2d6_activity_score": np.where(phenotype == INDETERMINATE, np.nan, low),
        "cyp2d6_phenotype": phenotype,
        "cyp2d6_effective_activity": np.where(effective == INDETERMINATE, np.nan, eff_low),
        "cyp2d6_effective_phenotype": effective,
    }


def annotate_pgx(df: pd.DataFrame) -> pd.DataFrame:
    """A new frame: ``df`` plus CPIC-translated activity scores and phenotypes (PGX_COLUMNS).

    The CYP2D6 effective phenotype follows a strong inhibitor (``cyp2d6_inhibitor``) or the
    strongest inhibitor of the optional ``cyp2d6_inhibitor_drugs`` column.
    """
    _check_columns(df)
    c9 = _translate(df["CYP2C9"], cyp2c9_activity_score, float)
    new = {
        **_cyp2d6_columns(df),
        "cyp2c9_activity_score": c9,
        "cyp2c9_phenotype": _translate(pd.Series(c9), cyp2c9_phenotype_from_score, object),
        "cyp2c19_phenotype": _translate(df["CYP2C19"], cyp2c19_phenotype, object),
        "oprm1_g_count": _translate(df["OPRM1_rs1799971"], oprm1_g_count, float),
        "comt_met_count": _translate(df["COMT_rs4680"], comt_met_count, float),
    }
    out = df.drop(columns=[c for c in PGX_COLUMNS if c in df.columns])
    return out.assign(**{k: pd.Series(v, index=df.index) for k, v in new.items()})


def with_inhibitor_drugs(df: pd.DataFrame, drugs: tuple[str, ...]) -> pd.DataFrame:
    """A new frame: ``df`` taking ``drugs`` (CYP2D6 inhibitors) as well, re-annotated.

    The drugs join the optional ``cyp2d6_inhibitor_drugs`` column and :func:`annotate_pgx`
    recomputes the effective CYP2D6 phenotype (the strongest inhibitor wins), e.g. for a
    treatment plan that contains duloxetine.
    """
    if not drugs:
        return annotate_pgx(df)
    added = ";".join(drugs)
    if INHIBITOR_DRUGS_COLUMN in df.columns:
        taken = df[INHIBITOR_DRUGS_COLUMN].fillna("").astype(str).str.strip()
        column = np.where(taken == "", added, taken + ";" + added)
    else:
        column = np.full(len(df), added, dtype=object)
    return annotate_pgx(df.assign(**{INHIBITOR_DRUGS_COLUMN: column}))
